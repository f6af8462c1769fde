"""msvit.export: one function per target, one capability table, one wrapper.

>>> from msvit.export import export
>>> res = export(model, target="onnx", out_dir="artifacts")   # -> ExportResult
>>> res.path, res.size_bytes, res.seconds, res.parity.max_abs_dlogit
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

from ..data import resolve_data
from ..errors import CalibrationError, ExportError
from ..model.info import model_info
from ..quantize import Int8Options
from .core import ExportContext, ExportOptions, ExportResult, TargetOutput, build_metadata, run_export
from ..runtime.precision import require_execution
from .graph import INPUT_KINDS, explain_metadata, image_metadata, output_names
from .targets import AUTO, PRECISIONS, TARGETS, Target, exec_precision, get_target
from .validate import ParityReport, compare

__all__ = [
    "ExportContext", "ExportOptions", "ExportResult", "Int8Options", "ParityReport", "PRECISIONS", "TARGETS",
    "EXPLAIN_TARGETS", "Target", "TargetOutput", "artifact_stem", "check_explain", "check_request", "compare",
    "export",
]


def _module(target: Target):
    return importlib.import_module(f"msvit.export.{'tensorrt' if target.name == 'trt' else target.name}")


def artifact_stem(model: nn.Module, precision: str, batch: int = 1, dynamic_batch: bool = False,
                  input_kind: str = "tensor", explain: bool = False) -> str:
    """``ms_eff_vit_b0[_applied]_<precision>[_dyn|_bN][_img][_explain]``."""
    stem = f"{getattr(model, 'variant', 'model')}"
    if (model_info(model).attn_mode or "deepguard") != "deepguard":
        stem += f"_{model.attn_mode}"
    stem += f"_{precision.replace('-', '_')}"
    if dynamic_batch:
        stem += "_dyn"
    elif batch != 1:
        stem += f"_b{batch}"
    return stem + ("_img" if input_kind == "image" else "") + ("_explain" if explain else "")


def check_request(t: Target, precision: str, calib_given: bool) -> None:
    """Validate target x precision (x calibration) before any work: shared by export() and the CLI,
    which calls it before building the model or downloading weights."""
    if t.name == "torchscript" and precision == "int8":
        raise ExportError("torchscript has no supported INT8 path in this torch (eager-mode quantization is "
                          "deprecated): use --target executorch --precision int8 for INT8 on mobile")
    if precision not in t.precisions:
        raise ExportError(f"precision {precision!r} is not available for {t.name}; "
                          f"choose one of: {', '.join(t.precisions)}")
    ex = exec_precision(t.name, precision)
    if ex != "fp32" and t.runs_on == "any" and not t.missing_packages():
        # it would be verified here: a precision this host cannot execute is said now, before any
        # work (exit 3), never exported and checked in a silent fp32
        require_execution(t.name, ex)
    if precision == "int8" and not calib_given:
        raise CalibrationError("--precision int8 needs calibration images: pass --calib-data DIR "
                               "(a folder of face crops; real/ and fake/ subfolders enable the accuracy guard)")


#: targets whose artifact can take letterboxed uint8 pixels (Core ML always does: ImageType)
IMAGE_INPUT_TARGETS = ("onnx", "openvino", "executorch", "torchscript", "ort", "litert")


def check_input(t: Target, precision: str, input_kind: str) -> None:
    """``--input image`` is for the tensor targets that can hold the preprocessing in their graph."""
    if input_kind not in INPUT_KINDS:
        raise ExportError(f"--input must be one of {', '.join(INPUT_KINDS)}, got {input_kind!r}")
    if input_kind == "image" and t.name not in IMAGE_INPUT_TARGETS:
        why = {"coreml": "Core ML packages always take an image (ImageType): drop --input",
               "trt": "TensorRT engines take the float tensor; preprocess on the GPU"}.get(t.name, "not supported yet")
        raise ExportError(f"--input image is not available for {t.name} ({why}); "
                          f"it is for {', '.join(IMAGE_INPUT_TARGETS)}")


#: target -> precisions whose artifact can carry ``--explain-outputs`` (the extra token outputs)
EXPLAIN_TARGETS: dict[str, tuple[str, ...]] = {"onnx": ("fp32", "fp16", "int8"), "openvino": ("fp32", "fp16"),
                                               "executorch": ("fp32",)}


def check_explain(t: Target, precision: str) -> None:
    """``--explain-outputs`` only where the extra outputs are written and verified."""
    if precision not in EXPLAIN_TARGETS.get(t.name, ()):
        ok = "; ".join(f"{n} {'/'.join(p)}" for n, p in EXPLAIN_TARGETS.items())
        raise ExportError(f"--explain-outputs is not available for {t.name} {precision}; it is for: {ok}")


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
        from .auto import check_auto, export_auto

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
