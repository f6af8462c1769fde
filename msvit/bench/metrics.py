"""Accuracy metrics (sklearn) and agreement with the FP32 PyTorch reference."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..export.validate import sigmoid


@dataclass
class Accuracy:
    n: int
    accuracy: float | None  # at threshold 0.5, needs labels
    auc: float | None  # needs labels of both classes
    log_loss: float | None
    agreement: float | None  # decisions equal to the FP32 torch reference at 0.5
    max_abs_dprob: float | None
    mean_abs_dprob: float | None
    max_abs_dlogit: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def evaluate(logits: np.ndarray, ref_logits: np.ndarray | None, labels: np.ndarray | None) -> Accuracy:
    lab = label_metrics(logits, labels) if labels is not None else {"accuracy": None, "auc": None, "log_loss": None}
    agr = agreement_metrics(ref_logits, logits) if ref_logits is not None else dict.fromkeys(
        ("agreement", "max_abs_dprob", "mean_abs_dprob", "max_abs_dlogit"))
    return Accuracy(n=int(np.asarray(logits).shape[0]), **lab, **agr)
