"""Faces: one small detector interface and what every detector's output goes through.

A :class:`FaceDetector` takes a uint8 RGB frame and returns every :class:`Face` it finds, in
that frame's pixels. What happens next is the same for every detector and lives here too:
:func:`select_face` (confidence >= ``conf_thres``, keep the largest, skip when face area /
frame area < ``min_face_ratio``) and :func:`crop_box` (DeepGuard's margin and clipping).
The detectors themselves: :mod:`msvit.predict.blazeface` (the default) and
:mod:`msvit.predict.face_registry` (the registry and the other candidates).

Every detector runs on a frame downscaled so its longest side is at most ``det_size`` (boxes
are mapped back to the frame); BlazeFace letterboxes straight to its input size.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Face:
    """One detection: ``box`` = (x1, y1, x2, y2) in the frame's pixels, ``score`` = confidence
    (a probability for BlazeFace and MTCNN; dlib's SVM margin; 1.0 for Haar)."""

    box: Box
    score: float

    @property
    def width(self) -> float:
        return max(0.0, self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return max(0.0, self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return self.width * self.height


class FaceDetector:
    """Base class. Subclasses implement :meth:`_detect` on an already downscaled frame."""

    name = "base"
    #: the detector can itself run on a phone (BlazeFace-class model in a mobile runtime)
    mobile = False
    #: ``score`` is a probability, so ``conf_thres`` applies to it
    probabilistic = True
    #: longest side the frame is downscaled to before detection (0 = full resolution)
    default_det_size = 640

    def __init__(self, det_size: int | None = None, threads: int | None = None) -> None:
        self.det_size = self.default_det_size if det_size is None else int(det_size)
        self.threads = threads
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """All faces in a uint8 RGB HxWx3 frame, boxes in that frame's pixels."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise DataError(f"face detection needs an HxWx3 RGB frame, got shape {rgb.shape}")
        small, scale = downscale(rgb, self.det_size)
        with self._lock:  # interpreters are not re-entrant
            faces = self._detect(small)
        if scale != 1.0:
            faces = [Face(tuple(v / scale for v in f.box), f.score) for f in faces]
        h, w = rgb.shape[:2]
        return [Face(_clip_box(f.box, w, h), f.score) for f in faces if f.area > 0]

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the backend (optional)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} det_size={self.det_size}>"


def _clip_box(box: Box, w: int, h: int) -> Box:
    x1, y1, x2, y2 = box
    return (min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h))


def downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Resize so the longest side is at most ``max_side`` (INTER_AREA); returns (image, scale)."""
    h, w = rgb.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return rgb, 1.0
    import cv2

    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


# --------------------------------------------------------------------------- selection and crop
@dataclass(frozen=True)
class Selection:
    """What :func:`select_face` decided for one frame."""

    face: Face | None  # the face to classify, or None
    status: str  # ok | no_face | face_too_small
    n_faces: int  # faces at or above conf_thres
    ratio: float | None  # area of the largest confident face / frame area


def select_face(faces: list[Face], frame_hw: tuple[int, int], conf_thres: float = 0.5,
                min_face_ratio: float = 0.01, probabilistic: bool = True) -> Selection:
    """DeepGuard's rule: faces with confidence >= ``conf_thres``; keep the largest; skip the
    frame when its area / frame area < ``min_face_ratio``."""
    if probabilistic:
        faces = [f for f in faces if f.score >= conf_thres]
    if not faces:
        return Selection(None, "no_face", 0, None)
    best = max(faces, key=lambda f: f.area)  # first of equal areas, like np.argmax
    ratio = best.area / float(frame_hw[0] * frame_hw[1])
    if ratio < min_face_ratio:
        return Selection(None, "face_too_small", len(faces), ratio)
    return Selection(best, "ok", len(faces), ratio)


def crop_box(box: Box, frame_hw: tuple[int, int], margin: float = 0.2) -> tuple[int, int, int, int]:
    """DeepGuard's crop: pad ``margin`` x width left and right and ``margin`` x height top and
    bottom (``int`` pads), clip to the frame; integer (x1, y1, x2, y2)."""
    xmin, ymin, xmax, ymax = box
    pad_w, pad_h = int((xmax - xmin) * margin), int((ymax - ymin) * margin)
    h, w = frame_hw
    return (max(int(xmin - pad_w), 0), max(int(ymin - pad_h), 0),
            min(int(xmax + pad_w), w), min(int(ymax + pad_h), h))


def crop(rgb: np.ndarray, box: Box, margin: float = 0.2) -> np.ndarray:
    """The face crop (a view into ``rgb``); DataError when it is empty."""
    x1, y1, x2, y2 = crop_box(box, rgb.shape[:2], margin)
    out = rgb[y1:y2, x1:x2]
    if out.size == 0:
        raise DataError(f"empty face crop {x1, y1, x2, y2} in a {rgb.shape[1]}x{rgb.shape[0]} frame")
    return out


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
