"""Files appear complete or not at all (write under a temp name in the same folder, then
rename); temp folders name their process so leftovers of killed runs can be swept; output
paths are checked before any work starts."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO, Callable

from .errors import UsageError

#: prefix of the private work folders exports create inside their output folder
TMP_PREFIX = ".msvit-tmp-"
_TMP_PID = re.compile(re.escape(TMP_PREFIX) + r"(\d+)-")
_IMPORTED_AT = time.time()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None], mode: int = 0o644,
                 fsync: bool = False) -> Path:
    """Call ``write(f)`` on a temp file beside ``path``, then rename it to ``path``. On any
    error (disk full, Ctrl-C) the temp file is removed and ``path`` is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600: published files are as readable as any other
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


# ---------------------------------------------------------------- temp folders

def make_temp_dir(parent: str | os.PathLike) -> Path:
    """A private work folder ``.msvit-tmp-<pid>-XXXX`` in ``parent`` (the pid lets a later run
    tell a live export's folder from the leftover of a killed one)."""
    return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=parent))


def process_start_time() -> float:
    """When this process started (epoch seconds): psutil, else /proc, else when msvit was imported."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:
        pass
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except Exception:
        return _IMPORTED_AT


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def path_size(p: str | os.PathLike) -> int:
    """Bytes of a file, or of every file under a folder (a Core ML package); 0 when absent."""
    p = Path(p)
    if not p.is_dir():
        try:
            return p.stat().st_size
        except OSError:
            return 0
    total = 0
    for root, _, files in os.walk(p):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def sweep_stale_temp(folder: str | os.PathLike, log: Callable[[str], None] | None = None) -> list[Path]:
    """Remove ``.msvit-tmp-*`` folders in ``folder`` left by exports that were killed (SIGKILL,
    power loss): only those last modified before this process started and whose process (named
    in the folder name) is gone. Says what it removed in one ``log`` line; returns the paths."""
    folder = Path(folder)
    try:
        entries = [p for p in folder.iterdir() if p.name.startswith(TMP_PREFIX)]
    except OSError:
        return []
    start = process_start_time()
    removed, sizes = [], []
    for p in sorted(entries):
        try:
            if not p.is_dir() or p.is_symlink() or p.stat().st_mtime >= start:
                continue
        except OSError:
            continue
        m = _TMP_PID.match(p.name)
        if m and (int(m.group(1)) == os.getpid() or _alive(int(m.group(1)))):
            continue
        size = path_size(p)
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            removed.append(p)
            sizes.append(size)
    if removed and log:
        names = ", ".join(f"{p.name} ({s / 1e6:.1f} MB)" for p, s in zip(removed, sizes))
        log(f"removed {len(removed)} stale temp folder(s) left in {folder} by interrupted exports: {names}")
    return removed


# ---------------------------------------------------------------- output checks

def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` is, or can be created as, a writable folder: no file in the way, a writable
    nearest existing parent. Raises :class:`UsageError` (exit 2) naming the problem."""
    path = Path(path)
    if str(path) == "":
        raise UsageError(f"{flag}: empty path")
    probe = path
    while not (probe.exists() or probe.is_symlink()):
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        if probe == path:
            raise UsageError(f"{flag} {path}: is a file, not a folder")
        raise UsageError(f"{flag} {path}: cannot create the folder, {probe} is a file")
    if probe.is_symlink() and not probe.exists():
        raise UsageError(f"{flag} {path}: {probe} is a broken symlink")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: {probe} is not writable")
    return path


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """``path`` can be written as a file: not a folder, and its folder exists or can be created
    (no file in the way, writable)."""
    path = Path(path)
    if str(path) == "" or path.name in ("", ".", ".."):
        raise UsageError(f"{flag}: give a file name, got {str(path)!r}")
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder, give a file name for the report")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        check_output_dir(parent, flag)
    except UsageError as e:
        raise UsageError(f"{flag} {path}: cannot write into {parent}: "
                         f"{str(e).split(': ', 1)[1] if ': ' in str(e) else e}") from None
    return path
