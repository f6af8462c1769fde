"""Detection metrics shared by the INT8 accuracy guard and the benchmark: DeepGuard's
Acc, AUC and log-loss (fake = 1, P(fake) = sigmoid(logit)), and agreement with a reference."""
from __future__ import annotations

import math

import numpy as np



def sigmoid(x: np.ndarray) -> np.ndarray:
    """P(fake) from logits, in float64 (clipped: no overflow warnings for large |logit|)."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -500.0, 500.0)))


def label_metrics(logits: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, float | None]:
    """Accuracy at ``threshold``, ROC AUC and log-loss of P(fake) = sigmoid(logit); fake = 1."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    p = sigmoid(np.asarray(logits).reshape(-1))
    y = np.asarray(labels).reshape(-1).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "accuracy": float(accuracy_score(y, (p >= threshold).astype(int))),
        "auc": float(roc_auc_score(y, p)) if both else None,  # undefined with one class
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
    }


def agreement_metrics(ref_logits: np.ndarray, logits: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    r = np.asarray(ref_logits, np.float64).reshape(-1)
    g = np.asarray(logits, np.float64).reshape(-1)
    pr, pg = sigmoid(r), sigmoid(g)
    dp = np.abs(pr - pg)
    return {"agreement": float(np.mean((pr >= threshold) == (pg >= threshold))),
            "max_abs_dprob": float(dp.max()), "mean_abs_dprob": float(dp.mean()),
            "max_abs_dlogit": float(np.abs(r - g).max())}


def min_inputs(rate: float, level: float = 0.95) -> int:
    """How many inputs of the class whose error rate is ``rate`` an estimate of it needs: with n
    inputs and none wrong, the one-sided ``level`` upper bound on the rate is about
    -ln(1 - level) / n (the "rule of three": 3/n at 95%), so fewer than -ln(1 - level) / rate
    inputs cannot tell the rate from zero (300 real inputs for a 1% FPR, 60 for 5%)."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    return math.ceil(-math.log(1.0 - level) / rate - 1e-9)


def cut_between(high: float, low: float) -> float:
    """A threshold strictly above ``low``, at or below ``high``: their midpoint when it is one."""
    mid = (high + low) / 2.0
    return mid if low < mid <= high else float(np.nextafter(low, np.inf))


def threshold_at_fpr(real: np.ndarray, target: float) -> float:
    """The lowest threshold on P(fake) whose FPR on ``real`` is at most ``target`` (fake when
    P >= threshold): exactly ``floor(target * n)`` real inputs score at or above it (fewer when
    ties at the cut make that count unreachable)."""
    s = np.sort(np.asarray(real, np.float64).reshape(-1))[::-1]
    k = int(math.floor(target * len(s) + 1e-9))
    if k >= len(s):
        return float(s[-1])
    above = s[:k][s[:k] > s[k]]  # scores strictly above the (k+1)-th largest
    return cut_between(float(above.min()), float(s[k])) if len(above) else float(np.nextafter(s[k], np.inf))


def tpr_at_fpr(p: np.ndarray, labels: np.ndarray, fpr: float) -> float | None:
    """The share of fakes (label 1) caught at :func:`threshold_at_fpr` of the real ones (label 0);
    None when there are no fakes or fewer real inputs than :func:`min_inputs` asks for ``fpr``."""
    p, y = np.asarray(p, np.float64).reshape(-1), np.asarray(labels).reshape(-1).astype(int)
    real, fake = p[y == 0], p[y == 1]
    if not len(fake) or len(real) < min_inputs(fpr):
        return None
    return float((fake >= threshold_at_fpr(real, fpr)).mean())
