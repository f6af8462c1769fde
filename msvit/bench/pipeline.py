"""``msvit-bench --pipeline VIDEO``: the whole predict pipeline per artifact, end to end.

Per row: decode the sampled frames -> detect faces -> crop + preprocess -> classify (one
artifact call on the video's crops), and the whole ``Detector.predict_video``; every stage of
every row timed round-robin in one interleaved run, as the model rows are. "Real time" here
means the pipeline keeps up with the camera: end-to-end frames/s >= ``fps``.

Then the overlapped pipeline (:mod:`msvit.predict.overlap`, what ``msvit-predict`` runs): per
artifact row the stage threads are measured (:func:`msvit.predict.tune.tune_stage_threads`,
cached for msvit-predict) and the video is run ``pipeline_videos`` times back to back, the rows
interleaved round by round: sampled frames/s, videos/min and each stage's busy share.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
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
    # the overlapped pipeline (msvit-predict's): sampled frames/s and videos/min over back-to-back
    # runs of the video (median of rounds), each stage's busy share, the stage threads and how chosen
    overlap_fps: float | None = None
    videos_per_min: float | None = None
    busy_share: dict[str, float] = field(default_factory=dict)
    stage_threads: dict[str, Any] = field(default_factory=dict)
    tuning: list[dict[str, Any]] = field(default_factory=list)  # each candidate split's frames/s
    overlap_p_fake: float | None = None  # must equal p_fake: the same pipeline, overlapped

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_pipeline(sessions: list[tuple[str, str, Any]], video: str | os.PathLike, *, num_frames: int = 20,
                  iters: int = 5, warmup: int = 1, fps: float = 30.0, face_detector: str | None = None,
                  threads: int | None = None, log: Callable[[str], None] | None = None,
                  tick: Callable[[int], None] | None = None, overlap_videos: int = 4,
                  stage_threads: str = "auto") -> list[PipelineRow]:
    """``sessions``: (name, precision, msvit.runtime.Session) per row, the baseline first.
    ``overlap_videos``: back-to-back videos per overlapped run (0: sequential stages only)."""
    from ..predict import Detector, pipeline_stage_fns
    from ..predict.face_registry import DEFAULT_FACE_DETECTOR

    rows, stage_sets, dets = [], [], []
    det_of: dict[int, Any] = {}
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
            det_of[id(row)] = det
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
        if overlap_videos:
            time_overlapped([(row, det_of[id(row)]) for row, _ in stage_sets], video, num_frames=num_frames, rounds=iters, videos=overlap_videos,
                            face_detector=face_detector, threads=threads, stage_threads=stage_threads, log=log)
    finally:
        for det in dets:
            if det.face_detector is not None:
                det.face_detector.close()  # the sessions belong to the caller
    return rows


def time_overlapped(rows: list[tuple[PipelineRow, Any]], video: str | os.PathLike, *, num_frames: int, rounds: int,
                    videos: int, face_detector: str | None, threads: int | None, stage_threads: str = "auto",
                    log: Callable[[str], None] | None = None) -> None:
    """Fill each row's overlapped figures. An artifact row gets its stage threads measured (and
    cached for msvit-predict); the PyTorch row uses the default split."""
    from ..predict.detector import WEIGHTS_SUFFIXES
    from ..predict.face_registry import DEFAULT_FACE_DETECTOR
    from ..predict.overlap import OverlappedPredictor, StageThreads, stage_detector
    from ..predict.sources import Source
    from ..predict.tune import available_cores, default_threads, save_tuning, tune_stage_threads, tuning_key

    fd = face_detector or DEFAULT_FACE_DETECTOR
    budget = threads or available_cores()
    given = StageThreads.parse(stage_threads)
    runs = []
    try:
        for row, det in rows:
            path = getattr(det.session, "path", None)
            if path is not None and Path(str(path)).suffix.lower() in WEIGHTS_SUFFIXES:
                path = None  # PyTorch (weights): the baseline, on the default split
            if given is not None:
                chosen = given
            elif path is not None:
                if log:
                    log(f"measuring stage threads for {row.name} {row.precision} on {os.path.basename(str(video))}")
                tuning = tune_stage_threads(lambda t, p=path: stage_detector(str(p), fd, t), video, budget=budget,
                                            num_frames=num_frames, log=log)
                save_tuning(tuning_key(path, fd, None, num_frames, budget), tuning)
                row.tuning, chosen = tuning.results, tuning.best
            else:
                chosen = default_threads(budget)
            own = path is not None
            det2 = stage_detector(str(path), fd, chosen) if own else det
            runs.append((row, det2, chosen, own))
        src = [Source(str(video), "video")] * max(1, videos)
        fps: dict[int, list[float]] = {id(r): [] for r, *_ in runs}
        vpm: dict[int, list[float]] = {id(r): [] for r, *_ in runs}
        for row, det2, chosen, _ in runs:  # warm-up
            list(OverlappedPredictor.with_threads(det2, chosen).run(src[:chosen.videos], num_frames))
        if log and runs:
            log(f"timing the overlapped pipeline: {len(runs)} rows x {rounds} rounds of {len(src)} videos, interleaved")
        for _ in range(max(1, rounds)):
            for row, det2, chosen, _ in runs:
                pipe = OverlappedPredictor.with_threads(det2, chosen)
                preds = list(pipe.run(src, num_frames))
                w = pipe.stats.wall
                fps[id(row)].append(sum(len(p.frames) for p in preds) / w)
                vpm[id(row)].append(60.0 * len(preds) / w)
                row.busy_share = {k: round(v, 3) for k, v in pipe.stats.share().items()}
                row.overlap_p_fake = None if preds[0].p_fake is None else round(float(preds[0].p_fake), 6)
        for row, det2, chosen, _ in runs:
            row.overlap_fps = round(float(np.median(fps[id(row)])), 2)
            row.videos_per_min = round(float(np.median(vpm[id(row)])), 2)
            row.stage_threads = chosen.to_dict()
    finally:
        for row, det2, chosen, own in runs:
            if own:
                det2.close()
