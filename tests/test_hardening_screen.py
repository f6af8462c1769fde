"""Issue 34: msvit-screen and msvit-explain under bad input, signals, full disks and odd names:
one test per row of the issue's catalogue (each failed before the fix), then the check that no
msvit command writes into $HOME. The fault patterns are test_hardening.py's (a tmpfs for the
full disk, one-line errors, documented exit codes); Ray runs are real local clusters started by
msvit-screen itself in a fresh process (as a user runs it), never by the test.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_WEIGHTS, FACES, ROOT, SHARED
from test_hardening import TRACEBACK, _tmpfs

from msvit.errors import EXIT_FAILED, EXIT_TERMINATED, EXIT_UNAVAILABLE, EXIT_USAGE, OutputWriteError, run_cli
from msvit.screen import ResultStore, read_results
from msvit.screen.cli import main as screen_main
from msvit.screen.store import JSONL, PARTS

IMAGES = SHARED / "data" / "images"
VIDEOS = SHARED / "data" / "videos"
RAY_SOCKET_RE = re.compile(r"AF_UNIX path length|validate_socket")


def _need(*paths: Path) -> None:
    for p in paths:
        if not p.exists():
            pytest.skip(f"shared test data not found: {p}")


def _env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: this worktree's msvit, no pytest variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **extra)
    if home is not None:
        env["HOME"] = str(home)
        for k in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "MSVIT_CACHE_DIR", "MPLCONFIGDIR"):
            env.pop(k, None)
    return env


def _cli(module: str) -> list[str]:
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def _lines(path: Path) -> list[dict]:
    """Every line of a results.jsonl, each of which must be a whole JSON record."""
    raw = path.read_bytes()
    assert not raw or raw.endswith(b"\n"), "a torn last line"
    return [json.loads(ln) for ln in raw.splitlines()]


def _parquet_keys(out: Path) -> list[str]:
    import pyarrow.parquet as pq

    return sorted(k for f in sorted((out / PARTS).glob("part-*.parquet"))
                  for k in pq.read_table(f, columns=["key"]).column("key").to_pylist())


def _one_error_line(text: str) -> str:
    errs = [ln for ln in text.splitlines() if ln.startswith("❌")]
    assert len(errs) == 1 and TRACEBACK not in text, text[-3000:]
    return errs[0]


# ---- row 1: a bad checkpoint or artifact: typed error in the driver, before Ray -------------------

def _wrong_shape_safetensors(path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    from msvit.model.weights import read_state_dict

    sd = {k: v for k, v in read_state_dict(DEMO_WEIGHTS).items() if torch.is_tensor(v)}
    name = next(k for k, v in sd.items() if v.ndim == 4)
    sd[name] = torch.zeros(*sd[name].shape[:-1], sd[name].shape[-1] + 1)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


@pytest.mark.parametrize("case", ["random.bin", "wrong-shape.safetensors", "random.onnx"])
def test_bad_model_with_ray_engine_is_its_typed_error_before_ray(case, tmp_path, capsys, monkeypatch):
    pytest.importorskip("ray")
    _need(IMAGES, DEMO_WEIGHTS)
    import msvit.screen.job as job

    def no_ray(*a, **k):
        raise AssertionError("Ray was started for a model that cannot be opened")

    monkeypatch.setattr(job, "start_ray", no_ray)
    model = tmp_path / case
    if case == "wrong-shape.safetensors":
        _wrong_shape_safetensors(model)
    else:
        model.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    flag = "--artifact" if case.endswith(".onnx") else "--weights"
    rc = screen_main([str(IMAGES), flag, str(model), "--out", str(tmp_path / "o"), "--no-progress"])
    out, err = capsys.readouterr()
    line = _one_error_line(out + err)
    assert rc == EXIT_USAGE == 2, (rc, line)
    assert case in line and "internal error" not in line and "ActorDied" not in line, line
    assert not (tmp_path / "o").exists(), "nothing written for a model that cannot be opened"


# ---- row 2: SIGTERM mid-job: a clean stop like Ctrl-C, exit 143, records kept ---------------------

def test_help_names_the_signal_exit_codes(capsys):
    with pytest.raises(SystemExit):
        screen_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for word in ("130 Ctrl-C", "143 SIGTERM", "disk full", "MSVIT_RAY_START_TIMEOUT", "not_a_file"):
        assert word in text, word


def _wait_for_records(out: Path, proc: subprocess.Popen, n: int = 1, timeout: float = 420) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / JSONL).is_file() and (out / JSONL).read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"msvit-screen ended ({proc.returncode}) before its first record: {proc.stdout.read()[-3000:]}")
        time.sleep(0.5)
    proc.kill()
    pytest.fail("no record within the time limit")


@pytest.mark.slow
@pytest.mark.parametrize("target", ["driver", "process-group"])
def test_sigterm_mid_job_stops_cleanly_and_resumes(target, tmp_path):
    pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")  # Ray's own dependency
    _need(IMAGES, VIDEOS, DEMO_WEIGHTS)
    out = tmp_path / "s"
    argv = [str(IMAGES), str(VIDEOS), "--weights", str(DEMO_WEIGHTS), "--out", str(out), "--workers", "1",
            "--num-frames", "4", "--no-progress"]
    proc = subprocess.Popen([*_cli("msvit.screen.cli"), *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env(), cwd=tmp_path, start_new_session=True)
    _wait_for_records(out, proc)
    ray_procs = psutil.Process(proc.pid).children(recursive=True)  # GCS, raylet, the actor's worker, ...
    assert ray_procs
    if target == "driver":
        os.kill(proc.pid, signal.SIGTERM)
    else:  # the driver and everything in its group (the shell's Ctrl-\ / a supervisor's stop)
        os.killpg(proc.pid, signal.SIGTERM)
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_TERMINATED == 143, (proc.returncode, text[-3000:])
    _, alive = psutil.wait_procs(ray_procs, timeout=60)  # the driver's clean stop took Ray with it
    assert not alive, [(p.pid, p.name()) for p in alive]
    assert "SIGTERM received" not in text and TRACEBACK not in text, text[-3000:]
    last = text.strip().splitlines()[-1]
    assert re.fullmatch(r"interrupted after \d+ s: every finished record is kept in .*; run the same command "
                        r"again to resume \(SIGTERM\)", last), last
    kept = _lines(out / JSONL)
    assert kept and len({r["key"] for r in kept}) == len(kept)
    # the same command (here on the local engine: the records do not depend on it) finishes the rest
    assert subprocess.run([*_cli("msvit.screen.cli"), *argv, "--engine", "local"], env=_env(), cwd=tmp_path,
                          capture_output=True, timeout=600).returncode in (0, 1)
    done = _lines(out / JSONL)
    assert len(done) == 9 and len({r["key"] for r in done}) == 9 and all(r in done for r in kept)
    assert _parquet_keys(out) == sorted(r["key"] for r in done)


# ---- rows 3 and 4: a name that is not UTF-8, dangling links, link loops, FIFOs ------------------------

NON_UTF8 = b"caf\xe9-\xff.jpg"


def _odd_folder(tmp_path: Path) -> Path:
    """A good image, the same bytes under a name that is not UTF-8, a junk .mp4 under another,
    a dangling symlink, a symlink loop and a FIFO named like media."""
    d = tmp_path / "odd"
    d.mkdir()
    img = (IMAGES / "western_real_1.jpg").read_bytes()
    (d / "good.jpg").write_bytes(img)
    with open(os.fsencode(d) + b"/" + NON_UTF8, "wb") as f:
        f.write(img)
    with open(os.fsencode(d) + b"/\xff\xfe-junk.mp4", "wb") as f:
        f.write(b"not a video\n")
    (d / "dangling.jpg").symlink_to(d / "gone.jpg")
    (d / "loop.mp4").symlink_to(d / "loop.mp4")
    os.mkfifo(d / "pipe.mp4")
    return d


def _check_odd_records(d: Path, recs: list[dict]) -> None:
    by_name = {os.fsencode(r["source"]).rsplit(b"/", 1)[-1]: r for r in recs}
    assert set(by_name) == {b"good.jpg", NON_UTF8, b"\xff\xfe-junk.mp4", b"dangling.jpg", b"loop.mp4", b"pipe.mp4"}
    assert os.fsencode(by_name[NON_UTF8]["source"]) == os.fsencode(d) + b"/" + NON_UTF8, "path kept losslessly"
    good, odd = by_name[b"good.jpg"], by_name[NON_UTF8]
    assert good["status"] == odd["status"] == "ok" and abs(good["p_fake"] - odd["p_fake"]) < 1e-6
    assert by_name[b"\xff\xfe-junk.mp4"]["status"] == "unreadable"
    assert by_name[b"dangling.jpg"]["status"] == "unreadable" and "broken symlink" in by_name[b"dangling.jpg"]["message"]
    assert by_name[b"loop.mp4"]["status"] == "unreadable" and "symlink loop" in by_name[b"loop.mp4"]["message"]
    assert by_name[b"pipe.mp4"]["status"] == "not_a_file" and "FIFO" in by_name[b"pipe.mp4"]["message"]


def _alarm(seconds: int):
    """A FIFO that is opened blocks forever: fail instead of hanging the test run."""
    def boom(*a):
        raise TimeoutError("blocked (a FIFO opened?)")
    signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)


@pytest.mark.slow
def test_odd_names_each_get_a_record_local_engine_and_predict(tmp_path, capsys):
    _need(IMAGES, DEMO_WEIGHTS)
    d = _odd_folder(tmp_path)
    out = tmp_path / "s"
    _alarm(600)
    try:
        rc = screen_main([str(d), "--weights", str(DEMO_WEIGHTS), "--out", str(out), "--engine", "local",
                          "--no-progress"])
        text = "".join(capsys.readouterr())
        assert rc == EXIT_FAILED and TRACEBACK not in text, text  # 1: some inputs got no verdict
        recs = _lines(out / JSONL)
        _check_odd_records(d, recs)
        assert _parquet_keys(out) == sorted(r["key"] for r in recs)
        import pyarrow.parquet as pq

        t = pq.read_table(out / PARTS)
        assert os.fsencode(d) + b"/" + NON_UTF8 in t.column("source_bytes").to_pylist()
        statuses = next(ln for ln in text.splitlines() if ln.startswith("statuses: "))
        assert sorted(statuses[10:].split(", ")) == ["1 not_a_file", "2 ok", "3 unreadable"], statuses
        # msvit-predict on the same folder: the same rows (it shares discovery and the statuses)
        from msvit.predict.cli import main as predict_main

        rc = predict_main([str(d), "--weights", str(DEMO_WEIGHTS), "--json", str(tmp_path / "p.json"),
                           "--csv", str(tmp_path / "p.csv"), "--no-progress"])
        text = "".join(capsys.readouterr())
        assert rc == EXIT_FAILED and TRACEBACK not in text and "caf\\udce9-\\udcff.jpg" in text, text
        _check_odd_records(d, json.loads((tmp_path / "p.json").read_text())["results"])
        assert os.fsencode(d) + b"/" + NON_UTF8 + b"," in (tmp_path / "p.csv").read_bytes()  # the name's own bytes
        rc = predict_main([str(d / "pipe.mp4"), "--weights", str(DEMO_WEIGHTS), "--no-progress"])  # given directly
        assert rc == EXIT_FAILED and "not_a_file" in "".join(capsys.readouterr())
    finally:
        signal.alarm(0)


def test_discovery_names_each_odd_entry(tmp_path):
    from msvit.predict.sources import discover

    d = tmp_path / "d"
    d.mkdir()
    (d / "dangling.mp4").symlink_to("nowhere.mp4")
    (d / "loop.jpg").symlink_to("loop.jpg")
    os.mkfifo(d / "pipe.mp4")
    (d / "sub").mkdir()
    (d / "sub" / "up").symlink_to("..")  # a folder loop: walked once
    (d / "notes").symlink_to("gone")  # no media suffix: ignored like any other file
    found = discover([str(d), str(d / "pipe.mp4")])
    kinds = [(Path(s.path).name, s.kind) for s in found.sources]
    assert kinds == [("dangling.mp4", "broken"), ("loop.jpg", "broken"), ("pipe.mp4", "not_a_file"),
                     ("pipe.mp4", "not_a_file")]
    assert found.ignored == [str(d / "notes")]


# ---- row 5: the output folder's disk fills up ----------------------------------------------------------

def _rec(i: int) -> dict:
    return {"key": f"k{i}", "source": f"/x/{i}.jpg", "kind": "image", "status": "ok", "p_fake": 0.5,
            "frames": [{"index": 0, "p_fake": 0.5}] * 20, "times_ms": {"total": 1.0}}


def test_disk_full_at_a_jsonl_write_leaves_whole_lines_and_resumes(tmp_path, capsys, monkeypatch):
    """A fault injected at the write (works anywhere): half a line reaches the disk, then ENOSPC."""
    pytest.importorskip("pyarrow")
    out = tmp_path / "o"
    st = ResultStore(out, part_rows=10_000, part_seconds=1e9)
    st.open()
    st.add(_rec(0))
    st.add(_rec(1))
    real = st._jsonl

    class Full:  # writes half of what it is given, then the disk is full
        def __init__(self):
            self.calls = 0

        def write(self, b):
            self.calls += 1
            if self.calls == 1:
                return real.write(bytes(b)[: len(b) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(real, name)

    st._jsonl = Full()
    with pytest.raises(OutputWriteError) as e:
        st.add(_rec(2))
    st._jsonl = real
    st.close()
    msg = str(e.value)
    assert msg.startswith(f"disk full writing into {out} (the file system at ") and "2 records kept" in msg, msg
    assert "run the same command again to resume" in msg
    assert [r["key"] for r in _lines(out / JSONL)] == ["k0", "k1"], "the cut-short line is gone, none torn"
    assert run_cli(lambda a: (_ for _ in ()).throw(e.value), None) == EXIT_FAILED == 1
    assert capsys.readouterr().err.strip() == f"❌ {msg}"
    st = ResultStore(out)  # space again: the resume keeps both and catches the Parquet part up
    assert st.open() == 2
    st.add(_rec(2))
    st.close()
    assert [r["key"] for r in _lines(out / JSONL)] == ["k0", "k1", "k2"] and _parquet_keys(out) == ["k0", "k1", "k2"]


@pytest.mark.slow
def test_disk_full_out_on_a_small_tmpfs_exits_1_with_one_line_then_resumes(tmp_path, capsys):
    _need(IMAGES, DEMO_WEIGHTS)
    pytest.importorskip("pyarrow")
    disk = _tmpfs(tmp_path / "small", "1m")
    try:
        filler = disk / "filler"
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        filler.write_bytes(b"\0" * (free - 2 * 4096))  # room for the manifest and one page of records
        out = disk / "s"
        argv = [str(IMAGES), "--weights", str(DEMO_WEIGHTS), "--out", str(out), "--engine", "local", "--no-progress"]
        rc = screen_main(argv)
        line = _one_error_line("".join(capsys.readouterr()))
        assert rc == EXIT_FAILED == 1, line
        assert line.startswith(f"❌ disk full writing into {out} (the file system at {disk}, "), line
        assert "records kept, each whole; free space and run the same command again to resume" in line
        kept = _lines(out / JSONL)
        assert 0 < len(kept) < 7
        filler.unlink()
        assert screen_main(argv) == 0
        text = "".join(capsys.readouterr())
        assert f"7 inputs: {7 - len(kept)} screened now, {len(kept)} already recorded" in text, text
        done = _lines(out / JSONL)
        assert len(done) == 7 == len({r["key"] for r in done}) and _parquet_keys(out) == sorted(r["key"] for r in done)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# ---- rows 6, 7, 8: Ray's start: long TMPDIR, node IP, no loopback ----------------------------------------

def test_long_tmpdir_moves_rays_session_folder_where_sockets_fit(tmp_path, monkeypatch):
    from msvit.errors import EngineUnavailableError
    from msvit.screen import local_ray

    long = tmp_path / ("t" * max(1, 94 - len(str(tmp_path)) - 1))
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(long))
    short = local_ray.temp_dir()
    assert short is not None and len(short + local_ray.SOCKET_TAIL) <= 107 and os.path.isdir(short)
    assert os.stat(short).st_uid == os.getuid()
    monkeypatch.setenv("TMPDIR", "/tmp")
    assert local_ray.temp_dir() is None  # Ray's own choice fits: left alone
    monkeypatch.setenv("RAY_TMPDIR", str(long))  # the user's choice for Ray: a clear error, not moved
    with pytest.raises(EngineUnavailableError, match="RAY_TMPDIR is .* bytes long.*set RAY_TMPDIR to a folder"):
        local_ray.temp_dir()


@pytest.mark.slow
def test_ray_engine_under_a_long_tmpdir_with_odd_names(tmp_path):
    """A real local cluster under a 94-character TMPDIR (Ray's sockets would not fit) screening
    the odd folder: every input its record, the non-UTF-8 name through Arrow and back."""
    pytest.importorskip("ray")
    _need(IMAGES, DEMO_WEIGHTS)
    d = _odd_folder(tmp_path)
    long = tmp_path / ("t" * (94 - len(str(tmp_path)) - 1))
    long.mkdir()
    assert len(str(long)) == 94
    out = tmp_path / "s"
    r = subprocess.run([*_cli("msvit.screen.cli"), str(d), "--weights", str(DEMO_WEIGHTS), "--out", str(out),
                        "--workers", "1", "--no-progress"], env=_env(TMPDIR=str(long)), cwd=tmp_path,
                       capture_output=True, text=True, timeout=900)
    text = r.stdout + r.stderr
    assert r.returncode == EXIT_FAILED and TRACEBACK not in text and not RAY_SOCKET_RE.search(text), text[-3000:]
    assert "Ray's session folder goes in /" in text
    _check_odd_records(d, _lines(out / JSONL))


def _unshare_ok() -> bool:
    return bool(shutil.which("unshare")) and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.slow
def test_no_loopback_gives_up_at_once_with_exit_3(tmp_path):
    if not _unshare_ok():
        pytest.skip("unshare -n not permitted here")
    _need(IMAGES, DEMO_WEIGHTS)
    t0 = time.monotonic()
    r = subprocess.run(["unshare", "-n", *_cli("msvit.screen.cli"), str(IMAGES), "--weights", str(DEMO_WEIGHTS),
                        "--out", str(tmp_path / "s"), "--no-progress"], env=_env(), cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    line = _one_error_line(r.stdout + r.stderr)
    assert r.returncode == EXIT_UNAVAILABLE == 3, (r.returncode, line)
    assert "loopback network does not answer" in line and "--engine local" in line
    assert time.monotonic() - t0 < 120


_NO_PRECHECK = ("import sys, msvit.screen.local_ray as l; l.check_loopback = lambda *a, **k: None; "
                "from msvit.screen.cli import main; sys.exit(main())")


@pytest.mark.slow
def test_a_ray_start_that_hangs_gives_up_after_the_timeout(tmp_path):
    """The backstop: with the loopback check out of the way, Ray's own start waits for its GCS
    forever in a namespace without loopback; MSVIT_RAY_START_TIMEOUT ends it with one line."""
    if not _unshare_ok():
        pytest.skip("unshare -n not permitted here")
    _need(IMAGES, DEMO_WEIGHTS)
    r = subprocess.run(["unshare", "-n", sys.executable, "-c", _NO_PRECHECK, str(IMAGES), "--weights",
                        str(DEMO_WEIGHTS), "--out", str(tmp_path / "s"), "--no-progress"],
                       env=_env(MSVIT_RAY_START_TIMEOUT="20"), cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    line = _one_error_line(r.stdout + r.stderr)
    assert r.returncode == 3 and "did not answer within 20 s (MSVIT_RAY_START_TIMEOUT)" in line, line


# ---- row 9 and the HOME check: nothing any msvit command runs writes into $HOME ---------------------

def test_import_msvit_keeps_matplotlib_out_of_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    code = "import msvit, os, matplotlib; print(os.environ['MPLCONFIGDIR']); print(matplotlib.get_cachedir())"
    r = subprocess.run([sys.executable, "-c", code], env=_env(home), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not list(home.rglob("*")) and str(home) not in r.stdout
    (home / ".config" / "matplotlib").mkdir(parents=True)  # the user's own matplotlib settings win
    r = subprocess.run([sys.executable, "-c", "import msvit, os; print(os.environ.get('MPLCONFIGDIR'))"],
                       env=_env(home), capture_output=True, text=True)
    assert r.stdout.strip() == "None"


def test_faces_only_help_says_the_input_is_trusted(capsys):
    from msvit.explain.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "every input is trusted to be a face" in " ".join(capsys.readouterr().out.split())


def _scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _home_cases(tmp: Path) -> dict[str, list[str]]:
    """A real run of each command (in order: later ones use the artifact the first exports)."""
    img = str(IMAGES / "western_real_1.jpg")
    onnx = str(tmp / "a" / "ms_eff_vit_b0_fp32.onnx")
    return {
        "msvit-export": ["--target", "onnx", "--weights", str(DEMO_WEIGHTS), "--out", str(tmp / "a")],
        "msvit-bench": ["--artifacts", str(tmp / "a"), "--iters", "2", "--warmup", "0", "--min-time", "0",
                        "--plot", str(tmp / "b.png"), "--json", str(tmp / "b.json")],
        "msvit-predict": [img, "--artifact", onnx, "--no-progress", "--json", str(tmp / "p.json")],
        "msvit-explain": [img, "--weights", str(DEMO_WEIGHTS), "--method", "hirescam", "--method", "eigencam",
                          "--out", str(tmp / "e")],
        "msvit-screen": [img, "--artifact", onnx, "--out", str(tmp / "s"), "--workers", "1", "--no-progress"],
        "msvit-web": ["build", onnx, "--out", str(tmp / "w")],
        "msvit-calibrate": ["--artifact", onnx, "--real", str(FACES / "eval" / "real"), "--fake",
                            str(FACES / "eval" / "fake"), "--faces-only", "--target-fpr", "0.1", "--bootstrap", "100",
                            "--out", str(tmp / "c"), "--no-progress"],
    }


@pytest.mark.slow
def test_no_msvit_command_writes_into_home(tmp_path):
    """Every console script of pyproject.toml, run as a user would with HOME an empty folder
    (no XDG_*, no MSVIT_CACHE_DIR, no MPLCONFIGDIR): nothing appears in it. A new command
    must bring its own real run here."""
    _need(IMAGES, FACES, DEMO_WEIGHTS)
    cases = _home_cases(tmp_path)
    missing = sorted(set(_scripts()) - set(cases))
    assert not missing, f"add a real run of {missing} to _home_cases (no command may write into $HOME)"
    home = tmp_path / "home"
    home.mkdir()
    written = {}
    for name, argv in cases.items():
        module, func = _scripts()[name].split(":")
        code = f"import sys; from {module} import {func}; sys.exit({func}())"
        r = subprocess.run([sys.executable, "-c", code, *argv], env=_env(home), cwd=tmp_path, capture_output=True,
                           text=True, timeout=900)
        assert r.returncode == 0, (name, (r.stdout + r.stderr)[-3000:])
        new = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
        if new:
            written[name] = new
            shutil.rmtree(home)
            home.mkdir()
    assert not written, f"written into $HOME: {written}"
    assert (tmp_path / "e" / "explain.json").exists() and (tmp_path / "b.png").exists() and (tmp_path / "w").is_dir()
