"""Carrying the chosen operating point: a new artifact set (the artifact with rewritten metadata,
its manifest and card, published in one step as msvit-export publishes), or a sidecar
``<artifact>.calibration.json`` beside an artifact that cannot be rewritten."""
from __future__ import annotations

import errno
import importlib
import json
import shutil
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, ExportError, UsageError
from ..export.card import card_markdown
from ..export.core import publish
from ..fileio import atomic_write_text, cannot_write_in, deferred_signals, make_temp_dir, sweep_stale_temp
from ..runtime import detect_format
from ..runtime.calibration import (REWRITABLE, calibrated_metadata, file_sha256, sidecar_document, sidecar_path)


def check_rewritable(artifact: Path) -> None:
    """:class:`UsageError` (exit 2, before any work) for a format whose metadata msvit cannot rewrite."""
    fmt = detect_format(artifact)
    if fmt.name not in REWRITABLE:
        raise UsageError(f"{artifact.name}: msvit cannot rewrite the metadata of a {fmt.title} artifact, so a new "
                         f"artifact cannot carry the threshold; pass --sidecar to write {sidecar_path(artifact).name} "
                         "beside it (msvit reads it whenever it opens the artifact)")


def check_sidecar_target(artifact: Path) -> None:
    """The sidecar's folder must be writable (checked before any work)."""
    why = cannot_write_in(artifact.parent)
    if why:
        raise UsageError(f"--sidecar: cannot write {sidecar_path(artifact).name} into {artifact.parent} ({why})")


def check_out_for_artifact(artifact: Path, out: Path) -> None:
    """The new set must not replace the artifact it is made from."""
    if out.resolve() == artifact.resolve().parent:
        raise UsageError(f"--out {out}: is the folder of {artifact.name}; the calibrated artifact has the same name "
                         "and would replace the one it is made from: choose another folder (or --sidecar)")


def write_sidecar(artifact: Path, threshold: float, temperature: float, calibration: dict[str, Any]) -> Path:
    doc = sidecar_document(artifact, threshold, temperature, calibration)
    return atomic_write_text(sidecar_path(artifact), json.dumps(doc, indent=1) + "\n")


def _main_files(artifact: Path) -> list[Path]:
    return [artifact, artifact.with_suffix(".bin")] if artifact.suffix.lower() == ".xml" else [artifact]


def publish_calibrated(artifact: Path, metadata: dict[str, str], threshold: float, temperature: float,
                       calibration: dict[str, Any], out: Path) -> list[Path]:
    """Write the calibrated copy of ``artifact`` with its manifest and card into ``out`` in one
    publish step (safe under SIGKILL; nothing under a final name until the set is complete)."""
    from .. import runtime

    fmt = detect_format(artifact)
    meta = calibrated_metadata(metadata, threshold, temperature, calibration)
    try:
        out.mkdir(parents=True, exist_ok=True)
        sweep_stale_temp(out)
        work = make_temp_dir(out)
    except OSError as e:
        raise ExportError(f"cannot write into {out}: {e.strerror or e}") from None
    try:
        module = importlib.import_module(f"msvit.runtime.{fmt.module}")
        files = module.rewrite_metadata(artifact, work, meta)
        got = runtime.read_metadata(files[0])  # verify through the loader before anything is published
        if float(got.get("threshold", "nan")) != float(meta["threshold"]) or got.get("calibration") != meta["calibration"]:
            raise ArtifactError(f"{artifact.name}: the rewritten metadata did not read back as written")
        try:
            old = json.loads(Path(str(artifact) + ".json").read_text())
        except (OSError, ValueError):
            old = {}
        result = {**(old.get("result") or {}), "status": "ok", "path": str(out / files[0].name),
                  "files": [str(out / f.name) for f in files],
                  "message": f"calibrated from {artifact.name} (sha256 {file_sha256(artifact)[:16]}…)"}
        manifest = work / f"{files[0].name}.json"
        card = work / f"{files[0].name}.md"
        atomic_write_text(manifest, json.dumps({
            "metadata": meta, "result": result, "sha256": {f.name: file_sha256(f) for f in files},
            "data": old.get("data", {}), "calibration": calibration,
            "calibrated_from": {"path": str(artifact), "sha256": {f.name: file_sha256(f) for f in _main_files(artifact)
                                                                  if f.is_file()}}}, indent=2) + "\n")
        atomic_write_text(card, card_markdown(files[0].name, meta, result) + operating_point_card(calibration,
                                                                                                threshold, temperature))
        with deferred_signals():
            publish([*files, manifest, card], out)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise ExportError(f"disk full while writing into {out}: nothing was published") from None
        raise ExportError(f"cannot write into {out}: {e.strerror or e} (nothing was published)") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [out / f.name for f in files] + [out / manifest.name, out / card.name]


def operating_point_card(cal: dict[str, Any], threshold: float, temperature: float) -> str:
    """The card's section on the operating point (appended to the export card)."""
    tgt = cal.get("target", {})
    fpr, tpr, n = cal.get("fpr") or {}, cal.get("tpr") or {}, cal.get("counts", {})
    lines = ["## Operating point (msvit-calibrate)", "",
             f"- Threshold **{threshold:.6g}** on P(fake)"
             + (f" = sigmoid(logit / **{temperature:.6g}**) (temperature scaling)" if temperature != 1 else "")
             + f", chosen for {str(tgt.get('metric', '?')).upper()} {100 * float(tgt.get('value', 0)):g}% on "
             f"{n.get('real', 0)} real and {n.get('fake', 0)} fake inputs ({cal.get('date', '?')}; data sha256 "
             f"{str(cal.get('data_sha256', ''))[:16]}…)."]
    for name, r in (("FPR", fpr), ("TPR", tpr)):
        if r:
            lo, hi = r["ci95"]
            batch = (f"; in a batch of {r['batch']} new inputs {round(r['batch_pi95'][0] * r['batch'])}-"
                     f"{round(r['batch_pi95'][1] * r['batch'])}" if r.get("batch") else "")
            lines.append(f"- {name} {100 * r['value']:.2f}% ({r['count']}/{r['of']}); 95% interval of the long-run "
                         f"rate {100 * lo:.2f}-{100 * hi:.2f}%{batch}.")
    lines.append("- msvit-predict, msvit-screen and msvit-explain use it by default; it holds for the pipeline "
                 "settings it was chosen with (`calibration` metadata: frames, aggregation, faces).")
    return "\n".join(lines) + "\n"
