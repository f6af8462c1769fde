"""In-browser speed beside native onnxruntime, in one run: ms per crop (the classifier alone) and
sampled frames/s (the whole page on a video: seek, decode, BlazeFace, crop, classify).

    python research/web_bench.py ART_fp32.onnx ART_fp16.onnx ART_int8.onnx [ART.tflite ...] \\
        --video ../shared/data/videos/western_real.mp4 --rounds 5 --iters 20
    python research/web_bench.py ART.onnx --rounds 1 --iters 2 --num-frames 4      # smoke run

Rows per artifact: native onnxruntime (or LiteRT for .tflite) at --threads, and the same file in
headless Chromium: .onnx on onnxruntime-web (WASM SIMD; threads when cross-origin isolated, which
msvit-web's server makes the page), .tflite on LiteRT.js (XNNPack WASM). Classifier timings are
interleaved round-robin (each round runs every row --iters times, browser and native alternately)
so drift on a shared host falls on all rows alike; medians of the rounds are reported. The page
runs each ONNX artifact's own web folder on --video for frames/s. Public msvit API only.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from msvit import runtime
from msvit.cpu import cpu_name, cpu_vector_summary
from msvit.web import build_web
from msvit.web.browser import open_page

HERE = Path(__file__).resolve().parents[1]
JS_LOAD = """async (names) => {
  const rt = await import('./app/runtime.js');
  window.benchModels = {};
  for (const n of names) window.benchModels[n] = await rt.loadModel('model/' + n);
  window.benchX = Float32Array.from({length: 3 * 224 * 224}, (_, i) => Math.sin(i) * 2);
  return {threads: rt.threads(), isolated: self.crossOriginIsolated,
          runtimes: Object.fromEntries(names.map((n) => [n, window.benchModels[n].name]))};
}"""
JS_TIME = """async ([name, iters]) => {
  const m = window.benchModels[name], t = [];
  for (let i = 0; i < iters; i++) { const t0 = performance.now(); await m.run(window.benchX, [1, 3, 224, 224]); t.push(performance.now() - t0); }
  return t;
}"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", nargs="+", type=Path, help=".onnx (fp32/fp16/int8) and/or .tflite classifiers")
    ap.add_argument("--video", type=Path, default=HERE.parent / "shared" / "data" / "videos" / "western_real.mp4")
    ap.add_argument("--num-frames", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="native threads (default: the runtime's)")
    ap.add_argument("--json", type=Path, help="write the rows as JSON")
    a = ap.parse_args(argv)
    onnx = [p for p in a.artifacts if p.suffix == ".onnx"]
    if not onnx:
        ap.error("give at least one .onnx artifact (the page is built around it)")
    print(f"CPU: {cpu_name()} · {cpu_vector_summary()}")
    tmp = Path(tempfile.mkdtemp(prefix="msvit-webbench-"))
    try:
        folder = build_web(onnx[0], tmp / "page")
        for p in a.artifacts[1:] if a.artifacts[0] == onnx[0] else a.artifacts:
            shutil.copy2(p, folder / "model" / p.name)
        x = np.sin(np.arange(3 * 224 * 224, dtype=np.float32)).reshape(1, 3, 224, 224) * 2
        native = {p.name: runtime.load(p, threads=a.threads) for p in a.artifacts}
        times: dict[str, list[float]] = {f"{n} {k}": [] for n in native for k in ("native", "browser")}
        with open_page(folder) as page:
            page.wait_ready(300)
            info = page.page.evaluate(JS_LOAD, [p.name for p in a.artifacts])
            print(f"browser: threads {info['threads']}, cross-origin isolated {info['isolated']}")
            for n, s in native.items():  # warm-up
                s.run(x)
                page.page.evaluate(JS_TIME, [n, 2])
            for _ in range(a.rounds):
                for n, s in native.items():
                    t = []
                    for _ in range(a.iters):
                        t0 = time.perf_counter()
                        s.run(x)
                        t.append(1e3 * (time.perf_counter() - t0))
                    times[f"{n} native"].append(statistics.median(t))
                    times[f"{n} browser"].append(statistics.median(page.page.evaluate(JS_TIME, [n, a.iters])))
        fps = {}
        if a.video.is_file():
            for p in onnx:
                f = build_web(p, tmp / f"e2e-{p.stem}")
                with open_page(f) as page:
                    page.wait_ready(300)
                    t0 = time.perf_counter()
                    r = page.run_files([a.video], timeout_s=3600, num_frames=a.num_frames)[0]
                    fps[p.name] = r["frames_sampled"] / (time.perf_counter() - t0)
        rows = []
        print(f"\n{'artifact':<34} {'runtime':<44} {'ms/crop':>8} {'x native':>8} {'frames/s':>8}")
        for n, s in native.items():
            nat = statistics.median(times[f"{n} native"])
            web = statistics.median(times[f"{n} browser"])
            rows.append({"artifact": n, "native": s.describe(), "browser": info["runtimes"][n],
                         "native_ms_per_crop": nat, "browser_ms_per_crop": web, "ratio": web / nat,
                         "browser_frames_per_s": fps.get(n)})
            print(f"{n:<34} {'native ' + s.describe():<44.44} {nat:8.1f}")
            print(f"{'':<34} {info['runtimes'][n]:<44.44} {web:8.1f} {web / nat:8.2f} "
                  f"{fps[n]:8.2f}" if n in fps else f"{'':<34} {info['runtimes'][n]:<44.44} {web:8.1f} {web / nat:8.2f}")
        if a.json:
            a.json.write_text(json.dumps({"threads": info["threads"], "isolated": info["isolated"], "rows": rows}, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
