"""msvit.export: one function per target, one capability table, one wrapper.

>>> from msvit.export import export
>>> res = export(model, target="onnx", out_dir="artifacts")   # -> ExportResult
>>> res.path, res.size_bytes, res.seconds, res.parity.max_abs_logit
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch.nn as nn

from ..errors import CalibrationError, ExportError, TargetUnavailableError
from .core import ExportContext, ExportResult, TargetOutput, build_metadata, run_export
from .targets import PRECISIONS, TARGETS, Target, get_target
from .validate import ParityReport, compare

__all__ = [
    "ExportContext", "ExportResult", "ParityReport", "PRECISIONS", "TARGETS", "Target", "TargetOutput",
    "artifact_stem", "check_request", "compare", "export", "load_runner", "resolve_verify_data",
]


def _module(target: Target):
    return importlib.import_module(f"msvit.export.{'tensorrt' if target.name == 'trt' else target.name}")


def artifact_stem(model: nn.Module, precision: str, batch: int = 1, dynamic_batch: bool = False) -> str:
    stem = f"{getattr(model, 'variant', 'model')}"
    if getattr(model, "attn_mode", "deepguard") != "deepguard":
        stem += f"_{model.attn_mode}"
    stem += f"_{precision.replace('-', '_')}"
    if dynamic_batch:
        stem += "_dyn"
    elif batch != 1:
        stem += f"_b{batch}"
    return stem


def resolve_verify_data(verify_data: Any, size: int) -> tuple[np.ndarray, str]:
    """A folder/manifest, an ImageSet or an array -> (inputs, description); None -> built-in inputs."""
    from ..data import ImageSet, builtin_inputs, load_images

    if verify_data is None:
        return builtin_inputs(8, size), "8 built-in synthetic images"
    if isinstance(verify_data, ImageSet):
        return verify_data.x, f"{len(verify_data)} images from {verify_data.source}"
    if isinstance(verify_data, np.ndarray):
        return verify_data.astype(np.float32), f"{len(verify_data)} given inputs"
    s = load_images(verify_data, size)
    return s.x, f"{len(s)} images from {verify_data}"


def load_runner(target: str, path: str | os.PathLike, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A callable float32 NCHW -> logits (N, 1) for an artifact, if it can run on this host."""
    t = get_target(target)
    ok, why = t.can_run_here()
    if not ok:
        raise TargetUnavailableError(why)
    return _module(t).load(path, threads=threads)


def check_request(t: Target, precision: str, calib_given: bool) -> None:
    """Validate target x precision (x calibration) before any work: shared by export() and the CLI,
    which calls it before building the model or downloading weights."""
    if t.name == "torchscript" and precision == "int8":
        raise ExportError("torchscript has no supported INT8 path in this torch (eager-mode quantization is "
                          "deprecated): use --target executorch --precision int8 for INT8 on mobile")
    if precision not in t.precisions:
        raise ExportError(f"precision {precision!r} is not available for {t.name}; "
                          f"choose one of: {', '.join(t.precisions)}")
    if precision == "int8" and not calib_given:
        raise CalibrationError("--precision int8 needs calibration images: pass --calib-data DIR "
                               "(a folder of face crops; real/ and fake/ subfolders enable the accuracy guard)")


def export(
    model: nn.Module,
    target: str = "onnx",
    precision: str | None = None,
    out_dir: str | os.PathLike = "msvit-artifacts",
    *,
    batch: int = 1,
    dynamic_batch: bool = False,
    opset: int = 18,
    verify_data: Any = None,
    calib: Any = None,
    options: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = print,
    strict: bool = True,
    _verify: tuple[np.ndarray, str] | None = None,
) -> ExportResult:
    """Export ``model`` to one target, verify it against PyTorch, return an :class:`ExportResult`.

    ``strict=True`` raises the typed :class:`~msvit.errors.MsvitError` on failure;
    ``strict=False`` returns a result whose ``status`` says what happened.
    """
    t = get_target(target)
    precision = precision or t.default_precision
    check_request(t, precision, calib_given=calib is not None)
    if batch < 1:
        raise ExportError(f"--batch must be >= 1, got {batch}")
    variant = getattr(model, "variant", "")
    if variant == "ms_eff_vit_b5" and not t.holds_b5:
        raise ExportError(f"{t.title} cannot hold ms_eff_vit_b5 ({t.note or 'not supported'}); "
                          "export b5 to onnx, trt, openvino, coreml or executorch")
    model.eval()
    meta = build_metadata(model, t, precision, batch, dynamic_batch)
    ctx = ExportContext(model=model, target=t, precision=precision, out_dir=Path(out_dir),
                        stem=artifact_stem(model, precision, batch, dynamic_batch), batch=batch,
                        dynamic_batch=dynamic_batch, opset=opset, metadata=meta, calib=calib,
                        options=dict(options or {}))
    vx, vname = _verify or resolve_verify_data(verify_data, ctx.img_size)
    return run_export(ctx, _module(t).export, vx, vname, log=log, strict=strict)
