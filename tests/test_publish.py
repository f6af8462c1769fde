"""Issue 24: publishing an artifact and its manifest is all-or-nothing, even under SIGKILL.

The invariant readers rely on: every artifact under its final name sits beside a manifest whose
sha256 matches it, at every instant; an overwritten set is never lost (a killed publish is
rolled back by the next export into the folder, which puts the replaced set back).
The SIGKILL tests run the real ``msvit-export`` under ``strace -e inject=rename:delay_exit=…``,
which holds every rename, watch the folder throughout, and kill the export after its k-th
publish step."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO_WEIGHTS, ROOT

from msvit.errors import EXIT_TERMINATED, run_cli
from msvit.fileio import PROBE_PREFIX, TMP_PREFIX

ART = "ms_eff_vit_b0_fp32.onnx"
SET = [ART, ART + ".json", ART + ".md"]


_SHA: dict[tuple[int, int, int, int], str] = {}


def _sha(p: Path) -> str:
    """sha256 of ``p``, kept per inode: a rename keeps inode, size and mtime, so the watcher hashes
    each file once and sees every publish step (hashing the 21 MB artifact again at every look
    made it miss steps on a busy CI machine: it killed too late, after the set was complete)."""
    st = p.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SHA:
        _SHA[key] = hashlib.sha256(p.read_bytes()).hexdigest()
    return _SHA[key]


def _visible(out: Path) -> list[Path]:
    """Files under final names: not msvit's work folders, nor the writability probe that the
    export makes and removes before any work (a fast watcher sees it)."""
    hidden = (TMP_PREFIX, PROBE_PREFIX)
    return sorted(p for p in out.iterdir() if not p.name.startswith(hidden)) if out.exists() else []


def _violations(out: Path) -> list[str]:
    """Artifact files under their final names without a manifest whose sha256 matches them."""
    files = _visible(out)
    manifests = {}
    for m in files:
        if m.suffix == ".json":
            try:
                manifests[m.name] = json.loads(m.read_text()).get("sha256", {})
            except (OSError, ValueError):
                return ["retry"]  # replaced while being read
    bad = []
    for f in files:
        if f.suffix in (".json", ".md"):
            continue
        try:
            digest = _sha(f)
        except OSError:
            return ["retry"]
        if not any(sha.get(f.name) == digest for sha in manifests.values()):
            bad.append(f.name)
    return bad


def _check(out: Path) -> list[str]:
    """:func:`_violations`, read again while the folder changes under the reader."""
    for _ in range(20):
        before = [(p.name, p.stat().st_ino) for p in _visible(out)]
        bad = _violations(out)
        if bad != ["retry"] and before == [(p.name, p.stat().st_ino) for p in _visible(out)]:
            return bad
        time.sleep(0.005)
    return bad


# ---- in-process: signals wait for the set, errors roll it back ----------------------------

def _fake_run(out: Path, body: bytes, overwrite: bool = True):
    from msvit.data import ImageSet
    from msvit.export.core import ExportContext, ExportOptions, TargetOutput, run_export
    from msvit.export.targets import TARGETS

    import torch

    def fn(ctx):
        p = ctx.work_dir / f"{ctx.stem}.ptl"
        p.write_bytes(body)
        return TargetOutput(p, [p])

    ctx = ExportContext(model=torch.nn.Identity(), target=TARGETS["torchscript"], precision="fp32", out_dir=out,
                        stem="fake_fp32", metadata={"model": "fake"}, options=ExportOptions(overwrite=overwrite),
                        log=None)
    return run_export(ctx, fn, ImageSet([], np.zeros((1, 3, 8, 8), np.float32), None, [], "given"))


@pytest.fixture
def no_verify(monkeypatch):
    import msvit.export.core as core

    monkeypatch.setattr(core, "_verify", lambda ctx, out, verify, res: None)
    monkeypatch.setattr(core, "PUBLISHED", [])


def _replace_then(monkeypatch, n: int, action):
    """os.replace as msvit.fileio calls it, doing ``action`` right after its n-th call."""
    import msvit.fileio as fileio

    real, calls = os.replace, []

    def replace(src, dst):
        real(src, dst)
        calls.append(dst)
        if len(calls) == n:
            action()
    monkeypatch.setattr(fileio.os, "replace", replace)
    return calls


def test_sigterm_inside_publish_waits_for_the_set_and_says_it_was_published(tmp_path, capsys, monkeypatch,
                                                                           no_verify):
    from msvit.export.cli import _interrupted

    out = tmp_path / "out"
    # calls 1-3 stage the manifest, the card and the journal; 4 lands the manifest: SIGTERM
    # arrives between the manifest and the artifact
    _replace_then(monkeypatch, 4, lambda: os.kill(os.getpid(), signal.SIGTERM))
    rc = run_cli(lambda a: _fake_run(out, b"new") and 0, None, _interrupted)
    err = capsys.readouterr().err.strip()
    assert rc == EXIT_TERMINATED
    assert err == f"interrupted: published fake_fp32.ptl with its manifest and card in {out} (each complete " \
                  "with its manifest); nothing else was published (SIGTERM)"
    assert [p.name for p in _visible(out)] == ["fake_fp32.ptl", "fake_fp32.ptl.json", "fake_fp32.ptl.md"]
    assert _check(out) == [] and not [p for p in out.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_ctrl_c_before_publish_says_nothing_was_published(tmp_path, capsys, no_verify):
    from msvit.export.cli import _interrupted

    def fn(_):
        raise KeyboardInterrupt
    assert run_cli(fn, None, _interrupted) == 130
    assert capsys.readouterr().err.strip() == "interrupted: nothing was published"


def test_error_inside_publish_rolls_back_and_restores_the_old_set(tmp_path, monkeypatch, no_verify):
    from msvit.errors import ExportError

    out = tmp_path / "out"
    _fake_run(out, b"old")
    old = {p.name: p.read_bytes() for p in _visible(out)}

    def disk_error():
        raise OSError(5, "Input/output error")
    # manifest, card, journal staged; 3 backups; the new manifest lands (7) and the next rename fails
    _replace_then(monkeypatch, 8, disk_error)
    with pytest.raises(ExportError, match="I/O error"):
        _fake_run(out, b"new")
    assert {p.name: p.read_bytes() for p in _visible(out)} == old
    assert not [p for p in out.iterdir() if p.name.startswith(TMP_PREFIX)]


# ---- SIGKILL inside msvit-export's publish step ------------------------------------------

def _can_delay_renames() -> str:
    if not shutil.which("strace"):
        return "needs strace"
    r = subprocess.run(["strace", "-qq", "-o", "/dev/null", "-e", "trace=rename", "-e",
                        "inject=rename:delay_exit=1000", "true"], capture_output=True)
    return "" if r.returncode == 0 else "strace cannot inject delays here (ptrace not permitted)"


def _export_cmd(out: Path, overwrite: bool) -> list[str]:
    code = "import sys; from msvit.export.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code, "--target", "onnx", "--weights", str(DEMO_WEIGHTS), "--out", str(out),
            *(["--overwrite"] if overwrite else [])]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "MSVIT_CACHE_DIR": str(tmp_path / "cache")}


@pytest.fixture(scope="module")
def previous_set(tmp_path_factory) -> Path:
    """A complete published set (a real export), copied into each overwrite test's folder."""
    if not DEMO_WEIGHTS.exists():
        pytest.skip(f"shared test data not found: {DEMO_WEIGHTS}")
    out = tmp_path_factory.mktemp("previous")
    env = {**_env(out), "SOURCE_DATE_EPOCH": "0"}  # another export time: other manifest bytes
    r = subprocess.run(_export_cmd(out, False), capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.mark.slow
@pytest.mark.skipif(bool(_can_delay_renames()), reason=_can_delay_renames() or "ok")
@pytest.mark.parametrize("overwrite,kill_after", [(False, 2), (True, 2), (True, 4)],
                         ids=["fresh-before-card", "overwrite-old-moved-out", "overwrite-new-manifest-only"])
def test_sigkill_inside_publish_never_shows_an_unvouched_artifact(tmp_path, previous_set, overwrite, kill_after):
    out = tmp_path / "out"
    out.mkdir()
    old = {}
    if overwrite:
        for name in SET:
            shutil.copy2(previous_set / name, out / name)
        old = {n: _sha(out / n) for n in SET}
    # every rename held 1.5 s after it happened (an export makes 6-9): the folder is watched
    # between publish steps, each look far shorter than the hold
    cmd = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=rename", "-e",
           "inject=rename:delay_exit=1500000", *_export_cmd(out, overwrite)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(tmp_path),
                            start_new_session=True)
    seen, steps, deadline = [(p.name, p.stat().st_ino) for p in _visible(out)], 0, time.monotonic() + 900
    try:
        while steps < kill_after:
            assert proc.poll() is None, f"export ended before publish step {kill_after}: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline
            now = [(p.name, p.stat().st_ino) for p in _visible(out)]
            if now != seen:
                changed = set(now) ^ set(seen)  # one rename: one name comes or goes
                assert len(changed) == 1, f"the watcher missed a publish step (after {steps}): {sorted(changed)}"
                steps, seen = steps + 1, now
                assert _check(out) == [], f"after publish step {steps}: {seen}"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # strace and the export it traces
        proc.wait()
    assert _check(out) == []  # killed mid-publish: whatever is visible is vouched for

    # the next export into the folder sweeps first: run just that sweep, in a new process that
    # starts well after the kill (only folders older than the sweeping process are touched, and
    # /proc's start times are rounded to the boot second)
    time.sleep(2)
    sweep = ("import sys; from msvit.fileio import sweep_stale_temp; "
             "print(len(sweep_stale_temp(sys.argv[1], print)))")
    r = subprocess.run([sys.executable, "-c", sweep, str(out)], capture_output=True, text=True, env=_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("1"), (r.stdout, sorted(p.name for p in out.iterdir()))
    assert "was rolled back" in r.stdout, r.stdout
    assert not [p for p in out.iterdir() if p.name.startswith(TMP_PREFIX)]
    assert _check(out) == []
    if overwrite:  # the previous set is back, byte for byte
        assert {p.name for p in _visible(out)} == set(SET)
        assert {n: _sha(out / n) for n in SET} == old
    else:  # the set was not complete: nothing of it is left
        assert _visible(out) == []
