"""Execution precision: the float arithmetic a runtime must run an artifact in, recorded in
the artifact (metadata key :data:`EXEC_PRECISION_KEY`), applied by :func:`msvit.runtime.load`
and stated by the card's snippets, so an app runs the numerics msvit verified.

Storage is not execution: OpenVINO ``fp16`` IRs and LiteRT ``fp16`` weights are decompressed
and computed in fp32 on a CPU; an OpenVINO IR runs in bf16 *by default* on AVX512-BF16/AMX
CPUs unless ``INFERENCE_PRECISION_HINT`` says otherwise. The non-int8 ops of an INT8
artifact run in its ``exec_precision`` too.
"""
from __future__ import annotations

from functools import lru_cache

from ..cpu import cpu_vector_summary
from ..errors import TargetUnavailableError

EXEC_PRECISION_KEY = "exec_precision"
EXEC_PRECISIONS = ("fp32", "fp16", "bf16")
#: OpenVINO's INFERENCE_PRECISION_HINT value of each execution precision
OV_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
#: the OPTIMIZATION_CAPABILITIES entry OpenVINO's CPU plugin lists when it can execute it
_OV_CAPABILITY = {"fp32": "FP32", "fp16": "FP16", "bf16": "BF16"}
_OV_NEEDS = {"bf16": "AVX512_BF16 or AMX", "fp16": "AVX512_FP16 / AMX-FP16 (x86) or ARMv8.2 fp16"}


def exec_precision_of(metadata: dict[str, str]) -> str:
    """The recorded execution precision (artifacts written before it was recorded: fp32,
    what msvit always verified them in)."""
    return str(metadata.get(EXEC_PRECISION_KEY) or "fp32")


@lru_cache(maxsize=None)
def openvino_capabilities() -> tuple[str, ...]:
    """OpenVINO CPU plugin's OPTIMIZATION_CAPABILITIES (FP32, INT8, BF16, FP16, ...)."""
    from .ov_core import core

    return tuple(str(c) for c in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def can_execute(fmt: str, precision: str) -> tuple[bool, str]:
    """Whether ``fmt``'s runtime executes ``precision`` on this host, and if not why (said in
    the error a user sees: never a silent fall-back to fp32)."""
    if precision == "fp32":
        return True, ""
    if fmt == "openvino":
        caps = openvino_capabilities()
        if _OV_CAPABILITY[precision] in caps:
            return True, ""
        return False, (f"OpenVINO {precision} needs {_OV_NEEDS[precision]}: this CPU has {cpu_vector_summary()} "
                       f"(OpenVINO's CPU plugin offers {', '.join(caps)})")
    if fmt == "executorch" and precision == "fp16":
        from ..cpu import cpu_flags

        flags = cpu_flags()
        if not flags or flags & {"f16c", "fphp", "asimdhp"}:  # flags unknown (not Linux): let XNNPACK say
            return True, ""
        return False, f"XNNPACK fp16 needs F16C (x86) or ARMv8.2 fp16: this CPU has {cpu_vector_summary()}"
    if fmt in ("onnx", "coreml", "trt") and precision == "fp16":
        return True, ""  # the graph's own fp16 types (onnxruntime: fp16 kernels, or casts around fp32 ones)
    return False, f"{fmt} artifacts do not execute {precision} in msvit"


def require_execution(fmt: str, precision: str) -> None:
    """:class:`TargetUnavailableError` (exit 3) unless this host executes ``precision`` for ``fmt``."""
    ok, why = can_execute(fmt, precision)
    if not ok:
        raise TargetUnavailableError(why)


__all__ = ["EXEC_PRECISIONS", "EXEC_PRECISION_KEY", "OV_HINTS", "can_execute", "exec_precision_of",
           "openvino_capabilities", "require_execution"]
