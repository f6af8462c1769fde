"""msvit.runtime: open and run any msvit artifact behind one interface.

>>> import msvit.runtime as rt
>>> with rt.load("ms_eff_vit_b0_fp32.onnx", threads=2) as s:
...     logits = s.run(msvit.preprocess_batch(["face.jpg"]))    # (N, 1); P(fake) = sigmoid
...     s.metadata["weights_sha256"], s.batch, s.threshold

One module per format (load + the metadata reader and writer, side by side); the format is
detected from the file. Formats that cannot run on this host raise
:class:`~msvit.errors.TargetUnavailableError` with the reason (Core ML off macOS, TensorRT
without a GPU); unreadable files raise :class:`~msvit.errors.ArtifactError`.
"""
from __future__ import annotations

from .base import InputSpec, Session
from .calibration import OperatingPoint, operating_point, sidecar_path
from .formats import BY_NAME, FORMATS, SUFFIXES, Format, detect_format
from .loader import from_model, load, read_metadata

__all__ = ["BY_NAME", "FORMATS", "Format", "InputSpec", "OperatingPoint", "SUFFIXES", "Session", "detect_format",
           "from_model", "load", "operating_point", "read_metadata", "sidecar_path"]
