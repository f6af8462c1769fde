"""INT8 vs FP32 on this CPU, per runtime: latency (batch 1, 1 and 2 threads, median of
>= 50 runs after warm-up, FP32 and INT8 timed in the same process) and decisions
(agreement at 0.5 and max |ΔP| vs PyTorch FP32) on a held-out folder.

    python benchmarks/int8_cpu.py --weights ../shared/weights/ms_eff_vit_b0_demo.bin \
        --calib ../shared/data/faces/calib --eval ../shared/data/faces/eval --out /tmp/int8-bench
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import msvit
from msvit.data import load_images
from msvit.export import export, load_runner
from msvit.metrics import agreement_metrics, label_metrics
from msvit.quantize import load_calibration


def median_ms(run, x, iters: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        run(x)
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        run(x)
        t.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(t))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--targets", default="onnx,openvino,executorch")
    ap.add_argument("--compare-methods", action="store_true",
                    help="instead: INT8 accuracy per calibration method (what picks the default)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="msvit-int8-"))
    model = msvit.ms_eff_vit_b0(weights=args.weights)
    cal = load_calibration(args.calib)
    ev = load_images(args.eval)
    with torch.no_grad():
        ref = model(torch.from_numpy(ev.x)).numpy()
    if args.compare_methods:
        return compare_methods(model, cal, ev, ref, out, args.targets.split(","))
    x1 = ev.x[:1]
    rows = []
    torch.set_num_threads(1)
    t_torch1 = median_ms(lambda x: model(torch.from_numpy(x)), x1, args.iters)
    torch.set_num_threads(2)
    t_torch2 = median_ms(lambda x: model(torch.from_numpy(x)), x1, args.iters)
    rows.append(("torch eager", "fp32", t_torch1, t_torch2, 1.0, 0.0, label_metrics(ref, ev.labels)["auc"], ""))
    for target in args.targets.split(","):
        res = {}
        for prec in ("fp32", "int8"):
            r = export(model, target, prec, out, calib=cal if prec == "int8" else None, verify_data=ev,
                       options={"verify_data": ev}, strict=False, log=None)
            runs = {th: load_runner(target, r.path, threads=th) for th in (1, 2)}
            p = np.concatenate([runs[1](ev.x[i:i + 1]) for i in range(len(ev))])
            res[prec] = (r, runs, p)
        # interleave the timings so FP32 and INT8 see the same machine state
        times = {prec: {} for prec in res}
        for th in (1, 2):
            for prec in ("fp32", "int8", "fp32", "int8"):
                t = median_ms(res[prec][1][th], x1, args.iters // 2)
                times[prec].setdefault(th, []).append(t)
        for prec in ("fp32", "int8"):
            r, _, p = res[prec]
            a = agreement_metrics(ref, p)
            note = ""
            if prec == "int8":
                note = f"{len(r.extra.get('quantized_groups', []))} groups int8, guard {'✅' if r.ok else '❎'}"
            rows.append((target, prec, float(np.median(times[prec][1])), float(np.median(times[prec][2])),
                         a["agreement"], a["max_abs_dprob"], label_metrics(p, ev.labels)["auc"], note))
    base = {(t, p): (a, b) for t, p, a, b, *_ in rows}
    print(f"\nms_eff_vit_b0 (DeepGuard block), batch 1, median of {args.iters} runs, calib {len(cal.calib)} imgs "
          f"({args.calib}), eval {len(ev)} imgs ({args.eval})\n")
    print("| runtime | precision | 1 thread ms | 2 threads ms | speed-up vs FP32 (1t/2t) | agreement | max abs dP | AUC | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t, p, a, b, agr, dp, auc, note in rows:
        f = base.get((t, "fp32"), (a, b))
        print(f"| {t} | {p} | {a:.1f} | {b:.1f} | {f[0] / a:.2f}× / {f[1] / b:.2f}× | {agr:.3f} | {dp:.3f} | "
              f"{auc:.3f} | {note} |")


def compare_methods(model, cal, ev, ref, out: Path, targets: list[str]) -> None:
    methods = {"onnx": ("minmax", "percentile", "entropy"), "openvino": ("minmax", "percentile"),
               "executorch": ("minmax",)}
    print("\n| target | calib method | agreement | max abs dP | mean abs dP | AUC | INT8 groups | guard |")
    print("|---|---|---|---|---|---|---|---|")
    for target in targets:
        for method in methods.get(target, ()):
            # guard off (one attempt) so each method's own plan is compared as chosen
            r = export(model, target, "int8", out / method, calib=cal, strict=False, log=None,
                       options={"verify_data": ev, "calib_method": method, "max_attempts": 1})
            p = np.concatenate([load_runner(target, r.path)(ev.x[i:i + 1]) for i in range(len(ev))])
            a = agreement_metrics(ref, p)
            print(f"| {target} | {method} | {a['agreement']:.3f} | {a['max_abs_dprob']:.3f} | "
                  f"{a['mean_abs_dprob']:.4f} | {label_metrics(p, ev.labels)['auc']:.3f} | "
                  f"{len(r.extra.get('quantized_groups', []))} | {'✅' if r.ok else '❎'} |")


if __name__ == "__main__":
    main()
