"""Typed INT8 settings: one name per quantity, the same in code, CLI flags, JSON and docs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from .guard import BOUND_HORIZON, BOUND_METHODS, FLOAT_GATES, FLOOR, MIN_VERIFY_IMAGES, Gate
from .sensitivity import KERNEL_ROOM


@dataclass
class Int8Options:
    """How INT8 is chosen and judged (``msvit-export --calib-method --max-dprob ...``)."""

    calib_method: str | None = None  # None: the target's measured default
    min_agreement: float = 0.99  # gate: decisions equal to FP32 at the threshold
    max_auc_drop: float = 0.005  # gate: AUC drop vs FP32 (labelled verification data)
    #: gate: on the bound of max |P(fake) INT8 - P(fake) FP32| for unseen images; or "floor": the
    #: artifact keeps decisions - max |ΔP| and flips within FP32's own noise floor (guard.Gate)
    max_dprob: float | str = 0.05
    bound_method: str = "tail"  # how that bound comes from the verification images: tail | max (see guard)
    bound_horizon: int = BOUND_HORIZON  # tail: the bound is on the |ΔP| one unseen image in this many reaches
    min_verify_images: int = MIN_VERIFY_IMAGES  # fewer verification images: warned, "weakly verified"
    # plan: the simulated |ΔP| bound the chosen INT8 layers may add; None: max_dprob / KERNEL_ROOM
    # (room for the real kernels' extra error, measured: see sensitivity.KERNEL_ROOM)
    sensitivity_dprob: float | None = None
    max_attempts: int = 4  # guard: builds, each returning the most sensitive INT8 group to float
    verify_data: Any = None  # folder / CSV / ImageSet, verified on *in addition to* every calibration image
    #: how bf16/fp16 execution (alone, or the float groups of an INT8 plan) is judged: ``floor``
    #: (FP32's input-rounding noise on the same images, guard.float_gate) or ``int8`` (the gate above)
    float_gate: str = "floor"
    #: INT8 plans' max |ΔP| must also stay within max_dprob on the stress view of the verification
    #: images (contrast x1.5: activations beyond the calibrated ranges, see quantize.stress); False: skip
    stress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.max_dprob, str) and self.max_dprob != FLOOR:
            raise UsageError(f"--max-dprob {self.max_dprob!r}: use a number in [0, 1] or {FLOOR!r}")
        if self.bound_method not in BOUND_METHODS:
            raise UsageError(f"--bound-method {self.bound_method!r}: use one of {', '.join(BOUND_METHODS)}")
        if self.float_gate not in FLOAT_GATES:
            raise UsageError(f"--float-gate {self.float_gate!r}: use one of {', '.join(FLOAT_GATES)}")
        if self.bound_horizon < 1 or self.min_verify_images < 0:
            raise UsageError("--bound-horizon must be >= 1 and --min-verify-images >= 0")

    @property
    def sensitivity_budget(self) -> float:
        """``sensitivity_dprob``, or by default the gate with room left for the real kernels
        (the floor gate: its measured floor, so call :meth:`plan_budget` with the measured gate)."""
        return self.plan_budget(self.gate)

    def plan_budget(self, gate: Gate) -> float:
        return self.sensitivity_dprob if self.sensitivity_dprob is not None else gate.dprob_limit / KERNEL_ROOM

    @property
    def gate(self) -> Gate:
        return Gate(self.min_agreement, self.max_auc_drop, self.max_dprob, self.bound_method, self.bound_horizon,
                    self.min_verify_images)
