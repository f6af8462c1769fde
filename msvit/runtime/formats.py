"""The table of artifact formats msvit writes or opens (one row per kind), and telling a file's format."""
from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArtifactError


@dataclass(frozen=True)
class Format:
    """One kind of artifact msvit writes or opens: the single table export targets, the loader
    and the benchmark read (an export :class:`~msvit.export.targets.Target` names its format)."""

    name: str
    title: str
    suffixes: tuple[str, ...]  # the first is what msvit writes
    module: str  # msvit.runtime.<module>
    session: str  # class name in that module
    packages: tuple[str, ...]  # import names needed to run it
    extra: str  # pip extra that installs them
    runs_on: str = "any"  # where it executes: any | macos | cuda

    @property
    def suffix(self) -> str:
        return self.suffixes[0]

    @property
    def device(self) -> str:
        """Where it executes in a benchmark: cuda for GPU-only formats, else cpu."""
        return "cuda" if self.runs_on == "cuda" else "cpu"

    def can_run_here(self) -> tuple[bool, str]:
        """(runs on this host, why not): the OS, the GPU, then the runtime's packages."""
        if self.runs_on == "macos" and platform.system() != "Darwin":
            return False, f"{self.title} models run only on macOS/iOS (structure verified instead)"
        if self.runs_on == "cuda":
            from .tensorrt import probe

            return probe()
        missing = [m for m in self.packages if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"{', '.join(missing)} not installed (pip install 'msvit[{self.extra}]')"
        return True, ""


FORMATS: tuple[Format, ...] = (
    Format("onnx", "ONNX", (".onnx",), "onnx", "OrtSession", ("onnxruntime",), "onnx"),
    Format("ort", "ONNX Runtime Mobile", (".ort",), "onnx", "OrtSession", ("onnxruntime",), "onnx"),
    Format("openvino", "OpenVINO IR", (".xml",), "openvino", "OVSession", ("openvino",), "openvino"),
    Format("executorch", "ExecuTorch", (".pte",), "executorch", "ETSession", ("executorch",), "executorch"),
    Format("torchscript", "TorchScript-mobile", (".ptl",), "torchscript", "LiteSession", ("torch",), "onnx"),
    Format("coreml", "Core ML", (".mlpackage", ".mlmodel"), "coreml", "CoreMLSession", ("coremltools",), "coreml",
           runs_on="macos"),
    Format("trt", "TensorRT", (".engine", ".plan"), "tensorrt", "TRTSession", ("tensorrt",), "trt", runs_on="cuda"),
    Format("litert", "LiteRT", (".tflite",), "litert", "LiteRTSession", ("ai_edge_litert",), "predict"),
)
BY_NAME = {f.name: f for f in FORMATS}
SUFFIXES = {s: f for f in FORMATS for s in f.suffixes}

def detect_format(path: str | os.PathLike) -> Format:
    """The artifact's format, from its name (a Core ML package is a folder)."""
    p = Path(path)
    fmt = SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise ArtifactError(f"{p}: unknown artifact type {p.suffix or '(no suffix)'!r}; msvit runs "
                            + ", ".join(sorted(SUFFIXES)))
    if not p.exists():
        raise ArtifactError(f"{p}: no such file")
    if p.is_dir() != (p.suffix.lower() == ".mlpackage"):
        raise ArtifactError(f"{p}: expected a {'folder' if p.suffix.lower() == '.mlpackage' else 'file'}")
    if p.is_file() and p.stat().st_size == 0:
        raise ArtifactError(f"{p}: empty file (0 bytes): an interrupted copy or export?")
    return fmt
