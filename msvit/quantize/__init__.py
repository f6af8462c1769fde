"""msvit.quantize: calibration-based INT8 with an accuracy guard, for every target.

Pipeline (shared by all targets, :func:`run_int8`): calibration images through the model's
own preprocessing -> per-group sensitivity by simulated quantization (cached by weights,
data hash, method and scheme) -> the backend's real quantizer on the chosen layers (a small
:class:`Int8Adapter` per backend) -> the guard on held-out images, returning sensitive
layers to float until it passes.
"""
from __future__ import annotations

from .calib import METHODS, CalibrationSet, load_calibration
from .floor import NoiseFloor, noise_floor
from .guard import Gate, GuardReport, GuardResult, quantize_with_guard
from .options import Int8Options
from .runner import (RUN_ONLY_KEYS, Int8Adapter, Int8Job, Int8Result, plan_for, quiet_logger, run_int8, verify_set,
                     weights_fingerprint)
from .sensitivity import QuantPlan, analyse, group_of

__all__ = ["CalibrationSet", "Gate", "GuardReport", "GuardResult", "Int8Adapter", "Int8Job", "Int8Options",
           "Int8Result", "METHODS", "NoiseFloor", "QuantPlan", "RUN_ONLY_KEYS", "analyse", "group_of", "load_calibration",
           "noise_floor", "plan_for", "quantize_with_guard", "quiet_logger", "run_int8", "verify_set", "weights_fingerprint"]
