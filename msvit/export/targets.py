"""The capability table: one row per target drives CLI validation, ``--target all``,
the export wrapper and the benchmark (as Ultralytics' ``export_formats`` does)."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ..runtime import BY_NAME, Format

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int8-weights")
#: ``--precision auto``: the fastest guarded assignment the target's runtime measures here (see .auto)
AUTO = "auto"

#: (target, precision) whose execution precision differs from the precision's own float type:
#: fp16 *storage* decompressed to fp32 on the CPU, and INT8/int8-weights graphs whose other ops
#: run in fp16 (Core ML computes in fp16; TensorRT INT8 engines keep fp16 for the rest)
_EXEC_OVERRIDES = {("openvino", "fp16"): "fp32", ("litert", "fp16"): "fp32", ("coreml", "int8"): "fp16",
                   ("coreml", "int8-weights"): "fp16", ("trt", "int8"): "fp16"}


def exec_precision(target: str, precision: str) -> str:
    """The float arithmetic the runtime must execute an artifact of ``target`` x ``precision``
    in (recorded as metadata ``exec_precision``, applied by msvit.runtime, stated by the card)."""
    if (target, precision) in _EXEC_OVERRIDES:
        return _EXEC_OVERRIDES[(target, precision)]
    return precision if precision in ("fp16", "bf16") else "fp32"


@dataclass(frozen=True)
class Target:
    """An export target: the artifact :class:`~msvit.runtime.Format` it writes (title, suffix,
    where it runs: from the runtime's table) plus what exporting it needs."""

    name: str
    format: str  # msvit.runtime.BY_NAME key
    precisions: tuple[str, ...]
    default_precision: str
    packages: tuple[str, ...]  # import names needed to export
    extra: str  # pip extra that installs them
    needs_gpu_to_build: bool = False
    holds_b5: bool = True
    note: str = ""

    @property
    def fmt(self) -> Format:
        return BY_NAME[self.format]

    @property
    def title(self) -> str:
        return self.fmt.title

    @property
    def suffix(self) -> str:  # of the main artifact (a directory for .mlpackage)
        return self.fmt.suffix

    @property
    def runs_on(self) -> str:
        return self.fmt.runs_on

    @property
    def device(self) -> str:
        return self.fmt.device

    def missing_packages(self) -> list[str]:
        return [p for p in self.packages if importlib.util.find_spec(p) is None]

    def can_export_here(self) -> tuple[bool, str]:
        missing = self.missing_packages()
        if missing:
            return False, f"{', '.join(missing)} not installed (pip install 'msvit[{self.extra}]')"
        return True, ""

    def can_run_here(self) -> tuple[bool, str]:
        """Running needs the runtime's packages only (LiteRT: not the converter)."""
        return self.fmt.can_run_here()


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("onnx", "onnx", ("fp32", "fp16", "int8"), "fp32", ("onnx", "onnxruntime", "onnxslim", "onnxscript"), "onnx"),
        Target("trt", "trt", ("fp16", "int8", "fp32"), "fp16", ("onnx", "onnxruntime", "onnxslim", "onnxscript"), "trt",
               needs_gpu_to_build=True),
        Target("coreml", "coreml", ("fp16", "fp32", "int8", "int8-weights"), "fp16", ("coremltools",), "coreml"),
        # b5 (52 M params, 15 GMACs at 384 px) is far beyond what the lite interpreter runs
        # usefully on a phone; its successor ExecuTorch (XNNPACK, INT8) takes b5.
        Target("torchscript", "torchscript", ("fp32",), "fp32", ("torch",), "onnx", holds_b5=False,
               note="deprecated upstream: prefer --target executorch for mobile"),
        # fp16: fp16-compressed weights, executed in f32; bf16: executed in bf16 (AVX512-BF16/AMX)
        Target("openvino", "openvino", ("fp32", "fp16", "bf16", "int8"), "fp32", ("openvino",), "openvino"),
        Target("executorch", "executorch", ("fp32", "fp16", "int8"), "fp32", ("executorch",), "executorch"),
        # ONNX Runtime Mobile: the verified ONNX as .ort + the reduced-operator build config
        Target("ort", "ort", ("fp32", "int8"), "fp32", ("onnx", "onnxruntime", "onnxslim", "onnxscript"), "onnx"),
        # LiteRT (TFLite): litert-torch converts, ai-edge-quantizer quantizes, ai-edge-litert runs
        Target("litert", "litert", ("fp32", "fp16", "int8"), "fp32", ("litert_torch", "ai_edge_quantizer", "ai_edge_litert"),
               "litert"),
    )
}


def get_target(name: str) -> Target:
    from ..errors import ExportError

    if name not in TARGETS:
        raise ExportError(f"unknown target {name!r}; choose one of: {', '.join(TARGETS)}, all")
    return TARGETS[name]
