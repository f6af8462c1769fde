"""msvit.bench: real (tiny) runs on CPU. No timing thresholds: only structure, ordering and
numbers that must equal an independent computation. One ONNX export for the whole module."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import time

import pytest

from msvit.bench import ROW_KEYS, SCHEMA, BenchReport, discover_artifacts, run
from msvit.bench.timing import Interleaved, interleaved, measure, paired_speedup

FAST = dict(iters=3, warmup=1, log=None, progress=False)
TOP_KEYS = {"schema", "settings", "env", "compute", "noise", "rows", "pipeline"}
LAT_KEYS = {"batch", "iters", "warmup", "seconds", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms",
            "max_ms", "throughput"}
COMPUTE_KEYS = {"model", "attn_mode", "input", "params", "params_m", "macs", "gmacs", "gflops", "convention",
                "budget_gmacs", "within_budget", "icon"}


@pytest.fixture(scope="module")
def torch_report(demo_weights, faces_dir) -> BenchReport:
    """PyTorch alone, demo weights, the labelled eval set."""
    return run(weights=demo_weights, data=faces_dir / "eval", targets=[], **FAST)


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory, demo_model) -> Path:
    from msvit.export import export

    out = tmp_path_factory.mktemp("onnx_artifacts")
    export(demo_model, "onnx", "fp32", out, log=None)
    return out


def test_measure_stats_ordered():
    calls = []
    st = measure(lambda x: calls.append(1), np.zeros((2, 3)), warmup=2, iters=5)
    assert len(calls) == 7 and st.iters == 5 and st.batch == 2
    assert st.min_ms <= st.p50_ms <= st.p90_ms <= st.p99_ms <= st.max_ms
    st = measure(lambda x: None, np.zeros((1, 3)), warmup=0, iters=1, min_time=0.05)
    assert st.seconds >= 0.05 and st.iters > 1  # min_time keeps the loop going past iters
    with pytest.raises(ValueError):
        measure(lambda x: None, np.zeros((1, 3)), iters=0)


def test_latency_fields_on_a_real_run(torch_report):
    base = torch_report.rows[0]
    assert base.target == "torch" and base.status == "ok" and base.icon == "✅"
    lat = base.latency
    assert set(lat) == LAT_KEYS and lat["iters"] >= 3 and lat["batch"] == 1
    assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
    assert lat["throughput"] > 0 and base.speedup == 1.0
    assert base.realtime is (lat["p99_ms"] <= 1000 / 30)
    assert base.memory_method in ("rss_hwm_delta", "psutil_rss_sampled_delta") and base.memory_peak_mb >= 0


@pytest.mark.slow
def test_accuracy_equals_independent_sklearn(torch_report, demo_model, faces_dir):
    import torch
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    from msvit.data import load_images

    s = load_images(faces_dir / "eval", 224)
    with torch.no_grad():
        p = torch.sigmoid(demo_model(torch.from_numpy(s.x))).numpy().reshape(-1).astype(np.float64)
    base = torch_report.rows[0]
    assert base.n_eval == len(s) and torch_report.settings["labelled"]
    assert base.accuracy == pytest.approx(accuracy_score(s.labels, p >= 0.5), abs=1e-4)
    assert base.auc == pytest.approx(roc_auc_score(s.labels, p), abs=1e-4)
    assert base.log_loss == pytest.approx(log_loss(s.labels, p), abs=1e-4)
    assert base.agreement == 1.0 and base.max_abs_dprob == 0.0


def test_budget_default_b0_passes(torch_report):
    c = torch_report.compute
    assert set(c) == COMPUTE_KEYS
    assert c["within_budget"] is True and c["icon"] == "✅" and c["gmacs"] <= 0.68 == c["budget_gmacs"]
    assert c["gflops"] == pytest.approx(2 * c["gmacs"], rel=1e-3)


def test_budget_applied_b0_fails():
    rep = run(attn_mode="applied", targets=[], iters=1, warmup=0, log=None, progress=False)
    assert rep.compute["attn_mode"] == "applied"
    assert rep.compute["within_budget"] is False and rep.compute["icon"] == "❌" and rep.compute["gmacs"] > 0.68


def test_json_schema_stable(torch_report):
    d = json.loads(json.dumps(torch_report.to_dict(), default=str))
    assert set(d) == TOP_KEYS and d["schema"] == SCHEMA
    assert {"cpu", "cpu_cores_logical", "os", "versions", "threads", "date", "gpu", "jetson"} <= set(d["env"])
    assert d["env"]["versions"]["torch"] and d["env"]["threads"] == d["settings"]["threads"]
    for row in d["rows"]:
        assert tuple(row) == ROW_KEYS
        assert row["icon"] == {"ok": "✅", "failed": "❎", "unavailable": "❌"}[row["status"]]


def test_unrunnable_target_is_a_reasoned_row(demo_weights):
    rep = run(weights=demo_weights, targets=["coreml"], iters=1, warmup=0, log=None, progress=False)
    assert rep.rows[0].icon == "✅"
    row = rep.rows[1]
    assert row.target == "coreml" and row.status == "unavailable" and row.icon == "❌"
    assert row.note and row.latency is None and tuple(row.to_dict()) == ROW_KEYS


def test_discover_artifacts_from_manifests_and_metadata_not_names(tmp_path, onnx_dir):
    def art(name: str, meta: dict, status: str = "ok") -> None:
        p = tmp_path / name
        if name.endswith(".mlpackage"):
            p.mkdir()
            (p / "Manifest.json").write_text("{}")
        else:
            p.write_bytes(b"x")
        doc = {"metadata": meta, "result": {"status": status, "files": [name]}}
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))

    # the names say nothing, or lie: every fact comes from the manifest beside the file
    art("a.onnx", {"target": "onnx", "precision": "fp16", "input_shape": "1x3x224x224", "model": "ms_eff_vit_b0"})
    art("b.xml", {"target": "openvino", "precision": "fp32", "input_shape": "8x3x224x224", "attn_mode": "applied"})
    art("c_fp16.ptl", {"target": "torchscript", "precision": "fp32", "input_shape": "Nx3x224x224"})
    art("d.onnx", {"target": "trt", "precision": "fp16", "input_shape": "1x3x224x224"}, status="unavailable")
    art("e.mlpackage", {"target": "coreml", "precision": "fp16", "input_shape": "1x3x224x224"})
    (tmp_path / "notes.txt").write_text("not an artifact")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")  # no manifest, no readable metadata
    real = next(onnx_dir.glob("*.onnx"))
    shutil.copy(real, tmp_path / "renamed.onnx")  # no manifest: its embedded metadata speaks
    found = {a.path.name: a for a in discover_artifacts(tmp_path)}
    assert set(found) == {"a.onnx", "b.xml", "c_fp16.ptl", "d.onnx", "e.mlpackage", "junk.onnx", "renamed.onnx"}
    assert (found["a.onnx"].target, found["a.onnx"].precision, found["a.onnx"].batch) == ("onnx", "fp16", 1)
    xml = found["b.xml"]
    assert (xml.target, xml.batch, xml.attn_mode) == ("openvino", 8, "applied")
    assert found["c_fp16.ptl"].batch is None and found["c_fp16.ptl"].precision == "fp32"
    assert found["d.onnx"].target == "trt" and found["d.onnx"].status == "unavailable"
    assert found["e.mlpackage"].target == "coreml"
    assert found["junk.onnx"].status == "unreadable" and "junk.onnx" in found["junk.onnx"].message
    r = found["renamed.onnx"]
    assert (r.target, r.precision, r.model, r.batch, r.status) == ("onnx", "fp32", "ms_eff_vit_b0", 1, "ok")
    assert r.weights_sha256 and len(r.weights_sha256) == 64


def test_cli_end_to_end(onnx_dir, demo_weights, tmp_path):
    from msvit.bench.cli import main

    js, md, png = tmp_path / "b.json", tmp_path / "b.md", tmp_path / "b.png"
    rc = main(["--artifacts", str(onnx_dir), "--weights", str(demo_weights), "--targets", "onnx", "--iters", "3",
               "--warmup", "1", "--threads", "2", "--json", str(js), "--markdown", str(md), "--plot", str(png),
               "--quiet"])
    assert rc == 0
    d = json.loads(js.read_text())
    assert set(d) == TOP_KEYS and [r["target"] for r in d["rows"]] == ["torch", "onnx"]
    onnx = d["rows"][1]
    assert tuple(onnx) == ROW_KEYS and onnx["status"] == "ok", onnx["note"]
    assert onnx["artifact"].endswith("ms_eff_vit_b0_fp32.onnx") and onnx["size_mb"] > 1
    assert onnx["latency"]["p50_ms"] <= onnx["latency"]["p90_ms"] <= onnx["latency"]["p99_ms"]
    assert onnx["speedup"] > 0 and onnx["agreement"] == 1.0 and onnx["parity_passed"] is True
    assert onnx["threads"] == 2 == d["settings"]["threads"]
    assert md.read_text().startswith("# msvit-bench") and "| status | format |" in md.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as im:  # matplotlib stamps its name in the PNG text chunk
        assert "matplotlib" in im.info.get("Software", "").lower() and im.size[0] > 100


def test_cpu_int8_features_from_cpuinfo():
    from msvit.bench.env import cpu_int8_features

    zen3 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma vaes\n"
    sapphire = "flags\t\t: avx2 avx512f avx512_vnni amx_int8 avx_vnni\n"
    graviton = "Features\t: fp asimd asimddp sha512 i8mm bf16\n"
    assert cpu_int8_features(zen3) == []
    assert cpu_int8_features(sapphire) == ["avx512_vnni", "avx_vnni", "amx_int8"]
    assert cpu_int8_features(graviton) == ["asimddp", "i8mm"]
    assert isinstance(cpu_int8_features(), list)  # this machine's, whatever it has


def test_interleaved_rotates_blocks_and_pairs_them():
    calls = []
    res = interleaved([lambda: calls.append(0), lambda: calls.append(1)], iters=6, warmup=1, block=3, rewarm=0)
    assert [len(r.ms) for r in res] == [6, 6] and [len(r.block_ms) for r in res] == [2, 2]
    assert calls[:2] == [0, 1]  # warm-up
    assert calls[2:] == [0] * 3 + [1] * 3 + [1] * 3 + [0] * 3  # the order rotates each round
    # the machine slows down 4x between rounds: p50s would mislead, per-round ratios do not
    base, other = Interleaved([], [10.0, 40.0, 40.0]), Interleaved([], [5.0, 20.0, 20.0])
    assert paired_speedup(base, other) == 2.0
    # interquartile range of the block medians / their median: [5, 20, 20] -> (20 - 12.5) / 20
    assert other.spread_pct == pytest.approx(37.5) and Interleaved([], [5.0]).spread_pct == 0.0
    # one stray block does not make a steady row noisy
    assert Interleaved([], [10.0] * 9 + [30.0]).spread_pct == 0.0


def test_threads_leave_busy_cores_to_their_owners():
    import subprocess
    import sys

    from msvit.bench.timing import busy_cores, free_threads

    assert free_threads(2, 0.97) == 1 and free_threads(2, 0.2) == 2 and free_threads(2, 3.0) == 1
    assert free_threads(4, None) == 4
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert busy_cores(1.0) >= 0.7  # one core spun by another process is seen as busy
    finally:
        spin.kill()
        spin.wait()


def test_noise_verdict():
    from msvit.bench import noise_verdict

    quiet = noise_verdict({"PyTorch fp32": 4.0, "ONNX fp32": 6.0}, 2.0, 10)
    assert not quiet["noisy"] and quiet["warning"] == "" and quiet["max_spread_pct"] == 6.0
    spread = noise_verdict({"PyTorch fp32": 4.0, "ONNX fp32": 60.0}, 2.0, 10)
    assert spread["noisy"] and "ONNX fp32 block medians differ by 60%" in spread["warning"]
    busy = noise_verdict({"PyTorch fp32": 4.0}, 48.0, 10)
    assert busy["noisy"] and "other processes used 48% of the CPUs" in busy["warning"]


def test_table_fits_100_columns(torch_report):
    from rich.console import Console

    from msvit.bench.report import print_table

    con = Console(width=100, record=True, force_terminal=False)
    print_table(torch_report, console=con)
    text = con.export_text()
    assert "PyTorch" in text and "speed-up" in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_long_notes_are_numbered_lines_under_the_table(torch_report):
    """A long note is one numbered line under the table, its row's cell holds the number; one
    note shared by two rows is printed once; a short note stays in its cell."""
    import copy

    from rich.console import Console

    from msvit.bench.report import NOTE_INLINE, print_table

    rep = copy.deepcopy(torch_report)
    long = "exported from other/unknown weights: parity not judged"
    rep.rows = [copy.deepcopy(rep.rows[0]) for _ in range(3)]
    rep.rows[0].note, rep.rows[1].note, rep.rows[2].note = long, long, "short"
    assert len(long) > NOTE_INLINE >= len("short")
    con = Console(width=100, record=True, force_terminal=False)
    print_table(rep, console=con)
    lines = con.export_text().splitlines()
    rows = [ln.replace(" ", "") for ln in lines if ln.startswith("│") and "PyTorch" in ln]
    assert [r.rsplit("│", 2)[1] for r in rows] == ["(1)", "(1)", "short"]
    assert [ln for ln in lines if long in ln] == [f"(1) {long}"]
    assert max(len(ln) for ln in lines) <= 100


def test_int8_row_over_its_own_gate_is_flagged(onnx_dir, demo_weights, faces_dir, tmp_path):
    """Issue 14: msvit-bench --data flags an INT8 artifact whose max|ΔP| on that data exceeds
    the gate recorded in the artifact (here a copy whose recorded gate is impossibly tight)."""
    import onnx

    from msvit.runtime.onnx import read_metadata, set_metadata

    src = next(onnx_dir.glob("*.onnx"))
    proto = onnx.load(str(src))
    set_metadata(proto, {**read_metadata(src), "precision": "int8", "guard_max_dprob": "1e-9"})
    onnx.save(proto, str(tmp_path / "tight.onnx"))
    rep = run(weights=demo_weights, data=faces_dir / "eval", artifacts=tmp_path, targets=["onnx"], **FAST)
    row = rep.rows[1]
    assert row.precision == "int8" and row.status == "failed" and row.icon == "❎"
    assert "guard_max_dprob" in row.note and row.max_abs_dprob > 1e-9


def test_tensor_and_image_variants_are_rows_of_their_own(tmp_path):
    """An --input image artifact beside its tensor twin (same target, precision, batch) is
    benchmarked too, not skipped as a duplicate; its row says what it takes."""
    from types import SimpleNamespace

    from msvit.bench import Artifact
    from msvit.bench.plan import artifact_rows

    arts = []
    for kind in ("tensor", "image"):
        p = tmp_path / f"m_{kind}.onnx"
        p.write_bytes(b"x" * 10)
        arts.append(Artifact(p, "onnx", "fp32", 1, "ms_eff_vit_b0", "deepguard", weights_sha256="w",
                             metadata={"input_kind": kind} if kind == "image" else {}))
    said = []
    cands = artifact_rows(arts, None, None, 1, 1, SimpleNamespace(weights_sha256="w"), said.append)
    assert [(c.row.input_kind, c.row.note) for c in cands] == [("tensor", ""), ("image", "uint8 image input")]
    assert not said  # nothing skipped


@pytest.mark.slow
def test_pipeline_overlapped_reports_frames_videos_min_and_busy_shares(onnx_dir, demo_weights, capsys):
    """``msvit-bench --pipeline``: the overlapped table (issue 32). The artifact row's stage
    threads are measured (every candidate split recorded, the choice cached for msvit-predict);
    the PyTorch row (the baseline) uses the default split. Same P(fake) as the sequential stages."""
    from conftest import SHARED

    from msvit.bench.report import print_table
    from msvit.predict.tune import available_cores, candidates, load_tuning, tuning_key

    video = SHARED / "data" / "videos" / "western_real.mp4"
    if not video.is_file():
        pytest.skip("shared videos not found")
    rep = run(weights=demo_weights, artifacts=onnx_dir, pipeline=video, pipeline_frames=4, pipeline_iters=1,
              pipeline_videos=2, threads=2, **FAST)
    rows = [r for r in rep.pipeline if r.status == "ok"]
    assert len(rows) == 2, rep.pipeline
    for r in rows:
        assert r.overlap_fps > 0 and r.videos_per_min > 0 and r.overlap_p_fake == r.p_fake
        assert set(r.busy_share) == {"decode", "detect", "classify"}
        assert all(0 < v <= 1.05 for v in r.busy_share.values())
    torch_row, onnx_row = rows
    assert torch_row.stage_threads["source"].startswith("default") and not torch_row.tuning
    assert onnx_row.stage_threads["source"].startswith("measured")
    assert [(t["decode"], t["detect"], t["classify"]) for t in onnx_row.tuning] == \
        [(c.decode, c.detect, c.classify) for c in candidates(2)]
    path = next(onnx_dir.glob("*.onnx"))
    cached = load_tuning(tuning_key(path, "blazeface", None, 4, 2))
    assert cached is not None and cached.source == onnx_row.stage_threads["source"]
    d = json.loads(json.dumps(rep.to_dict(), default=str))
    assert {"overlap_fps", "videos_per_min", "busy_share", "stage_threads", "tuning"} <= set(d["pipeline"][0])
    print_table(rep)
    out = capsys.readouterr().out
    assert "overlapped (msvit-predict)" in out and "videos/min" in out
    assert available_cores() >= 1
