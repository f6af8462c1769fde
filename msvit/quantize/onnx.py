"""INT8 ONNX with onnxruntime's static quantizer (QDQ format), on the layers the
sensitivity plan allows.

CPU flavour: U8S8 (uint8 activations, int8 per-channel weights), Q/DQ on inputs and
outputs so onnxruntime fuses QLinear kernels. TensorRT flavour (Model Optimizer
style): symmetric int8 activations and weights, Q/DQ only on the inputs of
Conv/MatMul/Gemm, everything else (Sigmoid, Softmax, LayerNorm, GELU) left in float
for TensorRT to fuse.
"""
from __future__ import annotations

import re
import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from . import DEFAULT_METHOD, budget_from, plan_for, quantize_with_guard, verify_set

_FQN = re.compile(r"^([A-Za-z_][\w]*(?:\.[\w]+)+?)\.(weight|bias)(?:_bias)?$")


def node_modules(proto) -> dict[str, str]:
    """ONNX node name -> torch module name, read off its initializer names (the dynamo
    exporter names parameters by their fully-qualified module path)."""
    inits = {i.name for i in proto.graph.initializer}
    out = {}
    for n in proto.graph.node:
        if n.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        for name in n.input[1:]:
            m = _FQN.match(name) if name in inits else None
            if m:
                out[n.name] = m.group(1)
                break
    return out


class _Reader:
    """onnxruntime CalibrationDataReader over preprocessed images, one static batch at a time."""

    def __init__(self, x: np.ndarray, batch: int) -> None:
        self.batches = [x[i:i + batch] for i in range(0, len(x) - batch + 1, batch)]
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {"image": np.ascontiguousarray(self.batches[self.i - 1], np.float32)}

    def rewind(self) -> None:
        self.i = 0


def quantize_onnx(fp32: Path, out: Path, ctx, for_tensorrt: bool = False) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from ..export.onnx import OrtRunner, set_metadata

    calib = ctx.calib
    method = ctx.options.get("calib_method") or DEFAULT_METHOD["trt" if for_tensorrt else "onnx"]
    budget = budget_from(ctx.options)
    log = ctx.options.get("log") or print
    plan, cache_info = plan_for(ctx.model, calib, method, budget.max_prob_delta, symmetric_act=for_tensorrt, log=log)
    proto = onnx.load(str(fp32))
    mod_of = node_modules(proto)
    vx, vy, vname = verify_set(calib, ctx.options, ctx.img_size)
    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    extra: dict[str, Any] = {"WeightSymmetric": True}
    if for_tensorrt:
        extra.update(ActivationSymmetric=True,
                     OpTypesToExcludeOutputQuantization=["Conv", "MatMul", "Gemm"])
    if method == "percentile":
        extra["CalibPercentile"] = 99.99
    batch = ctx.batch

    def build(p, attempt: int):
        wanted = set(p.quantized_modules())
        nodes = [n for n, m in mod_of.items() if m in wanted]
        dst = ctx.work_dir / f"int8-attempt{attempt}.onnx"
        if nodes:
            quantize_static(str(fp32), str(dst), _Reader(calib.calib.x, batch), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["Conv", "MatMul", "Gemm"], per_channel=True,
                            activation_type=QuantType.QInt8 if for_tensorrt else QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_quantize=nodes, calibrate_method=cm,
                            extra_options=extra)
        else:
            shutil.copyfile(fp32, dst)
        return OrtRunner(dst), dst

    res = quantize_with_guard(ctx.model, plan, build, vx, vy, vname, budget, batch=batch if not ctx.dynamic_batch
                              else 1, log=log)
    info = {
        "quant_tool": f"onnxruntime.quantization.quantize_static {version('onnxruntime')}",
        "quant_format": "QDQ, " + ("TensorRT explicit (symmetric int8 activations, Q/DQ on op inputs)"
                                   if for_tensorrt else "U8S8 (uint8 activations, per-channel int8 weights)"),
        "calib_method": method, **calib.describe(), **cache_info, **res.info(),
    }
    q = onnx.load(str(res.artifact))
    set_metadata(q, {**ctx.metadata, **{k: v if isinstance(v, str) else _j(v) for k, v in info.items()
                                         if k not in ("attempts", "sensitivity")}})
    onnx.save(q, str(out))
    for f in ctx.work_dir.glob("int8-attempt*.onnx"):
        f.unlink()
    return info


def _j(v: Any) -> str:
    import json

    return json.dumps(v, default=str)
