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
from .model.variants import IMAGENET_MEAN, IMAGENET_STD

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]

_MEAN = np.asarray(IMAGENET_MEAN, np.float32)
_STD = np.asarray(IMAGENET_STD, np.float32)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to uint8 RGB HWC; raise DataError if it is not a usable image.

    Applies the EXIF orientation (as cameras and phones mean it, and as ``cv2.imread`` does);
    16-bit images keep their top 8 bits (not clipped to white); grayscale, palette, CMYK and
    other modes become RGB; transparency is composited on black; multi-frame files give their
    first frame. Images over PIL's decompression-bomb limit fail with their size in the message.
    """
    try:
        with Image.open(path) as im:
            return pil_to_rgb(im)
    except Image.DecompressionBombError as e:
        raise DataError(f"cannot read image {path}: {e} (PIL.Image.MAX_IMAGE_PIXELS is "
                        f"{Image.MAX_IMAGE_PIXELS} pixels; downscale the image first)") from None
    except MemoryError:
        raise DataError(f"cannot read image {path}: not enough memory to decode it") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """A PIL image of any mode -> uint8 RGB HWC, EXIF orientation applied (see :func:`load_image`)."""
    from PIL import ImageOps

    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
    im.load()
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a corrupt EXIF block: keep the pixels as stored
        pass
    mode = im.mode
    if mode in ("RGB",):
        return np.asarray(im)
    if mode.startswith("I") or mode == "F":  # 16/32-bit integer or float single channel
        return gray_to_rgb(_to_u8(np.asarray(im), mode))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info) \
            or (mode in ("L", "RGB", "1") and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"))
        return composite_on_black(rgba)
    if mode == "CMYK":
        return _cmyk_to_rgb(im)
    return np.asarray(im.convert("RGB"))


def _to_u8(a: np.ndarray, mode: str) -> np.ndarray:
    """Single-channel 16/32-bit integer or float pixels -> uint8. 16-bit keeps the top 8 bits
    (as PIL does for 16-bit RGB PNGs and OpenCV for any 16-bit image); float in [0, 1] is x255."""
    if a.size == 0:
        return a.astype(np.uint8)
    if mode == "F" or a.dtype.kind == "f":
        a = np.nan_to_num(a.astype(np.float32))
        if float(a.max()) <= 1.0:
            a = a * 255.0
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    a = a.astype(np.int64)
    if int(a.max()) <= 255 and mode not in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.clip(a, 0, 255).astype(np.uint8)  # 8-bit values stored in a 32-bit mode
    return (np.clip(a, 0, 65535) >> 8).astype(np.uint8)


def _cmyk_to_rgb(im: Image.Image) -> np.ndarray:
    """CMYK (print JPEGs) -> RGB, through the embedded ICC profile when there is one."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            import io

            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            return np.asarray(ImageCms.profileToProfile(im, src, dst, outputMode="RGB"))
        except Exception:  # a broken profile: fall back to the plain conversion
            pass
    return np.asarray(im.convert("RGB"))


def gray_to_rgb(a: np.ndarray) -> np.ndarray:
    """uint8 HxW (or HxWx1) -> uint8 HxWx3."""
    a = a.reshape(a.shape[:2])
    return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))


def composite_on_black(rgba: np.ndarray) -> np.ndarray:
    """uint8 HxWx4 RGBA -> uint8 HxWx3 RGB over a black background."""
    rgb = rgba[..., :3].astype(np.uint16)
    a = rgba[..., 3:4].astype(np.uint16)
    return ((rgb * a + 127) // 255).astype(np.uint8)


def as_rgb(image: ImageLike) -> np.ndarray:
    """Any image input -> uint8 RGB HWC: a path (:func:`load_image`), a PIL image, or an array
    (uint8 or uint16; HxW gray, HxWx3 RGB, HxWx4 RGBA composited on black)."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    a = np.asarray(image)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    if a.dtype != np.uint8:
        raise DataError(f"array images must be uint8 RGB HWC, got {a.dtype}")
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 1):
        a = gray_to_rgb(a)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = composite_on_black(a)
    _check_rgb(a)
    return a


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise DataError(f"empty image (shape {rgb.shape}): nothing to preprocess")


def letterbox(rgb: np.ndarray, size: int) -> np.ndarray:
    """Longest side -> ``size`` (bilinear), then centre zero-pad to ``size`` x ``size``; uint8 HWC."""
    _check_rgb(rgb)
    if size < 1:
        raise DataError(f"letterbox size must be >= 1, got {size}")
    top, left, nh, nw = letterbox_geometry(*rgb.shape[:2], size)
    if (nh, nw) != rgb.shape[:2]:
        import cv2

        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((size, size, 3), np.uint8)
    out[top:top + nh, left:left + nw] = rgb
    return out


def letterbox_geometry(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """Where :func:`letterbox` puts an ``h`` x ``w`` image in the ``size`` square: ``(top, left,
    height, width)`` of the resized image (a map at input resolution, cut there, is the crop's)."""
    if max(h, w) != size:
        scale = size / max(h, w)
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
    return (size - h) // 2, (size - w) // 2, h, w


def normalize(u8: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W, 3) letterboxed RGB -> float32 (..., 3, H, W) ImageNet-normalised."""
    x = (u8.astype(np.float32) / 255.0 - _MEAN) / _STD
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def preprocess(image: ImageLike, size: int = 224) -> np.ndarray:
    """One image (path, PIL image, or uint8 RGB HWC array) -> float32 (3, size, size).

    Arrays may also be HxW gray or HxWx4 RGBA (see :func:`as_rgb`); empty images raise DataError.
    """
    return normalize(letterbox(as_rgb(image), size))


def preprocess_batch(images: Sequence[ImageLike], size: int = 224) -> np.ndarray:
    """Several images -> float32 (N, 3, size, size)."""
    return np.stack([preprocess(im, size) for im in images]) if images else np.zeros((0, 3, size, size), np.float32)
