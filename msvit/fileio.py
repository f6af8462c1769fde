"""Files appear complete or not at all (write under a temp name in the same folder, then
rename); a set of files (artifact + manifest) is published in an order that is safe under
SIGKILL, with a journal a later run rolls back; temp folders name their process so leftovers
of killed runs can be swept; output paths are checked before any work starts."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator

from .errors import OutputWriteError, UsageError

#: prefix of the private work folders exports create inside their output folder
TMP_PREFIX = ".msvit-tmp-"
#: a writability probe in an output folder, made and removed before any work
PROBE_PREFIX = ".msvit-probe-"
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


def disk_full(path: str | os.PathLike, margin: int = 1 << 20) -> bool:
    """The filesystem holding ``path`` has less than ``margin`` bytes left for this user (how a
    writer that raised without an errno, e.g. a C++ iostream, is known to have hit a full disk)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < margin


def mount_point(path: str | os.PathLike) -> Path:
    """The mount point of the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p.parent != p:
        p = p.parent
    try:
        dev = p.stat().st_dev
        while p.parent != p and p.parent.stat().st_dev == dev:
            p = p.parent
    except OSError:
        pass
    return p


#: errnos that mean "no room": the message names the disk, not a bug
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def write_error(e: OSError, where: str | os.PathLike, kept: str) -> OutputWriteError:
    """One line for a write into ``where`` that failed with ``e`` after the work started;
    ``kept`` says what was written whole (and how to resume)."""
    if e.errno in NO_SPACE:
        mp = mount_point(where)
        try:
            free = f"{shutil.disk_usage(mp).free / 1e6:.1f} MB free"
        except OSError:
            free = "free space unknown"
        what = "disk full" if e.errno == errno.ENOSPC else "disk quota exceeded"
        return OutputWriteError(f"{what} writing into {where} (the file system at {mp}, {free}): {kept}")
    return OutputWriteError(f"cannot write into {where} ({e.strerror or e}): {kept}")


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
    try:  # a zombie (killed, not yet reaped by its parent) does no more work
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
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


# ---------------------------------------------------------------- publishing a set

#: in a work folder: what a publish in progress moves (written before its first rename)
JOURNAL = ".publish.json"
#: in a work folder: the files a publish replaced, kept until the new set is complete
BACKUP = ".replaced"


@dataclass
class PublishPlan:
    """A set of files published together: the artifact's files, then its manifest (whose
    sha256 covers them), then extras (the card). Names are final names in ``out_dir``."""

    work_dir: Path
    out_dir: Path
    artifacts: list[str]
    manifest: str
    extras: list[str] = field(default_factory=list)

    @property
    def backup_order(self) -> list[str]:  # the old artifact leaves before the manifest that vouches for it
        return [*self.artifacts, *self.extras, self.manifest]

    @property
    def publish_order(self) -> list[str]:  # the new manifest lands before the artifact it vouches for
        return [self.manifest, *self.artifacts, *self.extras]

    def to_json(self) -> str:
        inodes = {n: _inode(self.work_dir / n) for n in self.publish_order}
        return json.dumps({"out_dir": str(self.out_dir), "artifacts": self.artifacts, "manifest": self.manifest,
                           "extras": self.extras, "inodes": inodes}, indent=1)


def _inode(p: Path) -> list[int]:
    st = os.lstat(p)
    return [st.st_dev, st.st_ino]  # a rename keeps both: how a later run knows which files were ours


def _exists(p: Path) -> bool:
    return p.exists() or p.is_symlink()


def publish_set(plan: PublishPlan) -> list[str]:
    """Move the staged set from ``plan.work_dir`` into ``plan.out_dir`` so that, at every instant
    and whatever kills the process (SIGKILL, power loss), every artifact file under a final name
    sits beside a manifest whose sha256 matches it:

    1. a journal naming the set is written into the work folder;
    2. files being replaced move into the work folder's ``.replaced/`` (old artifact first,
       its manifest last);
    3. the new manifest lands, then the artifact's files, then the extras.

    A run killed in between leaves the journal: :func:`sweep_stale_temp` (at the next export into
    the folder) rolls the set back and puts the replaced files back, so an overwritten set is never
    lost. An ``OSError`` rolls back at once. Returns the names that replaced existing files.
    SIGINT/SIGTERM wait until the set is complete (:func:`deferred_signals` around this call)."""
    atomic_write_text(plan.work_dir / JOURNAL, plan.to_json())
    backup = plan.work_dir / BACKUP
    replaced = []
    try:
        for name in plan.backup_order:
            if _exists(plan.out_dir / name):
                backup.mkdir(exist_ok=True)
                os.replace(plan.out_dir / name, backup / name)
                replaced.append(name)
        for name in plan.publish_order:
            os.replace(plan.work_dir / name, plan.out_dir / name)
    except OSError:
        rollback(plan.work_dir)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    os.unlink(plan.work_dir / JOURNAL)
    return replaced


def rollback(work_dir: Path) -> str:
    """Undo an unfinished :func:`publish_set` whose journal is in ``work_dir``: the new files it
    moved out come back (artifact first, manifest last), then the replaced ones return (manifest
    first). A set found complete is kept. Returns one line saying which of the two it was."""
    work_dir = Path(work_dir)
    try:
        j = json.loads((work_dir / JOURNAL).read_text())
    except (OSError, ValueError):
        return ""
    out_dir, backup = Path(j["out_dir"]), work_dir / BACKUP
    plan = PublishPlan(work_dir, out_dir, j["artifacts"], j["manifest"], j["extras"])
    main = plan.artifacts[0]
    if not any(_exists(work_dir / n) for n in plan.publish_order):  # every new file is out: complete
        shutil.rmtree(backup, ignore_errors=True)
        os.unlink(work_dir / JOURNAL)
        return f"the interrupted publish of {main} into {out_dir} had completed: kept"
    ours = {n: tuple(v) for n, v in j["inodes"].items()}
    for name in reversed(plan.publish_order):  # new artifact out before the manifest vouching for it
        dst = out_dir / name
        if _exists(dst) and not _exists(work_dir / name) and tuple(_inode(dst)) == ours.get(name):
            os.replace(dst, work_dir / name)
    restored = []
    for name in reversed(plan.backup_order):  # old manifest back before its artifact
        if _exists(backup / name) and not _exists(out_dir / name):
            os.replace(backup / name, out_dir / name)
            restored.append(name)
    os.unlink(work_dir / JOURNAL)
    return (f"the interrupted publish of {main} into {out_dir} was rolled back"
            + (f": the previous {', '.join(restored)} restored" if restored else ": nothing of it was left"))


@contextmanager
def deferred_signals(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the block runs (a publish: a few renames), then deliver them to
    the handlers that were installed. Outside the main thread signals cannot arrive: a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in signums}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for s in dict.fromkeys(pending):
            h = old[s]
            if callable(h):
                h(s, None)  # run_cli's SIGTERM handler, Python's KeyboardInterrupt: raises here
            elif h == signal.SIG_DFL:
                signal.raise_signal(s)


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
        try:
            note = rollback(p)  # a publish killed half-way: undo it, put back what it replaced
        except OSError as e:
            note = f"could not roll back the interrupted publish in {p.name} ({e}): left in place"
            if log:
                log(note)
            continue
        if note and log:
            log(note)
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
    why = cannot_write_in(probe)
    if why:
        raise UsageError(f"{flag} {path}: cannot write into {probe} ({why})")
    return path


def cannot_write_in(folder: str | os.PathLike) -> str:
    """Why a file cannot be created in the existing ``folder`` ("" if it can). Found by creating
    and removing an empty temp file: permission bits say nothing for root, nor for /proc, /sys or
    a read-only mount."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=PROBE_PREFIX)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    os.unlink(tmp)
    return ""


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
        why = str(e).split(": ", 1)[1] if ": " in str(e) else str(e)
        why = why if why.startswith("cannot write into") else f"cannot write into {parent}: {why}"
        raise UsageError(f"{flag} {path}: {why}") from None
    return path
