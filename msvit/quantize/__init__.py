"""msvit.quantize: calibration-based INT8 with an accuracy guard, for every target.

Pipeline (shared by all targets): calibration images through the model's own
preprocessing -> per-group sensitivity by simulated quantization (cached by weights,
data hash, method and scheme) -> the backend's real quantizer on the chosen layers ->
the guard on held-out images, returning sensitive layers to float until it passes.
"""
from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..model.weights import cache_dir
from .calib import METHODS, CalibrationSet, load_calibration
from .guard import Budget, GuardReport, GuardResult, quantize_with_guard
from .sensitivity import QuantPlan, analyse, group_of

__all__ = ["Budget", "CalibrationSet", "GuardReport", "GuardResult", "METHODS", "QuantPlan", "analyse",
           "budget_from", "group_of", "load_calibration", "plan_for", "quantize_with_guard", "quiet_logger",
           "verify_set",
           "weights_fingerprint"]

#: Facts about a quantization *run* (cache state, per-attempt logs): manifest only, never
#: embedded, so the same inputs give the same artifact bytes.
RUN_ONLY_KEYS = ("attempts", "sensitivity", "plan_cache")

#: Default calibration method per target, chosen by measurement on the real crops (README).
DEFAULT_METHOD = {"onnx": "minmax", "trt": "minmax", "openvino": "minmax", "executorch": "minmax",
                  "coreml": "minmax"}


def weights_fingerprint(model: torch.nn.Module) -> str:
    sha = getattr(model, "weights_sha256", None)
    if sha:
        return sha
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def plan_for(model: torch.nn.Module, calib: CalibrationSet, method: str, budget: float, symmetric_act: bool,
             log: Callable[[str], None] | None = None) -> tuple[QuantPlan, dict[str, Any]]:
    """Sensitivity plan, from the cache when weights, data, method and scheme are unchanged."""
    from .. import __version__

    key_src = json.dumps({"weights": weights_fingerprint(model), "data": calib.sha256, "method": method,
                          "symmetric_act": symmetric_act, "budget": budget, "attn_mode": getattr(model, "attn_mode", ""),
                          "n": len(calib.calib), "msvit": __version__}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
    path = cache_dir() / "quant" / f"plan-{key}.json"
    if path.is_file():
        try:
            return QuantPlan.from_dict(json.loads(path.read_text())), {"plan_cache": "hit", "plan_key": key}
        except (ValueError, TypeError):
            pass  # unreadable cache entry: recompute
    if log:
        log(f"  INT8 sensitivity analysis on {len(calib.calib)} calibration images ({method})...")
    plan = analyse(model, calib.calib.x, method=method, budget=budget, symmetric_act=symmetric_act,
                   progress=log is not None)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(plan.to_dict()))
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache only costs time
    return plan, {"plan_cache": "miss", "plan_key": key}


@contextmanager
def quiet_logger(name: str | None, level: int) -> Iterator[None]:
    """Raise one logger's level for the duration (quantizers log per op, or advice we already follow)."""
    lg = logging.getLogger(name)
    old = lg.level
    lg.setLevel(level)
    try:
        yield
    finally:
        lg.setLevel(old)


def budget_from(options: dict[str, Any]) -> Budget:
    b = Budget()
    for k in ("min_agreement", "max_auc_drop", "max_prob_delta", "max_dprob"):
        if options.get(k) is not None:
            setattr(b, k, float(options[k]))
    return b


def verify_set(calib: CalibrationSet, options: dict[str, Any], size: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The guard's data: --verify-data, else the held-out split, else (tiny sets) the calibration images."""
    from ..data import ImageSet, load_images

    v = options.get("verify_data")
    if isinstance(v, ImageSet):
        return v.x, v.labels, f"{len(v)} images from {v.source}"
    if v is not None:
        s = load_images(v, size)
        return s.x, s.labels, f"{len(s)} images from {v}"
    if calib.holdout is not None:
        h = calib.holdout
        return h.x, h.labels, f"{len(h)} held-out calibration images"
    c = calib.calib
    return c.x, c.labels, f"{len(c)} calibration images (too few to hold any out)"
