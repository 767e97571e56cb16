"""The formats an export directory may hold and how INT8 is calibrated, without MXNet: what
``export`` and ``quantize`` write and accept, read by them, by the loaders and by the CLI's choices
(whose ``--help`` imports no MXNet)."""
from __future__ import annotations

#: What ``export`` writes: an MXNet symbol + params, or an ONNX file.
FORMATS = ("symbol", "onnx")
#: What ``quantize`` writes: an MXNet INT8 symbol (oneDNN) or an INT8 QDQ ONNX file (OpenVINO).
QUANTIZE_FORMATS = ("mxnet", "onnx")
#: Formats an export.json may name (``int8`` is written by :mod:`.quantize`).
META_FORMATS = ("symbol", "onnx", "int8")
#: How :mod:`.quantize` calibrates INT8 ranges: min/max (``naive``, the only one of ``--format onnx``)
#: or MXNet's KL-divergence thresholds (``entropy``).
CALIB_MODES = ("naive", "entropy")

__all__ = ["FORMATS", "QUANTIZE_FORMATS", "META_FORMATS", "CALIB_MODES"]
