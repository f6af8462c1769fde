"""msvit: ship MS-Eff-ViT deepfake detectors to ONNX, TensorRT, Core ML, TorchScript-mobile, OpenVINO,
ExecuTorch, LiteRT and ONNX Runtime Mobile.

``import msvit`` registers ``ms_eff_vit_b0`` / ``ms_eff_vit_b5`` with timm.
"""
from . import offline  # noqa: F401  (first: telemetry off before any backend can load, see offline.py)
from .model import (  # noqa: F401  (import registers the models with timm)
    MultiScaleEffViT,
    create_model,
    load_checkpoint,
    ms_eff_vit_b0,
    ms_eff_vit_b5,
    profile,
)
from .predict import Detector
from .preprocess import letterbox, load_image, preprocess, preprocess_batch

from .version import __version__

__all__ = [
    "Detector", "MultiScaleEffViT", "__version__", "create_model", "letterbox", "load_checkpoint", "load_image",
    "ms_eff_vit_b0", "ms_eff_vit_b5", "preprocess", "preprocess_batch", "profile",
]
