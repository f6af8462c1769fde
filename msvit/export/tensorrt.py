"""TensorRT: the ONNX the engine is built from (FP32 + FP16 flag on TensorRT 10, FP16
ONNX on TensorRT 11, Q/DQ ONNX for INT8 on both), verified in onnxruntime, then the
engine itself where TensorRT and a CUDA GPU exist. Elsewhere the ONNX and the exact
``trtexec`` line are published and the result says, in one line, why no engine.

Engine building runs only on a CUDA machine with TensorRT (never in this project's CI);
the planning, the ONNX and the engine header logic are tested everywhere.
"""
from __future__ import annotations

from ..quantize import run_int8
from ..quantize.onnx import OnnxInt8
from .core import ExportContext, TargetOutput
from .onnx import export_fp32_onnx, to_fp16
from .trt_engine import build_engine, plan_as_dict, plan_build, probe, trtexec_command

#: TensorRT planned for when none is installed here: JetPack 6 (Jetson Orin) ships TensorRT 10.
DEFAULT_TRT_VERSION = "10"


def installed_trt_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("tensorrt")
    except Exception:
        return None


def export(ctx: ExportContext) -> TargetOutput:
    available, reason = probe()
    trt_version = str(ctx.options.trt_version or installed_trt_version() or DEFAULT_TRT_VERSION)
    plan = plan_build(trt_version, ctx.precision, dynamic_batch=ctx.dynamic_batch,
                      max_batch=max(ctx.batch, ctx.options.max_batch), batch=ctx.batch,
                      input_hw=(ctx.img_size, ctx.img_size))
    onnx_path = ctx.work_dir / f"{ctx.stem}_trt{plan.trt_major}.onnx"
    meta = {**ctx.metadata, "trt_plan": str(plan_as_dict(plan))}
    int8 = None
    if plan.onnx_kind == "qdq":
        fp32 = export_fp32_onnx(ctx.model, ctx.work_dir / "fp32.onnx", batch=ctx.batch,
                                dynamic_batch=ctx.dynamic_batch, opset=ctx.opset, metadata=meta)
        int8 = run_int8(OnnxInt8(ctx.int8_job(meta), fp32, for_tensorrt=True), onnx_path)
        info = int8.info
        fp32.unlink()
    elif plan.onnx_kind == "fp16":
        fp32 = export_fp32_onnx(ctx.model, ctx.work_dir / "fp32.onnx", batch=ctx.batch,
                                dynamic_batch=ctx.dynamic_batch, opset=ctx.opset, metadata=meta)
        to_fp16(fp32, onnx_path)
        fp32.unlink()
        info = {}
    else:
        export_fp32_onnx(ctx.model, onnx_path, batch=ctx.batch, dynamic_batch=ctx.dynamic_batch, opset=ctx.opset,
                         metadata=meta)
        info = {}
    engine_path = ctx.work_dir / f"{ctx.stem}.engine"
    cmd = trtexec_command(onnx_path.name, engine_path.name, plan)
    extra = {"onnx": onnx_path.name, "trtexec": cmd, "trt_plan": plan_as_dict(plan), **info}
    # TensorRT FP16 accumulates differently from onnxruntime's FP16 kernels: same 1e-2 budget.
    if not available:
        # Publish what can be produced, verified in onnxruntime (FP16 ONNX = what TRT 11 will run;
        # FP32 ONNX + --fp16 on TRT 10 is checked at FP32 tolerance here).
        return TargetOutput(onnx_path, [onnx_path], extra=extra, atol=1e-4 if plan.onnx_kind == "fp32" else None,
                            unavailable=f"no engine built: {reason}. Build it on the device: {cmd}",
                            failed=int8.failure if int8 else "")
    built = build_engine(onnx_path, engine_path, plan, meta)
    extra.update(engine_metadata=built)
    return TargetOutput(engine_path, [onnx_path, engine_path], extra=extra, failed=int8.failure if int8 else "")
