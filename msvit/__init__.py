"""msvit: ship MS-Eff-ViT deepfake detectors to TensorRT, Core ML, ONNX, OpenVINO, ExecuTorch and mobile.

``import msvit`` registers ``ms_eff_vit_b0`` / ``ms_eff_vit_b5`` with timm.
"""
from .model import (  # noqa: F401  (import registers the models with timm)
    MultiScaleEffViT,
    create_model,
    load_checkpoint,
    ms_eff_vit_b0,
    ms_eff_vit_b5,
    profile,
)
from .preprocess import letterbox, load_image, preprocess

__version__ = "0.1.0"

__all__ = [
    "MultiScaleEffViT", "__version__", "create_model", "letterbox", "load_checkpoint", "load_image",
    "ms_eff_vit_b0", "ms_eff_vit_b5", "preprocess", "profile",
]
