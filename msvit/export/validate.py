"""Validation as its own step (Optimum-style): compare an artifact's logits with PyTorch's,
raise a typed error -- shape mismatch vs tolerance -- with explicit atol/rtol
(Polygraphy-style)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ShapeMismatchError, ToleranceError
from ..metrics import agreement_metrics

#: logit tolerance per precision, per unit of the reference's logit scale (see default_atol;
#: int8 and bf16 are judged on decisions by the accuracy guard, see msvit.quantize; fp16 by both).
DEFAULT_ATOL = {"fp32": 1e-4, "fp16": 1e-2}


def default_atol(precision: str, ref: np.ndarray) -> float | None:
    """The precision's logit tolerance for these reference logits: DEFAULT_ATOL x max(1, max|ref|).
    Reduced-precision error grows with the network's activation scale, not with each image's
    logit: fp16 ONNX on the confident fixture (|logit| up to 4.9) is off by 0.037 on an image whose
    logit is 2.0 (max|ΔP| 0.004), where the weak demo fixture (|logit| <= 1.4) is off by 0.007."""
    base = DEFAULT_ATOL.get(precision)
    if base is None:
        return None
    scale = float(np.abs(np.asarray(ref, np.float64)).max()) if np.size(ref) else 1.0
    return base * max(1.0, scale)


@dataclass
class ParityReport:
    n: int
    max_abs_dlogit: float
    mean_abs_dlogit: float
    max_abs_dprob: float
    mean_abs_dprob: float
    agreement: float  # decisions equal at threshold 0.5
    atol: float | None
    rtol: float
    data: str
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"max|Δlogit| {self.max_abs_dlogit:.2e}, max|ΔP| {self.max_abs_dprob:.2e}, "
                f"agreement {self.agreement:.3f} (n={self.n}, {self.data})")


def compare(ref: np.ndarray, got: np.ndarray, atol: float | None, rtol: float = 0.0, data: str = "",
            threshold: float = 0.5) -> ParityReport:
    """Compare logits; raises ShapeMismatchError, never ToleranceError (see :func:`check`)."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if ref.shape != got.shape:
        raise ShapeMismatchError(f"output shape {got.shape} != reference {ref.shape}")
    m = agreement_metrics(ref, got, threshold)
    passed = True if atol is None else bool(np.all(np.abs(ref - got) <= atol + rtol * np.abs(ref)))
    return ParityReport(n=int(ref.shape[0]), mean_abs_dlogit=float(np.abs(ref - got).mean()), atol=atol, rtol=rtol,
                        data=data, passed=passed, **m)


def check(report: ParityReport) -> ParityReport:
    if not report.passed:
        raise ToleranceError(f"parity failed: max|Δlogit| {report.max_abs_dlogit:.3e} > atol {report.atol:g}"
                             f" + rtol {report.rtol:g}·|ref| ({report.summary()})")
    return report
