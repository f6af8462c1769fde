"""Typed results of msvit.predict, and the per-input statuses.

A :class:`Prediction` always has a ``status``. Only ``ok`` and ``truncated`` (a damaged video
whose readable part still gave faces) carry a probability: msvit never invents a score (DeepGuard
returns 0.5 when it finds no usable face; msvit reports why and leaves ``p_fake`` as None).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import DataError

#: status -> what it means (``msvit-predict --help`` prints this table)
STATUSES: dict[str, str] = {
    "ok": "verdict from the faces found",
    "truncated": "damaged or cut-short video: verdict from the part that decodes, or none",
    "missing": "no such file",
    "unreadable": "not a decodable image or video (corrupt, empty, or a text file)",
    "no_video_track": "an audio-only file: nothing to look at",
    "no_frames": "a video without a single frame",
    "no_face": "no face with confidence >= --conf-thres in any frame",
    "face_too_small": "faces found, all smaller than --min-face-ratio of the frame",
    "unsupported": "not an image, video or list msvit reads",
    "not_a_file": "a FIFO, socket or device, not a regular file (never opened: it could block)",
    "stream_unavailable": "the camera or stream URL cannot be opened",
    "stream_ended": "the stream ended before giving a frame",
    "error": "an unexpected failure reading this input (message says which)",
}
VERDICT_STATUSES = ("ok", "truncated")


class InputError(DataError):
    """One input cannot give a verdict; ``status`` is a key of :data:`STATUSES`."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def _r(v: float | None, nd: int = 6) -> float | None:
    return None if v is None else round(float(v), nd)


@dataclass
class FrameResult:
    """One frame (or one still image): what the detector found and what the model said."""

    index: int  # frame index in the video (0 for an image)
    status: str  # ok | no_face | face_too_small | unreadable
    n_faces: int = 0  # faces with confidence >= conf_thres
    box: tuple[float, float, float, float] | None = None  # chosen face, frame pixels (x1, y1, x2, y2)
    crop_box: tuple[int, int, int, int] | None = None  # box + margin, clipped: what was classified
    score: float | None = None  # detector confidence of the chosen face
    face_ratio: float | None = None  # chosen (or largest confident) face area / frame area
    logit: float | None = None
    p_fake: float | None = None  # sigmoid(logit); with TTA the mean of the plain and flipped P
    p_fake_flip: float | None = None  # P(fake) of the flipped crop (TTA only)
    # pixels, kept only when asked (keep=True): never serialised
    frame: np.ndarray | None = field(default=None, repr=False, compare=False)
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("frame", "crop")}
        for k in ("score", "face_ratio", "logit", "p_fake", "p_fake_flip"):
            d[k] = _r(d[k])
        if d["box"] is not None:
            d["box"] = [round(float(v), 2) for v in d["box"]]
        if d["crop_box"] is not None:
            d["crop_box"] = [int(v) for v in d["crop_box"]]
        return d


@dataclass
class Prediction:
    """The verdict for one input (image, video or stream)."""

    source: str
    kind: str  # image | video | stream
    status: str
    message: str = ""
    p_fake: float | None = None
    verdict: str | None = None  # fake | real (P >= threshold -> fake) | None
    threshold: float = 0.5
    agg: str | None = None  # video / stream aggregation mode
    frames: list[FrameResult] = field(default_factory=list)
    n_frames: int | None = None  # frames the video says it has (videos)
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    times_ms: dict[str, float] = field(default_factory=dict)  # decode, detect, crop, classify, total
    face_detector: str | None = None
    model: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def has_verdict(self) -> bool:
        return self.p_fake is not None

    @property
    def frames_sampled(self) -> int:
        return len(self.frames)

    @property
    def frames_used(self) -> int:
        """Frames whose face was classified."""
        return sum(f.p_fake is not None for f in self.frames)

    @property
    def faces(self) -> int:
        """Confident faces found over all frames."""
        return sum(f.n_faces for f in self.frames)

    @property
    def p_frames(self) -> np.ndarray:
        return np.asarray([f.p_fake for f in self.frames if f.p_fake is not None], np.float64)

    @property
    def max_face_ratio(self) -> float | None:
        r = [f.face_ratio for f in self.frames if f.face_ratio is not None]
        return max(r) if r else None

    def to_dict(self, frames: bool = True) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("source", "kind", "status", "message", "verdict", "threshold",
                                             "agg", "n_frames", "width", "height", "fps", "face_detector",
                                             "model")}
        d["p_fake"] = _r(self.p_fake)
        d["fps"] = _r(self.fps, 3)
        d.update(frames_sampled=self.frames_sampled, frames_used=self.frames_used, faces=self.faces,
                 times_ms={k: round(v, 3) for k, v in self.times_ms.items()})
        if frames:
            d["frames"] = [f.to_dict() for f in self.frames]
        return d


# Results read naturally either way in the API
ImageResult = Prediction
VideoResult = Prediction
