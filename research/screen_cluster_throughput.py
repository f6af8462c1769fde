"""Steady per-worker-core throughput of msvit-screen on a two-node Ray cluster vs msvit-predict.

Not a test and not the product: a measurement to run on a quiet machine. Public msvit API, plus
the tests' throwaway cluster (tests/ray_nodes.py: a head and a second `ray start --address` node on
this machine, --node-cpus CPUs each, stopped by its own process ids at the end).

    python research/screen_cluster_throughput.py --artifact b0.onnx \\
        --files ../shared/data/videos ../shared/data/images --copies 6 --rounds 2 --json cluster.json

Each round, interleaved in this one process: msvit-predict's pipeline in-process with one thread
(one worker-core) over the corpus, then msvit-screen on the cluster, one actor per CPU with one
thread each. Both are timed the same way, from per-file completion stamps: a worker's steady rate
is (its files - 1) / (its last stamp - its first stamp), so model loading, Ray's join and actor
start-up stay out of it (reported apart as start_s: call to first record); rates are pooled over
workers as files per busy second. The goal: screen's per-worker-core rate >= 0.90 x predict's.
msvit-predict runs pinned to one core (``--predict-cores 1``, the default): its one worker then has
one core, as each actor has, instead of also decoding on the core a second worker would take.
On a 2-core host both nodes share those 2 cores with the driver (this process), the GCS and two
raylets: the ratio is the cluster's cost, Ray's dispatch and the driver's writing included.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]


def corpus(files: list[str], copies: int, into: Path) -> list[str]:
    """``copies`` copies of every image/video under ``files`` (copies: distinct inputs)."""
    from msvit.predict import discover

    found = discover(files).sources
    into.mkdir(parents=True)
    for c in range(copies):
        for i, s in enumerate(found):
            shutil.copy(s.path, into / f"c{c}_{i:03d}_{Path(s.path).name}")
    return [str(into)]


def pooled(stamps: dict[str, list[float]]) -> float:
    """Files per busy second over workers: the files each finished after its first record, over
    the time from that record to its last (records of one Ray task arrive together: the files
    of a worker's first task count as start-up, as its first file alone did)."""
    files = sum(sum(1 for x in t if x > t[0]) for t in stamps.values())
    busy = sum(t[-1] - t[0] for t in stamps.values() if len(t) > 1)
    return files / busy if busy > 0 else 0.0


def steady(stamps: dict[str, list[float]]) -> float:
    """Files per worker-second while *every* worker is busy: from the last worker's first record
    to the first worker's last one. The pooled rate also counts a worker's records while another
    one was still loading its model beside it on the same cores, or had already finished."""
    lo = max(t[0] for t in stamps.values())
    hi = min(t[-1] for t in stamps.values())
    if hi <= lo:
        return 0.0
    files = sum(sum(1 for x in t if lo < x <= hi) for t in stamps.values())
    return files / ((hi - lo) * len(stamps))


def run_predict(artifact: str, sources: list[str], num_frames: int, cores: int) -> dict:
    """msvit-predict's pipeline on ``cores`` cores (0: unpinned). The calling thread is pinned
    before the detector, the runtime and FFmpeg start their threads, which inherit its CPU set:
    one worker-core is one worker on one core, as each Ray actor gets (num_cpus=1)."""
    from msvit.predict import Detector, discover

    found = discover(sources).sources
    every = os.sched_getaffinity(0)
    if cores:
        os.sched_setaffinity(0, sorted(every)[:cores])
    try:
        t0 = time.perf_counter()
        stamps: list[float] = []
        frames = 0
        with Detector(artifact, threads=1) as det:
            for s in found:
                frames += det.predict_source(s, num_frames).frames_sampled
                stamps.append(time.perf_counter())
    finally:
        os.sched_setaffinity(0, every)
    return dict(engine="msvit-predict", workers=1, files=len(stamps), frames=frames, start_s=stamps[0] - t0,
                wall_s=stamps[-1] - t0, per_worker_core_files_per_s=pooled({"predict": stamps}) / max(cores, 1),
                steady_files_per_s=steady({"predict": stamps}) / max(cores, 1),
                cores=cores or len(every))


def _pinned_predict(core: int, artifact: str, sources: list[str], num_frames: int, q) -> None:
    os.sched_setaffinity(0, {core})
    q.put(run_predict(artifact, sources, num_frames, 0))  # already pinned: its threads inherit the core


def run_predict_pair(artifact: str, sources: list[str], num_frames: int) -> dict:
    """Two msvit-predict processes at once, each pinned to its own core, on the same files: what
    two busy cores of this host give one worker each without Ray (shared caches, memory, the
    host's other tenants), the baseline for the cluster's two actors."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    cores = sorted(os.sched_getaffinity(0))[:2]
    procs = [ctx.Process(target=_pinned_predict, args=(c, artifact, sources, num_frames, q)) for c in cores]
    for p in procs:
        p.start()
    res = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return dict(engine="msvit-predict x2 (1 core each)", workers=2, files=sum(r["files"] for r in res),
                frames=sum(r["frames"] for r in res), start_s=max(r["start_s"] for r in res),
                wall_s=max(r["wall_s"] for r in res),
                per_worker_core_files_per_s=statistics.mean(r["per_worker_core_files_per_s"] for r in res),
                steady_files_per_s=statistics.mean(r["steady_files_per_s"] for r in res), cores=2)


def run_screen(artifact: str, sources: list[str], num_frames: int, address: str, workers: int, out: Path) -> dict:
    from msvit.screen import ScreenConfig, screen

    stamps: dict[str, list[float]] = {}
    nodes: dict[str, int] = {}

    def on_record(rec: dict, new: bool) -> None:
        stamps.setdefault(rec["worker"], []).append(time.perf_counter())
        nodes[str(rec.get("node_id"))[:8]] = nodes.get(str(rec.get("node_id"))[:8], 0) + 1

    t0 = time.perf_counter()
    s = screen(sources, out, ScreenConfig(model=artifact, num_frames=num_frames, threads=1), engine="ray",
               workers=workers, ray_address=address, force=True, on_record=on_record)
    first = min(t[0] for t in stamps.values())
    return dict(engine="msvit-screen (2 nodes)", workers=len(stamps), files=s.processed, frames=s.frames,
                start_s=first - t0, wall_s=s.wall_s, per_worker_core_files_per_s=pooled(stamps),
                steady_files_per_s=steady(stamps),
                files_per_node=nodes, rss_mb_per_worker=sorted(s.workers.values()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", required=True, help="ONNX, OpenVINO .xml, ... (one)")
    ap.add_argument("--files", nargs="+", required=True, help="images, videos, folders")
    ap.add_argument("--copies", type=int, default=6, help="copies of the files (a longer steady state)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved predict/screen rounds (medians reported)")
    ap.add_argument("--node-cpus", type=int, default=1, help="CPUs (= actors) of each of the two nodes")
    ap.add_argument("--num-frames", type=int, default=20)
    ap.add_argument("--predict-cores", type=int, default=1,
                    help="pin msvit-predict to this many cores (default 1: one worker-core; 0: unpinned, "
                         "its one worker then also decodes on the other cores)")
    ap.add_argument("--pair", action="store_true",
                    help="also run two msvit-predict processes at once, one core each (the host's own "
                         "cost of two busy cores, without Ray)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT / "tests"))
    from ray_nodes import RayNodes

    from msvit.cpu import cpu_int8_features, cpu_name

    env = dict(cpu=cpu_name(), host_cpus=os.cpu_count(), int8_features=cpu_int8_features(),
               node_cpus=args.node_cpus, num_frames=args.num_frames, copies=args.copies,
               predict_cores=args.predict_cores)
    print(json.dumps(env), flush=True)
    rows: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="screen-cluster-bench-"))
    try:
        sources = corpus(args.files, args.copies, tmp / "corpus")
        with RayNodes() as cluster:
            t = time.perf_counter()
            os.environ.update(cluster.env)  # this process drives the cluster: its auth token
            cluster.start_head(args.node_cpus)
            cluster.add_node(args.node_cpus, "bench_second_node")
            print(json.dumps(dict(cluster_start_s=round(time.perf_counter() - t, 1))), flush=True)
            for r in range(args.rounds):
                rows.append(dict(round=r, **run_predict(args.artifact, sources, args.num_frames, args.predict_cores)))
                print(json.dumps(rows[-1]), flush=True)
                if args.pair:
                    rows.append(dict(round=r, **run_predict_pair(args.artifact, sources, args.num_frames)))
                    print(json.dumps(rows[-1]), flush=True)
                rows.append(dict(round=r, **run_screen(args.artifact, sources, args.num_frames, cluster.address,
                                                       2 * args.node_cpus, tmp / f"out-{r}")))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(engine: str, key: str, alone: bool = False) -> float:
        return statistics.median(r[key] for r in rows if r["engine"].startswith(engine)
                                 and not (alone and r["workers"] > 1))

    print(f"\n{'engine':<24} {'workers':>7} {'files':>5} {'start s':>8} {'wall s':>7} {'pooled':>8} {'all busy':>9}"
          "   files/s per worker-core")
    for r in rows:
        print(f"{r['engine']:<24} {r['workers']:>7} {r['files']:>5} {r['start_s']:>8.1f} {r['wall_s']:>7.1f} "
              f"{r['per_worker_core_files_per_s']:>8.3f} {r['steady_files_per_s']:>9.3f}")
    ratios = {}
    for key, what in (("per_worker_core_files_per_s", "pooled"), ("steady_files_per_s", "all workers busy")):
        pred, scr = med("msvit-predict", key, alone=True), med("msvit-screen", key)
        ratios[what] = scr / pred if pred else 0.0
        print(f"median per-worker-core files/s, {what}: screen {scr:.3f} / predict {pred:.3f} = {ratios[what]:.3f} "
              f"({'within' if ratios[what] >= 0.9 else 'NOT within'} 10%)")
    if args.pair:
        two, scr = med("msvit-predict x2", "steady_files_per_s"), med("msvit-screen", "steady_files_per_s")
        alone = med("msvit-predict", "steady_files_per_s", alone=True)
        ratios["pair"] = two / alone if alone else 0.0
        ratios["screen_vs_pair"] = scr / two if two else 0.0
        print(f"two predicts at once, one core each: {two:.3f} = {ratios['pair']:.3f} x one alone "
              f"(the host's own cost); screen / that = {ratios['screen_vs_pair']:.3f} (Ray's cost)")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(env=env, rows=rows, ratios=ratios), indent=1))


if __name__ == "__main__":
    main()
