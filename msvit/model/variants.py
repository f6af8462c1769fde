"""What defines each MS-Eff-ViT variant and where its weights come from: plain data, no torch.

The bottom of ``msvit.model``: :mod:`.weights` (variant sniffing of checkpoints) and
:mod:`.ms_eff_vit` (the model and its timm registration) both import from here, and this
module imports neither, so the two never import each other.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Where DeepGuard publishes its checkpoints. ``MSVIT_RELEASE_BASE`` points msvit at a
# mirror (air-gapped sites, tests serving files on 127.0.0.1).
RELEASE_BASE = "https://github.com/HanMoonSub/DeepGuard/releases/download/v0.1.0"
DATASETS = ("celeb_df_v2", "ff++")


@dataclass(frozen=True)
class VariantArgs:
    backbone: str
    img_size: int
    l_dim: int
    h_dim: int
    l_depth: int
    h_depth: int
    l_heads: int
    h_heads: int
    l_ratio: float
    h_ratio: float
    h_drop: float
    l_attn_drop: float
    h_drop_path: float
    l_block_idx: int = 1
    h_block_idx: int = 6


VARIANTS: dict[str, VariantArgs] = {
    "ms_eff_vit_b0": VariantArgs("tf_efficientnet_b0", 224, 120, 160, 2, 4, 4, 4, 4, 6, 0.05, 0.05, 0.05),
    "ms_eff_vit_b5": VariantArgs("tf_efficientnet_b5", 384, 320, 512, 3, 6, 8, 8, 4, 4, 0.1, 0.1, 0.1),
}


def release_url(variant: str, dataset: str) -> str:
    """URL of DeepGuard's published checkpoint for ``variant`` trained on ``dataset``."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    base = os.environ.get("MSVIT_RELEASE_BASE", RELEASE_BASE).rstrip("/")
    return f"{base}/{variant}_{dataset}.bin"
