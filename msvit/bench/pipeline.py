"""``msvit-bench --pipeline VIDEO``: the whole predict pipeline per artifact, end to end.

Per row: decode the sampled frames -> detect faces -> crop + preprocess -> classify (one
artifact call on the video's crops), and the whole ``Detector.predict_video``; every stage of
every row timed round-robin in one interleaved run, as the model rows are. "Real time" here
means the pipeline keeps up with the camera: end-to-end frames/s >= ``fps``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import MsvitError, TargetUnavailableError
from .timing import interleaved

STAGES = ("decode", "detect", "crop", "classify")


@dataclass
class PipelineRow:
    name: str
    precision: str
    status: str  # ok | failed | unavailable
    note: str = ""
    frames: int | None = None  # sampled frames per run
    faces: int | None = None  # crops classified per run
    ms_per_frame: dict[str, float] = field(default_factory=dict)  # stage -> median ms per sampled frame
    e2e_ms_per_frame: float | None = None
    fps: float | None = None  # end-to-end sampled frames per second
    realtime: bool | None = None
    spread_pct: float | None = None  # end-to-end block spread
    p_fake: float | None = None  # the video's aggregated P(fake), same for every row within its precision

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_pipeline(sessions: list[tuple[str, str, Any]], video: str | os.PathLike, *, num_frames: int = 20,
                  iters: int = 5, warmup: int = 1, fps: float = 30.0, face_detector: str | None = None,
                  threads: int | None = None, log: Callable[[str], None] | None = None,
                  tick: Callable[[int], None] | None = None) -> list[PipelineRow]:
    """``sessions``: (name, precision, msvit.runtime.Session) per row, the baseline first."""
    from ..predict import Detector, pipeline_stage_fns
    from ..predict.face_registry import DEFAULT_FACE_DETECTOR

    rows, stage_sets, dets = [], [], []
    try:
        for name, prec, session in sessions:
            row = PipelineRow(name, prec, "ok")
            rows.append(row)
            try:
                det = Detector(session, face_detector or DEFAULT_FACE_DETECTOR, threads=threads)
                dets.append(det)
                st = pipeline_stage_fns(det, video, num_frames=num_frames)
            except MsvitError as e:  # no face detector here: unavailable; an unreadable video: failed
                row.status = "unavailable" if isinstance(e, TargetUnavailableError) else "failed"
                row.note = str(e)
                continue
            row.frames, row.faces = st.frames, st.faces
            row.p_fake = None
            stage_sets.append((row, st))
        fns, owners = [], []
        for row, st in stage_sets:
            for stage, fn in st.stages().items():
                fns.append(fn)
                owners.append((row, stage))
        if log and fns:
            log(f"timing the pipeline on {os.path.basename(str(video))}: {len(stage_sets)} rows x "
                f"{len(STAGES) + 1} stages, interleaved, >= {iters} runs each")
        res = interleaved(fns, iters=iters, warmup=warmup, block=1, rewarm=0, tick=tick) if fns else []
        for (row, stage), r in zip(owners, res):
            per_frame = float(np.median(r.ms)) / max(1, row.frames)
            if stage == "end_to_end":
                row.e2e_ms_per_frame = round(per_frame, 3)
                row.fps = round(1000.0 / per_frame, 2) if per_frame > 0 else None
                row.realtime = row.fps is not None and row.fps >= fps
                row.spread_pct = round(r.spread_pct, 1)
            else:
                row.ms_per_frame[stage] = round(per_frame, 3)
        for row, st in stage_sets:
            pred = st.end_to_end()
            row.p_fake = None if pred.p_fake is None else round(float(pred.p_fake), 6)
    finally:
        for det in dets:
            if det.face_detector is not None:
                det.face_detector.close()  # the sessions belong to the caller
    return rows
