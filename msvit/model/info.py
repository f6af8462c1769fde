"""What msvit needs to know about a model, as one typed record (instead of ``getattr`` with
defaults wherever a layer needs the input size or the weights' hash)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .variants import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class ModelInfo:
    variant: str  # ms_eff_vit_b0 | ms_eff_vit_b5 (or the class name of a foreign module)
    img_size: int
    attn_mode: str  # deepguard | applied ("" for a foreign module)
    weights_path: str | None = None
    weights_sha256: str = ""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def model_info(model: Any) -> ModelInfo:
    """The facts of an msvit model (its ``info``), or what a plain ``nn.Module`` implies
    (224 px, ImageNet normalisation, unknown weights)."""
    info = getattr(model, "info", None)
    if isinstance(info, ModelInfo):
        return info
    return ModelInfo(str(getattr(model, "variant", None) or type(model).__name__), int(getattr(model, "img_size", 224)),
                     str(getattr(model, "attn_mode", "") or ""), getattr(model, "weights_path", None),
                     getattr(model, "weights_sha256", "") or "")
