"""Detection metrics shared by the INT8 accuracy guard and the benchmark: DeepGuard's
Acc, AUC and log-loss (fake = 1, P(fake) = sigmoid(logit)), and agreement with a reference."""
from __future__ import annotations

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
