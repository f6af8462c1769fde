"""msvit-screen: every input gets one record, P(fake) equals msvit-predict's, a second run
screens nothing, and a worker killed mid-job loses and duplicates nothing (a real local Ray
cluster, one per test session); the store's resume rules and the CLI's errors without Ray."""
from __future__ import annotations

import collections
import json
import os
import signal
from pathlib import Path

import pytest
from conftest import SHARED

from msvit.screen import InputKey, ResultStore, ScreenConfig, read_results, screen
from msvit.screen.cli import main as screen_main
from msvit.screen.store import JSONL, PARTS

VIDEOS = SHARED / "data" / "videos"
IMAGES = SHARED / "data" / "images"
NUM_FRAMES = 6  # a handful of sampled frames per clip keeps the Ray tests short


@pytest.fixture(scope="session")
def ray_cluster():
    """ONE local Ray for every screen test of the session: 2 CPUs, no dashboard, no usage stats."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    pytest.importorskip("pyarrow")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def onnx_artifact(demo_weights, tmp_path_factory) -> Path:
    """An fp32 ONNX of the demo weights (only that target: the screen tests need one artifact)."""
    pytest.importorskip("onnxruntime")
    from msvit.export.cli import main

    out = tmp_path_factory.mktemp("screen-artifact")
    assert main(["--target", "onnx", "--weights", str(demo_weights), "--out", str(out)]) == 0
    return out / "ms_eff_vit_b0_fp32.onnx"


@pytest.fixture(scope="module")
def broken_dir(tmp_path_factory) -> Path:
    """A folder of bad inputs: empty, text, cut-short video, cut image, audio-only WAV."""
    import wave

    d = tmp_path_factory.mktemp("broken")
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("not a video\n")
    (d / "cut.mp4").write_bytes((VIDEOS / "western_real.mp4").read_bytes()[:200_000])
    (d / "cut.jpg").write_bytes((IMAGES / "western_real_1.jpg").read_bytes()[:2_000])
    with wave.open(str(d / "voice.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(b"\0\0" * 800)
    (d / "voice.mp4").write_bytes((d / "voice.wav").read_bytes())
    (d / "voice.wav").unlink()
    return d


def _sources(broken_dir) -> list[str]:
    for p in (VIDEOS, IMAGES):
        if not p.is_dir():
            pytest.skip(f"{p} missing")
    return [str(VIDEOS), str(IMAGES), str(broken_dir)]


def _config(artifact) -> ScreenConfig:
    return ScreenConfig(model=str(artifact), num_frames=NUM_FRAMES, threads=1)


def _per_key(out: Path) -> collections.Counter:
    lines = (out / JSONL).read_text().splitlines()
    return collections.Counter(json.loads(ln)["key"] for ln in lines)


def _parquet_keys(out: Path) -> collections.Counter:
    import pyarrow.parquet as pq

    keys = collections.Counter()
    for f in sorted((out / PARTS).glob("part-*.parquet")):
        keys.update(pq.read_table(f, columns=["key"]).column("key").to_pylist())
    return keys


# ----------------------------------------------------------------------------- on Ray
@pytest.mark.slow
def test_screen_on_ray_matches_predict_and_resumes(ray_cluster, onnx_artifact, broken_dir, tmp_path):
    from msvit.predict.cli import main as predict_main
    from msvit.predict.sources import discover

    sources = _sources(broken_dir)
    out = tmp_path / "screen"
    s = screen(sources, out, _config(onnx_artifact), engine="ray", workers=2)
    found = discover(sources).sources
    recs = {r["source"]: r for r in read_results(out)}
    assert s.processed == s.inputs == len(found) == len(recs), "every input has exactly one record"
    assert set(recs) == {f.path for f in found}
    assert sum(_per_key(out).values()) == len(found) and set(_per_key(out).values()) == {1}
    assert _parquet_keys(out) == _per_key(out), "Parquet parts hold the same records, once each"
    bad = {Path(k).name: r["status"] for k, r in recs.items() if k.startswith(str(broken_dir))}
    assert bad == {"empty.mp4": "unreadable", "notes.mp4": "unreadable", "cut.mp4": "truncated",
                   "cut.jpg": "unreadable", "voice.mp4": "no_video_track"}
    assert len(s.workers) == 2 and s.frames > 0 and s.stage_ms["decode"] > 0

    # the same artifact through msvit-predict: the same statuses, P(fake) within 1e-6
    js = tmp_path / "predict.json"
    predict_main([*sources, "--artifact", str(onnx_artifact), "--num-frames", str(NUM_FRAMES), "--threads", "1",
                  "--json", str(js), "--no-progress"])
    ref = {r["source"]: r for r in json.loads(js.read_text())["results"]}
    assert set(ref) == set(recs)
    for src, r in ref.items():
        assert recs[src]["status"] == r["status"], src
        if r["p_fake"] is None:
            assert recs[src]["p_fake"] is None
        else:
            assert abs(recs[src]["p_fake"] - r["p_fake"]) <= 1e-6, src
            assert recs[src]["verdict"] == r["verdict"]
    assert sum(r["p_fake"] is not None for r in ref.values()) == 9  # 2 clips + 7 images

    again = screen(sources, out, _config(onnx_artifact), engine="ray", workers=2)
    assert again.processed == 0 and again.skipped == len(found)
    assert _per_key(out) == _parquet_keys(out) and sum(_per_key(out).values()) == len(found)


@pytest.mark.slow
def test_killed_worker_loses_and_duplicates_nothing(ray_cluster, onnx_artifact, broken_dir, tmp_path):
    sources = _sources(broken_dir)
    out = tmp_path / "screen"
    killed: list[str] = []

    def kill_first_worker(rec, new):
        if not killed:  # the worker that finished first: SIGKILL it while others are in flight
            killed.append(rec["worker"])
            os.kill(int(rec["worker"].rsplit(":", 1)[1]), signal.SIGKILL)

    s = screen(sources, out, _config(onnx_artifact), engine="ray", workers=2, on_record=kill_first_worker)
    assert killed
    counts = _per_key(out)
    assert s.processed == s.inputs == len(counts) and set(counts.values()) == {1}
    assert _parquet_keys(out) == counts
    later = {r["worker"] for r in read_results(out)} - set(killed)
    assert later, "the files after the kill were screened by a live (or restarted) actor"


# ----------------------------------------------------------------------------- no Ray needed
def test_store_resume_drops_a_torn_line_and_catches_up_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "o"
    rec = {"key": "k1", "source": "a.jpg", "kind": "image", "status": "ok", "p_fake": 0.25, "frames": [],
           "times_ms": {"total": 1.0}}
    with ResultStore(out, part_rows=10_000, part_seconds=1e9) as st:
        st.open()
        assert st.add(rec) and not st.add(rec), "a key is written once"
        st._jsonl.write(b'{"key": "k2", "sour')  # killed mid-line, before any Parquet part
        st._jsonl.flush()
        st._jsonl.close()
        st._jsonl, st._pending = None, []  # as if the process died
    assert not list((out / PARTS).glob("*.parquet"))
    st = ResultStore(out)
    assert st.open() == 1 and st.done == {"k1"}
    st.add(dict(rec, key="k2"))
    st.close()
    assert [r["key"] for r in read_results(out)] == ["k1", "k2"]
    assert _parquet_keys(out) == collections.Counter({"k1": 1, "k2": 1})
    st = ResultStore(out)
    assert st.open(force=True) == 0 and not (out / JSONL).read_text()


def test_input_key_changes_with_the_file_and_the_artifact(tmp_path):
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    k = InputKey.of(str(f), "sha1")
    assert InputKey.of(str(f), "sha1").key == k.key != InputKey.of(str(f), "sha2").key
    os.utime(f, ns=(k.mtime_ns + 10**9, k.mtime_ns + 10**9))
    assert InputKey.of(str(f), "sha1").key != k.key
    assert InputKey.of(str(tmp_path / "gone.jpg"), "sha1").size == -1


@pytest.mark.slow
def test_local_engine_cli_resume_force_and_settings_guard(onnx_artifact, tmp_path, capsys):
    if not IMAGES.is_dir():
        pytest.skip(f"{IMAGES} missing")
    out = tmp_path / "o"
    argv = [str(IMAGES), "--artifact", str(onnx_artifact), "--out", str(out), "--engine", "local", "--no-progress"]
    assert screen_main(argv) == 0
    text = capsys.readouterr().out
    assert "7 inputs: 7 screened now, 0 already recorded" in text and "throughput:" in text
    assert max(len(ln) for ln in text.splitlines() if str(out) not in ln) <= 100
    assert screen_main(argv) == 0
    assert "0 screened now, 7 already recorded (skipped)" in capsys.readouterr().out
    assert screen_main([*argv, "--num-frames", "3"]) == 2  # other settings: refused, nothing touched
    assert "--force" in capsys.readouterr().err
    assert screen_main([*argv, "--force"]) == 0
    assert "7 screened now" in capsys.readouterr().out
    assert len(read_results(out)) == 7


def test_cli_usage_errors_before_any_work(tmp_path, capsys):
    img = tmp_path / "a.jpg"
    img.write_bytes(b"x")
    art = tmp_path / "m.onnx"
    art.write_bytes(b"x")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    base = [str(img), "--artifact", str(art)]
    assert screen_main([*base, "--out", str(blocker)]) == 2
    assert screen_main([*base, "--out", str(tmp_path / "o"), "--engine", "local", "--workers", "2"]) == 2
    assert screen_main([*base, "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert screen_main([str(img), "--out", str(tmp_path / "o")]) == 2
    assert screen_main([*base[:2], str(tmp_path / "none.onnx"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists(), "nothing written for bad arguments"
    with pytest.raises(SystemExit):
        screen_main(["--help"])
    assert "Ray" in capsys.readouterr().out


def test_files_per_task_keeps_eight_tasks_per_actor_up_to_eight_files():
    from msvit.screen.engines import MAX_FILES_PER_TASK, files_per_task

    assert files_per_task(5, 2) == 1 and files_per_task(36, 2) == 2 and files_per_task(108, 2) == 6
    assert files_per_task(100_000, 4) == MAX_FILES_PER_TASK == 8 and files_per_task(0, 0) == 1
