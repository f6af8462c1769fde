"""Accuracy metrics (sklearn) and agreement with the FP32 PyTorch reference."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..metrics import agreement_metrics, label_metrics


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


def evaluate(logits: np.ndarray, ref_logits: np.ndarray | None, labels: np.ndarray | None) -> Accuracy:
    lab = label_metrics(logits, labels) if labels is not None else {"accuracy": None, "auc": None, "log_loss": None}
    agr = agreement_metrics(ref_logits, logits) if ref_logits is not None else dict.fromkeys(
        ("agreement", "max_abs_dprob", "mean_abs_dprob", "max_abs_dlogit"))
    return Accuracy(n=int(np.asarray(logits).shape[0]), **lab, **agr)
