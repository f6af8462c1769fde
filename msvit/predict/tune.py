"""Threads per stage of the overlapped pipeline, chosen by measurement on this host.

The stages share the cores: FFmpeg's decoder threads, the face detector's and the artifact
runtime's all compete, and which split is fastest depends on the CPU, the video and the
artifact (bf16 classification is cheap, int8 on a CPU without VNNI is not). So the split is
measured, not guessed: each candidate (:func:`candidates`) runs the whole overlapped pipeline
on the same video, the candidates interleaved round by round, and the one with the most
sampled frames per second wins (an earlier, simpler candidate within :data:`MIN_GAIN` of it
is kept). The choice is cached per host, artifact and pipeline settings
(``<cache>/pipeline/``): ``msvit-bench --pipeline`` measures it, ``msvit-predict`` reuses it
(or measures it when the corpus is large enough to pay for that) and records where its
numbers came from (:attr:`StageThreads.source`).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..cpu import cpu_name
from .overlap import OverlappedPredictor, StageThreads
from .sources import Source

MIN_GAIN = 0.03  # a later candidate must beat an earlier one by this to be chosen (timing wobble)
TUNE_VIDEOS = 2  # videos per candidate per round (the first warms nothing up: sessions are warm)
TUNE_ROUNDS = 2
#: in the cache key: a choice measured among other candidates (before videos at once) is measured again
CANDIDATES_VERSION = 2


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads(budget: int | None = None) -> StageThreads:
    """Without a measurement: FFmpeg picks its decoder threads, one detector thread, the
    artifact all of the budget (the stages overlap, so none of them has the cores alone)."""
    n = budget or available_cores()
    return StageThreads(0, 1, n, "default (not measured on this host)")


def candidates(budget: int) -> list[StageThreads]:
    """The splits worth measuring for ``budget`` threads, simplest first."""
    n = max(1, budget)
    out = [StageThreads(0, 1, n, "candidate")]
    for dec in (1, n):
        for cls in (1, n):
            out.append(StageThreads(dec, 1, cls, "candidate"))
    out.append(StageThreads(n, n, n, "candidate"))
    if n > 1:  # videos decoded at once, one FFmpeg thread each (frame threads idle at each seek)
        out += [StageThreads(1, 1, n, "candidate", n), StageThreads(1, 1, 1, "candidate", n)]
    seen, uniq = set(), []
    for c in out:
        k = (c.decode, c.detect, c.classify, c.videos)
        if k not in seen:
            seen.add(k)
            uniq.append(c)
    return uniq


@dataclass
class Tuning:
    """What was measured: frames/s of each candidate (median of rounds) and the winner."""

    best: StageThreads
    video: str
    results: list[dict[str, Any]] = field(default_factory=list)  # decode, detect, classify, fps, busy_share
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"best": self.best.to_dict(), "video": self.video, "results": self.results,
                "seconds": round(self.seconds, 2)}


def tune_stage_threads(make_detector: Callable[[StageThreads], Any], video: str | os.PathLike, *,
                       budget: int | None = None, num_frames: int = 20, videos: int = TUNE_VIDEOS,
                       rounds: int = TUNE_ROUNDS, cands: Sequence[StageThreads] | None = None,
                       log: Callable[[str], None] | None = None) -> Tuning:
    """Measure each candidate split on ``video`` (``make_detector(threads)`` builds a
    :class:`~msvit.predict.Detector` whose face detector and session use those threads), the
    candidates interleaved over ``rounds``; return the fastest (sampled frames/s)."""
    t0 = time.perf_counter()
    cands = list(cands or candidates(budget or available_cores()))
    dets = []
    try:
        for c in cands:
            dets.append(make_detector(c))
        src = [Source(str(video), "video")] * max(1, videos)
        # every candidate runs the same inputs, enough for each lane to take two
        src = src * -(-2 * max(c.videos for c in cands) // len(src))
        fps: list[list[float]] = [[] for _ in cands]
        shares: list[dict[str, float]] = [{} for _ in cands]
        for det, c in zip(dets, cands):  # warm-up: sessions compiled, caches filled
            list(OverlappedPredictor.with_threads(det, c).run(src[:c.videos], num_frames))
        for _ in range(max(1, rounds)):
            for i, (det, c) in enumerate(zip(dets, cands)):
                pipe = OverlappedPredictor.with_threads(det, c)
                preds = list(pipe.run(src, num_frames))
                frames = sum(len(p.frames) for p in preds)
                fps[i].append(frames / pipe.stats.wall if pipe.stats.wall > 0 else 0.0)
                shares[i] = pipe.stats.share()
    finally:
        for det in dets:
            det.close()
    med = [sorted(v)[len(v) // 2] for v in fps]
    top = max(med)
    win = next(i for i, v in enumerate(med) if v >= top * (1 - MIN_GAIN))
    results = [{**{k: v for k, v in asdict(c).items() if k != "source"}, "fps": round(m, 2),
                "busy_share": {k: round(v, 3) for k, v in s.items()}} for c, m, s in zip(cands, med, shares)]
    best = StageThreads(cands[win].decode, cands[win].detect, cands[win].classify,
                        f"measured on this host ({Path(str(video)).name}, {len(cands)} candidates, "
                        f"{med[win]:.1f} sampled frames/s)", cands[win].videos)
    if log:
        log("stage threads: " + ", ".join(f"{c.label()} {m:.1f} f/s" for c, m in zip(cands, med))
            + f" -> {best.label()}")
    return Tuning(best, str(video), results, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- cache
def tuning_key(model: str | os.PathLike, face_detector: str | None, det_size: int | None, num_frames: int,
               budget: int) -> str:
    """Host (CPU, usable cores), artifact (path, size, mtime) and the pipeline settings."""
    p = Path(str(model))
    st = p.stat() if p.exists() else None
    src = json.dumps({"cpu": cpu_name(), "cores": available_cores(), "budget": budget, "model": str(p.resolve()),
                      "size": st.st_size if st else None, "mtime": st.st_mtime_ns if st else None,
                      "faces": face_detector, "det_size": det_size, "frames": num_frames,
                      "candidates": CANDIDATES_VERSION}, sort_keys=True)
    return hashlib.sha256(src.encode()).hexdigest()[:20]


def _cache_path(key: str) -> Path:
    from ..model.weights import cache_dir

    return cache_dir() / "pipeline" / f"stage-threads-{key}.json"


def load_tuning(key: str) -> StageThreads | None:
    """A cached measured split for this key, or None."""
    try:
        doc = json.loads(_cache_path(key).read_text())
        b = doc["best"]
        return StageThreads(int(b["decode"]), int(b["detect"]), int(b["classify"]), str(b["source"]),
                            int(b.get("videos", 1)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_tuning(key: str, tuning: Tuning) -> None:
    """Cache it (a read-only cache only costs a re-measurement)."""
    path = _cache_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(tuning.to_dict(), indent=1))
        tmp.replace(path)
    except OSError:
        pass


__all__ = ["Tuning", "available_cores", "candidates", "default_threads", "load_tuning", "save_tuning",
           "tune_stage_threads", "tuning_key"]
