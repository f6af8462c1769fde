"""The one preprocessing path: DeepGuard's validation transform, shared by predict,
calibration, verification and benchmarks (never a second copy).

albumentations ``LongestMaxSize(size)`` (cv2 INTER_LINEAR, ``round(side * scale)``) +
``PadIfNeeded(size, size, BORDER_CONSTANT, 0)`` centred + ImageNet normalisation, RGB,
NCHW float32.
"""
from __future__ import annotations

import os
from typing import Sequence, Union

import numpy as np
from PIL import Image

from .errors import DataError
from .model.ms_eff_vit import IMAGENET_MEAN, IMAGENET_STD

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]

_MEAN = np.asarray(IMAGENET_MEAN, np.float32)
_STD = np.asarray(IMAGENET_STD, np.float32)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to uint8 RGB HWC; raise DataError if it is not an image."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def letterbox(rgb: np.ndarray, size: int) -> np.ndarray:
    """Longest side -> ``size`` (bilinear), then centre zero-pad to ``size`` x ``size``; uint8 HWC."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    if max(h, w) != size:
        import cv2

        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        h, w = nh, nw
    out = np.zeros((size, size, 3), np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    out[top:top + h, left:left + w] = rgb
    return out


def normalize(u8: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W, 3) letterboxed RGB -> float32 (..., 3, H, W) ImageNet-normalised."""
    x = (u8.astype(np.float32) / 255.0 - _MEAN) / _STD
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def preprocess(image: ImageLike, size: int = 224) -> np.ndarray:
    """One image (path, PIL image, or uint8 RGB HWC array) -> float32 (3, size, size)."""
    if isinstance(image, (str, os.PathLike)):
        rgb = load_image(image)
    elif isinstance(image, Image.Image):
        rgb = np.asarray(image.convert("RGB"))
    else:
        rgb = np.asarray(image)
        if rgb.dtype != np.uint8:
            raise DataError(f"array images must be uint8 RGB HWC, got {rgb.dtype}")
    return normalize(letterbox(rgb, size))


def preprocess_batch(images: Sequence[ImageLike], size: int = 224) -> np.ndarray:
    """Several images -> float32 (N, 3, size, size)."""
    return np.stack([preprocess(im, size) for im in images]) if images else np.zeros((0, 3, size, size), np.float32)
