"""Reading inputs: what a SOURCE is, sniffing broken files, and decoding only the sampled frames.

Video decoding uses OpenCV's ``VideoCapture`` (FFmpeg inside opencv-python-headless, already a
core dependency: no second 36 MB wheel such as PyAV). Like DeepGuard it walks the file with
``grab()`` and calls ``retrieve()`` (the colour conversion and copy) only for sampled frames, so
the frames are exactly DeepGuard's. ``CAP_PROP_POS_FRAMES`` seeking is not used: it is not
frame-exact for every codec.
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


def read_video_frames(path: str | os.PathLike, num_frames: int = 20) -> VideoFrames:
    """Decode the frames DeepGuard samples (:func:`frame_indices`), and only those.

    A video that ends before the frame count it declares is read again, sampling the frames that
    exist, and marked ``truncated``. Raises :class:`InputError` for missing, unreadable,
    audio-only and zero-frame files.
    """
    import cv2

    t0 = time.perf_counter()
    p = str(path)
    if not Path(p).is_file():
        raise InputError("missing", f"{p}: no such file")
    sniff(p)
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
