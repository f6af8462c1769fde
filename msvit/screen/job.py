"""One screening job: discover the inputs, skip those already recorded, run the rest on an engine,
write each record as it arrives, and sum up."""
from __future__ import annotations

import collections
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import UsageError
from ..predict.detector import open_session
from ..predict.sources import discover
from .engines import ScreenConfig, ScreenWorker, alive_nodes, cluster_cpus, node_label, run_local, run_ray, start_ray
from .store import MANIFEST, InputKey, ResultStore, artifact_sha256, existing_manifest, write_manifest

STAGES = ("decode", "detect", "classify")


def close_session(session: Any) -> None:
    if hasattr(session, "close"):
        session.close()


@dataclass
class NodeShare:
    """One node's part of a job: the files it screened (this run) and the workers it ran."""

    label: str  # node_label(): the Ray node id's first 8 hex digits, or the host in-process
    node_id: str | None = None  # Ray's node id (None in-process)
    host: str | None = None
    node_ip: str | None = None
    files: int = 0
    workers: set[str] = field(default_factory=set)
    lost: bool = False  # Ray counted the node dead by the end of the job (its records are kept)


@dataclass
class ScreenSummary:
    """What a job did: counts over every input of the command (earlier runs' records included)."""

    inputs: int = 0
    skipped: int = 0  # already recorded by an earlier run (resumed)
    processed: int = 0  # recorded by this run
    duplicates: int = 0  # records that came back twice (a retried task) and were written once
    statuses: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)
    ignored: int = 0  # files in folders that are neither images nor videos
    wall_s: float = 0.0
    frames: int = 0  # sampled frames of the files processed by this run
    stage_ms: dict[str, float] = field(default_factory=dict)  # summed over the files of this run
    workers: dict[str, float] = field(default_factory=dict)  # worker id -> peak RSS (MB)
    nodes: dict[str, NodeShare] = field(default_factory=dict)  # node label -> what it did this run
    engine: str = "local"
    interrupted: bool = False

    @property
    def files_per_s(self) -> float:
        return self.processed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def all_ok(self) -> bool:
        return set(self.statuses) <= {"ok"}


def _items(sources, artifact_sha: str) -> list[dict[str, Any]]:
    """Work items, one per distinct input (the same file listed twice is screened once). Paths
    and messages travel as ``os.fsencode`` bytes: a file name that is not UTF-8 is kept as is."""
    out: dict[str, dict[str, Any]] = {}
    for s in sources:
        k = InputKey.of(s.path, artifact_sha)
        out.setdefault(k.key, dict(path=os.fsencode(s.path), kind=s.kind, origin=os.fsencode(s.origin),
                                   message=os.fsencode(s.message), key=k.key, size=k.size, mtime_ns=k.mtime_ns,
                                   artifact_sha256=artifact_sha))
    return list(out.values())


def _check_manifest(out: Path, doc: dict[str, Any], force: bool) -> None:
    old = existing_manifest(out)
    if old is None or force:
        return
    diff = [k for k in doc["options"] if old.get("options", {}).get(k) != doc["options"][k]]
    if old.get("artifact_sha256") != doc["artifact_sha256"]:
        diff.insert(0, "artifact")
    if diff:
        raise UsageError(f"--out {out}: holds records made with another {', '.join(diff)} "
                         f"(see {out / MANIFEST}); use another --out, or --force to replace them")


def screen(sources: list[str], out: str | Path, config: ScreenConfig, *, engine: str = "local",
           workers: int | None = None, ray_address: str | None = None, num_cpus: int | None = None,
           force: bool = False, on_start: Callable[[int, int], None] | None = None,
           on_record: Callable[[dict[str, Any], bool], None] | None = None) -> ScreenSummary:
    """Screen ``sources`` (files, folders, lists) into ``out`` with ``engine`` (local | ray).

    ``on_start(todo, workers)`` is called before the first file, ``on_record(record, new)`` after
    each record (``new`` False for a retried duplicate, not written). Ctrl-C stops the job with
    every finished record written, and re-raises."""
    out = Path(out)
    found = discover(sources)
    if not found.sources:
        raise UsageError("no image or video found in " + ", ".join(map(str, sources))
                         + (f" ({len(found.ignored)} other files ignored)" if found.ignored else ""))
    sha = artifact_sha256(config.model)
    options = {k: v for k, v in asdict(config).items() if k not in ("model", "threads")}
    doc = {"artifact": str(config.model), "artifact_sha256": sha, "options": options}
    _check_manifest(out, doc, force)
    items = _items(found.sources, sha)
    summary = ScreenSummary(inputs=len(items), ignored=len(found.ignored), engine=engine)
    # the model opened once here, before anything is written or Ray starts: a bad checkpoint or
    # artifact is its typed error (exit 2), not an actor that dies in its constructor
    local: ScreenWorker | None = None
    if engine == "ray":
        close_session(open_session(config.model, config.threads, config.model_name))
    else:
        local = ScreenWorker(asdict(config))  # the pipeline the local engine then runs on
    store = ResultStore(out)
    started_ray, ray, records = False, None, None
    t0 = time.perf_counter()
    try:
        store.open(force=force)
        write_manifest(out, doc)
        todo = [it for it in items if it["key"] not in store.done]
        summary.skipped = len(items) - len(todo)
        if engine == "ray" and todo:  # nothing left to screen: no cluster to start
            ray, started_ray = start_ray(ray_address, num_cpus)
            n_workers = max(1, min(workers or cluster_cpus(ray) // max(1, config.threads or 1), max(1, len(todo))))
        else:
            n_workers = 1
        if on_start is not None:
            on_start(len(todo), n_workers)
        if todo:
            records = run_ray(config, todo, n_workers) if engine == "ray" else run_local(config, todo, local)
            for rec in records:
                new = store.add(rec)
                if new:
                    _count(summary, rec)
                else:
                    summary.duplicates += 1
                if on_record is not None:
                    on_record(rec, new)
            if ray is not None:  # after a finished job only: a dead head would make this wait
                _mark_lost(summary, alive_nodes(ray))
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        summary.wall_s = time.perf_counter() - t0
        try:
            if records is not None:
                _quietly(records.close)  # Ray's teardown after a stop must not hide why it stopped
            if local is not None:
                local.close()
            store.close()
            _totals(summary, store, {it["key"] for it in items})
        finally:
            if started_ray:
                _quietly(ray.shutdown)
    return summary


def _quietly(fn: Callable[[], Any]) -> None:
    """Run a clean-up step whose failure (Ray's, after its processes were stopped by the same
    signal) must not replace the exception being handled, nor fail a finished job."""
    try:
        fn()
    except Exception:  # noqa: BLE001
        pass


def _count(summary: ScreenSummary, rec: dict[str, Any]) -> None:
    summary.processed += 1
    summary.frames += int(rec.get("frames_sampled") or 0)
    for k in STAGES:
        summary.stage_ms[k] = summary.stage_ms.get(k, 0.0) + float((rec.get("times_ms") or {}).get(k) or 0.0)
    w = rec.get("worker")
    if w:
        summary.workers[w] = max(summary.workers.get(w, 0.0), float(rec.get("worker_rss_mb") or 0.0))
    label = node_label(rec)
    node = summary.nodes.setdefault(label, NodeShare(label, rec.get("node_id"), rec.get("host"), rec.get("node_ip")))
    node.files += 1
    if w:
        node.workers.add(w)


def _mark_lost(summary: ScreenSummary, alive: dict[str, bool]) -> None:
    for node in summary.nodes.values():
        node.lost = bool(node.node_id) and not alive.get(node.node_id, True)


def _totals(summary: ScreenSummary, store: ResultStore, keys: set[str]) -> None:
    """Statuses and verdicts over every input of the command, from what the store holds."""
    from .store import read_results

    recs = {r["key"]: r for r in read_results(store.out) if r["key"] in keys}
    summary.statuses = dict(collections.Counter(r["status"] for r in recs.values()).most_common())
    summary.verdicts = dict(collections.Counter(r["verdict"] for r in recs.values() if r.get("verdict")))
