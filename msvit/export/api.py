"""``export()``: one model to one target, verified against PyTorch (the Python API behind
``msvit-export``)."""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

from ..data import resolve_data
from ..errors import ExportError
from ..model.info import model_info
from .auto import check_auto, export_auto
from .core import ExportContext, ExportOptions, ExportResult, build_metadata, run_export
from .graph import explain_metadata, image_metadata, output_names
from .request import artifact_stem, check_explain, check_input, check_request
from .targets import AUTO, Target, get_target


def _module(target: Target):
    return importlib.import_module(f"msvit.export.{'tensorrt' if target.name == 'trt' else target.name}")


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
    options: ExportOptions | None = None,
    log: Callable[[str], None] | None = print,
    strict: bool = True,
    device_class: str = "host",
    stem: str | None = None,
    metadata: dict[str, str] | None = None,
) -> ExportResult:
    """Export ``model`` to one target, verify it against PyTorch, return an :class:`ExportResult`.

    ``verify_data``: a folder/CSV of face crops, an ImageSet or preprocessed arrays (default:
    8 built-in synthetic images); ``calib``: a :class:`~msvit.quantize.CalibrationSet` for int8.
    ``strict=True`` raises the typed :class:`~msvit.errors.MsvitError` on failure;
    ``strict=False`` returns a result whose ``status`` says what happened.
    ``precision="auto"``: the fastest guarded assignment measured here (``device_class="phone"``:
    the largest int8 share, untimed), see :mod:`msvit.export.auto`. ``stem`` / ``metadata``
    replace the artifact's name stem / add to its embedded metadata (``exec_precision`` included).
    """
    t = get_target(target)
    precision = precision or t.default_precision
    if precision == AUTO:
        check_auto(t.name, device_class)
        res = export_auto(model, t.name, out_dir, device_class=device_class, calib=calib, log=log, export_fn=export,
                          batch=batch, dynamic_batch=dynamic_batch, opset=opset, verify_data=verify_data,
                          options=options)
        return res
    check_request(t, precision, calib_given=calib is not None)
    if batch < 1:
        raise ExportError(f"--batch must be >= 1, got {batch}")
    variant = model_info(model).variant
    if variant == "ms_eff_vit_b5" and not t.holds_b5:
        raise ExportError(f"{t.title} cannot hold ms_eff_vit_b5 ({t.note or 'not supported'}); "
                          "export b5 to onnx, trt, openvino, coreml or executorch")
    options = options or ExportOptions()
    check_input(t, precision, options.input)
    if options.explain_outputs:
        check_explain(t, precision)
    model.eval()
    meta = build_metadata(model, t, precision, batch, dynamic_batch, extra=metadata)
    stem = stem or artifact_stem(model, precision, batch, dynamic_batch, options.input, options.explain_outputs)
    if options.input == "image":
        meta.update(image_metadata(model_info(model).img_size, "N" if dynamic_batch else str(batch)))
    if options.explain_outputs:
        meta.update(explain_metadata(model, output_names(options.input, options.with_prob, explain=True)))
    ctx = ExportContext(model=model, target=t, precision=precision, out_dir=Path(out_dir), stem=stem, batch=batch,
                        dynamic_batch=dynamic_batch, opset=opset, metadata=meta, calib=calib,
                        options=options, log=log)
    verify = resolve_data(verify_data, ctx.img_size)
    return run_export(ctx, _module(t).export, verify, strict=strict)


__all__ = ["export"]
