"""MS-Eff-ViT: EfficientNet features at two scales, each refined by a small ViT, fused by an MLP head.

A rebuild of DeepGuard 1.1.1's ``MultiScaleEffViT`` with the same state-dict layout,
registered with timm (``timm.create_model("ms_eff_vit_b0")`` after ``import msvit``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import timm
import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from timm.models import build_model_with_cfg, register_model

from .layers import ATTN_MODES, AttnMode, ViTLayer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# DeepGuard's block index -> timm features_only index (5 stages at strides 2..32).
_FEATURE_IDX = {0: 0, 1: 1, 2: 2, 4: 3, 6: 4}

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


def _cfg(variant: str, **kwargs: Any) -> dict[str, Any]:
    size = VARIANTS[variant].img_size
    return {
        "url": "",
        "num_classes": 1,
        "input_size": (3, size, size),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "fixed_input_size": True,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "first_conv": "feat_extractor.backbone.conv_stem",
        "classifier": "head.4",
        "label_names": ("real", "fake"),
        **kwargs,
    }


default_cfgs: dict[str, dict[str, Any]] = {v: _cfg(v) for v in VARIANTS}


class FeatExtractor(nn.Module):
    """timm EfficientNet with ``features_only``; kept as its own module for DeepGuard's key prefix."""

    def __init__(self, backbone: str, pretrained_backbone: bool = False) -> None:
        super().__init__()
        self.backbone = timm.create_model(backbone, pretrained=pretrained_backbone, features_only=True)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(x)


class MultiScaleEffViT(nn.Module):
    """Multi-scale EfficientNet + ViT binary classifier; one logit, sigmoid = P(fake).

    Args:
        attn_mode: ``"deepguard"`` (default) reproduces DeepGuard 1.1.1's ViTBlock, which
            discards its attention output, and which every published checkpoint was
            trained with; ``"applied"`` uses the standard ``x + attn(norm1(x))`` block.
        pretrained_backbone: load timm's ImageNet backbone weights (needs the network);
            off by default, checkpoints carry the backbone anyway.
    """

    def __init__(
        self,
        backbone: str = "tf_efficientnet_b0",
        img_size: int = 224,
        l_block_idx: int = 1,
        h_block_idx: int = 6,
        l_dim: int = 120,
        h_dim: int = 160,
        l_depth: int = 2,
        h_depth: int = 4,
        l_heads: int = 4,
        h_heads: int = 4,
        l_ratio: float = 4.0,
        h_ratio: float = 6.0,
        l_drop: float = 0.0,
        h_drop: float = 0.0,
        l_attn_drop: float = 0.0,
        h_attn_drop: float = 0.0,
        l_drop_path: float = 0.0,
        h_drop_path: float = 0.0,
        num_classes: int = 1,
        pool: str = "avg",
        attn_mode: AttnMode = "deepguard",
        pretrained_backbone: bool = False,
    ) -> None:
        super().__init__()
        if attn_mode not in ATTN_MODES:
            raise ValueError(f"attn_mode must be one of {ATTN_MODES}, got {attn_mode!r}")
        if pool not in ("avg", "cls"):
            raise ValueError(f"pool must be 'avg' or 'cls', got {pool!r}")
        self.pool = pool
        self.attn_mode = attn_mode
        self.img_size = img_size
        self.num_classes = num_classes
        self.feat_extractor = FeatExtractor(backbone, pretrained_backbone)
        info = self.feat_extractor.backbone.feature_info
        self.l_idx, self.h_idx = _FEATURE_IDX[l_block_idx], _FEATURE_IDX[h_block_idx]

        def branch(block_idx: int, fidx: int, dim: int, depth: int, heads: int, ratio: float,
                   drop: float, attn_drop: float, drop_path: float) -> ViTLayer:
            red = info[fidx]["reduction"]
            return ViTLayer(info[fidx]["num_chs"], block_idx, (img_size // red, img_size // red), dim, depth,
                            heads, ratio, drop, attn_drop, drop_path, attn_mode)

        self.l_vit = branch(l_block_idx, self.l_idx, l_dim, l_depth, l_heads, l_ratio, l_drop, l_attn_drop, l_drop_path)
        self.h_vit = branch(h_block_idx, self.h_idx, h_dim, h_depth, h_heads, h_ratio, h_drop, h_attn_drop, h_drop_path)
        fusion = l_dim + h_dim
        self.head = (
            nn.Sequential(nn.LayerNorm(fusion), nn.Linear(fusion, fusion // 2), nn.GELU(), nn.Dropout(0.1),
                          nn.Linear(fusion // 2, num_classes))
            if num_classes > 0 else nn.Identity()
        )
        for m in self.head.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay_keywords(self) -> set[str]:
        return {"pos_embed", "cls_token", "bn", "norm"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.feat_extractor(x)
        l_out = self.l_vit(feats[self.l_idx])
        h_out = self.h_vit(feats[self.h_idx])
        if self.pool == "cls":
            return torch.cat([l_out[:, 0], h_out[:, 0]], dim=-1)
        return torch.cat([l_out[:, 1:].mean(dim=1), h_out[:, 1:].mean(dim=1)], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _create(variant: str, pretrained: bool, dataset: str, weights: str | os.PathLike | None,
            **kwargs: Any) -> MultiScaleEffViT:
    if pretrained and weights is not None:
        raise ValueError("pass either pretrained=True or weights=PATH, not both")
    a = VARIANTS[variant]
    kwargs.pop("pretrained_cfg", None)  # timm.create_model passes its own; we resolve ours below
    kwargs.pop("pretrained_cfg_overlay", None)
    kwargs.pop("cache_dir", None)
    model_kwargs = dict(
        backbone=a.backbone, img_size=a.img_size, l_block_idx=a.l_block_idx, h_block_idx=a.h_block_idx,
        l_dim=a.l_dim, h_dim=a.h_dim, l_depth=a.l_depth, h_depth=a.h_depth, l_heads=a.l_heads,
        h_heads=a.h_heads, l_ratio=a.l_ratio, h_ratio=a.h_ratio, h_drop=a.h_drop,
        l_attn_drop=a.l_attn_drop, h_drop_path=a.h_drop_path,
    )
    model_kwargs.update(kwargs)
    cfg = dict(default_cfgs[variant])
    if pretrained:
        cfg["url"] = release_url(variant, dataset)
    # Weights are loaded by msvit (cache, progress bar, integrity and variant checks),
    # never by timm's hub loader, so build_model_with_cfg always gets pretrained=False.
    model = build_model_with_cfg(MultiScaleEffViT, variant, pretrained=False, pretrained_cfg=cfg,
                                 kwargs_filter=("in_chans",), **model_kwargs)
    model.variant = variant
    model.weights_path = None
    if pretrained or weights is not None:
        from .weights import download_weights, load_checkpoint

        path = download_weights(cfg["url"]) if pretrained else weights
        load_checkpoint(model, path)
    return model.eval()


@register_model
def ms_eff_vit_b0(pretrained: bool = False, dataset: str = "celeb_df_v2",
                  weights: str | os.PathLike | None = None, **kwargs: Any) -> MultiScaleEffViT:
    """MS-Eff-ViT b0 ("Fast"): tf_efficientnet_b0 backbone, 224x224 input.

    ``weights=PATH`` loads a local checkpoint; ``pretrained=True`` downloads DeepGuard's
    release for ``dataset`` ("celeb_df_v2" | "ff++") once into the cache. Extra kwargs go
    to :class:`MultiScaleEffViT` (e.g. ``attn_mode="applied"``).
    """
    return _create("ms_eff_vit_b0", pretrained, dataset, weights, **kwargs)


@register_model
def ms_eff_vit_b5(pretrained: bool = False, dataset: str = "celeb_df_v2",
                  weights: str | os.PathLike | None = None, **kwargs: Any) -> MultiScaleEffViT:
    """MS-Eff-ViT b5 ("Pro"): tf_efficientnet_b5 backbone, 384x384 input. See :func:`ms_eff_vit_b0`."""
    return _create("ms_eff_vit_b5", pretrained, dataset, weights, **kwargs)


def create_model(name: str, **kwargs: Any) -> MultiScaleEffViT:
    """Build a registered variant by name with a clear error for unknown names."""
    if name not in VARIANTS:
        from ..errors import MsvitError

        raise MsvitError(f"unknown model {name!r}; choose one of: {', '.join(VARIANTS)}")
    return globals()[name](**kwargs)
