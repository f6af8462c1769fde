"""INT8 ONNX with onnxruntime's static quantizer (QDQ format), on the layers the
sensitivity plan allows.

Both flavours put Q/DQ only on the inputs of quantized ops (Model Optimizer style);
everything else (Sigmoid, Softmax, LayerNorm, GELU, residual adds) stays float.

TensorRT flavour: Conv/MatMul/Gemm, symmetric int8 activations (zero point 0, as
TensorRT requires); TensorRT fuses input-side Q/DQ into int8 kernels.

CPU flavour (onnxruntime): MatMul/Gemm only, uint8 activations + per-channel int8
weights (U8S8). onnxruntime turns DQ->MatMul/Gemm into integer QGemm with a float
output, but runs a Conv in int8 (QLinearConv) only with a Q on its output as well; an
input-only Q/DQ Conv stays a float Conv behind DequantizeLinear and loses the NCHWc
kernels. Measured on the demo checkpoint (research/int8_cpu.py, AVX2): planned
convs with input-only Q/DQ 0.77-0.88x of FP32; adding output Q (QLinearConv) broke
the budget (max|ΔP| 0.058, agreement 0.988); MatMul/Gemm only: 1.07-1.10x, max|ΔP| 0.002.
"""
from __future__ import annotations

import logging
import re
import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..runtime.coverage import Coverage, onnx_coverage
from ..runtime.onnx import set_metadata
from .runner import Built, Int8Adapter, Int8Job, quiet_logger
from .sensitivity import QuantPlan

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
            if m:  # an --input image graph wraps the model as ``model``
                out[n.name] = m.group(1).removeprefix("model.")
                break
    return out


def unleak_qdq(proto, quantized: set[str]) -> int:
    """Give float consumers their float input back.

    onnxruntime's quantizer puts one Q/DQ pair on a tensor and rewires *every* consumer
    to the DequantizeLinear output, so a float layer that shares its input with a
    quantized one silently gets quantized activations (here: the backbone's blocks.2
    sharing blocks.1's output with the L-branch patch embedding moved P(fake) by 0.05).
    Returns the number of inputs restored.
    """
    nodes = list(proto.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    fixed = 0
    for n in nodes:
        if n.name in quantized or n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(n.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                n.input[i] = q.input[0]
                fixed += 1
    return fixed


class CalibrationReader:
    """onnxruntime CalibrationDataReader over the graph's own inputs, one static batch at a time."""

    def __init__(self, x: np.ndarray, batch: int) -> None:
        self.batches = [x[i:i + batch] for i in range(0, len(x) - batch + 1, batch)]
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {"image": np.ascontiguousarray(self.batches[self.i - 1])}

    def rewind(self) -> None:
        self.i = 0


class OnnxInt8(Int8Adapter):
    """onnxruntime ``quantize_static`` (QDQ) on an FP32 ONNX; ``for_tensorrt`` picks the flavour."""

    methods = ("minmax", "entropy", "percentile")

    def __init__(self, job: Int8Job, fp32: Path, for_tensorrt: bool = False) -> None:
        import onnx

        super().__init__(job)
        self.fp32, self.for_tensorrt = fp32, for_tensorrt
        self.target = "trt" if for_tensorrt else "onnx"
        self.symmetric_act = for_tensorrt
        # see the module docstring: onnxruntime gains only from int8 MatMul/Gemm here
        self.int8_modules = None if for_tensorrt else (torch.nn.Linear,)
        self.mod_of = node_modules(onnx.load(str(fp32)))

    def describe(self, method: str) -> dict[str, Any]:
        return {"quant_tool": f"onnxruntime.quantization.quantize_static {version('onnxruntime')}",
                "quant_format": "QDQ on op inputs, per-channel int8 weights, " + (
                    "symmetric int8 activations on Conv/MatMul/Gemm (TensorRT explicit quantization)"
                    if self.for_tensorrt else "uint8 activations on MatMul/Gemm (onnxruntime QGemm; convs float)")}

    def build(self, plan: QuantPlan, method: str, attempt_dir: Path) -> Built:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        wanted = set(plan.quantized_modules())
        nodes = [n for n, m in self.mod_of.items() if m in wanted]
        dst = attempt_dir / "int8.onnx"
        if not nodes:
            shutil.copyfile(self.fp32, dst)
            return Built(dst)
        cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[method]
        # Q/DQ only on the inputs of quantized ops (as TensorRT wants it, and as the sensitivity
        # simulation models it): quantizing outputs too re-quantizes residual streams and was
        # measured to flip decisions on eval/ that input-only quantization keeps.
        extra: dict[str, Any] = {"WeightSymmetric": True,
                                 "OpTypesToExcludeOutputQuantization": ["Conv", "MatMul", "Gemm"]}
        if self.for_tensorrt:
            extra.update(ActivationSymmetric=True)
        if method == "percentile":
            extra["CalibPercentile"] = 99.99
        # root logger: "consider pre-processing" (we feed the slimmed, shape-inferred graph)
        with quiet_logger(None, logging.ERROR):
            quantize_static(str(self.fp32), str(dst), CalibrationReader(self.job.feed(self.job.calib.calib.x), self.job.batch),
                            quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["Conv", "MatMul", "Gemm"] if self.for_tensorrt else ["MatMul", "Gemm"],
                            per_channel=True,
                            activation_type=QuantType.QInt8 if self.for_tensorrt else QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_quantize=nodes, calibrate_method=cm,
                            extra_options=extra)
        qp = onnx.load(str(dst))
        unleak_qdq(qp, set(nodes))
        onnx.save(qp, str(dst))
        return Built(dst)

    def coverage(self, built: Built) -> Coverage:
        return onnx_coverage(built.path)

    def write(self, best: Built, out: Path, metadata: dict[str, str], info: dict[str, Any]) -> list[Path]:
        import onnx

        q = onnx.load(str(best.path))
        set_metadata(q, metadata)
        onnx.save(q, str(out))
        return [out]
