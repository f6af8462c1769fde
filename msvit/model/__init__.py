"""The MS-Eff-ViT model family: modules, registry, weights and accounting.

Import order inside the package (each module imports only those before it):
``variants`` -> ``info`` -> ``layers`` -> ``weights`` -> ``ms_eff_vit`` -> ``factory`` -> ``profile``.
"""
from .info import ModelInfo, model_info
from .layers import ATTN_MODES, MBConvBlock, PatchEmbed, ViTBlock, ViTLayer, frozen_weights
from .factory import create_model, default_cfgs, ms_eff_vit_b0, ms_eff_vit_b5
from .ms_eff_vit import MultiScaleEffViT
from .profile import B0_BUDGET_GMACS, Profile, count_params, profile
from .variants import DATASETS, IMAGENET_MEAN, IMAGENET_STD, VARIANTS, release_url
from .weights import cache_dir, download_weights, load_checkpoint, read_state_dict, sha256_file

__all__ = [
    "ATTN_MODES", "B0_BUDGET_GMACS", "DATASETS", "IMAGENET_MEAN", "IMAGENET_STD", "MBConvBlock",
    "ModelInfo", "MultiScaleEffViT", "PatchEmbed", "Profile", "VARIANTS", "ViTBlock", "ViTLayer", "cache_dir",
    "count_params", "create_model", "default_cfgs", "download_weights", "frozen_weights", "load_checkpoint",
    "ms_eff_vit_b0", "ms_eff_vit_b5", "model_info", "profile", "read_state_dict", "release_url", "sha256_file",
]
