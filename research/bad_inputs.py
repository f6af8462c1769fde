"""Issue 13's bad-input catalogue, run through the real CLIs as subprocesses.

For each case: the exit code (and whether it is one the CLI's --help documents), whether a
Python traceback was printed, and the leftovers in the output folder afterwards
(``.msvit-tmp-*`` work folders, ``.*.tmp`` files, an artifact without its manifest or the
reverse). Cases marked "real" run an actual ONNX export (about a minute each on 2 cores).

    python research/bad_inputs.py                  # everything (~10 min on 2 busy cores)
    python research/bad_inputs.py --quick          # no real exports (~5 min: each case imports torch)
    python research/bad_inputs.py -k sigterm -k bench
    PYTHONPATH=/old/checkout python research/bad_inputs.py   # the same catalogue against other code

Exit status: 0 when every case has its expected exit code, no traceback and no leftovers.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MSVIT_SHARED", ROOT.parent / "shared"))
WEIGHTS = SHARED / "weights" / "ms_eff_vit_b0_demo.bin"
FACES = SHARED / "data" / "faces"
TRACEBACK = "Traceback (most recent call last)"

EXPORT = [sys.executable, "-m", "msvit.export.cli"]
BENCH = [sys.executable, "-m", "msvit.bench.cli"]
API = [sys.executable, "-c"]
#: run an API call the way a CLI would: a typed error is exit 2, anything else a traceback
API_WRAP = ("import sys, numpy as np\nfrom msvit.errors import MsvitError\ntry:\n    {body}\n"
            "except MsvitError as e:\n    print('❌', e, file=sys.stderr); sys.exit(e.exit_code)\n")


@dataclass
class Case:
    name: str
    cmd: list[str]
    expect: set[int]
    env: dict[str, str] = field(default_factory=dict)
    real: bool = False  # runs a real export
    signal_after_tmp: int | None = None  # send this signal once a .msvit-tmp-* folder exists (+2 s)
    check: Callable[[str, Path], str] | None = None  # returns '' or what is wrong
    leftovers_expected: bool = False  # SIGKILL cannot be handled: the next export sweeps


def _png16(p: Path) -> Path:
    Image.fromarray(np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)).save(p)
    return p


def fixtures(w: Path) -> dict[str, Path]:
    f = {}
    (w / "empty.bin").touch()
    f["empty"] = w / "empty.bin"
    (w / "random.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    f["random"] = w / "random.bin"
    (w / "a_file").write_text("x")
    f["file"] = w / "a_file"
    (w / "emptydir").mkdir()
    f["emptydir"] = w / "emptydir"
    (w / "junk").mkdir()
    for i in range(3):
        (w / "junk" / f"img{i}.jpg").write_bytes(np.random.default_rng(i).bytes(500))
    f["junk"] = w / "junk"
    (w / "missing.csv").write_text("path,label\nface_a.jpg,fake\nface_b.jpg,real\nsub/face_c.jpg,fake\n")
    f["csv"] = w / "missing.csv"
    mixed = w / "mixed"  # real crops + files that must be skipped and named
    shutil.copytree(FACES / "eval", mixed)
    (mixed / "real" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (mixed / "fake" / "notes.txt").write_text("not an image")
    _png16(mixed / "real" / "deep16.png")
    Image.new("CMYK", (50, 60), (0, 128, 128, 0)).save(mixed / "fake" / "cmyk.jpg")
    f["mixed"] = mixed
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(w / "gray.png")
    f["png16"] = _png16(w / "deep16.png")
    return f


def _contains(*words: str) -> Callable[[str, Path], str]:
    def check(text: str, out: Path) -> str:
        missing = [x for x in words if x not in text]
        return f"output lacks {missing}" if missing else ""
    return check


def _unchanged(path: Path, content: bytes) -> Callable[[str, Path], str]:
    def check(text: str, out: Path) -> str:
        return "" if path.exists() and path.read_bytes() == content else f"{path.name} was changed"
    return check


def catalogue(w: Path, f: dict[str, Path]) -> list[Case]:
    W = ["--weights", str(WEIGHTS)]
    o = lambda name: ["--out", str(w / "out" / name)]  # noqa: E731
    ro = w / "out" / "exists"
    ro.mkdir(parents=True)
    (ro / "ms_eff_vit_b0_fp32.onnx").write_bytes(b"previous")
    (ro / "ms_eff_vit_b0_fp32.onnx").chmod(0o444)
    real = w / "out" / "real"
    real.mkdir(parents=True)
    (real / "ms_eff_vit_b0_fp32.onnx").write_bytes(b"previous, read-only")
    (real / "ms_eff_vit_b0_fp32.onnx").chmod(0o444)
    return [
        # ---- msvit-export: checkpoints
        Case("export: 0-byte checkpoint", [*EXPORT, "--weights", str(f["empty"]), *o("c1")], {2}),
        Case("export: random bytes as .bin", [*EXPORT, "--weights", str(f["random"]), *o("c2")], {2}),
        Case("export: folder as --weights", [*EXPORT, "--weights", str(w), *o("c3")], {2}),
        Case("export: missing --weights", [*EXPORT, "--weights", str(w / "nope.bin"), *o("c4")], {2}),
        # ---- msvit-export: arguments and outputs (exit 2 before any model is built)
        Case("export: SOURCE_DATE_EPOCH=abc", [*EXPORT, *W, *o("e1")], {2}, env={"SOURCE_DATE_EPOCH": "abc"}),
        Case("export: --out is a file", [*EXPORT, *W, "--out", str(f["file"])], {2}),
        Case("export: --out under a file", [*EXPORT, *W, "--out", str(f["file"] / "sub")], {2}),
        Case("export: --opset 12", [*EXPORT, *W, "--opset", "12", *o("e2")], {2}),
        Case("export: --opset 99", [*EXPORT, *W, "--opset", "99", *o("e3")], {2}),
        Case("export: --batch 0", [*EXPORT, *W, "--batch", "0", *o("e4")], {2}),
        Case("export: --calib-size 1000 (cap 512)", [*EXPORT, *W, "--precision", "int8", "--calib-data",
                                                    str(FACES / "calib"), "--calib-size", "1000", *o("e5")], {2},
             check=_contains("--calib-size")),
        Case("export: int8 without --calib-data", [*EXPORT, *W, "--precision", "int8", *o("e6")], {2}),
        Case("export: --trt-version 8", [*EXPORT, *W, "--target", "trt", "--trt-version", "8", *o("e7")], {2}),
        Case("export: --min-agreement 2", [*EXPORT, *W, "--min-agreement", "2", *o("e8")], {2}),
        Case("export: coreml --batch 4", [*EXPORT, *W, "--target", "coreml", "--batch", "4", *o("e9")], {2}),
        Case("export: --target tflite (argparse)", [*EXPORT, "--target", "tflite"], {2}),
        Case("export: artifact exists (read-only)", [*EXPORT, *W, "--out", str(ro)], {2},
             check=_unchanged(ro / "ms_eff_vit_b0_fp32.onnx", b"previous")),
        # ---- msvit-export: data
        Case("export: CSV lists missing files", [*EXPORT, *W, "--verify-data", str(f["csv"]), *o("d1")], {2},
             check=_contains("3 file(s) listed in", "face_a.jpg", "sub/face_c.jpg")),
        Case("export: empty --verify-data folder", [*EXPORT, *W, "--verify-data", str(f["emptydir"]), *o("d2")],
             {2}),
        Case("export: --verify-data all junk", [*EXPORT, *W, "--verify-data", str(f["junk"]), *o("d3")], {2},
             check=_contains("img0.jpg")),
        # ---- msvit-export: faults during a real export
        Case("export: SIGTERM mid-export (real)", [*EXPORT, *W, *o("sig")], {143}, real=True,
             signal_after_tmp=signal.SIGTERM, check=_contains("(SIGTERM)")),
        Case("export: SIGKILL mid-export (real)", [*EXPORT, *W, "--out", str(real), "--overwrite"],
             {-9}, real=True, signal_after_tmp=signal.SIGKILL, leftovers_expected=True),
        Case("export: rerun after SIGKILL, --overwrite read-only, skipped files (real)",
             [*EXPORT, *W, "--out", str(real), "--overwrite", "--verify-data", str(f["mixed"])], {0}, real=True,
             check=_contains("stale temp folder", "replaced the previous ms_eff_vit_b0_fp32.onnx",
                             "corrupt.jpg", "notes.txt", "skipped 2 file(s)")),
        # ---- msvit-bench
        Case("bench: --threads -2", [*BENCH, "--threads", "-2"], {2}),
        Case("bench: --threads 0", [*BENCH, "--threads", "0"], {2}),
        Case("bench: --json DIR", [*BENCH, *W, "--targets", "none", "--iters", "1", "--warmup", "0",
                                   "--json", str(w)], {2}),
        Case("bench: --json under a file", [*BENCH, "--json", str(f["file"] / "r.json")], {2}),
        Case("bench: --iters 0", [*BENCH, "--iters", "0"], {2}),
        Case("bench: --targets tflite", [*BENCH, "--targets", "tflite"], {2}),
        Case("bench: --artifacts missing", [*BENCH, "--artifacts", str(w / "none")], {2}),
        Case("bench: --data CSV lists missing files", [*BENCH, *W, "--targets", "none", "--iters", "1",
                                                       "--warmup", "0", "--data", str(f["csv"])], {2},
             check=_contains("face_a.jpg")),
        # ---- library calls (a typed error = exit 2)
        Case("api: preprocess(zeros((0, 0, 3)))", [*API, API_WRAP.format(
            body="import msvit; msvit.preprocess(np.zeros((0, 0, 3), np.uint8))")], {2}),
        Case("api: read_state_dict(random bytes)", [*API, API_WRAP.format(
            body=f"from msvit.model.weights import read_state_dict; read_state_dict({str(f['random'])!r})")], {2}),
        Case("api: 16-bit PNG is not white", [*API, API_WRAP.format(
            body=f"from msvit.preprocess import load_image; a = load_image({str(f['png16'])!r}); "
                 "print('mean', a.mean()); sys.exit(0 if 60 < a.mean() < 200 else 1)")], {0}),
    ]


def leftovers(out: Path) -> list[str]:
    if not out.is_dir():
        return []
    bad = [str(p.relative_to(out)) for p in out.rglob(".*")]
    names = {p.name for p in out.iterdir()}
    for n in sorted(names):
        if n.endswith(".json") and n[:-5] not in names:
            bad.append(f"{n} (manifest without artifact)")
        if n.endswith((".onnx", ".xml", ".ptl", ".pte", ".engine")) and n + ".json" not in names:
            if not (out / n).read_bytes().startswith(b"previous"):  # not the stand-in a case put there
                bad.append(f"{n} (artifact without manifest)")
    return bad


def run_case(c: Case, w: Path, timeout: float) -> dict:
    out = next((Path(c.cmd[i + 1]) for i, a in enumerate(c.cmd) if a == "--out"), w / "out")
    env = {**os.environ, **c.env}
    t0 = time.perf_counter()
    p = subprocess.Popen(c.cmd, cwd=w, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        if c.signal_after_tmp is not None:
            deadline = time.time() + timeout
            while time.time() < deadline and p.poll() is None and not list(out.glob(".msvit-tmp-*")):
                time.sleep(0.2)
            time.sleep(2.0)
            if p.poll() is None:
                p.send_signal(c.signal_after_tmp)
        so, se = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        so, se = p.communicate()
        rc = "timeout"
    secs = time.perf_counter() - t0
    text = so + se
    lines = [ln for ln in se.strip().splitlines() if ln.strip() and not ln.startswith(("⚠️", "msvit-bench:"))]
    problem = c.check(text, out) if c.check and rc != "timeout" else ""
    left = leftovers(out) if out != w / "out" else []
    return {"case": c.name, "rc": rc, "text": text, "expect": c.expect, "tb": TRACEBACK in text, "left": left, "secs": secs,
            "msg": (lines[-1] if lines else "").strip()[:90], "problem": problem,
            "ok": rc in c.expect and TRACEBACK not in text and not problem and (not left or c.leftovers_expected)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the cases that run a real export")
    ap.add_argument("-k", action="append", default=[], help="only cases whose name contains this (repeatable)")
    ap.add_argument("--timeout", type=float, default=300, help="per case, seconds (default 300)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--show", action="store_true", help="print each case's command and whole output")
    args = ap.parse_args()
    if not WEIGHTS.exists():
        sys.exit(f"needs the demo checkpoint at {WEIGHTS} (set MSVIT_SHARED)")
    w = Path(tempfile.mkdtemp(prefix="msvit-bad-inputs-"))
    try:
        cases = [c for c in catalogue(w, fixtures(w)) if not (args.quick and c.real)]
        if args.k:
            cases = [c for c in cases if any(k.lower() in c.name.lower() for k in args.k)]
        rows = []
        for c in cases:
            r = run_case(c, w, args.timeout)
            rows.append(r)
            print(f"{'✅' if r['ok'] else '❌'} {r['case']:<62} exit {str(r['rc']):>7} "
                  f"(want {'/'.join(map(str, sorted(r['expect'])))}) traceback {'YES' if r['tb'] else 'no '} "
                  f"leftovers {len(r['left'])}{' (expected: SIGKILL)' if r['left'] and 'SIGKILL' in r['case'] else ''}"
                  f" {r['secs']:5.1f}s | {r['msg']}" + (f" | PROBLEM: {r['problem']}" if r['problem'] else "")
                  + (f" | LEFT: {', '.join(r['left'][:3])}" if r["left"] else ""), flush=True)
            if args.show:
                print("   $ " + " ".join(c.cmd[2:] if c.cmd[:2] == [sys.executable, "-m"] else c.cmd[1:2]))
                print("   " + r["text"].strip().replace("\n", "\n   "), flush=True)
        n_tb = sum(r["tb"] for r in rows)
        final_left = sum(len(r["left"]) for r in rows if "SIGKILL mid-export" not in r["case"])
        n_ok = sum(r["ok"] for r in rows)
        print(f"\n{len(rows)} cases: {n_ok} as expected, {len(rows) - n_ok} not; tracebacks {n_tb}; "
              f"leftovers {final_left} (after each case; a SIGKILL's temp folder is swept by the next export)")
        return 0 if n_ok == len(rows) else 1
    finally:
        if not args.keep:
            for p in w.rglob("*"):
                try:
                    p.chmod(0o755 if p.is_dir() else 0o644)
                except OSError:
                    pass
            shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
