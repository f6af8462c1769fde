"""Reading inputs: what a SOURCE is, sniffing broken files, and decoding only the sampled frames.

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

import csv
import math
import os
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .aggregate import frame_indices
from .results import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                  ".3gp", ".ts", ".mts", ".m2ts", ".ogv")
LIST_SUFFIXES = (".csv", ".txt", ".lst")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


# --------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class Source:
    """One input to predict: ``kind`` is image | video | stream | unknown | missing | bad_list
    (a list file that cannot be read: its own status row, ``message`` says why)."""

    path: str
    kind: str
    origin: str = ""  # the folder or list it came from
    message: str = ""


@dataclass
class Discovery:
    sources: list[Source] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # files in folders that are not images/videos


def kind_of(path: str | os.PathLike) -> str:
    s = Path(path).suffix.lower()
    return "image" if s in IMAGE_SUFFIXES else "video" if s in VIDEO_SUFFIXES else "unknown"


def discover(specs: list[str], streams: list[str] = ()) -> Discovery:
    """SOURCE arguments -> inputs: files, folders (recursive, sorted; only image/video suffixes,
    the rest listed in ``ignored``), lists (.csv with a ``path`` column or one path per line in
    .txt/.lst, relative to the list), stream URLs; ``streams`` are camera indices or URLs."""
    out = Discovery()
    for spec in specs:
        spec = str(spec)
        if _URL.match(spec):
            out.sources.append(Source(spec, "stream"))
            continue
        p = Path(spec)
        if not p.exists():
            out.sources.append(Source(spec, "missing"))
        elif p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith(".")):
                k = kind_of(f)
                if k == "unknown":
                    out.ignored.append(str(f))
                else:
                    out.sources.append(Source(str(f), k, spec))
        elif p.suffix.lower() in LIST_SUFFIXES:
            try:
                entries = read_list(p)
            except DataError as e:  # binary garbage named .csv: one failed input, the others still run
                out.sources.append(Source(spec, "bad_list", message=str(e)))
                continue
            for entry in entries:
                k = "stream" if _URL.match(entry) else "missing" if not Path(entry).exists() else kind_of(entry)
                out.sources.append(Source(entry, k, spec))
        else:
            out.sources.append(Source(spec, kind_of(p)))
    out.sources += [Source(s, "stream") for s in streams]
    return out


def read_list(path: Path) -> list[str]:
    """Paths in a CSV (``path`` column, else the first column) or a text list (one per line,
    ``#`` comments); relative paths are relative to the list's folder."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read list {path}: {e}") from None
    if "\x00" in text:
        raise DataError(f"cannot read list {path}: not a text file (NUL bytes)")
    entries: list[str] = []
    if path.suffix.lower() == ".csv":
        try:
            rows = list(csv.reader(text.splitlines()))
        except csv.Error as e:
            raise DataError(f"cannot read list {path}: {e}") from None
        if not rows:
            return []
        header = [h.strip().lower() for h in rows[0]]
        col = header.index("path") if "path" in header else 0
        body = rows[1:] if "path" in header else rows
        entries = [r[col].strip() for r in body if len(r) > col and r[col].strip()]
    else:
        entries = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [e if _URL.match(e) or Path(e).is_absolute() else str(path.parent / e) for e in entries]


# --------------------------------------------------------------------------- sniffing
_AUDIO_MAGIC = ((b"RIFF", 8, b"WAVE", "WAV audio"), (b"ID3", 0, b"", "MP3 audio"), (b"fLaC", 0, b"", "FLAC audio"),
                (b"#!AMR", 0, b"", "AMR audio"))


def sniff(path: str | os.PathLike) -> None:
    """Raise :class:`InputError` for files that are plainly not a playable video: empty, text,
    audio-only (WAV/MP3/FLAC, or an MP4/MOV with no video track), or an MP4 cut short.
    Anything else is left to the decoder."""
    p = Path(path)
    size = p.stat().st_size
    if size == 0:
        raise InputError("unreadable", f"{p}: empty file (0 bytes)")
    with open(p, "rb") as f:
        head = f.read(4096)
    for magic, off, tag, what in _AUDIO_MAGIC:
        if head.startswith(magic) and (not tag or head[off:off + len(tag)] == tag):
            raise InputError("no_video_track", f"{p}: {what}, no video track")
    if head[:2] == b"\xff\xfb" or head[:2] == b"\xff\xf3":
        raise InputError("no_video_track", f"{p}: MP3 audio, no video track")
    if head[4:8] == b"ftyp":
        _sniff_isobmff(p, size)
        return
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            return
        raise InputError("unreadable", f"{p}: a text file, not a video")


def _boxes(f, start: int, end: int):
    """ISO-BMFF boxes in [start, end): (type, payload offset, payload end, declared end)."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        hdr = f.read(8)
        if len(hdr) < 8:
            return
        size, typ = struct.unpack(">I4s", hdr)
        hl = 8
        if size == 1:
            big = f.read(8)
            if len(big) < 8:
                return
            size, hl = struct.unpack(">Q", big)[0], 16
        elif size == 0:
            size = end - pos
        if size < hl:
            return
        yield typ, pos + hl, min(pos + size, end), pos + size
        pos += size


def _sniff_isobmff(p: Path, size: int) -> None:
    handlers: list[bytes] = []
    has_moov = False
    with open(p, "rb") as f:
        for typ, a, b, declared_end in _boxes(f, 0, size):
            if declared_end > size and typ != b"moov":
                if not has_moov:
                    raise InputError("truncated", f"{p}: cut short: its '{typ.decode('latin-1')}' box declares "
                                     f"{declared_end:,} bytes, the file has {size:,}, and the index ('moov') "
                                     "is missing: an interrupted download or copy?")
            if typ == b"moov":
                if declared_end > size:
                    raise InputError("truncated", f"{p}: cut short inside its index ('moov' box)")
                has_moov = True
                for t2, a2, b2, _ in _boxes(f, a, b):
                    if t2 != b"trak":
                        continue
                    for t3, a3, b3, _ in _boxes(f, a2, b2):
                        if t3 != b"mdia":
                            continue
                        for t4, a4, b4, _ in _boxes(f, a3, b3):
                            if t4 == b"hdlr" and b4 - a4 >= 12:
                                f.seek(a4 + 8)  # version/flags (4) + pre_defined (4)
                                handlers.append(f.read(4))
    if not has_moov:
        raise InputError("unreadable", f"{p}: an MP4/MOV without its index ('moov' box)")
    if not handlers:
        raise InputError("no_frames", f"{p}: the video has no tracks, so no frames")
    if b"vide" not in handlers:
        what = "audio-only" if b"soun" in handlers else "no video track"
        raise InputError("no_video_track", f"{p}: {what} file ({len(handlers)} track(s), none of them video)")


# --------------------------------------------------------------------------- video frames
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


def read_video_frames(path: str | os.PathLike, num_frames: int = 20, decoder: str = "auto") -> VideoFrames:
    """Decode the frames DeepGuard samples (:func:`frame_indices`), and only those.

    ``decoder``: ``seek`` (PyAV, keyframe-aware; raises :class:`ImportError` without PyAV),
    ``grab`` (OpenCV walk) or ``auto`` (seek, falling back to grab for any file the seek reader
    cannot index exactly). Both give the same frames. A video that ends before the frame count
    it declares is read again, sampling the frames that exist, and marked ``truncated``. Raises
    :class:`InputError` for missing, unreadable, audio-only and zero-frame files.
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
            vf = _seek_read(p, num_frames)
        except ImportError:
            if decoder == "seek":
                raise
            vf = None
        if vf is not None:
            vf.decode_s = time.perf_counter() - t0
            return vf
        if decoder == "seek":
            raise InputError("unreadable", f"{p}: the seek reader cannot index this file exactly")
    return _grab_read(p, num_frames, t0)


def _grab_read(p: str, num_frames: int, t0: float) -> VideoFrames:
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
        frames, last = _grab(cap, planned, cv2)
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
            frames, _ = _grab(cap, planned, cv2) if cap is not None else ({}, -1)
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


def _seek_read(p: str, num_frames: int) -> VideoFrames | None:
    """The sampled frames by seeking (see the module docstring), or None when this file must
    be read by the OpenCV walk instead. Raises ImportError without PyAV."""
    import av

    try:
        with av.open(p) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame + slice threads (FFmpeg picks the count)
            pkts = _index(container, stream)
            # the frame count OpenCV declares is the container's; anything else: the walk decides
            if pkts is None or int(stream.frames or 0) != len(pkts):
                return None
            order = sorted(range(len(pkts)), key=lambda i: pkts[i].pts)  # presentation order
            planned = frame_indices(len(pkts), num_frames)
            want = {pkts[order[i]].pts: i for i in planned}
            frames = _decode_ranges(container, stream, pkts, [order[i] for i in planned], want)
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
                   want: dict[int, int]) -> dict[int, np.ndarray]:
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


def _grab(cap, planned: list[int], cv2) -> tuple[dict[int, np.ndarray], int]:
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
    if not spec.isdigit() and not _URL.match(spec) and not Path(spec).exists():
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
