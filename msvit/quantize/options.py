"""Typed INT8 settings: one name per quantity, the same in code, CLI flags, JSON and README."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .guard import Gate


@dataclass
class Int8Options:
    """How INT8 is chosen and judged (``msvit-export --calib-method --max-dprob ...``)."""

    calib_method: str | None = None  # None: the target's measured default
    min_agreement: float = 0.99  # gate: decisions equal to FP32 at the threshold
    max_auc_drop: float = 0.005  # gate: AUC drop vs FP32 (labelled verification data)
    max_dprob: float = 0.05  # gate: max |P(fake) INT8 - P(fake) FP32| on the verification images
    sensitivity_dprob: float = 0.02  # plan: simulated max |ΔP| the chosen INT8 layers may add
    max_attempts: int = 4  # guard: builds, each returning the most sensitive INT8 group to float
    verify_data: Any = None  # folder / CSV / ImageSet; None: held-out calibration images

    @property
    def gate(self) -> Gate:
        return Gate(self.min_agreement, self.max_auc_drop, self.max_dprob)
