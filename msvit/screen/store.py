r"""Where msvit-screen's records go: ``results.jsonl`` (one line per input, appended and flushed as
each finishes) and ``parts/part-NNNNN.parquet`` (the same records, flat, a part every
``part_rows`` records or ``part_seconds``), both readable while a job runs.

The JSONL is the source of truth: resuming reads its keys (a torn last line from a killed job is
dropped), and any record it has that no Parquet part holds yet is written as a catch-up part, so
the two always end up with the same records, each exactly once. A line that cannot be written
whole (disk full) is cut back off the file: every line is a complete record.

Paths are kept losslessly, whatever bytes a file name holds: the JSONL is ASCII JSON (a name that
is not UTF-8 keeps its bytes as ``\udcXX`` escapes, Python's ``surrogateescape``:
``os.fsencode(record["source"])`` gives them back); Parquet strings must be UTF-8, so there
``source`` shows such bytes as ``\xNN`` and ``source_bytes`` holds the name's exact bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import OutputWriteError
from ..fileio import atomic_write, write_error
from ..model.weights import sha256_file

JSONL = "results.jsonl"
PARTS = "parts"
MANIFEST = "screen.json"
TIME_STAGES = ("decode", "detect", "crop", "classify", "total")


def artifact_sha256(path: str | os.PathLike) -> str:
    """One sha256 over every file that makes up the model: the file itself, an OpenVINO
    ``.xml``'s ``.bin``, or every file of a folder artifact (``.mlpackage``), by relative name."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
    else:
        files = [p] + ([p.with_suffix(".bin")] if p.suffix.lower() == ".xml" and p.with_suffix(".bin").is_file()
                       else [])
    if len(files) == 1 and not p.is_dir():
        return sha256_file(files[0])
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class InputKey:
    """What identifies one input's record: its path, size and mtime (ns), and the artifact."""

    path: str
    size: int
    mtime_ns: int
    artifact_sha256: str

    @property
    def key(self) -> str:
        # os.fsencode: a name that is not UTF-8 hashes as its own bytes (UTF-8 names as before)
        rest = f"\0{self.size}\0{self.mtime_ns}\0{self.artifact_sha256}".encode()
        return hashlib.sha256(os.fsencode(self.path) + rest).hexdigest()[:32]

    @classmethod
    def of(cls, path: str, artifact_sha: str) -> "InputKey":
        """Missing inputs (and streams) get size -1, mtime 0: recorded once, retried by --force."""
        try:
            st = os.stat(path)
            return cls(str(Path(path).resolve()), st.st_size, st.st_mtime_ns, artifact_sha)
        except OSError:
            return cls(str(path), -1, 0, artifact_sha)


def _utf8(v: Any) -> Any:
    """A string Parquet can hold: bytes of a non-UTF-8 file name (surrogate escapes) as ``\\xNN``."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return os.fsencode(v).decode("utf-8", "backslashreplace")
    return v


def flat_row(rec: dict[str, Any]) -> dict[str, Any]:
    """A JSONL record -> one flat Parquet row: the per-input fields, ``ms_<stage>`` times, the
    per-frame results as a JSON string (``frames_json``) and the source's exact name bytes."""
    row = {k: _utf8(v) for k, v in rec.items() if k not in ("frames", "times_ms")}
    for k in TIME_STAGES:
        row[f"ms_{k}"] = (rec.get("times_ms") or {}).get(k)
    row["frames_json"] = json.dumps(rec.get("frames", []), separators=(",", ":"))
    row["source_bytes"] = os.fsencode(rec["source"]) if rec.get("source") is not None else None
    return row


def _schema():
    import pyarrow as pa

    s, f, i = pa.string(), pa.float64(), pa.int64()
    cols = [("key", s), ("source", s), ("kind", s), ("status", s), ("message", s), ("verdict", s), ("p_fake", f),
            ("threshold", f), ("agg", s), ("n_frames", i), ("width", i), ("height", i), ("fps", f),
            ("face_detector", s), ("model", s), ("frames_sampled", i), ("frames_used", i), ("faces", i),
            ("size", i), ("mtime_ns", i), ("artifact_sha256", s), ("worker", s), ("worker_rss_mb", f),
            ("host", s), ("node_id", s), ("node_ip", s)]
    cols += [(f"ms_{k}", f) for k in TIME_STAGES] + [("frames_json", s), ("source_bytes", pa.binary())]
    return pa.schema(cols)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a results.jsonl (a torn or garbled line is skipped)."""
    out = []
    if not path.is_file():
        return out
    with open(path, "rb") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "key" in rec:
                out.append(rec)
    return out


class ResultStore:
    """Append-only records of one ``--out`` folder, keyed (see :class:`InputKey`)."""

    def __init__(self, out: str | os.PathLike, part_rows: int = 256, part_seconds: float = 30.0) -> None:
        self.out = Path(out)
        self.parts = self.out / PARTS
        self.part_rows, self.part_seconds = part_rows, part_seconds
        self._pending: list[dict[str, Any]] = []
        self._last_part = time.monotonic()
        self._jsonl: Any = None  # the JSONL, unbuffered: a line reaches the file in one write or is cut back
        self.failed = False  # a write failed (disk full): no more writes, close() leaves parts to the resume
        self.done: set[str] = set()

    # ---------------------------------------------------------------- lifecycle
    def _failure(self, e: OSError) -> OutputWriteError:
        self.failed = True
        n = len(self.done)
        return write_error(e, self.out, f"{n} record{'s' * (n != 1)} kept, each whole; free space and run the "
                                        "same command again to resume")

    def open(self, force: bool = False) -> int:
        """Create the folder, or read the records already there (``force``: remove them).
        Returns how many records were kept. :class:`OutputWriteError` when it cannot be written."""
        try:
            return self._open(force)
        except OSError as e:
            raise self._failure(e) from None

    def _open(self, force: bool) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        self.parts.mkdir(exist_ok=True)
        if force:
            for f in self.parts.glob("part-*.parquet"):
                f.unlink()
            (self.out / JSONL).unlink(missing_ok=True)
        records = read_jsonl(self.out / JSONL)
        self.done = {r["key"] for r in records}
        self._repair(self.out / JSONL, records)
        in_parts = self._keys_in_parts()
        self._pending = [r for r in {r["key"]: r for r in records}.values() if r["key"] not in in_parts]
        self._flush_part()  # a job killed before its last part: catch the part up now
        self._jsonl = open(self.out / JSONL, "ab", buffering=0)
        return len(self.done)

    def _repair(self, path: Path, records: list[dict[str, Any]]) -> None:
        """Drop a torn last line (a killed job) so new lines start on a line of their own."""
        if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            text = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
            atomic_write(path, lambda f: f.write(text), fsync=True)

    def _keys_in_parts(self) -> set[str]:
        import pyarrow.parquet as pq

        keys: set[str] = set()
        for f in sorted(self.parts.glob("part-*.parquet")):
            keys.update(pq.read_table(f, columns=["key"]).column("key").to_pylist())
        return keys

    def close(self) -> None:
        """Write the last Parquet part (not after a failed write: the resume catches it up) and
        close the JSONL."""
        try:
            if not self.failed:
                self.flush_part()
        finally:
            if self._jsonl is not None:
                self._jsonl.close()
                self._jsonl = None

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- writing
    def add(self, record: dict[str, Any]) -> bool:
        """Write one record (JSONL line now, Parquet with the next part). A key already
        recorded (a retried task) is ignored: returns False."""
        if record["key"] in self.done:
            return False
        self._append(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        self.done.add(record["key"])
        self._pending.append(record)
        if len(self._pending) >= self.part_rows or time.monotonic() - self._last_part >= self.part_seconds:
            self.flush_part()
        return True

    def _append(self, line: bytes) -> None:
        """Append one whole line, or nothing: a write cut short (disk full) is cut back off."""
        if self.failed:
            raise OutputWriteError(f"{self.out}: an earlier write failed; nothing more is written")
        start = os.fstat(self._jsonl.fileno()).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[self._jsonl.write(view):]
        except OSError as e:
            try:
                self._jsonl.truncate(start)
            except OSError:  # cannot happen on a local disk; resume drops a torn last line anyway
                pass
            raise self._failure(e) from None

    def flush_part(self) -> Path | None:
        """Write the pending records as the next Parquet part (atomically: readers never see
        half a part). :class:`OutputWriteError` when it cannot be written."""
        try:
            return self._flush_part()
        except OSError as e:
            raise self._failure(e) from None

    def _flush_part(self) -> Path | None:
        self._last_part = time.monotonic()
        if not self._pending:
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _schema()
        rows = [{k: r.get(k) for k in schema.names} for r in map(flat_row, self._pending)]
        table = pa.Table.from_pylist(rows, schema=schema)
        n = max((int(f.stem.split("-")[1]) for f in self.parts.glob("part-*.parquet")), default=-1) + 1
        path = self.parts / f"part-{n:05d}.parquet"
        atomic_write(path, lambda f: pq.write_table(table, f), fsync=True)
        self._pending = []
        return path


def read_results(out: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of an ``--out`` folder (from the JSONL: complete even mid-job)."""
    return read_jsonl(Path(out) / JSONL)


def existing_manifest(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def write_manifest(out: Path, doc: dict[str, Any]) -> None:
    try:
        atomic_write(out / MANIFEST, lambda f: f.write(json.dumps(doc, indent=1).encode()))
    except OSError as e:
        raise write_error(e, out, "no record written yet") from None


def records_for(keys: Iterable[str], records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    want = set(keys)
    return {r["key"]: r for r in records if r["key"] in want}
