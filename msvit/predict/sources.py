"""What a SOURCE is: files, folders (recursive), list files (CSV/TXT) and streams, each named
by its kind (image, video, stream) before anything is read."""
from __future__ import annotations

import csv
import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                  ".3gp", ".ts", ".mts", ".m2ts", ".ogv")
LIST_SUFFIXES = (".csv", ".txt", ".lst")
URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class Source:
    """One input to predict: ``kind`` is image | video | stream | unknown | missing | bad_list
    (a list file that cannot be read) | broken (a dangling symlink or a symlink loop) |
    not_a_file (a FIFO, socket or device: never opened, reading could block); the last three
    get their own status row, ``message`` says why."""

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


def _odd(path: Path, origin: str = "") -> Source | None:
    """A path that is not a regular file (nor a folder) as its own input: a dangling symlink, a
    symlink loop, a FIFO, socket or device. None for a regular file, a folder or nothing at all."""
    try:
        st = os.stat(path)
    except OSError as e:
        if not path.is_symlink():
            return None  # nothing there: the caller's "missing"
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        what = "a symlink loop" if e.errno == errno.ELOOP else f"a broken symlink (to {target}, {e.strerror})"
        return Source(str(path), "broken", origin, f"{path}: {what}")
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return None
    what = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
    return Source(str(path), "not_a_file", origin, f"{path}: {what}, not a regular file (not opened)")


def discover(specs: list[str], streams: list[str] = ()) -> Discovery:
    """SOURCE arguments -> inputs: files, folders (recursive, sorted; only image/video suffixes,
    the rest listed in ``ignored``), lists (.csv with a ``path`` column or one path per line in
    .txt/.lst, relative to the list), stream URLs; ``streams`` are camera indices or URLs."""
    out = Discovery()
    for spec in specs:
        spec = str(spec)
        if URL_RE.match(spec):
            out.sources.append(Source(spec, "stream"))
            continue
        p = Path(spec)
        odd = _odd(p)
        if odd is not None:
            out.sources.append(odd)
        elif not p.exists():
            out.sources.append(Source(spec, "missing"))
        elif p.is_dir():
            # every entry but folders: one with an image/video suffix that is not a regular file
            # (a dangling link, a link loop, a FIFO) gets its own row instead of vanishing
            for f in sorted(q for q in p.rglob("*") if not q.name.startswith(".") and not q.is_dir()):
                k = kind_of(f)
                odd = _odd(f, spec) if k != "unknown" else None
                if k == "unknown":
                    out.ignored.append(str(f))
                else:
                    out.sources.append(odd or Source(str(f), k, spec))
        elif p.suffix.lower() in LIST_SUFFIXES:
            try:
                entries = read_list(p)
            except DataError as e:  # binary garbage named .csv: one failed input, the others still run
                out.sources.append(Source(spec, "bad_list", message=str(e)))
                continue
            for entry in entries:
                odd = None if URL_RE.match(entry) else _odd(Path(entry), spec)
                k = "stream" if URL_RE.match(entry) else "missing" if not Path(entry).exists() else kind_of(entry)
                out.sources.append(odd or Source(entry, k, spec))
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
    return [e if URL_RE.match(e) or Path(e).is_absolute() else str(path.parent / e) for e in entries]
