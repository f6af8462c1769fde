"""The web target: a static folder that runs msvit's whole pipeline in a browser.

``build_web(artifact, out)`` copies the page (``index.html`` + the ES modules of ``app/``), the
classifier artifact with its manifest and card, msvit-predict's BlazeFace full-range model (the
same file, so boxes match) and the vendored runtimes (LiteRT.js for BlazeFace and a ``.tflite``
classifier, onnxruntime-web for an ``.onnx`` one: ``runtime/``, pinned, with their licences) into
one folder, and writes
``config.json`` (what the page reads: model paths, threshold, input size, msvit-predict's
defaults). Nothing is fetched: everything comes from msvit's install.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ArtifactError, OutputExistsError, UsageError
from ..fileio import check_output_dir, make_temp_dir
from ..predict.blazeface import blazeface_model_path

HERE = Path(__file__).resolve().parent
#: classifier formats the page runs: .tflite on LiteRT.js (the default: faster, see docs/web.md),
#: .onnx on onnxruntime-web
WEB_FORMATS = (".tflite", ".onnx")
WEB_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class WebConfig:
    """``config.json``: everything the page needs to know about the folder it is served from."""

    model: str  # classifier, relative to the folder
    detector: str  # BlazeFace full-range .tflite
    model_name: str  # what msvit-predict's JSON calls the model ("ONNX fp32 (x.onnx, batch 1)")
    precision: str
    threshold: float
    input_size: int
    temperature: float = 1.0  # P(fake) = sigmoid(logit / temperature), as msvit-calibrate fitted it
    operating_point: str = ""  # where threshold and temperature came from (msvit-predict's line)
    manifest: str | None = None
    card: str | None = None
    kit: str | None = None
    runtimes: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, float | int | str] = field(default_factory=lambda: {
        "num_frames": 20, "agg": "conf", "conf_thres": 0.5, "min_face_ratio": 0.01, "margin": 0.2})


def runtime_versions() -> dict[str, str]:
    """The vendored runtimes' pinned versions (runtime/*/VERSION)."""
    out = {}
    for d in ("ort", "litert"):
        v = HERE / "runtime" / d / "VERSION"
        out[d] = v.read_text().strip() if v.is_file() else "missing"
    return out


def runtimes_for(artifact: Path) -> tuple[str, ...]:
    """The runtime folders a web folder needs: LiteRT.js (BlazeFace, .tflite classifiers), plus
    onnxruntime-web for an .onnx classifier."""
    return ("litert", "ort") if artifact.suffix.lower() == ".onnx" else ("litert",)


def web_folder_name(artifact: Path) -> str:
    return f"{artifact.stem}_web"


def _companions(artifact: Path) -> tuple[Path | None, Path | None]:
    """The manifest (<artifact>.json) and card (<artifact>.md) export wrote beside it."""
    man = artifact.with_name(artifact.name + ".json")
    card = artifact.with_name(artifact.name + ".md")
    return (man if man.is_file() else None), (card if card.is_file() else None)


def check_artifact(artifact: Path) -> None:
    if not artifact.is_file():
        raise UsageError(f"{artifact}: no such artifact")
    if artifact.suffix.lower() not in WEB_FORMATS:
        raise UsageError(f"{artifact}: the web app runs {', '.join(WEB_FORMATS)} classifiers (export one with "
                         "msvit-export --target web, or --target litert / onnx)")


def check_kit_for(kit: Path, artifact: Path) -> None:
    """UsageError unless ``kit`` is a schema-1 kit folder written for ``artifact`` (same sha256):
    kit mode judges the page's P(fake) against the kit's, which only this artifact gives."""
    doc = kit / "kit.json"
    try:
        meta = json.loads(doc.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"--kit {kit}: not a kit folder ({doc}: {e})") from None
    if not isinstance(meta, dict) or meta.get("schema") != 1 or meta.get("kind") != "kit":
        raise UsageError(f"--kit {kit}: not a schema-1 kit (kit.json says schema {meta.get('schema')!r}, "
                         f"kind {meta.get('kind')!r})" if isinstance(meta, dict) else f"--kit {kit}: not a kit")
    want = (meta.get("artifact") or {}).get("sha256")
    if want:
        got = hashlib.sha256(artifact.read_bytes()).hexdigest()
        if got != want:
            raise UsageError(f"--kit {kit} was written for {(meta.get('artifact') or {}).get('file', 'another artifact')} "
                             f"(sha256 {want[:12]}…), not {artifact.name} ({got[:12]}…): write one for this artifact "
                             f"(msvit-export ... --kit DATA, or python -m msvit.kit write --artifact {artifact.name} DATA)")


def build_web(artifact: str | os.PathLike, out: str | os.PathLike, kit: str | os.PathLike | None = None,
              overwrite: bool = False) -> Path:
    """Write the web folder for ``artifact`` (a LiteRT or ONNX classifier msvit exported) as ``out``;
    published whole (built beside it, then renamed). Returns ``out``."""
    from .. import runtime

    artifact, out = Path(artifact), Path(out)
    check_artifact(artifact)
    if kit is not None:
        check_kit_for(Path(kit), artifact)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists: pass --overwrite to replace it (nothing was done)")
    check_output_dir(out.parent, "--out")
    out.parent.mkdir(parents=True, exist_ok=True)
    session = runtime.load(artifact)
    try:
        if session.input_spec.kind != "tensor":
            raise UsageError(f"{artifact}: exported with --input image; the web app feeds the float32 NCHW tensor "
                             "(re-export with --input tensor, the default)")
        name, threshold, size = session.describe(), float(session.threshold), int(session.input_size)
        precision, op = session.precision, session.operating_point
    finally:
        if hasattr(session, "close"):
            session.close()
    tmp = make_temp_dir(out.parent)
    try:
        shutil.copy2(HERE / "index.html", tmp / "index.html")
        shutil.copytree(HERE / "app", tmp / "app", ignore=shutil.ignore_patterns("__pycache__"))
        # LiteRT.js always (BlazeFace); onnxruntime-web only for an .onnx classifier (~15 MB)
        for rt in runtimes_for(artifact):
            shutil.copytree(HERE / "runtime" / rt, tmp / "runtime" / rt, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
        (tmp / "model").mkdir()
        shutil.copy2(artifact, tmp / "model" / artifact.name)
        man, card = _companions(artifact)
        for f in (man, card):
            if f is not None:
                shutil.copy2(f, tmp / "model" / f.name)
        det = blazeface_model_path("full")
        shutil.copy2(det, tmp / "model" / det.name)
        for notice in ("LICENSE", "NOTICE"):
            if (det.parent / notice).is_file():
                shutil.copy2(det.parent / notice, tmp / "model" / f"blazeface.{notice}")
        kit_rel = None
        if kit is not None:
            shutil.copytree(kit, tmp / "kit")
            kit_rel = "kit/"
        cfg = WebConfig(model=f"model/{artifact.name}", detector=f"model/{det.name}", model_name=name,
                        precision=precision, threshold=threshold, input_size=size,
                        temperature=float(op.temperature), operating_point=op.describe(),
                        manifest=f"model/{man.name}" if man else None, card=f"model/{card.name}" if card else None,
                        kit=kit_rel, runtimes={k: v for k, v in runtime_versions().items() if k in runtimes_for(artifact)})
        (tmp / "config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
        if out.exists():
            old = out.with_name(out.name + ".old-" + tmp.name)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def check_vendored() -> None:
    """ArtifactError when msvit's install lacks the runtimes' files (a broken wheel)."""
    need = [HERE / "runtime" / "ort" / "ort-wasm-simd-threaded.wasm"] + [
        HERE / "runtime" / "litert" / f"litert_wasm{b}_internal.wasm" for b in ("", "_threaded", "_compat")]
    missing = [str(p) for p in need if not p.is_file()]
    if missing:
        raise ArtifactError(f"msvit's web runtimes are missing from its install ({', '.join(missing)}): reinstall msvit")
