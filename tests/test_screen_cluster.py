"""msvit-screen across Ray nodes: a real two-node cluster on this machine (a head and a second
`ray start --address` node, one CPU each, so each node holds one actor), msvit-screen run against
it as a user would (`--ray-address`): both nodes screen files, and SIGKILLing the second node's
raylet mid-job loses no record and duplicates none; the closing summary says which nodes worked,
how many files each, and that the second was lost. The cluster is stopped in every case, by its
own process ids only (tests/ray_nodes.py)."""
from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SHARED

VIDEOS = SHARED / "data" / "videos"
IMAGES = SHARED / "data" / "images"
COPIES = 4  # 4 x (2 clips + 7 images) = 36 inputs: both nodes stay busy well past the kill
NUM_FRAMES = 6
JOB_TIMEOUT_S = 480.0


@pytest.fixture(scope="module")
def onnx_artifact(demo_weights, tmp_path_factory) -> Path:
    """An fp32 ONNX of the demo weights (the quickest export: the test is about the cluster)."""
    pytest.importorskip("onnxruntime")
    from msvit.export.cli import main

    out = tmp_path_factory.mktemp("cluster-artifact")
    assert main(["--target", "onnx", "--weights", str(demo_weights), "--out", str(out)]) == 0
    return out / "ms_eff_vit_b0_fp32.onnx"


def _corpus(into: Path) -> list[Path]:
    """COPIES copies of the shared clips and images (copies, not links: a record is keyed by the
    resolved path, so a link would be the same input)."""
    for p in (VIDEOS, IMAGES):
        if not p.is_dir():
            pytest.skip(f"{p} missing")
    files = sorted([*VIDEOS.glob("*.mp4"), *IMAGES.glob("*.jpg")])
    out = []
    for c in range(COPIES):
        for f in files:
            out.append(into / f"c{c}_{f.name}")
            shutil.copyfile(f, out[-1])
    return out


def _records(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    if not path.is_file():
        return []
    recs = []
    for line in path.read_text().splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:  # a line being written
            pass
    return recs


def _parquet_keys(out: Path) -> collections.Counter:
    import pyarrow.parquet as pq

    keys: collections.Counter = collections.Counter()
    for f in sorted((out / "parts").glob("part-*.parquet")):
        keys.update(pq.read_table(f, columns=["key"]).column("key").to_pylist())
    return keys


@pytest.mark.slow
def test_two_nodes_share_the_job_and_losing_one_loses_nothing(onnx_artifact, tmp_path):
    pytest.importorskip("ray.data")
    pytest.importorskip("pyarrow")
    from ray_nodes import RayNodes

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    files = _corpus(corpus)
    out = tmp_path / "out"
    stdout, stderr = tmp_path / "screen.out", tmp_path / "screen.err"
    killed_after: int | None = None
    with RayNodes() as cluster:
        head = cluster.start_head(num_cpus=1)
        second = cluster.add_node(num_cpus=1, name="msvit_second_node")
        assert head.node_id and second.node_id and head.node_id != second.node_id
        env = cluster.env  # its auth token, usage stats off
        cmd = [sys.executable, "-m", "msvit.screen", str(corpus), "--artifact", str(onnx_artifact),
               "--out", str(out), "--ray-address", cluster.address, "--workers", "2", "--threads", "1",
               "--num-frames", str(NUM_FRAMES), "--no-progress"]
        with open(stdout, "wb") as o, open(stderr, "wb") as e:
            proc = subprocess.Popen(cmd, stdout=o, stderr=e, env=env)
        try:
            deadline = time.monotonic() + JOB_TIMEOUT_S
            while proc.poll() is None:
                assert time.monotonic() < deadline, f"msvit-screen still running after {JOB_TIMEOUT_S:.0f} s"
                if killed_after is None:
                    recs = _records(out)
                    if any(r.get("node_id") == second.node_id for r in recs):
                        os.kill(second.raylet_pid, signal.SIGKILL)  # the node dies with work in flight
                        killed_after = len(recs)
                time.sleep(0.3)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    text, err = stdout.read_text(), stderr.read_text()
    assert proc.returncode == 0, f"msvit-screen exited {proc.returncode}:\n{text}\n{err[-4000:]}"
    assert killed_after is not None and killed_after < len(files) - 2, \
        f"the second node's raylet was killed mid-job (after {killed_after} of {len(files)} records)"

    # every input exactly once, in the JSONL and in the Parquet parts, each with a verdict
    recs = _records(out)
    per_key = collections.Counter(r["key"] for r in recs)
    assert sorted(str(Path(r["source"]).resolve()) for r in recs) == sorted(str(f.resolve()) for f in files)
    assert set(per_key.values()) == {1} and _parquet_keys(out) == per_key
    assert {r["status"] for r in recs} == {"ok"} and all(r["p_fake"] is not None for r in recs)
    # the copies of one file got one P(fake), whichever node scored them
    by_original: dict[str, set] = collections.defaultdict(set)
    for r in recs:
        by_original[Path(r["source"]).name.split("_", 1)[1]].add(round(r["p_fake"], 6))
    assert all(len(p) == 1 for p in by_original.values()), by_original

    # both nodes took files; each record says which node scored it
    per_node = collections.Counter(r["node_id"] for r in recs)
    assert set(per_node) == {head.node_id, second.node_id}, per_node
    assert all(r["node_ip"] and r["host"] for r in recs)

    # the summary names the nodes, their files, and the lost one
    lines = text.splitlines()
    assert f"{len(files)} inputs: {len(files)} screened now" in text and f"statuses: {len(files)} ok" in text
    assert "nodes: 2 screened files, 1 lost mid-job" in text, text
    node_rows = {m.group(1): m for m in (re.match(r"  node (\w{8})  .*?(\d+) files  (\d+) worker\(s\)( +LOST)?$", ln)
                                         for ln in lines) if m}
    assert set(node_rows) == {head.node_id[:8], second.node_id[:8]}, text
    for node_id, n in per_node.items():
        assert int(node_rows[node_id[:8]].group(2)) == n
    assert node_rows[second.node_id[:8]].group(4) and not node_rows[head.node_id[:8]].group(4)
    assert max(len(ln) for ln in lines if str(out) not in ln) <= 100


def test_summary_counts_files_per_node_and_marks_the_lost_one():
    """No cluster needed: records -> per-node shares -> the summary's node lines."""
    from msvit.screen.cli import summary_lines
    from msvit.screen.job import ScreenSummary, _count, _mark_lost

    a, b = "a1" * 28, "b2" * 28
    s = ScreenSummary(inputs=5, engine="ray", wall_s=2.0)
    for node, worker in ((a, "h:1"), (a, "h:1"), (a, "h:9"), (b, "h:2"), (b, "h:2")):
        _count(s, dict(key=worker, status="ok", worker=worker, host="h", node_id=node, node_ip="10.0.0.7",
                       frames_sampled=1, times_ms={}))
    _mark_lost(s, {a: True, b: False})
    assert {k: (n.files, len(n.workers), n.lost) for k, n in s.nodes.items()} == \
        {"a1a1a1a1": (3, 2, False), "b2b2b2b2": (2, 1, True)}
    lines = summary_lines(s, "out")
    i = next(i for i, ln in enumerate(lines) if ln.startswith("nodes: "))
    assert lines[i] == "nodes: 2 screened files, 1 lost mid-job (finished records kept, the rest retried elsewhere)"
    assert lines[i + 1].startswith("  node a1a1a1a1  10.0.0.7 h") and "3 files  2 worker(s)" in lines[i + 1]
    assert lines[i + 2].endswith("2 files  1 worker(s)  LOST") and "b2b2b2b2" in lines[i + 2]
    assert max(map(len, lines)) <= 100

    local = ScreenSummary(inputs=1, engine="local", wall_s=1.0)
    _count(local, dict(key="k", status="ok", worker="h:1", host="h", node_id=None, node_ip=None, times_ms={}))
    assert list(local.nodes) == ["h"] and not any(ln.startswith("nodes:") for ln in summary_lines(local, "o"))
