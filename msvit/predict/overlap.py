"""Overlapped predict: decode, face detection and classification of a corpus run at once.

Three worker threads joined by bounded queues; PyAV/FFmpeg, the TFLite face detector and the
artifact runtimes (ONNX Runtime, OpenVINO, ExecuTorch, LiteRT, torch) release the GIL while
they work, so two cores are kept busy without extra processes:

- ``decode``: each input's sampled frames, handed on one by one as they are converted
  (:func:`read_video_frames` ``on_frame``), then the input's end; it goes straight on to the
  next input, so the next video's decode overlaps this one's detection and classification.
  With ``videos`` > 1 that many inputs are decoded at once, one thread each (their frames
  interleave; their ends are handed on in input order). On 2 cores, two 720p videos with one
  FFmpeg thread each decoded 1.34x the sampled frames/s of one video at a time with two
  (FFmpeg's frame threads idle at every seek);
- ``detect``: each frame's face as it arrives (the same per-frame call as
  :meth:`Detector.detect_faces`); at an input's end its crops are cut and preprocessed;
- ``classify``: one artifact call per input on all its crops (the same batch as the
  sequential path), then :meth:`Detector.finish` (aggregation, verdict).

Predictions come out in input order and equal the sequential ones (frames, boxes, P(fake)):
the same calls on the same pixels in the same batches. A frame the decoder handed on that
the final frame set does not hold (a seek read that fell back to the OpenCV walk) is detected
again from the final set. Each stage's busy time is recorded (:class:`StageStats`).
"""
from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from .detector import Detector, read_image
from .media import VideoFrames, read_stream_frames, read_video_frames
from .results import FrameResult, InputError, Prediction
from .sources import Source

STAGES = ("decode", "detect", "classify")
#: frames the decode stage may run ahead of detection (720p RGB: ~2.7 MB each)
QUEUE_FRAMES = 48


@dataclass(frozen=True)
class StageThreads:
    """Threads per stage: ``decode`` FFmpeg's decoder threads (0: FFmpeg's own choice),
    ``detect`` the face detector's, ``classify`` the artifact runtime's; ``source`` says where
    the numbers came from (measured: :func:`msvit.predict.tune.tune_stage_threads`)."""

    decode: int = 0
    detect: int = 1
    classify: int = 2
    source: str = "default"
    videos: int = 1  # inputs decoded at once, each with ``decode`` FFmpeg threads


    @classmethod
    def parse(cls, text: str | None) -> "StageThreads | None":
        """``auto`` (None: choose by measurement) or ``D,T,C[,V]`` (``--stage-threads``)."""
        from ..errors import DataError

        if text is None or text.strip().lower() == "auto":
            return None
        try:
            d, t, c, *v = (int(x) for x in text.split(","))
            if len(v) > 1:
                raise ValueError
        except ValueError:
            raise DataError(f"--stage-threads {text!r}: use auto or numbers D,T,C[,V] (e.g. 0,1,2 or 1,1,2,2)") from None
        if d < 0 or t < 1 or c < 1 or (v and v[0] < 1):
            raise DataError(f"--stage-threads {text!r}: decode >= 0 (0: FFmpeg's choice), detect, classify and "
                            "videos at once >= 1")
        return cls(d, t, c, "given (--stage-threads)", v[0] if v else 1)

    def label(self) -> str:
        at_once = f" x {self.videos} videos at once" if self.videos > 1 else ""
        return f"decode {self.decode or 'auto'}{at_once} · detect {self.detect} · classify {self.classify}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StageStats:
    """Busy seconds per stage (working, not waiting on a queue) over ``wall`` seconds."""

    busy: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall: float = 0.0
    inputs: int = 0
    frames: int = 0  # sampled frames decoded
    lanes: int = 1  # decode threads (videos at once): decode's busy time is summed over them

    def share(self) -> dict[str, float]:
        """Each stage's busy share of the wall time (1.0: never idle; decode's per lane)."""
        return {k: (v / self.wall / (self.lanes if k == "decode" else 1) if self.wall > 0 else 0.0)
                for k, v in self.busy.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"busy_s": {k: round(v, 4) for k, v in self.busy.items()}, "wall_s": round(self.wall, 4),
                "busy_share": {k: round(v, 4) for k, v in self.share().items()}, "inputs": self.inputs,
                "frames": self.frames}


def stage_detector(model: Any, face_detector: Any, threads: StageThreads, **options: Any) -> Detector:
    """A :class:`Detector` whose face detector runs ``threads.detect`` threads and whose
    session runs ``threads.classify`` (``options``: Detector's keywords but ``threads``)."""
    from .face_registry import create_face_detector

    fd = None if face_detector in (None, "none") else create_face_detector(
        face_detector, conf_thres=options.get("conf_thres", 0.5), det_size=options.get("det_size"),
        threads=threads.detect)
    return Detector(model, fd, threads=threads.classify, **options)


class _Stopped(Exception):
    """The run was stopped (Ctrl-C, or the consumer left): workers unwind."""


@dataclass
class _Job:
    """One input on its way through the stages."""

    source: Source
    pred: Prediction
    t0: float
    frames: dict[int, np.ndarray] = field(default_factory=dict)
    seen: dict[int, tuple[np.ndarray, FrameResult]] = field(default_factory=dict)  # detected as they came
    results: list[FrameResult] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    x: np.ndarray | None = None
    done: bool = False  # failed or finished before classification (pred says why)
    error: BaseException | None = None  # unexpected: status error (MSVIT_DEBUG re-raises it)
    detect_s: float = 0.0
    crop_s: float = 0.0


_END = object()


class OverlappedPredictor:
    """Runs :class:`Detector`'s pipeline over many inputs with its stages overlapped.

    ``detector`` owns one session and one face detector, each used by one stage thread only;
    ``decode_threads``: FFmpeg's decoder threads per video (0: FFmpeg's choice); ``videos``:
    inputs decoded at once. Use :meth:`run` (a generator, input order); :attr:`stats` holds the
    last run's busy times.
    """

    def __init__(self, detector: Detector, decode_threads: int = 0, queue_frames: int = QUEUE_FRAMES,
                 videos: int = 1) -> None:
        self.det = detector
        self.decode_threads = decode_threads
        self.queue_frames = max(1, queue_frames)
        self.videos = max(1, int(videos))
        self.stats = StageStats()
        self._lock = threading.Lock()  # decode lanes add to the same stats

    @classmethod
    def with_threads(cls, detector: Detector, threads: StageThreads, **kw: Any) -> "OverlappedPredictor":
        """The pipeline for ``threads`` (its detector built by :func:`stage_detector`)."""
        return cls(detector, threads.decode, videos=threads.videos, **kw)

    def run(self, sources: Iterable[Source], num_frames: int = 20, agg: str = "conf", faces_only: bool = False,
            keep: bool = False, stream_every: int = 5) -> Iterator[Prediction]:
        """Predictions for ``sources`` in order, as :meth:`Detector.predict_source` gives them."""
        self.det._check_args(num_frames, agg)
        self.keep = keep
        stop = threading.Event()
        q_frames: queue.Queue = queue.Queue(self.queue_frames)
        q_cls: queue.Queue = queue.Queue(2)
        q_out: queue.Queue = queue.Queue(2)
        stats = self.stats = StageStats(lanes=self.videos)
        cfg = (num_frames, agg, faces_only, stream_every)
        workers = [threading.Thread(target=self._guard, args=(fn, stop, q_in, q_next), daemon=True,
                                    name=f"msvit-{fn.__name__.strip('_')}")
                   for fn, q_in, q_next in ((self._decode, list(sources), q_frames), (self._detect, q_frames, q_cls),
                                            (self._classify, q_cls, q_out))]
        self._cfg = cfg
        t_start = time.perf_counter()
        for w in workers:
            w.start()
        try:
            for job in _items(q_out, stop):
                if job.error is not None:
                    if os.environ.get("MSVIT_DEBUG"):
                        raise job.error
                    job.pred = self.det.error_prediction(job.source, job.error)  # type: ignore[arg-type]
                stats.inputs += 1
                stats.wall = time.perf_counter() - t_start
                yield job.pred
        finally:
            stop.set()
            for q in (q_frames, q_cls, q_out):  # wake any put() blocked on a full queue
                _drain(q)
            for w in workers:
                w.join(timeout=5)
            stats.wall = time.perf_counter() - t_start

    # ------------------------------------------------------------------ stages
    def _guard(self, fn, stop: threading.Event, q_in: Any, q_next: queue.Queue) -> None:
        try:
            fn(stop, q_in, q_next)
            _put(q_next, _END, stop)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            try:
                _put(q_next, e, stop)
            except _Stopped:
                pass

    def _decode(self, stop: threading.Event, sources: list[Source], q_next: queue.Queue) -> None:
        """``self.videos`` lanes take the next input each; an input's end is handed on only
        after the previous input's (its frames may go before: detection keys them by input)."""
        num_frames, agg, faces_only, stream_every = self._cfg
        todo = iter(enumerate(sources))
        turn = threading.Condition()
        handed = [0]  # inputs whose end has been handed on
        errors: list[BaseException] = []

        def lane() -> None:
            while not errors:
                with turn:
                    i, src = next(todo, (-1, None))
                if src is None:
                    return
                if stop.is_set():
                    raise _Stopped
                t = time.perf_counter()
                job = self._read(src, num_frames, agg, stream_every, stop, q_next)
                with self._lock:
                    self.stats.busy["decode"] += time.perf_counter() - t
                    self.stats.frames += len(job.frames)
                with turn:
                    while handed[0] != i:
                        if stop.is_set() or errors:
                            raise _Stopped
                        turn.wait(0.1)
                try:
                    _put(q_next, job, stop)
                finally:
                    with turn:
                        handed[0] += 1
                        turn.notify_all()

        def guarded() -> None:
            try:
                lane()
            except _Stopped:
                pass
            except BaseException as e:  # noqa: BLE001 - raised below, in the stage's own thread
                errors.append(e)
                with turn:
                    turn.notify_all()

        lanes = [threading.Thread(target=guarded, daemon=True, name=f"msvit-decode-{k}") for k in range(self.videos - 1)]
        for th in lanes:
            th.start()
        guarded()
        for th in lanes:
            th.join()
        if errors:
            raise errors[0]
        if stop.is_set():
            raise _Stopped

    def _read(self, src: Source, num_frames: int, agg: str, every: int, stop: threading.Event,
              q_next: queue.Queue) -> _Job:
        """Decode one input (handing frames on as they come); failures end up in ``job.pred``,
        exactly as :meth:`Detector.predict_source` words them."""
        det = self.det
        t0 = time.perf_counter()
        job = _Job(src, det._new(src.path, src.kind, agg), t0)
        busy = self.stats.busy

        def on_frame(idx: int, rgb: np.ndarray) -> None:
            if stop.is_set():
                raise _Stopped
            t = time.perf_counter()
            _put(q_next, (job, idx, rgb), stop)
            with self._lock:
                busy["decode"] -= time.perf_counter() - t  # waiting for room downstream is not work

        try:
            if src.kind in ("missing", "bad_list", "broken", "not_a_file"):  # never opened: a record as predict's
                job.pred = det._predict_source(src, num_frames, agg, False, False, every)
                job.done = True
            elif src.kind == "image":
                self._image(job, src.path)
            elif src.kind in ("video", "stream"):
                self._video(job, src, num_frames, agg, every, on_frame)
            else:  # unknown suffix: an image if PIL reads it, else a video, else unsupported
                self._image(job, src.path)
                if job.done and job.pred.status == "unreadable":
                    job = _Job(src, det._new(src.path, "video", agg), time.perf_counter())
                    self._video(job, src, num_frames, agg, every, on_frame)
                    if job.done and job.pred.status == "unreadable":
                        job.pred.kind, job.pred.status = "unknown", "unsupported"
                        job.pred.message = f"{src.path}: neither an image nor a video msvit can read"
        except _Stopped:
            raise
        except Exception as e:  # noqa: BLE001 - one input's failure, as predict_source reports it
            job.error, job.done = e, True
        return job

    def _image(self, job: _Job, path: str) -> None:
        job.pred = self.det._new(path, "image", None)
        try:
            rgb = read_image(path)
        except InputError as e:
            job.pred, job.done = self.det._fail(job.pred, e, job.t0), True
            return
        job.pred.height, job.pred.width = rgb.shape[:2]
        job.pred.times_ms["decode"] = 1e3 * (time.perf_counter() - job.t0)
        job.frames = {0: rgb}

    def _video(self, job: _Job, src: Source, num_frames: int, agg: str, every: int, on_frame) -> None:
        try:
            if src.kind == "stream":
                vf: VideoFrames = read_stream_frames(src.path, num_frames, every)
            else:
                vf = read_video_frames(src.path, num_frames, on_frame=on_frame, threads=self.decode_threads)
        except InputError as e:
            job.pred, job.done = self.det._fail(job.pred, e, job.t0), True
            return
        self.det.describe_frames(job.pred, vf)
        job.pred.times_ms["decode"] = 1e3 * vf.decode_s
        job.frames = vf.frames

    def _detect(self, stop: threading.Event, q_in: queue.Queue, q_next: queue.Queue) -> None:
        faces_only = self._cfg[2]
        det, busy = self.det, self.stats.busy
        for item in _items(q_in, stop):
            t = time.perf_counter()
            if isinstance(item, tuple):  # one frame, as soon as it is decoded
                job, idx, rgb = item
                if not job.done:
                    try:
                        job.seen[idx] = (rgb, det.detect_faces({idx: rgb}, faces_only)[0])
                    except Exception as e:  # noqa: BLE001
                        job.error, job.done = e, True
                job.detect_s += time.perf_counter() - t
                busy["detect"] += time.perf_counter() - t
                continue
            job = item
            if not job.done:
                try:
                    t1 = time.perf_counter()
                    job.results = [job.seen[i][1] if i in job.seen and job.seen[i][0] is rgb
                                   else det.detect_faces({i: rgb}, faces_only)[0] for i, rgb in job.frames.items()]
                    t2 = time.perf_counter()
                    job.detect_s += t2 - t1
                    job.crops = det.crops(job.frames, job.results)
                    job.x = det.preprocess(job.crops)
                    job.crop_s = time.perf_counter() - t2
                except Exception as e:  # noqa: BLE001
                    job.error, job.done = e, True
            job.seen = {}
            busy["detect"] += time.perf_counter() - t
            _put(q_next, job, stop)

    def _classify(self, stop: threading.Event, q_in: queue.Queue, q_next: queue.Queue) -> None:
        agg = self._cfg[1]
        det, busy = self.det, self.stats.busy
        for job in _items(q_in, stop):
            t = time.perf_counter()
            if not job.done:
                try:
                    logits = det.classify(job.x)
                    t_cls = time.perf_counter() - t
                    job.pred.times_ms.update(detect=1e3 * job.detect_s, crop=1e3 * job.crop_s, classify=1e3 * t_cls)
                    det.finish(job.pred, job.frames, job.results, job.crops, logits,
                               agg if job.pred.kind != "image" else None, self.keep, job.t0)
                except Exception as e:  # noqa: BLE001
                    job.error = e
            if not self.keep:
                job.frames, job.crops, job.x = {}, [], None
            busy["classify"] += time.perf_counter() - t
            _put(q_next, job, stop)

    keep = False  # set by run(keep=...): hold the frames and crops in the predictions


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def _items(q: queue.Queue, stop: threading.Event) -> Iterator[Any]:
    """What the stage upstream hands on, until its end; a crash of that stage (an exception
    handed on by :meth:`OverlappedPredictor._guard`) is raised here."""
    while True:
        item = _get(q, stop)
        if item is _END:
            return
        if isinstance(item, BaseException):  # a worker crashed outside any one input
            raise item
        yield item


def _drain(q: queue.Queue) -> None:
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


__all__ = ["OverlappedPredictor", "STAGES", "StageStats", "StageThreads", "stage_detector"]
