"""The per-file work of msvit-screen and the two engines that run it.

:class:`ScreenWorker` holds one :class:`msvit.Detector` (one runtime session, one face detector,
loaded once) and turns a batch of work items into records, one per file: a video is decoded,
sampled and aggregated inside that one call, its crops classified in one artifact call.

- ``local``: one worker in this process (no Ray needed);
- ``ray``: Ray Data, ``map_batches(ScreenWorker, concurrency=N)``: an actor pool that Ray keeps
  alive. An actor that dies (killed, out of memory) is restarted and its block retried
  (``max_restarts=-1``, ``max_task_retries=-1``); the driver writes records keyed, so a retried
  file is written once.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

from ..errors import EngineUnavailableError
from ..predict.sources import Source
from .local_ray import local_start, signals_kept

ENGINES = ("ray", "local")
#: tasks queued at each Ray actor: one running, one waiting, so the next task's dispatch overlaps
#: the current one's work (with one, every image waited out Ray's dispatch round trip: 0.43x
#: msvit-predict's per-core files/s on small images vs 0.82x with two, busy 2-core host; rough).
#: More would only unbalance the end of a job (a long video queued behind another).
IN_FLIGHT_PER_ACTOR = 2
#: files per Ray task, at most. Each task costs the actor Ray Data's own work (a block in, a batch, a
#: block out) and a dispatch gap. Two actors on a two-node cluster (research/screen_cluster_throughput.py
#: --pair, 2-core host) delivered, of the files/s per worker-core of two msvit-predict processes with a
#: core each: 0.76x with one file per task, 0.87x with three, 1.01x with six (108 files).
#: A task's records come back together; a killed actor's tasks are retried whole, and a stopped job
#: redoes them on resume.
MAX_FILES_PER_TASK = 8
#: ... but at least this many tasks per actor, so that the end of a job stays balanced
MIN_TASKS_PER_WORKER = 8


def files_per_task(files: int, workers: int) -> int:
    """Files per Ray task for ``files`` inputs over ``workers`` actors: as many as keep at least
    :data:`MIN_TASKS_PER_WORKER` tasks per actor, between 1 and :data:`MAX_FILES_PER_TASK`."""
    return max(1, min(MAX_FILES_PER_TASK, files // max(1, workers * MIN_TASKS_PER_WORKER)))


@dataclass(frozen=True)
class ScreenConfig:
    """Everything a worker needs to build its Detector and run the pipeline (plain values: it
    travels to Ray actors)."""

    model: str  # artifact or weights path
    model_name: str = "ms_eff_vit_b0"
    face_detector: str | None = "blazeface"
    conf_thres: float = 0.5
    min_face_ratio: float = 0.01
    margin: float = 0.2
    threshold: float | None = None
    tta_hflip: bool = False
    det_size: int | None = None
    threads: int | None = 1
    num_frames: int = 20
    agg: str = "conf"
    faces_only: bool = False
    stream_every: int = 5


def _rss_mb() -> float:
    """Peak resident memory of this process (MB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1 << 20) if sys.platform == "darwin" else kb / 1024


def node_of() -> dict[str, str | None]:
    """Where this process runs: ``host`` (hostname), and inside a Ray worker the Ray ``node_id``
    and ``node_ip`` (two nodes on one machine share host and IP: the node id tells them apart)."""
    node = dict(host=os.uname().nodename, node_id=None, node_ip=None)
    ray = sys.modules.get("ray")  # only a Ray worker has it imported and initialised
    if ray is not None and ray.is_initialized():
        node.update(node_id=ray.get_runtime_context().get_node_id(), node_ip=ray.util.get_node_ip_address())
    return node


def node_label(rec: dict[str, Any]) -> str:
    """A short name for the node that scored ``rec``: its Ray node id's first 8 hex digits, or the
    host for a record made in-process."""
    return str(rec.get("node_id") or "")[:8] or str(rec.get("host") or "?")


def alive_nodes(ray) -> dict[str, bool]:
    """Ray node id -> whether the cluster still counts it alive (a node that died mid-job shows
    False)."""
    try:
        return {n["NodeID"]: bool(n.get("Alive")) for n in ray.nodes()}
    except Exception:  # the summary only loses the 'lost' mark
        return {}


def _name(v: Any) -> str:
    """A path or message of a work item: bytes (``os.fsencode``, so that a file name that is not
    UTF-8 survives Arrow, whose strings must be UTF-8) back to the str Python uses for it."""
    return os.fsdecode(bytes(v)) if isinstance(v, (bytes, bytearray)) else str(v or "")


class ScreenWorker:
    """One pipeline: ``__call__`` takes a batch of work items (columns ``path kind origin message
    key size mtime_ns artifact_sha256``; path, origin and message as ``os.fsencode`` bytes) and returns ``key`` and ``record`` (the JSON text of one
    record, the fields of ``msvit-predict --json`` plus the key's)."""

    def __init__(self, config: dict[str, Any]) -> None:
        from ..predict import Detector

        self.config = ScreenConfig(**config)
        c = self.config
        self.node = node_of()
        self.detector = Detector(c.model, None if c.faces_only else c.face_detector, conf_thres=c.conf_thres,
                                 min_face_ratio=c.min_face_ratio, margin=c.margin, threshold=c.threshold,
                                 tta_hflip=c.tta_hflip, det_size=c.det_size, threads=c.threads,
                                 model_name=c.model_name,
                                 # a Ray actor's decoder keeps to the actor's CPUs: with FFmpeg's own
                                 # choice (a thread per CPU of the machine) the actors sharing a node
                                 # oversubscribed it; in-process (local engine) FFmpeg still chooses
                                 decode_threads=(c.threads or 1) if self.node["node_id"] else 0)
        self.worker = f"{os.uname().nodename}:{os.getpid()}"

    def record(self, item: dict[str, Any]) -> dict[str, Any]:
        c = self.config
        src = Source(_name(item["path"]), str(item["kind"]), _name(item.get("origin")), _name(item.get("message")))
        pred = self.detector.predict_source(src, c.num_frames, c.agg, c.faces_only, stream_every=c.stream_every)
        rec = pred.to_dict(frames=True)
        rec.update(key=str(item["key"]), size=int(item["size"]), mtime_ns=int(item["mtime_ns"]),
                   artifact_sha256=str(item["artifact_sha256"]), worker=self.worker, worker_rss_mb=round(_rss_mb(), 1),
                   **self.node)
        return rec

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        n = len(batch["key"])
        items = [{k: batch[k][i] for k in batch} for i in range(n)]
        recs = [self.record(it) for it in items]
        return {"key": [r["key"] for r in recs], "record": [json.dumps(r, separators=(",", ":")) for r in recs]}

    def close(self) -> None:
        self.detector.close()


# ------------------------------------------------------------------------------ engines
def run_local(config: ScreenConfig, items: list[dict[str, Any]],
              worker: "ScreenWorker | None" = None) -> Iterator[dict[str, Any]]:
    """Records of ``items``, one by one, in this process (on ``worker``, the caller's to close)."""
    own = worker is None
    worker = worker or ScreenWorker(asdict(config))
    try:
        for it in items:
            yield worker.record(it)
    finally:
        if own:
            worker.close()


def import_ray():
    """Ray, with its usage-stats reporting off (set before the import, as Ray reads it then)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    try:
        import logging

        import ray
        import ray.data  # noqa: F401
        for name in ("ray", "ray.data"):  # Ray's INFO lines would tear msvit-screen's progress bar
            logging.getLogger(name).setLevel(logging.WARNING)
    except ImportError as e:
        raise EngineUnavailableError(f"Ray Data is not installed ({e}); pip install 'msvit[screen]', "
                                     "or run with --engine local") from None
    return ray


def _session_token() -> None:
    """A fresh auth token for the local cluster msvit starts, in the environment its processes
    inherit: Ray would otherwise generate one and save it as ``~/.ray/auth_token`` in the user's
    home (nothing msvit runs writes there). A token the user set up is left alone, as is auth the
    user turned off; ``RAY_AUTH_MODE=token`` alone (which ``ray.init`` itself exports into its
    process) still gets the session's own token instead of a saved one."""
    import secrets

    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return
    if not any(os.environ.get(k) for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


@contextlib.contextmanager
def _no_api_server(ray) -> Iterator[None]:
    """While a local head starts: no API-server (dashboard) process. With the dashboard off, Ray
    still starts that process for its UsageStatsHead module, which probes the cloud metadata
    endpoints (169.254.169.254, metadata.google.internal) even with usage stats disabled
    (ray/dashboard/modules/usage_stats/usage_stats_head.py ``run``), and Ray has no switch for it.
    Returning (None, None) is Ray's own path for an API server that failed to start; msvit-screen
    needs none of its modules (no jobs, no state API). tests/test_offline.py watches the result."""
    services = getattr(getattr(ray, "_private", None), "services", None)
    if services is None or not hasattr(services, "start_api_server"):
        yield  # another Ray layout: the offline test says whether it still probes
        return
    real = services.start_api_server

    def start_api_server(include_dashboard, *args, **kwargs):
        if include_dashboard:
            return real(include_dashboard, *args, **kwargs)
        return None, None
    services.start_api_server = start_api_server
    try:
        yield
    finally:
        services.start_api_server = real


def start_ray(address: str | None, num_cpus: int | None) -> tuple[Any, bool]:
    """Join ``address`` (``auto`` or ``HOST:PORT``), reuse a Ray already initialised in this
    process, or start a local one with ``num_cpus``. Dashboard off, no logging to the driver's
    console. Returns (ray, whether we started it and must shut it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        with signals_kept():  # SIGTERM stays msvit's clean stop (Ray's handler aborts)
            if address:
                ray.init(address=address, **kw)
            else:
                _session_token()
                with _no_api_server(ray), local_start(ray) as local:  # loopback only, bounded, short temp dir
                    ray.init(num_cpus=num_cpus, **kw, **local)
    except (OSError, RuntimeError, ValueError) as e:
        raise EngineUnavailableError(f"cannot {'join the Ray cluster at ' + address if address else 'start Ray'}: "
                                     f"{e}") from None
    return ray, True


def ray_errors_to_stderr(ray) -> None:
    """Ray's driver prints the cluster's error messages on stdout, where msvit-screen's summary
    goes: a node that dies brings its raylet's whole state dump (hundreds of long lines). Send
    each message's first line to stderr instead; the full text stays in the node's Ray logs."""
    w = getattr(getattr(ray, "_private", None), "worker", None)
    real = getattr(w, "print_to_stdstream", None)
    if real is None or getattr(real, "msvit_stderr", False):
        return  # another Ray layout, or already done

    def to_stderr(data, ignore_prefix):
        if data.get("pid") == "raylet":  # listen_error_messages' messages
            data = dict(data, is_err=True, lines=[(str(m).splitlines() or [""])[0] for m in data.get("lines", [])])
        return real(data, ignore_prefix)
    to_stderr.msvit_stderr = True
    w.print_to_stdstream = to_stderr


def cluster_cpus(ray) -> int:
    return int(ray.cluster_resources().get("CPU", 1))


def run_ray(config: ScreenConfig, items: list[dict[str, Any]], workers: int,
            on_started: Callable[[], None] | None = None) -> Iterator[dict[str, Any]]:
    """Records of ``items`` from an actor pool of ``workers`` actors, as they finish (in no
    particular order). Ray must be started (:func:`start_ray`)."""
    ray = import_ray()
    ray_errors_to_stderr(ray)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # msvit-screen draws its own
    ctx.print_on_execution_start = False
    if hasattr(ctx, "enable_operator_progress_bars"):
        ctx.enable_operator_progress_bars = False
    # one block per file (up to a cap); files_per_task() of them make one task
    blocks = max(1, min(len(items), 20000))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    # a fixed pool, IN_FLIGHT_PER_ACTOR tasks queued at each actor. Ray Data's actor defaults,
    # max_restarts=-1 and max_task_retries=-1, are what makes a killed actor come back (or, its node
    # gone, start on another) and its files be retried (tests/test_screen*.py kill one).
    pool = ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=IN_FLIGHT_PER_ACTOR)
    out = ds.map_batches(ScreenWorker, fn_constructor_kwargs={"config": asdict(config)},
                         batch_size=files_per_task(len(items), workers),
                         compute=pool, num_cpus=float(config.threads or 1), batch_format="numpy")
    if on_started is not None:
        on_started()
    for row in out.iter_rows():
        yield json.loads(row["record"])
