"""TorchScript-mobile ``.ptl`` for the PyTorch lite interpreter.

Deprecated upstream in favour of ExecuTorch (``--target executorch``); kept because
existing Android/iOS apps still link the lite interpreter. ``optimize_for_mobile``
runs only when this torch build has XNNPACK (some CPU wheels do not): otherwise the
pass is skipped with a warning, the model stays correct, just less fused.
"""
from __future__ import annotations

import warnings

import torch
from torch.backends import xnnpack  # a submodule torch.backends does not import by itself

from ..runtime.torchscript import metadata_extra_files
from .core import ExportContext, TargetOutput


def export(ctx: ExportContext) -> TargetOutput:
    path = ctx.work_dir / f"{ctx.stem}.ptl"
    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit itself is deprecated upstream (said once in --help, not on every export)
        for cat in (torch.jit.TracerWarning, FutureWarning, DeprecationWarning):
            warnings.simplefilter("ignore", cat)
        traced = torch.jit.trace(ctx.graph_module(), ctx.example(), strict=True)
    note = ""
    if xnnpack.enabled:
        from torch.utils.mobile_optimizer import optimize_for_mobile

        traced = optimize_for_mobile(traced)
    else:
        note = "optimize_for_mobile skipped: this torch build has no XNNPACK"  # said in the result line
    meta = {**ctx.metadata, "mobile_optimized": str(not note).lower()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced._save_for_lite_interpreter(str(path), _extra_files=metadata_extra_files(meta))
    return TargetOutput(path, [path], note=note, extra={"mobile_optimized": not note})
