"""msvit.export: one function per target, one capability table, one wrapper.

>>> from msvit.export import export
>>> res = export(model, target="onnx", out_dir="artifacts")   # -> ExportResult
>>> res.path, res.size_bytes, res.seconds, res.parity.max_abs_dlogit
"""
from __future__ import annotations

from ..quantize import Int8Options
from .api import export
from .core import ExportContext, ExportOptions, ExportResult, TargetOutput
from .request import (EXPLAIN_TARGETS, IMAGE_INPUT_TARGETS, artifact_stem, check_explain, check_input,
                      check_request)
from .targets import PRECISIONS, TARGETS, Target
from .validate import ParityReport, compare

__all__ = [
    "ExportContext", "ExportOptions", "ExportResult", "Int8Options", "ParityReport", "PRECISIONS", "TARGETS",
    "EXPLAIN_TARGETS", "IMAGE_INPUT_TARGETS", "Target", "TargetOutput", "artifact_stem", "check_explain",
    "check_input", "check_request", "compare", "export",
]
