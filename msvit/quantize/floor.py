"""The model's own noise floor: how far FP32 PyTorch's P(fake) moves, and how many decisions
flip, when its uint8 letterboxed input gets uniform ±0.5 pixel-step noise (the rounding any
8-bit image already carries), worst of a few seeds, on the images an artifact is judged on.

A reduced-precision artifact *keeps decisions* when, on the same images, its max |ΔP| vs FP32
is within the floor's, it flips no more decisions than the floor does, and AUC drops by at most
the gate's ``max_auc_drop`` (``Gate(max_dprob="floor")``, ``msvit-export --max-dprob floor``).
A fixed |ΔP| gate tighter than this floor cannot be met by any artifact (issue 12): on the
demo checkpoint 8-bit input rounding alone moves P(fake) by up to 0.040.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..model.variants import IMAGENET_MEAN, IMAGENET_STD

#: ±this many pixel steps of uniform noise: an 8-bit image's own rounding
FLOOR_AMPLITUDE = 0.5
FLOOR_SEEDS = 3


@dataclass
class NoiseFloor:
    """FP32's own |ΔP| and flips under sub-pixel input noise (each the worst over ``seeds``)."""

    max_abs_dprob: float
    flips: int
    n: int
    amplitude: float = FLOOR_AMPLITUDE
    seeds: int = FLOOR_SEEDS
    per_seed: list[dict[str, float]] = field(default_factory=list)  # max_abs_dprob, mean_abs_dprob, flips

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"noise floor: FP32 under uniform ±{self.amplitude:g} pixel-step input noise, worst of "
                f"{self.seeds} seeds on the same {self.n} images: max|ΔP| {self.max_abs_dprob:.4f}, "
                f"{self.flips} flip{'s' if self.flips != 1 else ''}")

    def ratio(self, max_abs_dprob: float) -> float:
        """error / floor (1.0: as large as the model's own input-rounding noise)."""
        return float(max_abs_dprob) / max(self.max_abs_dprob, 1e-12)


def _as_normalised(x: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 NCHW (what the model takes) and one pixel step in that space, per channel.

    ``x`` is either letterboxed uint8 RGB NHWC pixels, or the float32 NCHW tensor msvit's
    preprocessing makes of them (ImageNet normalisation), so the noise is the same pixel step."""
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    t = torch.as_tensor(np.asarray(x))
    if t.dtype == torch.uint8:
        if t.ndim != 4 or t.shape[-1] != 3:
            raise ValueError(f"uint8 images must be NHWC RGB, got shape {tuple(t.shape)}")
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        t = (t.permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    elif t.ndim != 4 or t.shape[1] != 3:
        raise ValueError(f"float images must be normalised NCHW, got shape {tuple(t.shape)}")
    return t.float(), (1.0 / 255.0) / std


@torch.no_grad()
def noise_floor(model: torch.nn.Module, x: np.ndarray | torch.Tensor, amplitude: float = FLOOR_AMPLITUDE,
                seeds: int = FLOOR_SEEDS, batch: int = 32) -> NoiseFloor:
    """FP32 ``model``'s max |ΔP| and decision flips (P >= 0.5: fake) under uniform ±``amplitude``
    pixel-step noise on ``x`` (uint8 NHWC letterboxed images or their normalised float32 NCHW),
    worst of ``seeds`` seeds (0..seeds-1, deterministic). The noise is continuous, not
    re-rounded: it stands for the rounding the 8-bit image already went through."""
    if amplitude <= 0 or seeds < 1:
        raise ValueError("noise_floor needs amplitude > 0 and seeds >= 1")
    xt, step = _as_normalised(x)
    if len(xt) == 0:
        raise ValueError("noise_floor needs at least one image")
    model = model.eval()

    def probs(inp: torch.Tensor) -> np.ndarray:
        return torch.cat([torch.sigmoid(model(inp[i:i + batch]).float()).reshape(-1)
                          for i in range(0, len(inp), batch)]).double().numpy()

    ref = probs(xt)
    per_seed = []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        noise = (torch.rand(xt.shape, generator=g) * 2 - 1) * amplitude * step
        p = probs(xt + noise)
        d = np.abs(p - ref)
        per_seed.append({"max_abs_dprob": float(d.max()), "mean_abs_dprob": float(d.mean()),
                         "flips": int(np.sum((p >= 0.5) != (ref >= 0.5)))})
    return NoiseFloor(max(s["max_abs_dprob"] for s in per_seed), max(int(s["flips"]) for s in per_seed), len(xt),
                      amplitude, seeds, per_seed)
