"""Core ML W8A8 (int8 weights *and* activations).

coremltools calibrates activations by running the model
(``coremltools.optimize.coreml.experimental.linear_quantize_activations`` calls
``MLModel.predict``), which only exists on macOS. On other hosts this raises
:class:`TargetUnavailableError` pointing at ``--precision int8-weights`` (weight-only
int8, no calibration needed), instead of silently producing something else.

On macOS: fp16 conversion -> activation calibration on the calibration images -> int8
per-channel weights -> the accuracy guard (decisions vs FP32 PyTorch). The whole network
is quantized (no per-group fallback on this path), so a failing guard marks the artifact
failing.
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Callable

from ..errors import TargetUnavailableError
from ..runtime.base import to_image_u8
from ..runtime.coreml import INPUT, quiet
from .runner import Built, Int8Adapter, Int8Job
from .sensitivity import QuantPlan

LINUX_MESSAGE = ("Core ML W8A8 activation calibration needs macOS (coremltools runs the model to "
                 "calibrate); use --precision int8-weights here")


class CoreMLInt8(Int8Adapter):
    """``convert(model) -> MLModel`` (fp16), ``compress(ml) -> (ml, how)`` and
    ``save(ml, path, metadata)`` come from the export layer."""

    target = "coreml"
    uses_plan = False

    def __init__(self, job: Int8Job, convert: Callable, compress: Callable, save: Callable) -> None:
        if platform.system() != "Darwin":
            raise TargetUnavailableError(LINUX_MESSAGE)
        super().__init__(job)
        self.convert, self.compress, self.save = convert, compress, save

    def describe(self, method: str) -> dict[str, Any]:
        return {"quant_tool": "coremltools.optimize.coreml (experimental linear_quantize_activations + "
                              "linear_quantize_weights)", "quant_format": "W8A8, linear symmetric"}

    def build(self, plan: QuantPlan, method: str, attempt_dir: Path) -> Built:
        import coremltools.optimize as cto
        from PIL import Image

        ml = self.convert(self.job.model)
        samples = [{INPUT: Image.fromarray(u, "RGB")} for u in to_image_u8(self.job.calib.calib.x)]
        with quiet():
            cfg = cto.coreml.OptimizationConfig(
                global_config=cto.coreml.experimental.OpActivationLinearQuantizerConfig(mode="linear_symmetric"))
            ml = cto.coreml.experimental.linear_quantize_activations(ml, cfg, samples)
        ml, how = self.compress(ml)
        path = attempt_dir / "int8.mlpackage"
        self.save(ml, path, {**self.job.metadata, "weight_compression": "W8A8: " + how})
        return Built(path, (ml, how))

    def write(self, best: Built, out: Path, metadata: dict[str, str], info: dict[str, Any]) -> list[Path]:
        ml, how = best.payload
        self.save(ml, out, {**metadata, "weight_compression": "W8A8: " + how})
        return [out]
