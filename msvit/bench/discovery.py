"""Discover: the artifacts in a folder and the facts each carries about itself (its manifest
``<artifact>.json``, else the metadata embedded in it; never its file name)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MsvitError, TargetUnavailableError
from ..export.targets import TARGETS
from ..runtime.meta import ArtifactMeta
from .options import BenchError


@dataclass
class Artifact:
    """An artifact and the facts it carries about itself (manifest, else embedded metadata)."""

    path: Path
    target: str
    precision: str
    batch: int | None  # None = dynamic
    model: str | None = None
    attn_mode: str | None = None
    status: str = "ok"  # ok | failed (from the manifest) | unavailable (no runtime) | unreadable (corrupt file)
    message: str = ""
    files: list[Path] = field(default_factory=list)
    weights_sha256: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    format: str = ""  # the file's msvit.runtime format (default: the target's)

    def __post_init__(self) -> None:
        self.format = self.format or (TARGETS[self.target].format if self.target in TARGETS else self.target)

    @property
    def intermediate(self) -> bool:
        """A file its target wrote on the way to its real artifact (TensorRT's ONNX, for trtexec)."""
        return self.target in TARGETS and TARGETS[self.target].format != self.format

    @classmethod
    def from_metadata(cls, path: Path, meta: dict[str, str], fmt: str, files: list[Path] | None = None,
                      status: str = "ok", message: str = "") -> "Artifact":
        m = ArtifactMeta.from_flat(meta)
        target = m.target if m.target in TARGETS else fmt  # the writer, e.g. trt for its ONNX
        return cls(path, target, meta.get("precision", "unknown"), m.batch, m.model, m.attn_mode, status, message,
                   files or [path], m.weights_sha256, meta, fmt)


def _read_manifest(p: Path) -> dict[str, Any] | None:
    man = p.with_name(p.name + ".json")
    if not man.is_file():
        return None
    try:
        doc = json.loads(man.read_text())
        return doc if isinstance(doc, dict) else None
    except (ValueError, OSError):
        return None


def discover_artifacts(folder: str | os.PathLike) -> list[Artifact]:
    """Artifacts in a folder (recursive), each described by its manifest ``<artifact>.json``
    or, without one, by the metadata embedded in the artifact (never by its file name)."""
    from .. import runtime

    root = Path(folder)
    if not root.is_dir():
        raise BenchError(f"--artifacts {root}: not a folder")
    found: list[Artifact] = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel) or any(part.endswith(".mlpackage") for part in rel[:-1]):
            continue  # temp dirs, and files inside a Core ML package
        fmt = runtime.SUFFIXES.get(p.suffix.lower())
        if fmt is None or (fmt.name == "coreml") != p.is_dir():
            continue
        files = [p, p.with_suffix(".bin")] if p.suffix == ".xml" else [p]
        doc = _read_manifest(p)
        if doc is not None:
            res = doc.get("result", {})
            a = Artifact.from_metadata(p, doc.get("metadata", {}), fmt.name,
                                       [p.parent / Path(f).name for f in res.get("files") or []] or files,
                                       {"ok": "ok", "failed": "failed"}.get(res.get("status"), "unavailable"),
                                       res.get("message", ""))
        else:
            try:
                meta = runtime.read_metadata(p)
                a = Artifact.from_metadata(p, meta, fmt.name, files)
                if not meta:
                    a.message = "no msvit metadata in the artifact: parity not judged"
            except TargetUnavailableError as e:  # its runtime is not installed here
                a = Artifact(p, fmt.name, "unknown", 1, files=files, status="unavailable", message=str(e),
                             format=fmt.name)
            except MsvitError as e:  # corrupt, truncated: the file itself is broken
                a = Artifact(p, fmt.name, "unknown", 1, files=files, status="unreadable", message=str(e),
                             format=fmt.name)
        if a.intermediate and a.status == "ok":
            t = TARGETS[a.target]
            a.status, a.message = "unavailable", f"{fmt.title} for {t.title} only: no {t.suffix} built"
        found.append(a)
    # a target's real artifact supersedes the intermediate it was built from (an engine, its ONNX)
    built = {(a.target, a.precision, a.batch) for a in found if not a.intermediate}
    return [a for a in found if not (a.intermediate and (a.target, a.precision, a.batch) in built)]
