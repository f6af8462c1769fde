"""The statistics of an operating point, on scores alone (no model, no files): the threshold at a
target false-positive or true-positive rate, bootstrap intervals of both rates at it, how many
inputs a target needs, temperature scaling, ROC and reliability curves.

Convention everywhere: label 1 = fake (positive), 0 = real; the verdict is fake when
P(fake) >= threshold; FPR = share of real inputs called fake; TPR = share of fakes called fake.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..metrics import cut_between, min_inputs, threshold_at_fpr, tpr_at_fpr

__all__ = ["LEVEL", "Rate", "auc", "fit_temperature", "log_loss", "min_inputs", "operating_point",
           "threshold_at_fpr", "threshold_at_tpr", "tpr_at_fpr"]

#: the confidence of every interval msvit-calibrate states
LEVEL = 0.95


@dataclass(frozen=True)
class Rate:
    """A rate at the chosen threshold: ``count`` of ``of`` calibration inputs (from ``groups``
    independent groups), and two 95% intervals from the bootstrap of the whole procedure (choose
    the threshold on a resample, measure it): ``low``-``high`` for the rate this threshold has on
    footage like this in the long run, ``batch_low``-``batch_high`` for the share of a batch of
    ``batch`` new inputs (that batch's own sampling noise included)."""

    count: int
    of: int
    low: float
    high: float
    groups: int = 0
    batch: int = 0
    batch_low: float = float("nan")
    batch_high: float = float("nan")

    @property
    def value(self) -> float:
        return self.count / self.of if self.of else float("nan")

    def to_dict(self) -> dict[str, float | int | list[float]]:
        return {"value": round(self.value, 6), "count": self.count, "of": self.of, "groups": self.groups,
                "ci95": [round(self.low, 6), round(self.high, 6)], "batch": self.batch,
                "batch_pi95": [round(self.batch_low, 6), round(self.batch_high, 6)]}

    def text(self) -> str:
        grp = f" in {self.groups} groups" if self.groups != self.of else ""
        return (f"{100 * self.value:.2f}% ({self.count}/{self.of}{grp}); 95%: long run {100 * self.low:.2f}-"
                f"{100 * self.high:.2f}%, {round(self.batch_low * self.batch)}-{round(self.batch_high * self.batch)} "
                f"of {self.batch} new inputs")


def threshold_at_tpr(fake: np.ndarray, target: float) -> float:
    """The highest threshold whose TPR on ``fake`` is at least ``target``: ``ceil(target * m)``
    fakes score at or above it (more when ties at the cut)."""
    s = np.sort(np.asarray(fake, np.float64))[::-1]
    k = max(1, int(math.ceil(target * len(s) - 1e-9)))
    below = s[k:][s[k:] < s[k - 1]]
    return cut_between(float(s[k - 1]), float(below.max())) if len(below) else float(s[k - 1])


def group_codes(n: int, groups: Sequence[object] | None) -> np.ndarray:
    """Each input's group as 0..g-1 (inputs without a group list: one group each)."""
    if groups is None:
        return np.arange(n)
    if len(groups) != n:
        raise ValueError(f"{len(groups)} group labels for {n} inputs")
    return np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)[1].reshape(-1)


def _cut(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """:func:`cut_between`, elementwise."""
    mid = (high + low) / 2.0
    return np.where((low < mid) & (mid <= high), mid, np.nextafter(low, np.inf))


def bootstrap_thresholds(scores: np.ndarray, metric: str, target: float, groups: np.ndarray, n_boot: int,
                         rng: np.random.Generator) -> np.ndarray:
    """The threshold the procedure (:func:`threshold_at_fpr` on real scores for ``metric`` "fpr",
    :func:`threshold_at_tpr` on fakes for "tpr") picks on each of ``n_boot`` resamples that draw
    whole groups (``groups``: codes 0..g-1) with replacement. A resample is a weight per input (its
    group's multiplicity), so one sort serves every resample."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    s, codes = np.asarray(scores, np.float64)[order], groups[order]
    ends = np.r_[np.nonzero(s[1:] < s[:-1])[0], len(s) - 1]  # last index of each distinct value
    v = s[ends]  # distinct values, descending
    g = int(codes.max()) + 1
    out = np.empty(n_boot)
    chunk = max(1, 4_000_000 // len(s))
    for a in range(0, n_boot, chunk):
        b = min(n_boot, a + chunk)
        mult = rng.multinomial(g, np.full(g, 1.0 / g), size=b - a).astype(np.float64)
        at_or_above = np.cumsum(mult[:, codes], axis=1)[:, ends]  # resample count with score >= v_j
        size = at_or_above[:, -1]
        rows = np.arange(b - a)
        if metric == "fpr":  # first v_j with more than floor(F n*) at or above it: cut between it and the
            k = np.floor(target * size + 1e-9)  # next higher value present in the resample
            j = np.argmax(at_or_above > k[:, None], axis=1)
            before = np.where(j > 0, at_or_above[rows, np.maximum(j - 1, 0)], 0)
            prev = np.argmax(at_or_above >= before[:, None], axis=1)  # the last present value above v_j
            out[a:b] = np.where(before > 0, _cut(v[prev], v[j]), np.nextafter(v[j], np.inf))
        else:  # first v_j with at least ceil(T m*) at or above it: cut between it and the next lower one
            k = np.maximum(1, np.ceil(target * size - 1e-9))
            j = np.argmax(at_or_above >= k[:, None], axis=1)
            here = at_or_above[rows, j]
            nxt = np.argmax(at_or_above > here[:, None], axis=1)  # the next present value below v_j
            out[a:b] = np.where(here < size, _cut(v[j], v[nxt]), v[j])
    return out


def _batch_shares(hits_of: Callable[[slice, np.ndarray], np.ndarray], sizes: np.ndarray, batch: int, n: int,
                  rng: np.random.Generator, pool: np.ndarray | None = None) -> np.ndarray:
    """The share of hits in each of ``n`` new batches of whole groups drawn with replacement (row i
    from ``pool[i]``'s group codes, else from all groups) until it holds at least ``batch`` inputs;
    ``hits_of(rows, picks)`` counts the hits of the picked groups of those rows."""
    k = int(math.ceil(2 * batch / sizes.mean())) + 8
    out = np.empty(n)
    rows = max(1, 2_000_000 // k)
    for a in range(0, n, rows):
        r = slice(a, min(n, a + rows))
        m = r.stop - r.start
        while True:
            idx = rng.integers(len(sizes) if pool is None else pool.shape[1], size=(m, k))
            picks = idx if pool is None else np.take_along_axis(pool[r], idx, axis=1)
            cum = np.cumsum(sizes[picks], axis=1)
            if (cum[:, -1] >= batch).all():
                break
            k *= 2
        used = cum - sizes[picks] < batch  # the groups drawn before the batch was full
        out[r] = (hits_of(r, picks) * used).sum(1) / (sizes[picks] * used).sum(1)
    return out


def _replayed(scores: np.ndarray, groups: np.ndarray, thresholds: np.ndarray, batch: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The class the threshold was chosen on, one threshold per replay: its rate on all these inputs
    (the long run, in the bootstrap's world) and in a new batch of ``batch`` of them."""
    ranked = np.sort(scores)
    long_run = (len(ranked) - np.searchsorted(ranked, thresholds, side="left")) / len(ranked)
    # a group's hits at a threshold, for any group and threshold: one sorted key per input
    span = len(ranked) + 1
    keys = np.sort(groups * span + np.searchsorted(ranked, scores, side="left"))
    at = np.searchsorted(ranked, thresholds, side="left")

    def hits_of(r: slice, picks: np.ndarray) -> np.ndarray:
        return np.searchsorted(keys, (picks + 1) * span) - np.searchsorted(keys, picks * span + at[r, None])

    return long_run, _batch_shares(hits_of, np.bincount(groups), batch, len(thresholds), rng)


def _resampled(scores: np.ndarray, groups: np.ndarray, threshold: float, n_boot: int, batch: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The other class, at the fixed threshold (it had no say in choosing it): its rate on each
    resample of its groups, and in a new batch drawn from that resample."""
    hits, sizes = np.bincount(groups, scores >= threshold), np.bincount(groups)
    rate, in_batch = np.empty(n_boot), np.empty(n_boot)
    rows = max(1, 4_000_000 // len(sizes))
    for a in range(0, n_boot, rows):
        m = min(n_boot, a + rows) - a
        pool = rng.integers(len(sizes), size=(m, len(sizes)))  # each row: one resample's groups
        rate[a:a + m] = hits[pool].sum(1) / sizes[pool].sum(1)
        in_batch[a:a + m] = _batch_shares(lambda r, picks: hits[picks], sizes, batch, m, rng, pool)
    return rate, in_batch


def _interval(x: np.ndarray, level: float) -> tuple[float, float]:
    a = (1.0 - level) / 2.0
    return float(np.quantile(x, a, method="lower")), float(np.quantile(x, 1.0 - a, method="higher"))


def exact_interval(count: int, of: int, batch: int, level: float = LEVEL) -> tuple[float, float, float, float]:
    """Independent inputs: (low, high) for the long-run rate and (low, high) for the share in a
    batch of ``batch`` new inputs, when ``count`` of ``of`` inputs score at or above the threshold.

    Distribution-free and exact (conservative with ties) whether the threshold was chosen on these
    inputs or not: a threshold just above the (count+1)-th highest of ``of`` scores has a long-run
    rate between the count-th and (count+1)-th uniform order statistics, Beta(count, of+1-count)
    and Beta(count+1, of-count); these are the Clopper-Pearson limits. A batch's count is Binomial
    (batch, that rate): beta-binomial at each end."""
    from scipy.stats import beta, betabinom

    a = (1.0 - level) / 2.0
    lo = 0.0 if count == 0 else float(beta.ppf(a, count, of + 1 - count))
    hi = 1.0 if count >= of else float(beta.ppf(1.0 - a, count + 1, of - count))
    blo = 0.0 if count == 0 else float(betabinom.ppf(a, batch, count, of + 1 - count)) / batch
    bhi = 1.0 if count >= of else float(betabinom.ppf(1.0 - a, batch, count + 1, of - count)) / batch
    return lo, hi, blo, bhi


def operating_point(real: np.ndarray, fake: np.ndarray, metric: str, target: float, *,
                    real_groups: Sequence[object] | None = None, fake_groups: Sequence[object] | None = None,
                    batch: int = 1000, n_boot: int = 2000, seed: int = 0,
                    level: float = LEVEL) -> tuple[float, Rate | None, Rate | None]:
    """The threshold at ``target`` (``metric`` "fpr" on ``real`` or "tpr" on ``fake``) and the FPR
    and TPR it gives, each with a 95% interval for its long-run value and for its share in a batch
    of ``batch`` new inputs; both include the threshold's own variability. Rates of a class with
    no inputs are None.

    Independent inputs (no groups): :func:`exact_interval`. With groups (frames of one clip,
    crops of one person): ``n_boot`` bootstrap replays of the whole procedure that draw whole groups
    with replacement; the class the threshold is chosen on gets a new threshold per replay,
    measured on all its inputs and on a batch drawn from them, the other class is resampled at
    the chosen threshold."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    rg, fg = group_codes(len(real), real_groups), group_codes(len(fake), fake_groups)
    rng = np.random.default_rng(seed)
    chosen, codes = (real, rg) if metric == "fpr" else (fake, fg)
    threshold = threshold_at_fpr(real, target) if metric == "fpr" else threshold_at_tpr(fake, target)
    boot = None

    def rate(scores: np.ndarray, groups: np.ndarray, chosen_on: bool) -> Rate | None:
        nonlocal boot
        if not len(scores):
            return None
        count, g = int((scores >= threshold).sum()), int(groups.max()) + 1
        if g == len(scores):
            lo, hi, blo, bhi = exact_interval(count, len(scores), batch, level)
            return Rate(count, len(scores), lo, hi, g, batch, blo, bhi)
        if chosen_on:
            boot = bootstrap_thresholds(chosen, metric, target, codes, n_boot, rng) if boot is None else boot
            long_run, in_batch = _replayed(scores, groups, boot, batch, rng)
        else:
            long_run, in_batch = _resampled(scores, groups, threshold, n_boot, batch, rng)
        return Rate(count, len(scores), *_interval(long_run, level), g, batch, *_interval(in_batch, level))

    return threshold, rate(real, rg, metric == "fpr"), rate(fake, fg, metric == "tpr")


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


def describe_need(n: int, rate: float, what: str, unit: str = "inputs") -> str:
    """Why a target cannot be estimated from ``n`` independent ``unit`` ("inputs", or "groups" with
    --group-by), and how many it would need."""
    need = min_inputs(rate)
    needed = f"{need} {what} inputs" if unit == "inputs" else f"{need} {unit} of {what} inputs"
    return (f"{n} {what} {unit} cannot support a {100 * rate:g}% rate: with none wrong, {n} independent "
            f"{unit} only bound it below {100 * (1 - (1 - LEVEL) ** (1 / max(n, 1))):.1f}% (95%); it needs at "
            f"least {needed} (~3/rate), or a target of at least {100 * -math.log(1 - LEVEL) / max(n, 1):.2g}%")
