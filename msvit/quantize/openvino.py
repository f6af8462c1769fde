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
from pathlib import Path
from typing import Any

import torch

from ..cpu import cpu_int8_features
from ..runtime.coverage import Coverage, openvino_coverage
from ..runtime.openvino import set_metadata
from .runner import Built, Int8Adapter, Int8Job, quiet_logger
from .sensitivity import QuantPlan


class OpenVINOInt8(Int8Adapter):
    """NNCF post-training quantization of the IR converted from the verified FP32 ONNX."""

    target = "openvino"
    methods = ("minmax", "percentile")

    def __init__(self, job: Int8Job, onnx_path: Path) -> None:
        import onnx
        import openvino as ov

        from .onnx import node_modules

        super().__init__(job)
        # OpenVINO's CPU int8 FullyConnected needs VNNI/AMX (or ARM dot-product) to pay: on AVX2
        # alone it runs jit_gemm_I8, measured slower than its f32 brgemm (13.2 vs 9.2 ms on the
        # ViT MLPs). There MatMuls stay float and only convs are int8; the choice is recorded.
        self.feats = cpu_int8_features()
        self.int8_ops = ("Convolution", "GroupConvolution") + (("MatMul",) if self.feats else ())
        self.int8_modules = None if self.feats else (torch.nn.Conv2d,)
        module_of = node_modules(onnx.load(str(onnx_path)))
        self.base = ov.convert_model(str(onnx_path))
        self.weighted = {}  # OpenVINO op name -> torch module, for the quantizable ops
        for op in self.base.get_ops():
            if op.get_type_name() in self.int8_ops:
                mod = module_of.get(op.get_friendly_name().split("/")[0])
                if mod:
                    self.weighted[op.get_friendly_name()] = mod

    def describe(self, method: str) -> dict[str, Any]:
        return {"quant_tool": f"nncf.quantize {version('nncf')} (MIXED preset, {'/'.join(self.int8_ops)} allow-list)",
                "int8_ops": ", ".join(self.int8_ops) + ("" if self.feats else " (export host has no VNNI/AMX/"
                                                                          "dot-product: MatMul int8 would be "
                                                                          "slower than f32)"),
                "quant_format": "OpenVINO FakeQuantize, asymmetric uint8 activations, symmetric int8 weights"}

    def build(self, plan: QuantPlan, method: str, attempt_dir: Path) -> Built:
        import nncf
        import openvino as ov
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        estimators = {"minmax": RangeEstimatorParametersSet.MINMAX,
                      "percentile": RangeEstimatorParametersSet.MEAN_QUANTILE}
        calib, b = self.job.calib.calib, self.job.batch
        x = self.job.feed(calib.x)
        data = nncf.Dataset([x[i:i + b] for i in range(0, len(x) - b + 1, b)])
        allowed = set(plan.quantized_modules())
        ignored = [op.get_friendly_name() for op in self.base.get_ops()
                   if self.weighted.get(op.get_friendly_name()) not in allowed]
        # NNCF logs one INFO line per op of the ignored scope (thousands): keep it to warnings
        with quiet_logger("nncf", logging.WARNING):
            qm = nncf.quantize(
                self.base.clone(), data, subset_size=len(calib), preset=nncf.QuantizationPreset.MIXED,
                ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
                advanced_parameters=AdvancedQuantizationParameters(
                    activations_range_estimator_params=estimators[method]),
            )
        xml = attempt_dir / "int8.xml"
        ov.save_model(qm, str(xml), compress_to_fp16=False)
        return Built(xml, qm)

    def coverage(self, built: Built) -> Coverage:
        # the saved IR, as shipped: its weights are NNCF-compressed int8 constants, not FakeQuantize
        return openvino_coverage(built.path)

    def write(self, best: Built, out: Path, metadata: dict[str, str], info: dict[str, Any]) -> list[Path]:
        import openvino as ov

        set_metadata(best.payload, metadata)
        ov.save_model(best.payload, str(out), compress_to_fp16=False)
        return [out.with_suffix(".bin"), out]  # .bin first: the .xml never points at a missing file
