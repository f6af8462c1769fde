"""The face detector registry, and the candidates besides BlazeFace.

Detectors (``msvit-predict --face-detector NAME``; :func:`face_detectors` says which run here):

===================  ==========================================================================
``blazeface``        MediaPipe BlazeFace full-range (192 px, 2304 anchors), default. TFLite model
                     shipped in msvit (``models/``, Apache-2.0), run by LiteRT (``ai-edge-litert``),
                     else ``tflite-runtime``, else OpenVINO's TFLite reader. Runs on phones.
``blazeface-short``  BlazeFace short-range (128 px): selfie distance, faces > ~20% of the frame.
``mtcnn``            facenet-pytorch 2.6.0 MTCNN (weights in its wheel; install ``--no-deps``).
``dlib-hog``         dlib's HOG + linear SVM frontal detector (``dlib-bin``).
``haar``             OpenCV 4.x frontal-face Haar cascade (OpenCV 5 wheels ship no cascades).
===================  ==========================================================================

Every detector runs on a frame downscaled so its longest side is at most ``det_size`` (boxes
are mapped back to the frame); BlazeFace letterboxes straight to its input size.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError, TargetUnavailableError
from .blazeface import BlazeFace
from .faces import Face, FaceDetector


class MTCNNDetector(FaceDetector):
    """facenet-pytorch MTCNN (P/R/O-Net weights ship in its wheel)."""

    name = "mtcnn"

    def __init__(self, min_score: float = 0.5, det_size: int | None = None, threads: int | None = None) -> None:
        super().__init__(det_size, threads)
        if importlib.util.find_spec("facenet_pytorch") is None:
            raise TargetUnavailableError("mtcnn needs facenet-pytorch: pip install --no-deps facenet-pytorch==2.6.0 "
                                         "(it pins an old torch; its own code runs on torch 2.x)")
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(keep_all=True, device="cpu", select_largest=False)

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        import torch

        with torch.inference_mode():
            boxes, probs = self.mtcnn.detect(np.ascontiguousarray(rgb))
        if boxes is None:
            return []
        return [Face(tuple(float(v) for v in b), float(p)) for b, p in zip(boxes, probs)]


class DlibHOG(FaceDetector):
    """dlib's HOG frontal-face detector (score = SVM margin, not a probability)."""

    name = "dlib-hog"
    probabilistic = False

    def __init__(self, upsample: int = 0, det_size: int | None = None, threads: int | None = None) -> None:
        super().__init__(det_size, threads)
        if importlib.util.find_spec("dlib") is None:
            raise TargetUnavailableError("dlib-hog needs dlib: pip install dlib-bin")
        import dlib

        self.det = dlib.get_frontal_face_detector()
        self.upsample = upsample

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        rects, scores, _ = self.det.run(np.ascontiguousarray(rgb), self.upsample, 0.0)
        return [Face((float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1)), float(s))
                for r, s in zip(rects, scores)]


class HaarCascade(FaceDetector):
    """OpenCV's frontal-face Haar cascade (``cv2.data.haarcascades``, OpenCV 4.x only)."""

    name = "haar"
    probabilistic = False

    def __init__(self, det_size: int | None = None, threads: int | None = None) -> None:
        super().__init__(det_size, threads)
        import cv2

        path = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or "") / "haarcascade_frontalface_default.xml"
        if not hasattr(cv2, "CascadeClassifier") or not path.is_file():
            raise TargetUnavailableError(f"haar needs OpenCV 4.x (its wheels ship the cascades and "
                                         f"CascadeClassifier); this is OpenCV {cv2.__version__}")
        self.cascade = cv2.CascadeClassifier(str(path))

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        import cv2

        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        found = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        return [Face((float(x), float(y), float(x + w), float(y + h)), 1.0) for x, y, w, h in found]


@dataclass(frozen=True)
class DetectorInfo:
    name: str
    factory: Callable[..., FaceDetector]
    description: str
    mobile: bool
    install: str


_REGISTRY: dict[str, DetectorInfo] = {}
DEFAULT_FACE_DETECTOR = "blazeface"


def register_face_detector(name: str, factory: Callable[..., FaceDetector], description: str = "",
                           mobile: bool = False, install: str = "") -> None:
    """Add a detector: ``factory(conf_thres=..., det_size=..., threads=...)`` -> FaceDetector."""
    _REGISTRY[name] = DetectorInfo(name, factory, description, mobile, install)


def face_detectors() -> dict[str, DetectorInfo]:
    return dict(_REGISTRY)


def detector_status(name: str) -> str | None:
    """None when ``name`` can be created here, else the reason it cannot."""
    try:
        create_face_detector(name).close()
        return None
    except TargetUnavailableError as e:
        return str(e)


def create_face_detector(name: str = DEFAULT_FACE_DETECTOR, conf_thres: float = 0.5, det_size: int | None = None,
                         threads: int | None = None) -> FaceDetector:
    """Build a registered detector; :class:`TargetUnavailableError` when its package is missing."""
    if isinstance(name, FaceDetector):
        return name
    info = _REGISTRY.get(name)
    if info is None:
        raise DataError(f"unknown face detector {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    return info.factory(conf_thres=conf_thres, det_size=det_size, threads=threads)


register_face_detector(
    "blazeface", lambda conf_thres=0.5, det_size=None, threads=None:
    BlazeFace("full", min(conf_thres, 0.5), det_size, threads),
    "MediaPipe BlazeFace full-range (TFLite; LiteRT)", True,
    'pip install "msvit[predict]"')
register_face_detector(
    "blazeface-short", lambda conf_thres=0.5, det_size=None, threads=None:
    BlazeFace("short", min(conf_thres, 0.5), det_size, threads),
    "MediaPipe BlazeFace short-range (selfie distance)", True,
    'pip install "msvit[predict]"')
register_face_detector(
    "mtcnn", lambda conf_thres=0.5, det_size=None, threads=None: MTCNNDetector(conf_thres, det_size, threads),
    "facenet-pytorch MTCNN", False, "pip install --no-deps facenet-pytorch==2.6.0")
register_face_detector(
    "dlib-hog", lambda conf_thres=0.5, det_size=None, threads=None: DlibHOG(0, det_size, threads),
    "dlib HOG + linear SVM", False, "pip install dlib-bin")
register_face_detector(
    "haar", lambda conf_thres=0.5, det_size=None, threads=None: HaarCascade(det_size, threads),
    "OpenCV Haar cascade (OpenCV 4.x)", False, "pip install 'opencv-python-headless<5'")
