"""The predict pipeline cut into stages that a benchmark can time one by one, interleaved with
other artifacts (``msvit-bench --pipeline VIDEO``)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import DataError
from .media import read_video_frames


@dataclass
class PipelineStages:
    """Callables that each run one stage of :meth:`Detector.predict_video` on one video.

    ``decode`` reads the sampled frames from the file; ``detect`` finds faces in those frames
    (decoded once, up front); ``crop`` crops and preprocesses the chosen faces; ``classify``
    makes the one artifact call on that batch; ``end_to_end`` is the whole
    ``predict_video``. Each call repeats the same work, so ``time / frames`` is ms per
    sampled frame and ``frames / time(end_to_end)`` the end-to-end frames/s.
    """

    video: str
    frames: int  # sampled frames decoded per call
    faces: int  # crops classified per call (x2 with TTA inside one call)
    decode: Callable[[], Any]
    detect: Callable[[], Any]
    crop: Callable[[], Any]
    classify: Callable[[], Any]
    end_to_end: Callable[[], Any]

    STAGES = ("decode", "detect", "crop", "classify")

    def stages(self) -> dict[str, Callable[[], Any]]:
        """The four stages in pipeline order, then ``end_to_end``."""
        return {k: getattr(self, k) for k in (*self.STAGES, "end_to_end")}


def pipeline_stage_fns(detector, video: str | os.PathLike, num_frames: int = 20, agg: str = "conf") -> PipelineStages:
    """Prepare per-stage callables for ``detector`` (a :class:`~msvit.predict.Detector`) on
    ``video``. Runs the pipeline once to cache each stage's input (that run is also a warm-up).
    Raises :class:`~msvit.errors.DataError` when the video gives no face to classify."""
    first = detector.predict_video(video, num_frames=num_frames, agg=agg)
    if first.p_fake is None:
        raise DataError(f"{video}: no pipeline to time: {first.status}: {first.message}")
    frames = read_video_frames(video, num_frames).frames
    results = detector.detect_faces(frames)
    crops = detector.crops(frames, results)
    x = detector.preprocess(crops)

    return PipelineStages(
        video=str(video), frames=len(frames), faces=len(crops),
        decode=lambda: read_video_frames(video, num_frames),
        detect=lambda: detector.detect_faces(frames),
        crop=lambda: detector.preprocess(detector.crops(frames, results)),
        classify=lambda: detector.classify(x),
        end_to_end=lambda: detector.predict_video(video, num_frames=num_frames, agg=agg),
    )
