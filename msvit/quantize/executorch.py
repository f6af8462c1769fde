"""INT8 ExecuTorch with PT2E (``torchao.quantization.pt2e``) and ``XNNPACKQuantizer``:
per-channel symmetric int8 weights, per-tensor int8 activations, lowered to XNNPACK.

Selective quantization: only nodes inside the plan's quantized *leaf* Conv2d/Linear
modules are annotated (``set_global(config)`` + ``set_filter_function`` matching the
node's ``nn_module_stack``), so the accuracy guard can return sensitive groups to
float. (``set_module_name(name, None)`` asserts in executorch 1.5.1, and annotating a
whole subtree such as ``feat_extractor`` produced a program whose XNNPACK delegate
failed at run time; leaf layers lower and run.) When the plan quantizes every group,
plain ``set_global`` is used.

Calibration runs on a batch-dynamic export of the prepared model (16 images per
forward, not one), then the converted model is re-exported with the artifact's static
shape and lowered.
"""
from __future__ import annotations

import json
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import DEFAULT_METHOD, budget_from, plan_for, quantize_with_guard, verify_set

CALIB_BATCH = 16


def _quantizer(modules: list[str] | None):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)

    q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    if modules is not None:
        # one annotation pass with one filter: set_module_name() per layer would run every
        # pattern matcher over the whole graph once per name (minutes for ~50 layers)
        wanted = frozenset(modules)

        def in_wanted(n) -> bool:
            stack = n.meta.get("nn_module_stack") or {}
            return any(path.removeprefix("L['self'].") in wanted for path, _ in stack.values())

        q.set_filter_function(in_wanted)
    return q


def quantized_program(model: torch.nn.Module, calib_x: np.ndarray, modules: list[str] | None, batch: int = 1,
                      log=None) -> torch.export.ExportedProgram:
    """PT2E prepare -> calibrate -> convert -> static re-export. ``modules=None``: everything."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from ..export.executorch import _quiet

    size = int(getattr(model, "img_size", 224))
    t0 = time.perf_counter()
    dyn = torch.export.Dim("batch", min=1, max=max(CALIB_BATCH, batch))
    with _quiet():
        gm = torch.export.export(model.eval(), (torch.zeros(2, 3, size, size),), dynamic_shapes=({0: dyn},)).module()
        te = time.perf_counter()
        prepared = prepare_pt2e(gm, _quantizer(modules))
    t1 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(calib_x), CALIB_BATCH):
            prepared(torch.from_numpy(np.ascontiguousarray(calib_x[i:i + CALIB_BATCH])))
    t2 = time.perf_counter()
    with _quiet():
        converted = convert_pt2e(prepared)
        ep = torch.export.export(converted, (torch.zeros(batch, 3, size, size),))
    if log:
        log(f"    pt2e: export {te - t0:.0f} s, prepare {t1 - te:.0f} s, "
            f"calibrate {t2 - t1:.0f} s ({len(calib_x)} images), convert+export {time.perf_counter() - t2:.0f} s")
    return ep


def quantize_executorch(ctx, path: Path, metadata: dict[str, str]) -> dict[str, Any]:
    """Write the guarded INT8 ``.pte`` at ``path``; returns the quantization info."""
    from ..export.executorch import ETRunner, export_fp32_pte, lower_to_pte

    calib = ctx.calib
    method = ctx.options.get("calib_method") or DEFAULT_METHOD["executorch"]
    if method != "minmax":
        from ..errors import CalibrationError

        raise CalibrationError(f"--calib-method {method} is not available for executorch (XNNPACKQuantizer "
                               "observers are min/max); use minmax")
    budget = budget_from(ctx.options)
    log = ctx.options.get("log") or print
    plan, cache_info = plan_for(ctx.model, calib, method, budget.max_prob_delta, symmetric_act=False, log=log)
    vx, vy, vname = verify_set(calib, ctx.options, ctx.img_size)
    tool = (f"torchao PT2E + XNNPACKQuantizer (executorch {version('executorch')}, torchao {version('torchao')})")
    base_meta = {**metadata, "quant_tool": tool, "calib_method": method,
                 **{k: str(v) for k, v in calib.describe().items()}}

    def build(p, attempt: int):
        dst = ctx.work_dir / f"int8-attempt{attempt}.pte"
        t0 = time.perf_counter()
        meta = {**base_meta, "quantized_groups": json.dumps(p.quantized), "float_groups": json.dumps(p.float_groups)}
        if not p.quantized:
            export_fp32_pte(ctx.model, dst, meta, ctx.batch)
            scheme = "none (all float)"
        else:
            modules = None if not p.float_groups else p.quantized_modules()
            scheme = "global" if modules is None else f"{len(modules)} leaf modules"
            lower_to_pte(quantized_program(ctx.model, calib.calib.x, modules, ctx.batch, log), dst, meta)
        if log:
            log(f"    attempt {attempt + 1} built in {time.perf_counter() - t0:.0f} s ({scheme})")
        return ETRunner(dst), (dst, scheme)

    res = quantize_with_guard(ctx.model, plan, build, vx, vy, vname, budget, batch=ctx.batch, log=log,
                              max_attempts=int(ctx.options.get("max_attempts", 4)))
    info = {
        "quant_tool": tool,
        "quant_format": "XNNPACK: per-channel symmetric int8 weights, per-tensor affine int8 activations",
        "calib_method": method, **calib.describe(), **cache_info, **res.info(),
    }
    # the .pte embeds model/weights/calibration/groups; the guard's verdict is in the manifest
    # (re-lowering only to embed it would cost another minute or more)
    best, info["selection"] = res.artifact
    best.replace(path)
    for f in ctx.work_dir.glob("int8-attempt*.pte"):
        f.unlink()
    return info
