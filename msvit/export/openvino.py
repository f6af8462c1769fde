"""OpenVINO IR (``.xml`` + ``.bin``) converted from the verified ONNX graph.

Metadata lives in the IR's ``rt_info`` under ``msvit`` (``model.get_rt_info(["msvit", key])``).
Parity is checked with ``INFERENCE_PRECISION_HINT=f32``: on CPUs with AVX512-BF16/AMX,
OpenVINO would otherwise silently run FP32 IRs in bf16.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .core import ExportContext, TargetOutput
from ..quantize import RUN_ONLY_KEYS
from .onnx import export_fp32_onnx


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    import openvino as ov

    m = ov.Core().read_model(str(path))
    info = m.get_rt_info()
    return {k: v.astype(str) for k, v in info["msvit"].items()} if "msvit" in info else {}


class OVRunner:
    def __init__(self, path: str | os.PathLike, threads: int | None = None, precision_hint: str = "f32") -> None:
        import openvino as ov

        cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision_hint}
        if threads:
            cfg["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        model = core.read_model(str(path))
        self.compiled = core.compile_model(model, "CPU", cfg)
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output("logit") if any("logit" in o.names for o in self.compiled.outputs) \
            else self.compiled.output(0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        res = self.request.infer({0: np.ascontiguousarray(x, np.float32)})
        return np.asarray(res[self.output]).copy()


def load(path: str | os.PathLike, threads: int | None = None) -> OVRunner:
    return OVRunner(path, threads)


def save_ir(model, xml: Path, metadata: dict[str, str], compress_to_fp16: bool = False) -> Path:
    import openvino as ov

    for k, v in metadata.items():
        model.set_rt_info(str(v), ["msvit", k])
    ov.save_model(model, str(xml), compress_to_fp16=compress_to_fp16)
    return xml


def export(ctx: ExportContext) -> TargetOutput:
    import openvino as ov

    onnx_path = export_fp32_onnx(ctx.model, ctx.work_dir / "src.onnx", batch=ctx.batch,
                                 dynamic_batch=ctx.dynamic_batch, opset=ctx.opset)
    xml = ctx.work_dir / f"{ctx.stem}.xml"
    extra = {}
    if ctx.precision == "int8":
        from ..quantize.openvino import quantize_openvino

        ov_model, extra = quantize_openvino(onnx_path, ctx)
    else:
        ov_model = ov.convert_model(str(onnx_path))
    save_ir(ov_model, xml, {**ctx.metadata, **{k: v if isinstance(v, str) else json.dumps(v, default=str)
                                                for k, v in extra.items() if k not in RUN_ONLY_KEYS}},
            compress_to_fp16=ctx.precision == "fp16")
    onnx_path.unlink()
    bin_path = xml.with_suffix(".bin")
    # .bin first, so the .xml (what users open) never points at a missing weights file
    files = [bin_path, xml]
    if ctx.precision == "int8":
        from .onnx import int8_output

        return int8_output(xml, files, OVRunner(xml), extra)
    return TargetOutput(xml, files, OVRunner(xml), extra=extra)
