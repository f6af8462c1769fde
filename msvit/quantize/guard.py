"""The accuracy guard: an INT8 artifact is judged against FP32 on images it was not
calibrated on, and layers go back to float until it meets the budget (or we say it can't)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..metrics import agreement_metrics, label_metrics
from .sensitivity import QuantPlan

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class Gate:
    """What an INT8 artifact must keep against FP32 on the verification images."""

    min_agreement: float = 0.99
    max_auc_drop: float = 0.005
    max_dprob: float = 0.05  # on the real artifact: a backend kernel can err far beyond the simulation


@dataclass
class GuardReport:
    n: int
    data: str
    agreement: float
    max_abs_dprob: float
    mean_abs_dprob: float
    fp32: dict[str, float | None] | None = None  # acc/auc/log_loss when labels exist
    int8: dict[str, float | None] | None = None
    auc_drop: float | None = None
    passed: bool = False
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        s = f"agreement {self.agreement:.3f}, max|ΔP| {self.max_abs_dprob:.3f}"
        if self.auc_drop is not None:
            s += f", AUC {self.fp32['auc']:.3f}→{self.int8['auc']:.3f}"
        return s + f" (n={self.n}, {self.data})"


def evaluate(fp32_logits: np.ndarray, runner: Runner, x: np.ndarray, labels: np.ndarray | None, gate: Gate,
             data: str) -> GuardReport:
    """Judge ``runner`` (a :class:`~msvit.runtime.Session`, any batch) against FP32 logits."""
    logits = runner(x)
    agr = agreement_metrics(fp32_logits, logits)
    agr.pop("max_abs_dlogit")
    rep = GuardReport(n=len(x), data=data, **agr)
    if labels is not None:
        rep.fp32, rep.int8 = label_metrics(fp32_logits, labels), label_metrics(logits, labels)
        if rep.fp32["auc"] is not None:
            rep.auc_drop = rep.fp32["auc"] - rep.int8["auc"]
    if rep.agreement < gate.min_agreement:
        rep.reasons.append(f"agreement {rep.agreement:.3f} < {gate.min_agreement}")
    if rep.max_abs_dprob > gate.max_dprob:
        rep.reasons.append(f"max|ΔP| {rep.max_abs_dprob:.3f} > {gate.max_dprob}")
    if rep.auc_drop is not None and rep.auc_drop > gate.max_auc_drop:
        rep.reasons.append(f"AUC drop {rep.auc_drop:.4f} > {gate.max_auc_drop}")
    rep.passed = not rep.reasons
    return rep


@dataclass
class GuardResult:
    plan: QuantPlan
    report: GuardReport
    attempts: list[dict[str, Any]]
    runner: Runner
    artifact: Any  # what build() produced for this plan (a path, an in-memory model...)

    def info(self) -> dict[str, Any]:
        return {"quantized_groups": self.plan.quantized, "float_groups": self.plan.float_groups,
                "sensitivity": {g: round(v, 5) for g, v in self.plan.sensitivity.items()},
                "guard": self.report.to_dict(), "guard_passed": self.report.passed, "attempts": self.attempts}


def quantize_with_guard(model: torch.nn.Module, plan: QuantPlan, build: Callable[[QuantPlan, int], tuple[Runner, Any]],
                        verify_x: np.ndarray, verify_labels: np.ndarray | None, verify_name: str, gate: Gate,
                        max_attempts: int = 4, log: Callable[[str], None] | None = None) -> GuardResult:
    """Build, judge, and on failure return the most sensitive quantized group to float; repeat.

    ``build(plan, attempt)`` must not overwrite earlier attempts' artifacts: the best one
    (passing, else smallest max|ΔP|) is returned, marked failing if none passed.
    """
    with torch.no_grad():
        ref = model(torch.from_numpy(verify_x)).numpy()
    attempts: list[dict[str, Any]] = []
    best: GuardResult | None = None
    for i in range(max_attempts):
        runner, artifact = build(plan, i)
        rep = evaluate(ref, runner, verify_x, verify_labels, gate, verify_name)
        attempts.append({"quantized_groups": len(plan.quantized), "float_groups": list(plan.float_groups),
                         "agreement": rep.agreement, "max_abs_dprob": rep.max_abs_dprob, "auc_drop": rep.auc_drop,
                         "passed": rep.passed})
        if log:
            log(f"  INT8 attempt {i + 1}: {len(plan.quantized)} groups int8 · {rep.summary()}"
                + ("" if rep.passed else f" ✗ {'; '.join(rep.reasons)}"))
        cur = GuardResult(plan, rep, attempts, runner, artifact)
        if best is None or (rep.passed and not best.report.passed) or \
                (rep.passed == best.report.passed and rep.max_abs_dprob < best.report.max_abs_dprob):
            best = cur
        if rep.passed or not plan.quantized:
            break
        worst = max(plan.quantized, key=lambda g: plan.sensitivity[g])
        plan = plan.keep_float(worst)
    return best


def dprob_bound(dprob: np.ndarray) -> dict[str, Any]:  # provisional
    d = np.asarray(dprob, np.float64)
    return {"bound": float(d.max()), "method": "max", "n": len(d)}
