"""INT8 vs FP32 on this CPU, per runtime: latency (batch 1, 1 and 2 threads, median of
>= 100 runs after warm-up) and decisions (agreement at 0.5 and max |ΔP| vs PyTorch FP32)
on a held-out folder.

    python research/int8_cpu.py --weights ../shared/weights/ms_eff_vit_b0_demo.bin \
        --calib ../shared/data/faces/calib --eval ../shared/data/faces/eval --out /tmp/int8-bench --ceiling

Timing is block-interleaved: FP32 and INT8 of one runtime are loaded side by side and run
in alternating blocks of 20 (order rotating each round), so both see the same machine
state; on a shared 2-core VM, back-to-back medians taken minutes apart differ by ±30%,
more than the INT8 effect. onnxruntime thread spinning is off while timing (a spinning
idle pool steals the other session's core).

``--ceiling`` adds, per runtime, the whole model in INT8 with the backend's own
off-the-shelf recipe and no accuracy guard (onnxruntime quantize_static QDQ U8S8
per-channel on every op it supports; NNCF MIXED on every op; PT2E XNNPACKQuantizer
global, lowered to XNNPACK): the most INT8 can buy on this CPU, whatever it does to
decisions. Each INT8 row then also says how much of that ceiling it gets: its speed-up
over FP32 divided by the ceiling's (both timed against the same FP32, interleaved).

``--compare-methods`` instead exports each target's INT8 once per calibration method with
the default guard (fallback on) and prints the share of MACs in int8 it ended with next to
its decisions on --eval: the method that keeps the most in int8 within the gate is the one
a target should default to.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

import msvit
from msvit.bench.timing import interleaved
from msvit.cpu import cpu_int8_features, cpu_name
from msvit.data import load_images
from msvit.export import ExportOptions, Int8Options, export
from msvit.metrics import agreement_metrics, label_metrics
from msvit.quantize import load_calibration
from msvit.runtime import load


def interleaved_ms(fns, x, iters: int = 100, block: int = 20, warmup: int = 10) -> list[float]:
    """Median ms of each of ``fns(x)``, timed round-robin in blocks (msvit-bench's own timer)."""
    res = interleaved([lambda f=f: f(x) for f in fns], iters=iters, warmup=warmup, block=block, rewarm=3)
    return [float(np.median(r.ms)) for r in res]


def runner(target: str, path: Path, threads: int):
    # no idle-pool spinning: two onnxruntime sessions are alive while timing
    return load(path, threads=threads, **({"spinning": False} if target == "onnx" else {}))


def ceiling_int8(target: str, fp32: Path, cal, out: Path, model: torch.nn.Module) -> Path | None:
    """Whole-model INT8 by the backend's off-the-shelf recipe, no guard."""
    if target == "onnx":
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        from msvit.quantize.onnx import CalibrationReader

        dst = out / "ceiling_int8.onnx"
        logging.getLogger().setLevel(logging.ERROR)
        quantize_static(str(fp32), str(dst), CalibrationReader(cal.calib.x, 1), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return dst
    if target == "openvino":
        import nncf
        import openvino as ov

        logging.getLogger("nncf").setLevel(logging.WARNING)
        data = nncf.Dataset([cal.calib.x[i:i + 1] for i in range(len(cal.calib))])
        q = nncf.quantize(ov.Core().read_model(str(fp32)), data, subset_size=len(cal.calib),
                          preset=nncf.QuantizationPreset.MIXED)
        dst = out / "ceiling_int8.xml"
        ov.save_model(q, str(dst), compress_to_fp16=False)
        return dst
    if target == "executorch":
        from msvit.export.executorch import lower_to_pte
        from msvit.quantize.executorch import quantized_program

        from msvit.runtime.base import flat_metadata
        from msvit.runtime.coverage import program_coverage

        dst = out / "ceiling_int8.pte"
        program = quantized_program(model, cal.calib.x, None)
        # a .pte hides its graph: record the coverage of the program it lowers, as msvit's export does
        lower_to_pte(program, dst, flat_metadata(program_coverage(program).info()))
        return dst
    return None


def coverage_of(path: Path) -> str:
    """Share of MACs in int8: as an msvit export recorded it in the artifact's metadata (every
    format), else read off the graph (the ceiling's plain ONNX / OpenVINO IR)."""
    from msvit.runtime import read_metadata
    from msvit.runtime.coverage import onnx_coverage, openvino_coverage

    share = read_metadata(path).get("int8_mac_share")
    if share is None:
        reader = {".onnx": onnx_coverage, ".xml": openvino_coverage}.get(path.suffix)
        share = reader(path).mac_share if reader else None
    return "—" if share is None else f"{100 * float(share):.1f}%"


def main() -> None:  # noqa: PLR0915 - one linear script
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--targets", default="onnx,openvino,executorch")
    ap.add_argument("--ceiling", action="store_true", help="add whole-model INT8 rows (no guard): the CPU's ceiling")
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
    x1 = np.ascontiguousarray(ev.x[:1])
    rows = []

    def eager(x):
        with torch.no_grad():
            return model(torch.from_numpy(x))

    t_eager = []
    for th in (1, 2):
        torch.set_num_threads(th)
        t_eager += interleaved_ms([eager], x1, args.iters)
    rows.append(("torch eager", "fp32", *t_eager, None, 1.0, 0.0, label_metrics(ref, ev.labels)["auc"], "", "—",
                 None))
    for target in args.targets.split(","):
        art = {}
        for prec in ("fp32", "int8"):
            r = export(model, target, prec, out, calib=cal if prec == "int8" else None, verify_data=ev,
                       options=ExportOptions(int8=Int8Options(verify_data=ev)), strict=False, log=None)
            note = "timed against itself: the noise floor" if prec == "fp32" else ""
            if prec == "int8":
                note = (f"{len(r.extra.get('quantized_groups', []))} groups int8 "
                        f"({r.extra.get('quant_format', '')}), guard {'✅' if r.ok else '❎'}")
            art[prec] = (r.path, note)
        if args.ceiling:
            c = ceiling_int8(target, art["fp32"][0], cal, out, model)
            if c is not None:
                art["int8 whole model (no guard)"] = (c, "off-the-shelf recipe: the CPU's INT8 ceiling")
        first = len(rows)
        for prec, (path, note) in art.items():
            p = runner(target, path, 2).run(ev.x)
            ms = {}
            for th in (1, 2):
                ms[th] = interleaved_ms([runner(target, art["fp32"][0], th), runner(target, path, th)], x1, args.iters)
            a = agreement_metrics(ref, p)
            cov = "0.0%" if prec == "fp32" else coverage_of(path)
            rows.append((target, prec, ms[1][1], ms[2][1], (ms[1][0] / ms[1][1], ms[2][0] / ms[2][1]),
                         a["agreement"], a["max_abs_dprob"], label_metrics(p, ev.labels)["auc"], note, cov, None))
        ceil = next((r[4] for r in rows[first:] if r[1].startswith("int8 whole")), None)
        if ceil:  # each INT8 row's speed-up as a share of the ceiling's, per thread count
            for i in range(first, len(rows)):
                if rows[i][1].startswith("int8"):
                    rows[i] = (*rows[i][:10], (rows[i][4][0] / ceil[0], rows[i][4][1] / ceil[1]))
    feats = ", ".join(cpu_int8_features()) or "none (no VNNI/AMX/dot-product)"
    print(f"\nms_eff_vit_b0 (DeepGuard block), batch 1, median of {args.iters} runs per cell, FP32 and INT8 "
          f"block-interleaved; calib {len(cal.calib)} imgs ({args.calib}), eval {len(ev)} imgs ({args.eval})\n"
          f"CPU {cpu_name()}, int8 features: {feats}\n")
    print("| runtime | precision | MACs int8 | 1 thread ms | 2 threads ms | vs same-runtime FP32 (1t/2t) "
          "| share of the INT8 ceiling (1t/2t) | agreement | max abs dP | AUC | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for t, p, a, b, sp, agr, dp, auc, note, cov, vc in rows:
        spd = "—" if sp is None else f"{sp[0]:.2f}× / {sp[1]:.2f}×"
        ceil_s = "—" if vc is None else f"{vc[0]:.2f} / {vc[1]:.2f}"
        print(f"| {t} | {p} | {cov} | {a:.1f} | {b:.1f} | {spd} | {ceil_s} | {agr:.3f} | {dp:.3f} | {auc:.3f} "
              f"| {note} |")


def compare_methods(model, cal, ev, ref, out: Path, targets: list[str]) -> None:
    """Each calibration method through the default guard (the fallback on): what it ends with."""
    import time

    methods = {"onnx": ("minmax", "percentile", "entropy"), "trt": ("minmax", "percentile", "entropy"),
               "openvino": ("minmax", "percentile"), "executorch": ("minmax",)}
    print("\n| target | calib method | MACs int8 | INT8 groups | attempts | guard | agreement | max abs dP "
          "| mean abs dP | AUC | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for target in targets:
        for method in methods.get(target, ()):
            t0 = time.perf_counter()
            # the guard verifies on the calibration images only: eval/ stays unseen
            r = export(model, target, "int8", out / f"{target}-{method}", calib=cal, strict=False, log=None,
                       options=ExportOptions(int8=Int8Options(calib_method=method)))
            dt = time.perf_counter() - t0
            # trt: no engine can be built here; r.path is the Q/DQ ONNX it is built from
            p = load(r.path).run(ev.x)
            a = agreement_metrics(ref, p)
            print(f"| {target} | {method} | {coverage_of(r.path)} | "
                  f"{len(r.extra.get('quantized_groups', []))} | {len(r.extra.get('attempts', []))} | "
                  f"{'✅' if r.extra.get('guard_passed') else '❎'} | {a['agreement']:.3f} | "
                  f"{a['max_abs_dprob']:.3f} | {a['mean_abs_dprob']:.4f} | {label_metrics(p, ev.labels)['auc']:.3f} | "
                  f"{dt:.0f} |", flush=True)


if __name__ == "__main__":
    main()
