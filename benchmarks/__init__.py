"""Scripts that reproduce the published tables; run each as ``python -m benchmarks.NAME`` from the repo root.

Every script calls the library (``edgeseg.train``, ``evaluate``, ``export``, ``quantize``, ``bench``) and
writes its figures through :mod:`benchmarks.record` (JSON + Markdown under ``benchmarks/results/``, with
CPU, versions, date and command); :mod:`benchmarks.timing` holds the side-by-side timing the library
has no verb for.
"""
