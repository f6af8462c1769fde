"""Calibration data: a folder/manifest of face crops through the model's own preprocessing,
a deterministic split into calibration and held-out verification images, and the
hash that keys every cache and is recorded in every INT8 artifact."""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import ImageSet, load_images
from ..errors import CalibrationError, DataError

MAX_CALIB = 512
MIN_CALIB = 8  # below this activation ranges are noise: refuse
WARN_CALIB = 100
METHODS = ("minmax", "entropy", "percentile")


@dataclass
class CalibrationSet:
    calib: ImageSet  # used to compute activation ranges
    holdout: ImageSet | None  # not used for calibration: the accuracy guard's default data
    source: str
    sha256: str  # of every file used for calibration (sorted names + bytes)
    skipped: list[tuple[str, str]]

    def describe(self) -> dict[str, Any]:
        return {"calib_source": self.source, "calib_size": len(self.calib), "calib_sha256": self.sha256,
                "calib_skipped": len(self.skipped),
                "holdout_size": len(self.holdout) if self.holdout is not None else 0}


def load_calibration(source: str | os.PathLike, size: int = 224, calib_size: int | None = None, seed: int = 0,
                     holdout_fraction: float = 0.2) -> CalibrationSet:
    """Read calibration images; unreadable/non-image files are skipped and counted.

    ``holdout_fraction`` of the images (seeded) are kept out of calibration for the
    accuracy guard, unless the set is too small to spare them.
    """
    if source is None:
        raise CalibrationError("--precision int8 needs calibration images: pass --calib-data DIR")
    if calib_size is not None and calib_size < MIN_CALIB:
        raise CalibrationError(f"--calib-size {calib_size} is too small: INT8 needs at least {MIN_CALIB} images")
    limit = min(calib_size or MAX_CALIB, MAX_CALIB)
    try:  # read enough for `limit` calibration images plus the held-out share
        total = load_images(source, size, limit=math.ceil(limit / (1 - holdout_fraction)), seed=seed)
    except DataError as e:
        raise CalibrationError(f"calibration data unusable: {e}") from None
    skipped = [(str(p), why) for p, why in total.skipped]
    n = len(total)
    if n < MIN_CALIB:
        raise CalibrationError(f"{source}: only {n} readable image(s); INT8 calibration needs at least {MIN_CALIB}"
                               f" (ideally 100-500 face crops)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_hold = int(round(n * holdout_fraction)) if n - int(round(n * holdout_fraction)) >= MIN_CALIB else 0
    hold_idx, cal_idx = sorted(order[:n_hold].tolist()), sorted(order[n_hold:].tolist())
    cal_idx = cal_idx[:limit]
    calib = total.subset(cal_idx)
    holdout = total.subset(hold_idx) if n_hold else None
    if len(calib) < WARN_CALIB:
        warnings.warn(f"calibrating on {len(calib)} images (< {WARN_CALIB}): ranges may not cover real inputs",
                      stacklevel=2)
    return CalibrationSet(calib, holdout, str(source), calib.sha256, skipped)
