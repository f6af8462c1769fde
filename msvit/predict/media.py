"""Decoding only the sampled frames of a video (files and live streams).

Videos are decoded by seeking when PyAV is installed (``av``, in the ``[predict]`` and ``[screen]``
extras): one pass over the container's packets (no decoding) indexes every frame's timestamp,
keyframe flag and, for H.264, whether any later frame references it; then only what the sampled
frames need is decoded: from the nearest keyframe before each one, skipping the frames nobody
references. The frames are exactly the ones OpenCV's ``grab()`` walk returns (frame ``i`` is the
``i``-th frame in presentation order; a test compares them pixel for pixel). Anything the seek
reader is not sure of (no PyAV, a frame count the container does not declare, frames without
timestamps, a cut-short file, a decoding error) falls back to that walk, which is DeepGuard's:
OpenCV's ``VideoCapture`` ``grab()`` every frame up to the last sampled one and ``retrieve()``
only sampled ones. ``CAP_PROP_POS_FRAMES`` seeking is not used: it is not frame-exact.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .aggregate import frame_indices
from .results import InputError
from .sniff import sniff
from .sources import URL_RE

@dataclass
class VideoFrames:
    """The sampled frames of one video (RGB uint8), and what the file said about itself."""

    frames: dict[int, np.ndarray]
    n_frames: int  # frames the container declares (or counted, when it declares none)
    width: int
    height: int
    fps: float | None
    planned: list[int]
    truncated: str = ""  # why fewer frames than declared could be read ("" when complete)
    decode_s: float = 0.0


#: Matroska/WebM (EBML) headers hold a duration, not a frame count: OpenCV's count is duration x fps
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
#: how far such an estimate may overshoot the frames that decode before it is called truncation
ESTIMATE_SLACK_S = 0.2


def count_is_estimate(path: str | os.PathLike) -> bool:
    """The container does not store a frame count (Matroska/WebM): the declared count is estimated."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == _EBML_MAGIC
    except OSError:
        return False


def estimate_slack(fps: float | None) -> int:
    """Frames an estimated count may exceed the decodable ones by (>= 2: rounding at both ends)."""
    return max(2, math.ceil((fps or 0) * ESTIMATE_SLACK_S))


def _quiet_ffmpeg() -> None:
    """FFmpeg's own log lines ("overread 8", "moov atom not found") would interleave with the
    progress bar; msvit reports what went wrong itself. ``OPENCV_FFMPEG_LOGLEVEL`` set by the
    user wins."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def _open(path: str, cv2):
    _quiet_ffmpeg()
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        return None
    return cap


DECODERS = ("auto", "seek", "grab")  # auto: seek when PyAV can, else grab


#: ``on_frame(index, rgb)``: called with each sampled frame as soon as it is converted (the
#: overlapped pipeline detects faces meanwhile); a frame may be handed on and then not be in the
#: final set (a seek read that falls back to the walk): the returned frames are what counts
FrameSink = Callable[[int, np.ndarray], None]


def read_video_frames(path: str | os.PathLike, num_frames: int = 20, decoder: str = "auto",
                      on_frame: FrameSink | None = None, threads: int = 0) -> VideoFrames:
    """Decode the frames DeepGuard samples (:func:`frame_indices`), and only those.

    ``decoder``: ``seek`` (PyAV, keyframe-aware; raises :class:`ImportError` without PyAV),
    ``grab`` (OpenCV walk) or ``auto`` (seek, falling back to grab for any file the seek reader
    cannot index exactly). Both give the same frames. A video that ends before the frame count
    it declares is read again, sampling the frames that exist, and marked ``truncated``. Raises
    :class:`InputError` for missing, unreadable, audio-only and zero-frame files.
    ``on_frame``: see :data:`FrameSink`; ``threads``: FFmpeg decoder threads of the seek reader
    (0: FFmpeg's own choice; the frames are the same for any count).
    """
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    t0 = time.perf_counter()
    p = str(path)
    if not Path(p).is_file():
        raise InputError("missing", f"{p}: no such file")
    sniff(p)
    if decoder != "grab":
        try:
            vf = _seek_read(p, num_frames, on_frame, threads)
        except ImportError:
            if decoder == "seek":
                raise
            vf = None
        if vf is not None:
            vf.decode_s = time.perf_counter() - t0
            return vf
        if decoder == "seek":
            raise InputError("unreadable", f"{p}: the seek reader cannot index this file exactly")
    return _grab_read(p, num_frames, t0, on_frame)


def _grab_read(p: str, num_frames: int, t0: float, on_frame: FrameSink | None = None) -> VideoFrames:
    import cv2

    cap = _open(p, cv2)
    if cap is None:
        raise InputError("unreadable", f"{p}: cannot be opened as a video (unknown or corrupt format)")
    try:
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or None
        n = declared
        if n <= 0:  # some containers do not say: count (grab only, no colour conversion)
            while cap.grab():
                n += 1
            cap.release()
            if n == 0:
                raise InputError("no_frames", f"{p}: the video has no frames")
            cap = _open(p, cv2)
        planned = frame_indices(n, num_frames)
        frames, last = _grab(cap, planned, cv2, on_frame)
    finally:
        if cap is not None:
            cap.release()
    truncated = ""
    if len(frames) < len(planned):
        available = last + 1  # frames that could be grabbed
        if available <= 0:
            if declared > 0:
                raise InputError("truncated" if declared > 1 else "no_frames",
                                 f"{p}: declares {declared} frames but none decodes")
            raise InputError("no_frames", f"{p}: the video has no frames")
        if declared > 0 and count_is_estimate(p) and declared - available <= estimate_slack(fps):
            n = available  # Matroska/WebM store a duration, not a count: the estimate was off, nothing is lost
        else:
            truncated = f"declares {n} frames, only {available} decode"
        planned = frame_indices(available, num_frames)
        cap = _open(p, cv2)
        try:
            frames, _ = _grab(cap, planned, cv2, on_frame) if cap is not None else ({}, -1)
        finally:
            if cap is not None:
                cap.release()
        if not frames:
            raise InputError("truncated", f"{p}: {truncated}, and none of them could be read again")
    if frames and (w <= 0 or h <= 0):
        h, w = next(iter(frames.values())).shape[:2]
    return VideoFrames(frames, n, w, h, fps, planned, truncated, time.perf_counter() - t0)


# --------------------------------------------------------------------------- seeking (PyAV)
@dataclass(frozen=True)
class _Packet:
    """One video packet in decode order, as the index pass saw it."""

    pts: int
    dts: int | None
    key: bool
    ref: bool  # some later frame may reference it (False only when sure it is disposable)


def _h264_ref(data: bytes, nal_len: int) -> bool:
    """False when every slice of an AVCC H.264 access unit has ``nal_ref_idc == 0`` (no frame
    references it, so it need not be decoded unless sampled); True when unsure."""
    i, slices = 0, 0
    while i + nal_len < len(data):
        size = int.from_bytes(data[i:i + nal_len], "big")
        header = data[i + nal_len]
        if header & 0x1F in (1, 5):  # coded slice (non-IDR / IDR)
            slices += 1
            if header >> 5:
                return True
        i += nal_len + size
    return slices == 0 or i != len(data)


def _index(container, stream) -> list[_Packet] | None:
    """Every video packet's timestamps and flags, demuxed without decoding; None when the
    frames cannot be told apart by timestamp or some are marked to be dropped."""
    extra = stream.codec_context.extradata or b""
    nal_len = (extra[4] & 3) + 1 if stream.codec_context.name == "h264" and len(extra) > 6 and extra[0] == 1 else 0
    out: list[_Packet] = []
    for pkt in container.demux(stream):
        if pkt.size == 0:  # the demuxer's end-of-stream marker
            continue
        if pkt.pts is None or pkt.is_discard or pkt.is_corrupt:
            return None
        ref = True if not nal_len or pkt.is_keyframe else _h264_ref(bytes(pkt), nal_len)
        out.append(_Packet(int(pkt.pts), None if pkt.dts is None else int(pkt.dts), bool(pkt.is_keyframe), ref))
    if len({q.pts for q in out}) != len(out) or not out or not out[0].key:
        return None
    return out


def _ranges(pkts: list[_Packet], targets: list[int]) -> list[tuple[int, int]]:
    """Packet ranges [start, end] (decode order) to decode for ``targets``: each from the last
    keyframe before it (decode order) that is not shown after it, merged where they overlap."""
    keys = [i for i, q in enumerate(pkts) if q.key]
    spans = []
    for t in sorted(targets):
        k = max(i for i in keys if i <= t and pkts[i].pts <= pkts[t].pts)
        spans.append((k, t))
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _seek_read(p: str, num_frames: int, on_frame: FrameSink | None = None, threads: int = 0) -> VideoFrames | None:
    """The sampled frames by seeking (see the module docstring), or None when this file must
    be read by the OpenCV walk instead. Raises ImportError without PyAV."""
    import av

    try:
        with av.open(p) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame + slice threads
            stream.thread_count = max(0, int(threads))  # 0: FFmpeg picks the count
            pkts = _index(container, stream)
            # the frame count OpenCV declares is the container's; anything else: the walk decides
            if pkts is None or int(stream.frames or 0) != len(pkts):
                return None
            order = sorted(range(len(pkts)), key=lambda i: pkts[i].pts)  # presentation order
            planned = frame_indices(len(pkts), num_frames)
            want = {pkts[order[i]].pts: i for i in planned}
            frames = _decode_ranges(container, stream, pkts, [order[i] for i in planned], want, on_frame)
            cc = stream.codec_context
            w, h = int(cc.width or 0), int(cc.height or 0)
            rate = stream.average_rate or stream.base_rate
    except av.FFmpegError:
        return None
    if len(frames) != len(planned):
        return None
    if w <= 0 or h <= 0:
        h, w = next(iter(frames.values())).shape[:2]
    return VideoFrames(frames, len(pkts), w, h, float(rate) if rate else None, planned)


def _decode_ranges(container, stream, pkts: list[_Packet], targets: list[int],
                   want: dict[int, int], on_frame: FrameSink | None = None) -> dict[int, np.ndarray]:
    """Decode the packets of each range (seeking to its keyframe), skipping disposable ones
    that are not sampled; convert only sampled frames to RGB."""
    feed = set(targets)
    frames: dict[int, np.ndarray] = {}
    dec = stream.codec_context

    def take(out) -> None:
        for fr in out:
            idx = want.get(fr.pts)
            if idx is not None and idx not in frames:
                frames[idx] = fr.to_ndarray(format="rgb24")
                if on_frame is not None:
                    on_frame(idx, frames[idx])

    for a, b in _ranges(pkts, targets):
        first = pkts[a]
        container.seek(first.dts if first.dts is not None else first.pts, stream=stream, backward=True)
        j = None
        for pkt in container.demux(stream):
            if pkt.size == 0:
                continue
            if j is None:  # find where the seek landed: the range's keyframe, or before it
                if pkt.pts == first.pts:
                    j = a
                elif pkt.dts is not None and first.dts is not None and pkt.dts > first.dts:
                    return {}  # landed past the keyframe: not exact, let the walk read it
                else:
                    continue
            if pkts[j].pts != pkt.pts:
                return {}
            if pkts[j].ref or j in feed:
                take(dec.decode(pkt))
            if j == b:
                break
            j += 1
        take(dec.decode(None))  # drain the frames still held for reordering
    return frames


def _grab(cap, planned: list[int], cv2, on_frame: FrameSink | None = None) -> tuple[dict[int, np.ndarray], int]:
    """Walk to the last planned frame; retrieve only planned ones. Returns (frames, last
    frame index grabbed, -1 if none)."""
    frames: dict[int, np.ndarray] = {}
    if not planned:
        return frames, -1
    want = set(planned)
    last = -1
    for i in range(planned[-1] + 1):
        if not cap.grab():
            break
        last = i
        if i in want:
            ok, bgr = cap.retrieve()
            if ok and bgr is not None and bgr.size:
                frames[i] = _to_rgb(bgr, cv2)
                if on_frame is not None:
                    on_frame(i, frames[i])
    return frames, last


def _to_rgb(bgr: np.ndarray, cv2) -> np.ndarray:
    if bgr.ndim == 2:
        return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    if bgr.shape[2] == 4:
        return cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def open_stream(spec: str):
    """A camera index (``"0"``) or a URL / file read as a live stream -> opened VideoCapture."""
    import cv2

    _quiet_ffmpeg()
    cap = cv2.VideoCapture(int(spec)) if spec.isdigit() else cv2.VideoCapture(spec)
    if not cap.isOpened():
        cap.release()
        raise InputError("stream_unavailable", f"{spec}: cannot open the camera or stream")
    return cap


def read_stream_frames(spec: str, num_frames: int = 20, every: int = 5) -> VideoFrames:
    """Up to ``num_frames`` frames from a live source, one every ``every`` frames (a stream has
    no length to sample from); stops early when the stream ends."""
    import cv2

    t0 = time.perf_counter()
    if not spec.isdigit() and not URL_RE.match(spec) and not Path(spec).exists():
        raise InputError("stream_unavailable", f"{spec}: no such camera, URL or file")
    cap = open_stream(spec)
    frames: dict[int, np.ndarray] = {}
    i = 0
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or None
        while len(frames) < num_frames:
            if not cap.grab():
                break
            if i % max(1, every) == 0:
                ok, bgr = cap.retrieve()
                if ok and bgr is not None and bgr.size:
                    frames[i] = _to_rgb(bgr, cv2)
            i += 1
    finally:
        cap.release()
    if not frames:
        raise InputError("stream_ended", f"{spec}: the stream ended before giving a frame")
    h, w = next(iter(frames.values())).shape[:2]
    ended = "" if len(frames) == num_frames else f"stream ended after {i} frames"
    return VideoFrames(frames, i, w, h, fps, sorted(frames), ended, time.perf_counter() - t0)
