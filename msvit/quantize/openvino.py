"""INT8 OpenVINO IR with NNCF post-training quantization, on the layers the sensitivity
plan allows; every other op is in NNCF's ignored scope and stays float.

Only Convolution/MatMul ops of planned modules are left for NNCF: ignoring by module
*patterns* is not enough, since NNCF also quantizes residual Adds, LayerNorm outputs
and BN-folded Multiplys whose names carry no module path (measured: ViT+head only by
patterns -> max|ΔP| 0.31; by op allow-list -> 0.006). The IR comes from the verified
ONNX, whose Conv/MatMul node names map to torch modules through their weight names
(OpenVINO keeps them as ``<onnx node>/WithoutBiases``).
"""
from __future__ import annotations

import logging
from importlib.metadata import version
from typing import Any

import torch

from ..errors import CalibrationError
from . import DEFAULT_METHOD, budget_from, plan_for, quantize_with_guard, quiet_logger, verify_set


def quantize_openvino(onnx_path, ctx) -> tuple[Any, dict[str, Any]]:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    from ..export.openvino import OVRunner

    calib = ctx.calib
    method = ctx.options.get("calib_method") or DEFAULT_METHOD["openvino"]
    estimators = {"minmax": RangeEstimatorParametersSet.MINMAX, "percentile": RangeEstimatorParametersSet.MEAN_QUANTILE}
    if method not in estimators:
        raise CalibrationError(f"--calib-method {method} is not available for openvino (NNCF): use minmax or percentile")
    budget = budget_from(ctx.options)
    log = ctx.options.get("log") or print
    plan, cache_info = plan_for(ctx.model, calib, method, budget.max_prob_delta, symmetric_act=False, log=log)
    from ..bench.env import cpu_int8_features

    # OpenVINO's CPU int8 FullyConnected needs VNNI/AMX (or ARM dot-product) to pay: on AVX2
    # alone it runs jit_gemm_I8, measured slower than its f32 brgemm (13.2 vs 9.2 ms on the
    # ViT MLPs). There MatMuls stay float and only convs are int8; the choice is recorded.
    feats = cpu_int8_features()
    int8_ops = ("Convolution", "GroupConvolution") + (("MatMul",) if feats else ())
    if not feats:
        convs = {n for n, m in ctx.model.named_modules() if isinstance(m, torch.nn.Conv2d)}
        plan = plan.restrict(convs)
    vx, vy, vname = verify_set(calib, ctx.options, ctx.img_size)
    import onnx

    from .onnx import node_modules

    module_of = node_modules(onnx.load(str(onnx_path)))
    base = ov.convert_model(str(onnx_path))
    weighted = {}  # OpenVINO op name -> torch module, for the quantizable ops
    for op in base.get_ops():
        if op.get_type_name() in int8_ops:
            mod = module_of.get(op.get_friendly_name().split("/")[0])
            if mod:
                weighted[op.get_friendly_name()] = mod
    data = nncf.Dataset([calib.calib.x[i:i + ctx.batch] for i in range(0, len(calib.calib) - ctx.batch + 1, ctx.batch)])

    def build(p, attempt: int):
        allowed = set(p.quantized_modules())
        ignored = [op.get_friendly_name() for op in base.get_ops() if weighted.get(op.get_friendly_name()) not in allowed]
        qm = nncf.quantize(
            base.clone(), data, subset_size=len(calib.calib), preset=nncf.QuantizationPreset.MIXED,
            ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
            advanced_parameters=AdvancedQuantizationParameters(activations_range_estimator_params=estimators[method]),
        )
        xml = ctx.work_dir / f"int8-attempt{attempt}.xml"
        ov.save_model(qm, str(xml), compress_to_fp16=False)
        return OVRunner(xml), qm

    # NNCF logs one INFO line per op of the ignored scope (thousands): keep it to warnings
    with quiet_logger("nncf", logging.WARNING):
        res = quantize_with_guard(ctx.model, plan, build, vx, vy, vname, budget, batch=ctx.batch, log=log,
                                  max_attempts=int(ctx.options.get("max_attempts", 4)))
    for f in ctx.work_dir.glob("int8-attempt*"):
        f.unlink()
    info = {"quant_tool": f"nncf.quantize {version('nncf')} (MIXED preset, {'/'.join(int8_ops)} allow-list)",
            "int8_ops": ", ".join(int8_ops) + ("" if feats else " (export host has no VNNI/AMX/dot-product: "
                                                             "MatMul int8 would be slower than f32)"),
            "quant_format": "OpenVINO FakeQuantize, asymmetric uint8 activations, symmetric int8 weights",
            "calib_method": method, **calib.describe(), **cache_info, **res.info()}
    return res.artifact, info
