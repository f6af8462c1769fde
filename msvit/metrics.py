"""Detection metrics used by the accuracy guard and the benchmark (DeepGuard's: Acc, AUC,
log-loss; fake = 1), and agreement between two models' decisions."""
from __future__ import annotations

import numpy as np


def probs(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64).reshape(-1)))


def accuracy_metrics(p: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, float | None]:
    from sklearn.metrics import log_loss, roc_auc_score

    p = np.asarray(p, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None
    return {"acc": float(np.mean((p >= threshold) == (y == 1))), "auc": auc,
            "log_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))}


def agreement_metrics(p_ref: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    p_ref, p = np.asarray(p_ref, np.float64).reshape(-1), np.asarray(p, np.float64).reshape(-1)
    d = np.abs(p - p_ref)
    return {"agreement": float(np.mean((p_ref >= threshold) == (p >= threshold))),
            "max_abs_dprob": float(d.max()), "mean_abs_dprob": float(d.mean())}
