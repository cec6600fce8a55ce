"""Text from result lines and recipes, made inert for each report format.

Result files are merged from other machines and people, so every name, path, device or note in them is
data: it must render as text in HTML and Markdown (no tags, no links, no broken table rows), must not
be read as mathtext by matplotlib, and must not start a formula in a spreadsheet.
"""

from __future__ import annotations

import html
import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")  # newlines and tabs end a table row or a list item
# Markdown syntax a value could open: table cells, code spans, links/images, emphasis, escapes.
_MD_SPECIAL = re.compile(r"([\\|`\[\]*])")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def html_text(value: Any) -> str:
    """``value`` as HTML text (also safe inside a quoted attribute)."""
    return html.escape(str(value), quote=True)


def md_text(value: Any) -> str:
    """``value`` as one line of literal Markdown text: safe in a table cell, heading or list item."""
    text = _CONTROL.sub(" ", str(value))
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def plot_text(value: Any) -> str:
    """``value`` for a matplotlib label: a ``$`` would start mathtext (and a malformed one aborts drawing)."""
    return _CONTROL.sub(" ", str(value)).replace("$", r"\$")


def csv_value(value: Any) -> Any:
    """A string that a spreadsheet would run as a formula gets a leading apostrophe; other values pass."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
