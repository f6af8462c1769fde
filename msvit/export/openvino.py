"""OpenVINO IR (``.xml`` + ``.bin``) converted from the verified ONNX graph.

Metadata lives in the IR's ``rt_info`` under ``msvit`` (written and read by
:mod:`msvit.runtime.openvino`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..quantize import run_int8
from ..quantize.openvino import OpenVINOInt8
from ..runtime.openvino import set_metadata
from .core import ExportContext, TargetOutput
from .onnx import export_fp32_onnx


def save_ir(model: Any, xml: Path, metadata: dict[str, str], compress_to_fp16: bool = False) -> Path:
    import openvino as ov

    set_metadata(model, metadata)
    ov.save_model(model, str(xml), compress_to_fp16=compress_to_fp16)
    return xml


def export(ctx: ExportContext) -> TargetOutput:
    import openvino as ov

    onnx_path = export_fp32_onnx(ctx.model, ctx.work_dir / "src.onnx", batch=ctx.batch,
                                 dynamic_batch=ctx.dynamic_batch, opset=ctx.opset, input_kind=ctx.options.input,
                                 explain=ctx.options.explain_outputs)
    xml = ctx.work_dir / f"{ctx.stem}.xml"
    if ctx.precision == "int8":
        res = run_int8(OpenVINOInt8(ctx.int8_job(), onnx_path), xml)
        onnx_path.unlink()
        return TargetOutput.int8(xml, res)
    save_ir(ov.convert_model(str(onnx_path)), xml, ctx.metadata, compress_to_fp16=ctx.precision == "fp16")
    onnx_path.unlink()
    # .bin first, so the .xml (what users open) never points at a missing weights file
    return TargetOutput(xml, [xml.with_suffix(".bin"), xml])
