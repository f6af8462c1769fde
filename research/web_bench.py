"""In-browser classifier speed beside native runtimes, in one interleaved run: ms per crop for
every artifact on every runtime (onnxruntime-web for .onnx, LiteRT.js for .tflite; browser pages
at each --browser-threads count), native onnxruntime / LiteRT on the same files, the page's own
per-crop JS work (letterbox + normalise), and sampled frames/s of the whole page on a video.

    python research/web_bench.py A_fp32.onnx A_fp16.onnx A_int8.onnx \\
        A_fp32.tflite A_fp16.tflite A_int8.tflite --rounds 5 --iters 10 \\
        --video ../shared/data/videos/western_real.mp4
    python research/web_bench.py A_fp32.onnx A_fp32.tflite --rounds 1 --iters 2 --num-frames 2  # smoke

How it times: one Chromium, one page per browser thread count (onnxruntime-web's and LiteRT.js's
thread counts are per page: `index.html?threads=N`), every model loaded and run twice (warm-up;
the first run is reported apart) before timing. Each round runs every row --iters times, native
and browser pages alternately, so drift on a shared host falls on all rows alike; the figure is
the median over rounds of the per-round medians. A browser row's time is the app's own
`run(Float32Array)` call as the page makes it (tensor creation and output copy included; the
crop's letterbox and normalisation are reported as their own row). "x ref" divides by native
onnxruntime on the first .onnx artifact (fp32: the issue's yardstick). Public msvit API only.
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

import numpy as np

from msvit import runtime
from msvit.cpu import cpu_name, cpu_vector_summary
from msvit.web import build_web
from msvit.web.browser import open_page

HERE = Path(__file__).resolve().parents[1]
JS_LOAD = """async (names) => {
  const rt = await import('./app/runtime.js');
  window.bench = {models: {}, x: Float32Array.from({length: 3 * 224 * 224}, (_, i) => Math.sin(i) * 2)};
  const out = {threads: rt.threads(), isolated: self.crossOriginIsolated, sab: typeof SharedArrayBuffer !== 'undefined',
               cores: navigator.hardwareConcurrency, models: {}};
  for (const n of names) {
    let t = performance.now();
    const m = await rt.loadModel('model/' + n);
    const load = performance.now() - t;
    t = performance.now();
    const y = await m.run(window.bench.x, [1, 3, 224, 224]);
    const first = performance.now() - t;
    await m.run(window.bench.x, [1, 3, 224, 224]);
    window.bench.models[n] = m;
    out.models[n] = {name: m.name, load_ms: load, first_ms: first, logit: y[0][0]};
  }
  return out;
}"""
JS_TIME = """async ([name, iters]) => {
  const m = window.bench.models[name], t = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now(); await m.run(window.bench.x, [1, 3, 224, 224]); t.push(performance.now() - t0);
  }
  return t;
}"""
# the page's per-crop JS work: letterbox a 300x300 face to 224 and normalise it to float NCHW
JS_PREP = """async (iters) => {
  const P = await import('./app/pipeline.js');
  const rgb = {width: 640, height: 480, data: Uint8Array.from({length: 640 * 480 * 3}, (_, i) => (i * 7) & 255)};
  const t = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now(); P.normalize([P.faceCrop(rgb, [100, 80, 400, 380], 224)], 224); t.push(performance.now() - t0);
  }
  return t;
}"""


def _native_ms(session, x: np.ndarray, iters: int) -> float:
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        session.run(x)
        t.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", nargs="+", type=Path, help=".onnx and/or .tflite classifiers (--input tensor)")
    ap.add_argument("--browser-threads", default="1,max",
                    help="comma-separated thread counts, one page each (max: the page's default); default 1,max")
    ap.add_argument("--threads", type=int, default=None, help="native threads (default: the runtime's)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--video", type=Path, default=None, help="also time the whole page on this video (frames/s)")
    ap.add_argument("--num-frames", type=int, default=20)
    ap.add_argument("--json", type=Path, help="write the rows as JSON")
    a = ap.parse_args(argv)
    for p in a.artifacts:
        if not p.is_file() or p.suffix not in (".onnx", ".tflite"):
            ap.error(f"{p}: not an .onnx or .tflite file")
    names = [p.name for p in a.artifacts]
    if len(set(names)) != len(names):
        ap.error("artifact file names must differ (they share one model/ folder)")
    load = os.getloadavg()
    print(f"CPU: {cpu_name()} · {cpu_vector_summary()} · {os.cpu_count()} cores · "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="msvit-webbench-"))
    try:
        # built around an .onnx when one is given, so the folder carries both runtimes
        primary = next((p for p in a.artifacts if p.suffix == ".onnx"), a.artifacts[0])
        folder = build_web(primary, tmp / "page")
        for p in a.artifacts:
            if p != primary:
                shutil.copy2(p, folder / "model" / p.name)
        x = np.sin(np.arange(3 * 224 * 224, dtype=np.float32)).reshape(1, 3, 224, 224) * 2
        native = {p.name: runtime.load(p, threads=a.threads) for p in a.artifacts}
        for s in native.values():
            s.run(x)
        counts = [c.strip() for c in a.browser_threads.split(",") if c.strip()]
        rows: dict[tuple[str, str], list[float]] = {(n, "native"): [] for n in native}
        prep: list[float] = []
        with open_page(folder, query=f"?threads={counts[0]}" if counts[0] != "max" else "") as first:
            first.wait_ready(300)
            pages = {}
            for c in counts:
                if not pages:
                    pg = first.page
                else:
                    pg = first.page.context.new_page()
                    pg.goto(first.url.split("?")[0] + ("" if c == "max" else f"?threads={c}"))
                    pg.wait_for_timeout(500)
                info = pg.evaluate(JS_LOAD, names)
                label = f"x{info['threads']}"
                pages[label] = (pg, info)
                print(f"page ?threads={c}: cross-origin isolated {info['isolated']}, SharedArrayBuffer {info['sab']}, "
                      f"hardwareConcurrency {info['cores']}, threads {info['threads']}")
                for n, m in info["models"].items():
                    print(f"  {n:<30} {m['name']:<34} load {m['load_ms']:7.0f} ms  first run {m['first_ms']:7.0f} ms"
                          f"  logit {m['logit']:+.5f} (native {float(native[n].run(x).reshape(-1)[0]):+.5f})")
                    rows[(n, label)] = []
            for r in range(a.rounds):
                for n, s in native.items():
                    rows[(n, "native")].append(_native_ms(s, x, a.iters))
                    for label, (pg, _) in pages.items():
                        pg.bring_to_front()
                        rows[(n, label)].append(statistics.median(pg.evaluate(JS_TIME, [n, a.iters])))
                prep.append(statistics.median(first.page.evaluate(JS_PREP, a.iters)))
                print(f"round {r + 1}/{a.rounds} done", flush=True)
        fps = {}
        if a.video is not None:
            cfg_path = folder / "config.json"
            cfg = json.loads(cfg_path.read_text())
            for p in a.artifacts:
                cfg["model"] = f"model/{p.name}"
                cfg_path.write_text(json.dumps(cfg))
                with open_page(folder) as page:
                    state = page.wait_ready(300)
                    t0 = time.perf_counter()
                    res = page.run_files([a.video], timeout_s=3600, num_frames=a.num_frames)[0]
                    fps[p.name] = (res["frames_sampled"] / (time.perf_counter() - t0), state["runtime"]["classifier"],
                                   {k: round(v / max(1, res["frames_sampled"]), 1) for k, v in res["times_ms"].items()})
        ref_name = next((p.name for p in a.artifacts if p.suffix == ".onnx"), a.artifacts[0].name)
        ref = statistics.median(rows[(ref_name, "native")])
        out = []
        print(f"\nms per crop (median of {a.rounds} rounds x {a.iters} runs); x ref = / native {ref_name} "
              f"({ref:.1f} ms)")
        print(f"{'artifact':<30} {'runtime':<40} {'ms/crop':>8} {'x ref':>6} {'x own native':>12}")
        for n, s in native.items():
            own = statistics.median(rows[(n, "native")])
            for label in ["native", *pages]:
                ms = statistics.median(rows[(n, label)])
                rt = f"native {s.describe()}" if label == "native" else pages[label][1]["models"][n]["name"]
                out.append({"artifact": n, "runtime": rt, "where": "native" if label == "native" else "browser",
                            "ms_per_crop": ms, "x_ref": ms / ref, "x_own_native": ms / own,
                            "rounds": rows[(n, label)]})
                print(f"{n:<30} {rt:<40.40} {ms:8.1f} {ms / ref:6.2f} {ms / own:12.2f}")
        print(f"{'(page JS: letterbox + normalise one crop)':<71} {statistics.median(prep):8.1f}")
        if fps:
            print(f"\nwhole page on {a.video.name}, {a.num_frames} sampled frames (seek+decode, BlazeFace, crop, classify):")
            for n, (f, rt, per) in fps.items():
                print(f"  {n:<30} {rt:<34} {f:6.2f} frames/s   ms per frame {per}")
        if a.json:
            a.json.write_text(json.dumps({"load_average": load, "rows": out, "prep_ms": statistics.median(prep),
                                          "frames_per_s": {k: v[0] for k, v in fps.items()}}, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
