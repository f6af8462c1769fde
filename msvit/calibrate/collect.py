"""msvit-predict's pipeline over labelled inputs: one :class:`Scored` input per image or video,
with each frame's raw logits kept so that any temperature can be applied afterwards exactly as
the pipeline applies it (per frame, before aggregation), and each input's group (``--group-by``)."""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import UsageError
from ..metrics import sigmoid
from ..predict.aggregate import aggregate
from ..predict.results import Prediction
from .stats import logit

LABELS = {0: "real", 1: "fake"}


@dataclass
class Scored:
    """One labelled input after the pipeline; ``logits`` (frames x 1 or 2 with TTA) are raw, at
    temperature 1. Inputs without a verdict keep their status and message and no logits."""

    source: str
    label: int  # 0 real, 1 fake
    kind: str
    status: str
    message: str = ""
    agg: str | None = None
    logits: np.ndarray = field(default_factory=lambda: np.zeros((0, 1)))
    group: str = ""  # inputs of one group are correlated (frames of one clip); "": its own group

    @property
    def usable(self) -> bool:
        return len(self.logits) > 0

    def p_fake(self, temperature: float = 1.0) -> float:
        """P(fake) as the pipeline gives it at ``temperature``: per frame sigmoid(logit / T) (the
        mean over the plain and mirrored crop with TTA), then the video aggregation."""
        p = sigmoid(self.logits / temperature).mean(axis=1)
        return aggregate(p, self.agg) if self.agg else float(p[0])


def scored_from(pred: Prediction, label: int) -> Scored:
    """A :class:`Prediction` made at temperature 1 -> :class:`Scored` (raw logits of each frame)."""
    rows = []
    for fr in pred.frames:
        if fr.p_fake is None or fr.logit is None:
            continue
        rows.append([fr.logit] if fr.p_fake_flip is None else [fr.logit, float(logit(fr.p_fake_flip))])
    s = Scored(pred.source, label, pred.kind, pred.status, pred.message, pred.agg,
               np.asarray(rows, np.float64).reshape(len(rows), -1) if rows else np.zeros((0, 1)))
    if pred.p_fake is None:
        s.logits = np.zeros((0, 1))
    return s


def scores(items: list[Scored], temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(P(fake), label) of the usable inputs at ``temperature``."""
    use = [s for s in items if s.usable]
    return (np.asarray([s.p_fake(temperature) for s in use], np.float64),
            np.asarray([s.label for s in use], np.int64))


def groups_of(items: list[Scored], label: int) -> list[str]:
    """The group of each usable input of class ``label`` (in :func:`scores`' order); an input
    without one is its own group."""
    return [s.group or f"input {i}" for i, s in enumerate(items) if s.usable and s.label == label]


def read_groups(specs: list[str], column: str) -> dict[str, str]:
    """``--group-by COLUMN``: resolved path -> group, from the .csv lists among ``specs`` (their
    ``path`` column, relative to the list, as msvit-predict reads them). Raises
    :class:`UsageError` when no list has the column or a row leaves it empty."""
    out: dict[str, str] = {}
    lists = [Path(s) for s in specs if Path(s).suffix.lower() == ".csv" and Path(s).is_file()]
    if not lists:
        raise UsageError(f"--group-by {column}: give the inputs as .csv lists with a path and a {column} column "
                         "(folders and files carry no group: a video is one input already)")
    for lst in lists:
        try:
            rows = list(csv.DictReader(lst.read_text(encoding="utf-8-sig").splitlines()))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise UsageError(f"--group-by: cannot read {lst}: {e}") from None
        cols = {(c or "").strip().lower(): c for c in (rows[0].keys() if rows else [])}
        if "path" not in cols or column.lower() not in cols:
            raise UsageError(f"--group-by {column}: {lst.name} needs a 'path' and a '{column}' column "
                             f"(it has {', '.join(c for c in cols if c) or 'none'})")
        for i, row in enumerate(rows, start=2):
            path, group = (row[cols["path"]] or "").strip(), (row[cols[column.lower()]] or "").strip()
            if not path:
                continue
            if not group:
                raise UsageError(f"--group-by {column}: {lst.name} line {i} ({path}) has no {column}")
            out[str((lst.parent / path).resolve())] = f"{lst.name}:{group}"
    return out


def data_sha256(sources: list[tuple[str, int]]) -> str:
    """One digest of the labelled data: every input's label and the sha256 of its bytes, in order of
    (label, content) so that renaming or moving files does not change it."""
    per = []
    for path, label in sources:
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            per.append(f"{LABELS[label]} {h.hexdigest()}")
        except OSError:
            per.append(f"{LABELS[label]} unreadable {Path(path).name}")
    return hashlib.sha256("\n".join(sorted(per)).encode()).hexdigest()


def run_pipeline(det: Any, labelled: list[tuple[Any, int]], args: Any,
                 on_done: Callable[[Scored], None] | None = None,
                 groups: dict[str, str] | None = None) -> list[Scored]:
    """Each discovered source through ``det`` (a :class:`msvit.predict.Detector`, its temperature
    set to 1) with msvit-predict's options from ``args``, its group from ``groups`` (resolved path
    -> group); never raises for a bad input."""
    out = []
    for src, label in labelled:
        pred = det.predict_source(src, args.num_frames, args.agg, args.faces_only)
        s = scored_from(pred, label)
        s.group = (groups or {}).get(str(Path(src.path).resolve()), "")
        out.append(s)
        if on_done is not None:
            on_done(s)
    return out
