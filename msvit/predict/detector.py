"""The Python API: :class:`Detector` turns images, videos and streams into P(fake) with any
artifact msvit runs (or a PyTorch model), through a face detector.

>>> import msvit
>>> det = msvit.Detector("ms_eff_vit_b0.onnx")                  # face_detector="blazeface"
>>> r = det.predict_video("clip.mp4", num_frames=20, agg="conf")
>>> r.status, r.p_fake, r.verdict, [f.p_fake for f in r.frames], r.times_ms
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, MsvitError
from ..preprocess import as_rgb, letterbox, normalize
from ..metrics import sigmoid
from .aggregate import AGG_MODES, aggregate
from .face_registry import DEFAULT_FACE_DETECTOR, create_face_detector
from .faces import FaceDetector, crop_box, select_face
from .media import VideoFrames, read_stream_frames, read_video_frames
from .sources import VIDEO_SUFFIXES, Source, kind_of
from .results import STATUSES, FrameResult, InputError, Prediction

WEIGHTS_SUFFIXES = (".bin", ".safetensors", ".pth", ".pt", ".ckpt")


def open_session(model: Any, threads: int | None = None, model_name: str = "ms_eff_vit_b0", device: str = "cpu"):
    """An artifact path, a weights file, a PyTorch module or an open Session -> Session."""
    if hasattr(model, "run") and hasattr(model, "input_size"):
        return model
    from .. import runtime

    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if p.suffix.lower() in WEIGHTS_SUFFIXES:
            from ..model import create_model

            if not p.is_file():
                raise DataError(f"{p}: no such weights file")
            return runtime.from_model(create_model(model_name, weights=p), threads=threads, device=device)
        return runtime.load(p, threads=threads, device=device)
    try:
        import torch.nn as nn

        if isinstance(model, nn.Module):
            return runtime.from_model(model, threads=threads, device=device)
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"expected an artifact path, a weights file, an nn.Module or a Session, got {type(model).__name__}")


#: the valid range of each pipeline option (Detector's keywords, msvit-predict's flags)
OPTION_RANGES = {"conf_thres": (0.0, 1.0), "min_face_ratio": (0.0, 1.0), "margin": (0.0, 10.0), "threshold": (0.0, 1.0)}


def check_options(flags: bool = False, **values: float | None) -> None:
    """:class:`DataError` for an option outside :data:`OPTION_RANGES` (None: not given).
    ``flags=True`` names them as msvit-predict's flags (``--conf-thres``)."""
    for name, v in values.items():
        lo, hi = OPTION_RANGES[name]
        if v is not None and not lo <= v <= hi:
            shown = "--" + name.replace("_", "-") if flags else name
            raise DataError(f"{shown} must be in [{lo:g}, {hi:g}], got {v}")


def read_image(image: Any) -> np.ndarray:
    """A still image (path, PIL image or array) -> RGB uint8; :class:`InputError` when it is
    missing, unreadable or empty (what :meth:`Detector.predict_image` reports)."""
    src = str(image) if isinstance(image, (str, os.PathLike)) else f"<{type(image).__name__}>"
    if isinstance(image, (str, os.PathLike)) and not Path(image).is_file():
        raise InputError("missing", f"{image}: no such file")
    try:
        rgb = as_rgb(image)
    except DataError as e:
        raise InputError("unreadable", str(e)) from None
    if rgb.size == 0:
        raise InputError("unreadable", f"{src}: empty image")
    return rgb


class Detector:
    """Faces -> P(fake) with one artifact. Defaults are DeepGuard's.

    ``model``: artifact path (``.onnx .xml .pte .ptl .tflite .engine .mlpackage``), weights file
    (``.bin``/``.safetensors``; built as ``model_name``), ``nn.Module`` or an open
    :class:`msvit.runtime.Session`. ``face_detector``: a registered name (see
    :func:`msvit.predict.face_detectors`), a :class:`FaceDetector`, or None when every input is
    already a face crop. ``threshold``: P(fake) at or above which the verdict is "fake"
    (default: the artifact's own, from its metadata).
    """

    def __init__(self, model: Any, face_detector: str | FaceDetector | None = DEFAULT_FACE_DETECTOR, *,
                 conf_thres: float = 0.5, min_face_ratio: float = 0.01, margin: float = 0.2,
                 threshold: float | None = None, tta_hflip: bool = False, det_size: int | None = None,
                 threads: int | None = None, model_name: str = "ms_eff_vit_b0", device: str = "cpu",
                 decode_threads: int = 0) -> None:
        """``decode_threads``: FFmpeg's decoder threads per video (0: FFmpeg's choice, one per CPU
        of the machine; a worker that holds a share of the CPUs, as a Ray actor does, gives its share)."""
        check_options(conf_thres=conf_thres, min_face_ratio=min_face_ratio, margin=margin, threshold=threshold)
        self.session = open_session(model, threads, model_name, device)
        self.face_detector = None if face_detector in (None, "none") else \
            create_face_detector(face_detector, conf_thres=conf_thres, det_size=det_size, threads=threads)
        self.conf_thres, self.min_face_ratio, self.margin = conf_thres, min_face_ratio, margin
        self.threshold = float(self.session.threshold if threshold is None else threshold)
        # msvit-calibrate's operating point (sidecar or metadata): P(fake) = sigmoid(logit / temperature)
        op = getattr(self.session, "operating_point", None)
        self.temperature = float(getattr(op, "temperature", 1.0))
        #: the threshold in use and where it came from, one line (msvit-predict/screen/explain print it)
        self.threshold_note = op.describe() if threshold is None and op is not None else \
            f"threshold {self.threshold:.4g} (given by the caller" + (
                f"; temperature {self.temperature:.3g} from the {op.source})" if self.temperature != 1.0 else ")")
        self.tta_hflip = tta_hflip
        self.size = int(self.session.input_size)
        self.decode_threads = max(0, int(decode_threads))

    # ------------------------------------------------------------------ facts
    @property
    def model_name(self) -> str:
        if hasattr(self.session, "describe"):
            return self.session.describe()
        return str((getattr(self.session, "metadata", {}) or {}).get("model", type(self.session).__name__))

    @property
    def detector_name(self) -> str:
        return self.face_detector.name if self.face_detector is not None else "none (faces only)"

    def close(self) -> None:
        if self.face_detector is not None:
            self.face_detector.close()
        if hasattr(self.session, "close"):
            self.session.close()

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ stages
    def detect_faces(self, frames: dict[int, np.ndarray], faces_only: bool = False) -> list[FrameResult]:
        """Stage 2: one :class:`FrameResult` per frame with the chosen face (no P yet)."""
        out = []
        for idx, rgb in frames.items():
            h, w = rgb.shape[:2]
            if faces_only or self.face_detector is None:
                out.append(FrameResult(idx, "ok", 1, (0.0, 0.0, float(w), float(h)), (0, 0, w, h), None, 1.0))
                continue
            faces = self.face_detector.detect(rgb)
            sel = select_face(faces, (h, w), self.conf_thres, self.min_face_ratio, self.face_detector.probabilistic)
            fr = FrameResult(idx, sel.status, sel.n_faces, face_ratio=None if sel.ratio is None else float(sel.ratio))
            if sel.face is not None:
                fr.box = tuple(float(v) for v in sel.face.box)
                fr.crop_box = crop_box(sel.face.box, (h, w), self.margin)
                fr.score = float(sel.face.score)
            out.append(fr)
        return out

    def crops(self, frames: dict[int, np.ndarray], results: list[FrameResult]) -> list[np.ndarray]:
        """Stage 3a: the uint8 RGB face crops of the frames with a chosen face (order of results)."""
        out = []
        for fr in results:
            if fr.crop_box is None:
                continue
            x1, y1, x2, y2 = fr.crop_box
            c = frames[fr.index][y1:y2, x1:x2]
            if c.size == 0:
                fr.status, fr.crop_box = "face_too_small", None
                continue
            out.append(c)
        return out

    def preprocess(self, crops: list[np.ndarray]) -> np.ndarray:
        """Stage 3b: crops -> float32 (N, 3, S, S) (2N with TTA: plain then flipped)."""
        if not crops:
            return np.zeros((0, 3, self.size, self.size), np.float32)
        u8 = np.stack([letterbox(c, self.size) for c in crops])
        if self.tta_hflip:  # DeepGuard flips the letterboxed image (HorizontalFlip after PadIfNeeded)
            u8 = np.concatenate([u8, u8[:, :, ::-1]])
        return normalize(u8)

    def classify(self, x: np.ndarray) -> np.ndarray:
        """Stage 4: one artifact call for all crops -> logits (N or 2N,)."""
        if len(x) == 0:
            return np.zeros((0,), np.float32)
        return np.asarray(self.session.run(x), np.float32).reshape(-1)

    def _assign(self, results: list[FrameResult], logits: np.ndarray) -> None:
        used = [fr for fr in results if fr.crop_box is not None]
        n = len(used)
        p = sigmoid(logits[:n] / self.temperature)  # fr.logit stays the raw logit
        pf = sigmoid(logits[n:] / self.temperature) if self.tta_hflip else None
        for i, fr in enumerate(used):
            fr.logit = float(logits[i])
            fr.p_fake = float(p[i]) if pf is None else float((p[i] + pf[i]) / 2)
            if pf is not None:
                fr.p_fake_flip = float(pf[i])

    # ------------------------------------------------------------------ pipeline
    def _run(self, pred: Prediction, vf: VideoFrames | None, frames: dict[int, np.ndarray], agg: str | None,
             faces_only: bool, keep: bool, t_start: float) -> Prediction:
        t = time.perf_counter()
        results = self.detect_faces(frames, faces_only)
        t_det = time.perf_counter()
        crops = self.crops(frames, results)
        x = self.preprocess(crops)
        t_crop = time.perf_counter()
        logits = self.classify(x)
        t_cls = time.perf_counter()
        pred.times_ms.update(detect=1e3 * (t_det - t), crop=1e3 * (t_crop - t_det), classify=1e3 * (t_cls - t_crop))
        return self.finish(pred, frames, results, crops, logits, agg, keep, t_start)

    def finish(self, pred: Prediction, frames: dict[int, np.ndarray], results: list[FrameResult],
               crops: list[np.ndarray], logits: np.ndarray, agg: str | None, keep: bool,
               t_start: float) -> Prediction:
        """The last step of every path (sequential, or :mod:`.overlap`'s): the logits of the
        crops go to their frames, the frames are aggregated, the verdict and status are set."""
        self._assign(results, logits)
        if keep:
            used = iter(crops)
            for fr in results:
                fr.frame = frames[fr.index]
                fr.crop = next(used) if fr.crop_box is not None else None
        pred.frames = results
        p = pred.p_frames
        if len(p):
            pred.p_fake = aggregate(p, agg) if agg else float(p[0])
            pred.verdict = "fake" if pred.p_fake >= self.threshold else "real"
            if pred.status not in ("truncated",):
                pred.status = "ok"
        else:
            self._no_verdict(pred, results)
        pred.times_ms["total"] = 1e3 * (time.perf_counter() - t_start)
        return pred

    def _no_verdict(self, pred: Prediction, results: list[FrameResult]) -> None:
        what = "image" if pred.kind == "image" else f"{len(results)} sampled frames"
        ratio = pred.max_face_ratio
        if any(fr.status == "face_too_small" for fr in results) and ratio is not None:
            pred.status = "face_too_small"
            suggest = max(ratio * 0.9, 1e-6)
            pred.message = (f"faces found but the largest covers {ratio:.2%} of the frame, under "
                            f"--min-face-ratio {self.min_face_ratio:g} ({self.min_face_ratio:.0%}); "
                            f"lower it (e.g. --min-face-ratio {suggest:.2g}) to classify them")
        else:
            pred.status = "no_face" if pred.status != "truncated" else "truncated"
            msg = (f"no face with confidence >= --conf-thres {self.conf_thres:g} in the {what} "
                   f"(detector {self.detector_name}); no score given")
            pred.message = f"{pred.message}; {msg}" if pred.message else msg
        pred.p_fake, pred.verdict = None, None

    def _new(self, source: str, kind: str, agg: str | None) -> Prediction:
        return Prediction(str(source), kind, "error", threshold=self.threshold, agg=agg,
                          face_detector=self.detector_name, model=self.model_name)

    def predict_image(self, image: Any, faces_only: bool = False, keep: bool = False) -> Prediction:
        """One still image (path, PIL image or array): largest face -> P(fake).
        ``faces_only``: the image is already a face crop (no detection)."""
        t0 = time.perf_counter()
        src = str(image) if isinstance(image, (str, os.PathLike)) else f"<{type(image).__name__}>"
        pred = self._new(src, "image", None)
        try:
            rgb = read_image(image)
            pred.height, pred.width = rgb.shape[:2]
            pred.times_ms["decode"] = 1e3 * (time.perf_counter() - t0)
            return self._run(pred, None, {0: rgb}, None, faces_only, keep, t0)
        except InputError as e:
            return self._fail(pred, e, t0)

    def predict_video(self, path: str | os.PathLike, num_frames: int = 20, agg: str = "conf",
                      faces_only: bool = False, keep: bool = False) -> Prediction:
        """Sample ``num_frames`` frames as DeepGuard does, classify the largest face of each in one
        artifact call, aggregate with ``agg`` (conf | mean | vote)."""
        self._check_args(num_frames, agg)
        t0 = time.perf_counter()
        pred = self._new(str(path), "video", agg)
        try:
            vf = read_video_frames(path, num_frames, threads=self.decode_threads)
            return self._run_frames(pred, vf, agg, faces_only, keep, t0)
        except InputError as e:
            return self._fail(pred, e, t0)

    def predict_stream(self, spec: str | int, num_frames: int = 20, agg: str = "conf", every: int = 5,
                       faces_only: bool = False, keep: bool = False) -> Prediction:
        """A camera index, stream URL or a file read as a live stream: ``num_frames`` frames, one
        every ``every``, until the stream ends."""
        self._check_args(num_frames, agg)
        t0 = time.perf_counter()
        pred = self._new(str(spec), "stream", agg)
        try:
            vf = read_stream_frames(str(spec), num_frames, every)
            return self._run_frames(pred, vf, agg, faces_only, keep, t0)
        except InputError as e:
            return self._fail(pred, e, t0)

    def predict(self, source: Any, num_frames: int = 20, agg: str = "conf", faces_only: bool = False,
                keep: bool = False) -> Prediction:
        """Dispatch on the file type (image or video suffix; anything else is tried as an image)."""
        if isinstance(source, (str, os.PathLike)) and kind_of(source) == "video":
            return self.predict_video(source, num_frames, agg, faces_only, keep)
        return self.predict_image(source, faces_only, keep)

    def predict_source(self, source: Source, num_frames: int = 20, agg: str = "conf", faces_only: bool = False,
                       keep: bool = False, stream_every: int = 5) -> Prediction:
        """One discovered input of any kind (:func:`msvit.predict.discover`): image, video, stream,
        missing, an unreadable list file, or an unknown suffix (tried as an image, then as a video, else ``unsupported``).
        Never raises for a bad input: an unexpected failure becomes status ``error`` with the
        reason (``MSVIT_DEBUG=1`` re-raises it), so one file never stops a corpus."""
        try:
            return self._predict_source(source, num_frames, agg, faces_only, keep, stream_every)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            if os.environ.get("MSVIT_DEBUG"):
                raise
            return self.error_prediction(source, e)

    def error_prediction(self, source: Source, e: Exception) -> Prediction:
        """Status ``error`` for an unexpected failure on one input, with the reason."""
        p = Prediction(source.path, source.kind, "error", threshold=self.threshold)
        p.message = f"{source.path}: {type(e).__name__}: {e}" if not isinstance(e, MsvitError) else str(e)
        return p

    def _predict_source(self, src: Source, num_frames: int, agg: str, faces_only: bool, keep: bool,
                        stream_every: int) -> Prediction:
        if src.kind == "stream":
            return self.predict_stream(src.path, num_frames, agg, stream_every, faces_only, keep)
        if src.kind == "missing":
            p = self._new(src.path, "video" if src.path.lower().endswith(VIDEO_SUFFIXES) else "image", None)
            return self._fail(p, InputError("missing", f"{src.path}: no such file or folder"), time.perf_counter())
        if src.kind == "bad_list":  # a list file that cannot be read: its own row, the others still run
            return self._fail(self._new(src.path, "list", None), InputError("unreadable", src.message),
                              time.perf_counter())
        if src.kind in ("broken", "not_a_file"):  # a dangling link, a link loop, a FIFO: never opened
            p = self._new(src.path, "video" if src.path.lower().endswith(VIDEO_SUFFIXES) else "image", None)
            status = "unreadable" if src.kind == "broken" else "not_a_file"
            return self._fail(p, InputError(status, src.message or f"{src.path}: {STATUSES[status]}"),
                              time.perf_counter())
        if src.kind == "video":
            return self.predict_video(src.path, num_frames, agg, faces_only, keep)
        if src.kind == "image":
            return self.predict_image(src.path, faces_only, keep)
        # unknown suffix: an image if PIL reads it, else a video if OpenCV does, else unsupported
        r = self.predict_image(src.path, faces_only, keep)
        if r.status != "unreadable":
            return r
        v = self.predict_video(src.path, num_frames, agg, faces_only, keep)
        if v.status == "unreadable":
            v.kind, v.status = "unknown", "unsupported"
            v.message = f"{src.path}: neither an image nor a video msvit can read"
        return v

    def _run_frames(self, pred: Prediction, vf: VideoFrames, agg: str, faces_only: bool, keep: bool,
                    t0: float) -> Prediction:
        self.describe_frames(pred, vf)
        return self._run(pred, vf, vf.frames, agg, faces_only, keep, t0)

    def describe_frames(self, pred: Prediction, vf: VideoFrames) -> None:
        """What the decoded video says about itself (size, rate, truncation) onto ``pred``."""
        pred.n_frames, pred.width, pred.height, pred.fps = vf.n_frames, vf.width, vf.height, vf.fps
        pred.times_ms["decode"] = 1e3 * vf.decode_s
        if vf.truncated:
            if pred.kind == "video":
                pred.status = "truncated"
                pred.message = f"video {vf.truncated}: sampled {len(vf.frames)} frames from those"
            else:
                pred.message = vf.truncated

    def _fail(self, pred: Prediction, e: InputError, t0: float) -> Prediction:
        pred.status, pred.message = e.status, str(e)
        pred.p_fake = pred.verdict = None
        pred.times_ms["total"] = 1e3 * (time.perf_counter() - t0)
        return pred

    @staticmethod
    def _check_args(num_frames: int, agg: str) -> None:
        if num_frames < 1:
            raise DataError(f"num_frames must be >= 1, got {num_frames}")
        if agg not in AGG_MODES:
            raise DataError(f"unknown aggregation {agg!r}; choose one of {', '.join(AGG_MODES)}")

    def __repr__(self) -> str:
        return f"<Detector {self.model_name} faces={self.detector_name} threshold={self.threshold:g}>"

