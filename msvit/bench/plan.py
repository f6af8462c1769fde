"""Plan: the rows to benchmark, each with the artifact(s) it runs at batch 1 and batch N,
from fresh exports or from discovered artifacts."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

from ..export.targets import get_target
from ..fileio import path_size
from ..model.info import model_info
from .discovery import Artifact
from .rows import BenchRow


@dataclass
class Candidate:
    """A row and what it runs: the batch-1 artifact and the batch-N one (may be the same)."""

    row: BenchRow
    a1: Artifact | None = None
    an: Artifact | None = None
    judge_parity: bool = True  # False: exported from other/unknown weights
    s1: Any = None  # msvit.runtime.Session at batch 1
    sn: Any = None  # ... at batch N


def why_not(target: str) -> str:
    ok, why = get_target(target).can_run_here()
    return "" if ok else why


def export_rows(net, names: list[str], precisions: Sequence[str] | None, batch: int, out: str | os.PathLike,
                 threads: int, verify, say) -> list[Candidate]:
    from ..export import export

    cands = []
    for name in names:
        t = get_target(name)
        for prec in (precisions or [t.default_precision]):
            row = BenchRow(t.title, name, prec, t.device, "unavailable", threads=threads)
            if prec not in t.precisions:
                say(f"skip {name} {prec}: not offered (has {', '.join(t.precisions)})")
                continue
            why = why_not(name)
            if not why and prec == "int8":
                why = "int8 needs calibration: export it with msvit-export --calib-data, then --artifacts"
            if why:
                row.note = why
                cands.append(Candidate(row))
                continue
            arts: list[Artifact] = []
            for b in ([1, batch] if batch > 1 else [1]):
                say(f"exporting {name} {prec} batch {b} -> {out}")
                r = export(net, name, prec, out, batch=b, strict=False, log=say, verify_data=verify)
                if r.path is None or not r.path.exists():
                    row.fail(r.message, "unavailable" if r.status == "unavailable" else "failed")
                    arts = []
                    break
                arts.append(Artifact(r.path, name, prec, b, status=r.status, message=r.message, files=r.files))
            if arts:
                row.status = "ok"
            cands.append(Candidate(row, arts[0] if arts else None, arts[-1] if len(arts) > 1 else None))
    return cands


def artifact_rows(found: list[Artifact], targets: Sequence[str] | None, precisions: Sequence[str] | None,
                   batch: int, threads: int, net, say) -> list[Candidate]:
    groups: dict[tuple, list[Artifact]] = {}
    for a in found:
        if targets is not None and a.target not in targets:
            continue
        if precisions and a.precision not in precisions:
            continue
        kind = a.metadata.get("input_kind", "tensor")  # tensor and --input image variants are rows of their own
        groups.setdefault((a.target, a.precision, a.model, a.attn_mode, a.path.suffix, kind), []).append(a)
    cands = []
    for (tname, prec, _m, _am, _sfx, kind), arts in groups.items():
        t = get_target(tname)
        a1 = next((a for a in arts if a.batch == 1), None) or next((a for a in arts if a.batch is None), None)
        an = (next((a for a in arts if a.batch == batch), None) or next((a for a in arts if a.batch is None), None)
              ) if batch > 1 else None
        for a in arts:
            if a is not a1 and a is not an:
                say(f"skip {a.path.name}: static batch {a.batch} (pass --batch {a.batch})")
        if a1 is None and an is None:
            continue
        main = a1 or an
        row = BenchRow(t.title, tname, prec, t.device, "ok", threads=threads, artifact=str(main.path),
                       size_mb=round(sum(path_size(f) for f in main.files) / 1e6, 3), input_kind=kind,
                       note="uint8 image input" if kind == "image" else "")
        why = main.message if main.intermediate else why_not(tname)
        if main.status == "unreadable":  # a failed row (exit 1), not a missing runtime
            row.fail(main.message)
            cands.append(Candidate(row))
            continue
        if main.status == "unavailable" or why:
            row.fail(why or main.message, "unavailable")
            cands.append(Candidate(row))
            continue
        c = Candidate(row, a1, an)
        if a1 is None:
            row.note = (row.note + "; " if row.note else "") + f"no batch-1 artifact (static batch {an.batch})"
        if main.weights_sha256 is None or main.weights_sha256 != (model_info(net).weights_sha256 or None):
            row.note = (row.note + "; " if row.note else "") + "exported from other/unknown weights: parity not judged"
            c.judge_parity = False
        cands.append(c)
    return cands
