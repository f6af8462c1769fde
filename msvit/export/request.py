"""What an export request is checked against before any work, and the artifact's name.

Shared by :func:`msvit.export.export`, ``--precision auto`` and the CLI, which checks a request
before it builds the model or reads weights."""
from __future__ import annotations

import torch.nn as nn

from ..errors import CalibrationError, ExportError
from ..model.info import model_info
from ..runtime.precision import require_execution
from .graph import INPUT_KINDS
from .targets import Target, exec_precision


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


__all__ = ["EXPLAIN_TARGETS", "IMAGE_INPUT_TARGETS", "artifact_stem", "check_explain", "check_input",
           "check_request"]
