"""The quiet-tools layer: Python logs and warnings, and what native code writes to the process's descriptors."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from edgeseg.quiet import quiet_import, quiet_tools


def test_native_output_is_silenced_and_restored(capfd):
    with quiet_tools("torchao", native=True):
        os.write(1, b"[cpuinfo_utils.cpp:71] Reading file\n")
        os.write(2, b"Failed to load libfoo.so\n")
        logging.getLogger("torchao").warning("Failed to load _C_mxfp8.so")
        warnings.warn("noise", stacklevel=1)
    os.write(2, b"after\n")
    out, err = capfd.readouterr()
    assert out == "" and err == "after\n"


def test_quiet_import_drops_what_a_package_prints_on_import(tmp_path, monkeypatch, capfd):
    (tmp_path / "noisy_pkg.py").write_text(
        "import logging, os\n"
        "os.write(2, b'native noise\\n')\n"
        "logging.getLogger('torchao').warning('Failed to load x.so')\n"
        "VALUE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "noisy_pkg", raising=False)
    assert quiet_import("noisy_pkg").VALUE == 3
    assert capfd.readouterr().err == ""
    assert logging.getLogger("torchao").level == logging.NOTSET  # restored
