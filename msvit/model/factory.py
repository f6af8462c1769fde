"""The MS-Eff-ViT variants registered with timm (``timm.create_model("ms_eff_vit_b0")`` after
``import msvit``): their pretrained configs and the factories that build a
:class:`~msvit.model.ms_eff_vit.MultiScaleEffViT` and load its weights."""
import os
from typing import Any, Union

import torch.nn as nn
from timm.models import build_model_with_cfg, register_model

from ..errors import MsvitError
from .ms_eff_vit import MultiScaleEffViT
from .variants import IMAGENET_MEAN, IMAGENET_STD, VARIANTS, release_url
from .weights import download_weights

__all__ = ["create_model", "default_cfgs", "ms_eff_vit_b0", "ms_eff_vit_b5"]


def _cfg(variant: str, **kwargs: Any) -> dict[str, Any]:
    size = VARIANTS[variant].img_size
    return {
        "url": "",
        "num_classes": 1,
        "input_size": (3, size, size),
        "pool_size": (size // 32, size // 32),  # forward_features() map: the H-ViT token grid
        "crop_pct": 1.0,
        # timm's nearest transform to DeepGuard's letterbox (resize the longest side, pad);
        # msvit.preprocess is the exact one (black padding, cv2 bilinear).
        "crop_mode": "border",
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


def _create(variant: str, pretrained: bool, dataset: str, weights: Union[str, "os.PathLike[str]", None],
            **kwargs: Any) -> nn.Module:
    if pretrained and weights is not None:
        raise ValueError("pass either pretrained=True or weights=PATH, not both")
    a = VARIANTS[variant]
    kwargs.pop("pretrained_cfg", None)  # timm.create_model passes its own; we resolve ours below
    overlay = kwargs.pop("pretrained_cfg_overlay", None) or {}
    kwargs.pop("cache_dir", None)
    if overlay.get("file") and weights is None:  # timm's way to point at a local file
        weights, pretrained = overlay["file"], False
    features_only = kwargs.pop("features_only", False)
    feature_cfg = {"out_indices": tuple(range(4)), "feature_cls": "getter"}
    for k in ("out_indices", "feature_cls"):
        if k in kwargs:
            feature_cfg[k] = kwargs.pop(k)
    if features_only and feature_cfg["feature_cls"] != "getter":
        raise ValueError(f"{variant} provides features_only through forward_intermediates: "
                         f"feature_cls must be 'getter', got {feature_cfg['feature_cls']!r}")
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
    # Weights are read by msvit (cache, progress bar, integrity, variant/key checks, typed
    # errors) through timm's ``custom_load`` hook, MultiScaleEffViT.load_pretrained, so
    # timm loads them before it wraps a features_only model, as for its own models.
    path = download_weights(cfg["url"]) if pretrained else weights
    if path is not None:
        cfg.update(file=os.fspath(path), custom_load=True)
    model = build_model_with_cfg(
        MultiScaleEffViT, variant, pretrained=path is not None, pretrained_cfg=cfg, kwargs_filter=("in_chans",),
        features_only=features_only, feature_cfg=feature_cfg, **model_kwargs)
    net = model.model if features_only else model  # features_only: timm's FeatureGetterNet around it
    net.variant = variant
    if path is None:
        net.weights_path = None
    if features_only:  # the wrapper answers the same provenance questions
        model.variant = variant
        for k in ("weights_path", "weights_sha256"):
            if hasattr(net, k):
                setattr(model, k, getattr(net, k))
    return model.eval()


@register_model
def ms_eff_vit_b0(pretrained: bool = False, dataset: str = "celeb_df_v2",
                  weights: Union[str, "os.PathLike[str]", None] = None, **kwargs: Any) -> MultiScaleEffViT:
    """MS-Eff-ViT b0 ("Fast"): tf_efficientnet_b0 backbone, 224x224 input.

    ``weights=PATH`` loads a local checkpoint; ``pretrained=True`` downloads DeepGuard's
    release for ``dataset`` ("celeb_df_v2" | "ff++") once into the cache. Extra kwargs go
    to :class:`MultiScaleEffViT` (e.g. ``attn_mode="applied"``); timm's ``features_only``,
    ``out_indices``, ``num_classes``, ``global_pool``, ``drop_rate``, ``drop_path_rate`` work.
    """
    return _create("ms_eff_vit_b0", pretrained, dataset, weights, **kwargs)


@register_model
def ms_eff_vit_b5(pretrained: bool = False, dataset: str = "celeb_df_v2",
                  weights: Union[str, "os.PathLike[str]", None] = None, **kwargs: Any) -> MultiScaleEffViT:
    """MS-Eff-ViT b5 ("Pro"): tf_efficientnet_b5 backbone, 384x384 input. See :func:`ms_eff_vit_b0`."""
    return _create("ms_eff_vit_b5", pretrained, dataset, weights, **kwargs)


def create_model(name: str, **kwargs: Any) -> MultiScaleEffViT:
    """Build a registered variant by name with a clear error for unknown names."""
    if name not in VARIANTS:
        raise MsvitError(f"unknown model {name!r}; choose one of: {', '.join(VARIANTS)}")
    return globals()[name](**kwargs)
