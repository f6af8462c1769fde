"""Sniffing files that are plainly not a playable video (empty, text, audio-only, an MP4 cut
short) before a decoder sees them: each gets a typed :class:`InputError` status."""
from __future__ import annotations

import os
import struct
from pathlib import Path

from .results import InputError

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
