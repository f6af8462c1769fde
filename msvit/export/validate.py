"""Validation as its own step (Optimum-style): run the artifact, compare with PyTorch,
raise a typed error -- shape mismatch vs tolerance -- with explicit atol/rtol
(Polygraphy-style)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from ..errors import ShapeMismatchError, ToleranceError

#: logit tolerance per precision (int8 is judged on decisions, see msvit.quantize).
DEFAULT_ATOL = {"fp32": 1e-4, "fp16": 1e-2}


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


@dataclass
class ParityReport:
    n: int
    max_abs_logit: float
    mean_abs_logit: float
    max_abs_prob: float
    mean_abs_prob: float
    agreement: float  # decisions equal at threshold 0.5
    atol: float | None
    rtol: float
    data: str
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"max|Δlogit| {self.max_abs_logit:.2e}, max|ΔP| {self.max_abs_prob:.2e}, "
                f"agreement {self.agreement:.3f} (n={self.n}, {self.data})")


def compare(ref: np.ndarray, got: np.ndarray, atol: float | None, rtol: float = 0.0, data: str = "",
            threshold: float = 0.5) -> ParityReport:
    """Compare logits; raises ShapeMismatchError, never ToleranceError (see :func:`check`)."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if ref.shape != got.shape:
        raise ShapeMismatchError(f"output shape {got.shape} != reference {ref.shape}")
    d = np.abs(ref - got)
    pr, pg = sigmoid(ref), sigmoid(got)
    dp = np.abs(pr - pg)
    passed = True if atol is None else bool(np.all(d <= atol + rtol * np.abs(ref)))
    return ParityReport(
        n=int(ref.shape[0]), max_abs_logit=float(d.max()), mean_abs_logit=float(d.mean()),
        max_abs_prob=float(dp.max()), mean_abs_prob=float(dp.mean()),
        agreement=float(np.mean((pr >= threshold) == (pg >= threshold))), atol=atol, rtol=rtol, data=data,
        passed=passed,
    )


def check(report: ParityReport) -> ParityReport:
    if not report.passed:
        raise ToleranceError(f"parity failed: max|Δlogit| {report.max_abs_logit:.3e} > atol {report.atol:g}"
                             f" + rtol {report.rtol:g}·|ref| ({report.summary()})")
    return report


def run_batched(runner: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int) -> np.ndarray:
    """Feed ``x`` through ``runner`` in chunks of ``batch`` (static-batch artifacts need exact sizes)."""
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        pad = batch - len(chunk)
        if pad:  # static batch: pad the last chunk, drop the padding afterwards
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        outs.append(np.asarray(runner(chunk))[: batch - pad])
    return np.concatenate(outs)
