"""The statistics of an operating point, on scores alone (no model, no files): the threshold at a
target false-positive or true-positive rate, bootstrap intervals of both rates at it, how many
inputs a target needs, temperature scaling, ROC and reliability curves.

Convention everywhere: label 1 = fake (positive), 0 = real; the verdict is fake when
P(fake) >= threshold; FPR = share of real inputs called fake; TPR = share of fakes called fake.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..metrics import cut_between, min_inputs, threshold_at_fpr, tpr_at_fpr

__all__ = ["LEVEL", "Rate", "auc", "fit_temperature", "log_loss", "min_inputs", "rate_at", "threshold_at_fpr",
           "threshold_at_tpr", "tpr_at_fpr"]

#: the confidence of every interval msvit-calibrate states
LEVEL = 0.95


@dataclass(frozen=True)
class Rate:
    """A rate at the chosen threshold: ``count`` of ``of`` inputs, and its bootstrap interval."""

    count: int
    of: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.count / self.of if self.of else float("nan")

    def to_dict(self) -> dict[str, float | int]:
        return {"value": round(self.value, 6), "count": self.count, "of": self.of,
                "ci95": [round(self.low, 6), round(self.high, 6)]}

    def text(self) -> str:
        return (f"{100 * self.value:.2f}% ({self.count}/{self.of}; 95% interval "
                f"{100 * self.low:.2f}-{100 * self.high:.2f}%)")


def threshold_at_tpr(fake: np.ndarray, target: float) -> float:
    """The highest threshold whose TPR on ``fake`` is at least ``target``: ``ceil(target * m)``
    fakes score at or above it (more when ties at the cut)."""
    s = np.sort(np.asarray(fake, np.float64))[::-1]
    k = max(1, int(math.ceil(target * len(s) - 1e-9)))
    below = s[k:][s[k:] < s[k - 1]]
    return cut_between(float(s[k - 1]), float(below.max())) if len(below) else float(s[k - 1])


def rate_at(scores: np.ndarray, threshold: float, n_boot: int = 2000, seed: int = 0,
            level: float = LEVEL) -> Rate:
    """The share of ``scores`` at or above ``threshold`` and its percentile bootstrap interval
    (``n_boot`` resamples with replacement of these inputs, the threshold held fixed)."""
    hit = np.asarray(scores, np.float64) >= threshold
    n = len(hit)
    if n == 0:
        return Rate(0, 0, float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    # a resample's count of hits is Binomial(n, k/n) exactly: draw it directly, as fast for 10^6 inputs
    boot = rng.binomial(n, hit.mean(), size=n_boot) / n
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [a, 1.0 - a])
    return Rate(int(hit.sum()), n, float(lo), float(hi))


# ------------------------------------------------------------------------- probabilities
def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-15, 1 - 1e-15)
    return np.log(p) - np.log1p(-p)


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of labels ``y`` (1 = fake) under P(fake) = ``p``."""
    p = np.clip(np.asarray(p, np.float64), 1e-15, 1 - 1e-15)
    y = np.asarray(y, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def fit_temperature(score_at: Callable[[float], np.ndarray], y: np.ndarray) -> float:
    """The temperature T that minimises the log loss of ``score_at(T)`` (each input's P(fake) with
    every frame's P = sigmoid(logit / T), aggregated as the pipeline does): a log-spaced grid over
    [0.05, 20], then a bounded Brent search around its best point."""
    from scipy.optimize import minimize_scalar

    grid = np.linspace(math.log(0.05), math.log(20.0), 121)
    losses = [log_loss(score_at(math.exp(g)), y) for g in grid]
    i = int(np.argmin(losses))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    if hi - lo <= 0:
        return float(math.exp(grid[i]))
    r = minimize_scalar(lambda g: log_loss(score_at(math.exp(g)), y), bounds=(lo, hi), method="bounded",
                        options={"xatol": 1e-4})
    best = r.x if r.fun <= losses[i] else grid[i]
    return float(math.exp(best))


def roc_curve(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds descending, from (0, 0) to (1, 1)."""
    s = np.concatenate([real, fake])
    t = np.unique(s)[::-1]
    fpr = np.array([0.0, *[(real >= x).mean() for x in t]])
    tpr = np.array([0.0, *[(fake >= x).mean() for x in t]])
    return fpr, tpr, np.array([np.inf, *t])


def auc(real: np.ndarray, fake: np.ndarray) -> float | None:
    """P(a fake scores above a real), ties counted half (the ROC area); None with one class."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if not len(real) or not len(fake):
        return None
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([real, fake]))
    return float((r[len(real):].sum() - len(fake) * (len(fake) + 1) / 2) / (len(real) * len(fake)))


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean P per bin, share of fakes per bin, inputs per bin) over ``bins`` equal-width P bins;
    empty bins are NaN."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    n = np.bincount(idx, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mp = np.bincount(idx, p, bins) / n
        fy = np.bincount(idx, y, bins) / n
    return mp, fy, n


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    mp, fy, n = reliability(p, y, bins)
    ok = n > 0
    return float(np.sum(n[ok] * np.abs(mp[ok] - fy[ok])) / n.sum())


def describe_need(n: int, rate: float, what: str) -> str:
    """Why a target cannot be estimated from ``n`` inputs, and how many it would need."""
    need = min_inputs(rate)
    return (f"{n} {what} inputs cannot support a {100 * rate:g}% rate: with none wrong, {n} inputs only bound it "
            f"below {100 * (1 - (1 - LEVEL) ** (1 / max(n, 1))):.1f}% (95%); it needs at least {need} {what} inputs "
            f"(~3/rate), or a target of at least {100 * -math.log(1 - LEVEL) / max(n, 1):.2g}%")


