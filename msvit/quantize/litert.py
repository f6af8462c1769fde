"""INT8 LiteRT with Google's ai-edge-quantizer (static int8 on the Conv/DepthwiseConv/
FullyConnected ops of the planned layer groups) under msvit's guard.

The stock whole-model recipes break decisions on MS-Eff-ViT (agreement 0.84-0.95, max |ΔP|
0.14-0.43 on the face crops, ``research/litert_int8.py``), so the sensitivity plan picks the
groups, as for every other backend. Conversion is the export layer's (``convert`` is
:func:`msvit.export.litert.convert_litert`, handed in); the FP32 flatbuffer is converted once
and reused by every attempt.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..runtime.coverage import Coverage, tflite_coverage
from .runner import Built, Int8Adapter, Int8Job
from .sensitivity import QuantPlan


class LiteRTInt8(Int8Adapter):
    target = "litert"
    methods = ("minmax",)  # ai-edge-quantizer calibrates min/max in the interpreter

    def __init__(self, job: Int8Job, convert: Callable, float_bytes: bytes, embed: Callable) -> None:
        super().__init__(job)
        self.convert, self.float_bytes, self.embed = convert, float_bytes, embed

    def describe(self, method: str) -> dict[str, Any]:
        from importlib.metadata import version

        return {"quant_tool": f"ai-edge-quantizer {version('ai-edge-quantizer')}",
                "quant_format": "static int8 (static_wi8_ai8) on Conv/DepthwiseConv/FullyConnected of the planned "
                                "groups: per-channel symmetric int8 weights, per-tensor int8 activations, float I/O"}

    def build(self, plan: QuantPlan, method: str, attempt_dir: Path) -> Built:
        job = self.job
        path = attempt_dir / "int8.tflite"
        prec = "int8" if plan.quantized else "fp32"
        self.convert(job.model, path, prec, job.metadata, batch=job.batch, calib_x=job.calib.calib.x, input_kind=job.input_kind,
                     int8_groups=list(plan.quantized), float_bytes=self.float_bytes, log=job.log)
        return Built(path)

    def coverage(self, built: Built) -> Coverage:
        return tflite_coverage(built.path)

    def write(self, best: Built, out: Path, metadata: dict[str, str], info: dict[str, Any]) -> list[Path]:
        best.path.replace(out)
        self.embed(out, metadata)
        return [out]
