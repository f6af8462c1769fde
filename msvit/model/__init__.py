"""The MS-Eff-ViT model family: modules, registry, weights and accounting."""
from .layers import ATTN_MODES, MBConvBlock, PatchEmbed, ViTBlock, ViTLayer
from .ms_eff_vit import (
    DATASETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VARIANTS,
    MultiScaleEffViT,
    create_model,
    default_cfgs,
    ms_eff_vit_b0,
    ms_eff_vit_b5,
    release_url,
)
from .profile import B0_BUDGET_GMACS, Profile, count_params, profile
from .weights import cache_dir, download_weights, load_checkpoint, read_state_dict, sha256_file

__all__ = [
    "ATTN_MODES", "B0_BUDGET_GMACS", "DATASETS", "IMAGENET_MEAN", "IMAGENET_STD", "MBConvBlock",
    "MultiScaleEffViT", "PatchEmbed", "Profile", "VARIANTS", "ViTBlock", "ViTLayer", "cache_dir",
    "count_params", "create_model", "default_cfgs", "download_weights", "load_checkpoint",
    "ms_eff_vit_b0", "ms_eff_vit_b5", "profile", "read_state_dict", "release_url", "sha256_file",
]
