"""DeepGuard's frame sampling and per-video aggregation rules, as plain functions."""
from __future__ import annotations

from typing import Sequence

import numpy as np

AGG_MODES = ("conf", "mean", "vote")
T_FAKE = 0.8  # conf mode: a frame this sure of "fake" counts as a confident fake
T_REAL = 0.2  # ... and this sure of "real" as a confident real
VOTE_AT = 0.5  # vote mode: a frame votes fake when P > 0.5 (a tie at 0.5 votes real)


def frame_indices(n_frames: int, num_frames: int = 20) -> list[int]:
    """The frames DeepGuard samples: the unique integers of
    ``linspace(0, n_frames - 1, num_frames)`` (truncated, as ``dtype=int32`` does), ascending."""
    if n_frames <= 0 or num_frames <= 0:
        return []
    idx = np.linspace(0, n_frames - 1, num=num_frames, endpoint=True, dtype=np.int32)
    return sorted({int(i) for i in idx})


def aggregate(p: Sequence[float] | np.ndarray, mode: str = "conf") -> float:
    """One P(fake) for a video from its per-frame P(fake), DeepGuard's rules:

    - ``mean``: the mean;
    - ``vote``: the fraction of frames with P > 0.5;
    - ``conf``: with n frames, if more than ``n // 2.5`` frames have P > 0.8, the mean of
      those; elif more than 0.9 n frames have P < 0.2, the mean of those; else the mean.
    """
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if p.size == 0:
        raise ValueError("no frame probabilities to aggregate")
    n = p.size
    if mode == "mean":
        return float(p.mean())
    if mode == "vote":
        return float(np.count_nonzero(p > VOTE_AT) / n)
    if mode == "conf":
        fakes = p[p > T_FAKE]
        if len(fakes) > n // 2.5:  # Python's float floor division, as DeepGuard writes it
            return float(fakes.mean())
        reals = p[p < T_REAL]
        if len(reals) > 0.9 * n:
            return float(reals.mean())
        return float(p.mean())
    raise ValueError(f"unknown aggregation {mode!r}; choose one of {', '.join(AGG_MODES)}")

