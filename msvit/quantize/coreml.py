"""Core ML W8A8 (int8 weights *and* activations).

coremltools calibrates activations by running the model
(``coremltools.optimize.coreml.experimental.linear_quantize_activations`` calls
``MLModel.predict``), which only exists on macOS. On other hosts this raises
:class:`TargetUnavailableError` pointing at ``--precision int8-weights`` (weight-only
int8, no calibration needed), instead of silently producing something else.

On macOS: fp16 conversion -> activation calibration on ``ctx.calib`` images ->
int8 per-channel weights -> the accuracy guard (decisions vs FP32 PyTorch) on the
held-out / ``verify_data`` images. The whole network is quantized (no per-group
fallback on this path), so a failing guard marks the artifact failing.
"""
from __future__ import annotations

import platform
from typing import Any

import numpy as np

from ..errors import TargetUnavailableError
from . import budget_from, verify_set

LINUX_MESSAGE = ("Core ML W8A8 activation calibration needs macOS (coremltools runs the model to "
                 "calibrate); use --precision int8-weights here")


def _pil_images(x: np.ndarray) -> list:
    from PIL import Image

    from ..model.ms_eff_vit import IMAGENET_MEAN, IMAGENET_STD

    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    u8 = np.clip(np.rint((x * std + mean) * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return [Image.fromarray(u, "RGB") for u in u8]


def quantize_coreml(ctx) -> Any:
    """-> :class:`~msvit.export.core.TargetOutput` (macOS only)."""
    if platform.system() != "Darwin":
        raise TargetUnavailableError(LINUX_MESSAGE)
    import torch
    import coremltools.optimize as cto

    from ..export import coreml as cm
    from ..export.onnx import int8_output
    from .guard import evaluate

    ct = cm.import_ct()
    target = str(ctx.options.get("minimum_deployment_target") or "iOS17")
    if cm.deployment_target(ct, target) < ct.target.iOS17:
        target = "iOS17"  # activation quantization (int8 activations) needs iOS17 / macOS14
    ctx.metadata.update(cm.interface_metadata(ctx.img_size))
    ml = cm.convert(ctx.model, "fp16", target)
    samples = [{cm.INPUT: im} for im in _pil_images(ctx.calib.calib.x)]
    with cm.quiet():
        act_cfg = cto.coreml.OptimizationConfig(global_config=cto.coreml.experimental.OpActivationLinearQuantizerConfig(
            mode="linear_symmetric"))
        ml = cto.coreml.experimental.linear_quantize_activations(ml, act_cfg, samples)
    ml, how = cm.compress_weights(ml, "linear")
    meta = {**ctx.metadata, "coreml_deployment_target": str(target), "calib_method": "coreml activation minmax",
            **{k: str(v) for k, v in ctx.calib.describe().items()}, "weight_compression": "W8A8: " + how}
    out = cm.finish(ctx, ml, meta, "linear")
    vx, vy, vname = verify_set(ctx.calib, ctx.options, ctx.img_size)
    with torch.no_grad():
        ref = ctx.model(torch.from_numpy(vx)).numpy()
    rep = evaluate(ref, out.runner, vx, vy, budget_from(ctx.options), vname)
    info = {"quant_tool": "coremltools.optimize.coreml (experimental linear_quantize_activations + "
                          "linear_quantize_weights)", **ctx.calib.describe(), "quantized_groups": ["all"],
            "float_groups": [], "guard": rep.to_dict(), "guard_passed": rep.passed, **out.extra}
    res = int8_output(out.main, out.files, out.runner, info)
    res.atol = None  # judged by the guard's decisions, not a logit tolerance
    return res
