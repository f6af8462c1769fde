"""Does the INT8 accuracy guard hold on images it has never seen? (issue 14)

Two parts, both on the demo checkpoint and the face crops:

``--measure`` builds, per backend (onnx, openvino, executorch), the INT8 artifacts the
guard loop would try (the sensitivity plan, then the most sensitive INT8 group back to
float, ...), straight through the backends' adapters, and records per image
|P(fake) INT8 - P(fake) FP32| of the real artifact and of the simulated plan (PyTorch fake
quantization, what the sensitivity plan is chosen by) on: the calibration images
themselves (in-sample), the 20% held-out calibration split, eval/ and any ``--extra``
folder. From that JSON (``measure.json``, reused by later runs) it prints

- in-sample vs held-out: max and tail of |ΔP| on the calibration images vs eval/ (do
  post-training ranges fit the images they were computed on noticeably better?);
- the kernel room: real max|ΔP| / simulated max|ΔP| of the same plan on the same images;
- the bound: what the guard's upper bound, computed from the images the guard would use
  by default, says vs the max|ΔP| then measured on eval/ and ``--extra``.

Without ``--measure`` (``--table``) it exports each target with default settings
(``--calib-data`` only, the guard's default verification set) and prints the issue's
table: images used, measured max|ΔP|, bound, gate, max|ΔP| on eval/.

    python research/guard_holdout.py --weights ../shared/weights/ms_eff_vit_b0_demo.bin \
        --calib ../shared/data/faces/calib --eval ../shared/data/faces/eval \
        --extra ../shared/data/faces/train --out /tmp/guard-holdout --measure --table
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import msvit
from msvit.data import load_images
from msvit.quantize import Int8Job, Int8Options, load_calibration, plan_for
from msvit.quantize.guard import BOUND_METHODS, bound_description, dprob_bound
from msvit.quantize.sensitivity import KERNEL_ROOM, activation_ranges, fake_quantized
from msvit.runtime import load


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64).reshape(-1)))


def adapter_for(target: str, job: Int8Job, work: Path):
    if target == "onnx":
        from msvit.export.onnx import export_fp32_onnx
        from msvit.quantize.onnx import OnnxInt8

        return OnnxInt8(job, export_fp32_onnx(job.model, work / "fp32.onnx"))
    if target == "openvino":
        from msvit.export.onnx import export_fp32_onnx
        from msvit.quantize.openvino import OpenVINOInt8

        return OpenVINOInt8(job, export_fp32_onnx(job.model, work / "src.onnx"))
    if target == "executorch":
        from msvit.export.executorch import export_fp32_pte, lower_to_pte
        from msvit.quantize.executorch import ExecuTorchInt8

        return ExecuTorchInt8(job, lower_to_pte, export_fp32_pte)
    raise SystemExit(f"unknown target {target}")


def measure(model, cal, sets: dict[str, np.ndarray], targets: list[str], attempts: int, out: Path,
            prev: dict) -> dict:
    """Per target and guard attempt: per-image real and simulated |ΔP| on every set."""
    import msvit.export  # noqa: F401  (fail now, not after minutes of reference forwards)

    with torch.no_grad():
        ref = {k: sigmoid(np.concatenate([model(torch.from_numpy(x[i:i + 32])).numpy() for i in range(0, len(x), 32)]))
               for k, x in sets.items()}
    ranges = activation_ranges(model, cal.calib.x, "minmax")
    res = dict(prev)
    for target in targets:
        if target in res:
            print(f"{target}: reusing {out / 'measure.json'}")
            continue
        work = Path(tempfile.mkdtemp(prefix=f"gh-{target}-", dir=out))
        job = Int8Job(model, cal, Int8Options(), work, {}, 1, None)
        adapter = adapter_for(target, job, work)
        adapter.base_info = {}
        opts = Int8Options()
        plan, _ = plan_for(model, cal, "minmax", opts.sensitivity_budget, adapter.symmetric_act, log=print,
                           gate=opts.gate)
        plan = adapter.restrict(plan)
        rows = []
        for i in range(attempts):
            t0 = time.perf_counter()
            d = work / str(i)
            d.mkdir()
            built = adapter.build(plan, "minmax", d)
            secs = time.perf_counter() - t0
            row = {"attempt": i, "quantized": list(plan.quantized), "build_s": round(secs, 1),
                   "plan_sim_max_dprob": plan.sim_max_dprob, "real": {}, "sim": {}}
            with load(built.path) as sess:
                for k, x in sets.items():
                    row["real"][k] = np.abs(sigmoid(sess.run(x)) - ref[k]).round(6).tolist()
            with fake_quantized(model, plan.quantized_modules(), ranges, adapter.symmetric_act), torch.no_grad():
                for k, x in sets.items():
                    p = sigmoid(np.concatenate([model(torch.from_numpy(x[j:j + 32])).numpy()
                                                for j in range(0, len(x), 32)]))
                    row["sim"][k] = np.abs(p - ref[k]).round(6).tolist()
            print(f"{target} attempt {i}: {len(plan.quantized)} groups int8, built in {secs:.0f} s, real max|ΔP| "
                  + ", ".join(f"{k} {max(v):.4f}" for k, v in row["real"].items())
                  + " · sim " + ", ".join(f"{k} {max(v):.4f}" for k, v in row["sim"].items()), flush=True)
            rows.append(row)
            if not plan.quantized:
                break
            plan = plan.keep_float(max(plan.quantized, key=lambda g: plan.sensitivity[g]))
        res[target] = rows
        (out / "measure.json").write_text(json.dumps(res))
        shutil.rmtree(work, ignore_errors=True)
    return res


def q(v, p):
    return float(np.quantile(np.asarray(v), p))


def report(res: dict, extra_names: list[str], eval_files: list[Path]) -> None:
    held = ["eval", *extra_names]
    print("\n## In-sample (calibration images) vs held-out: |ΔP| of the real artifact")
    print("| target | attempt | int8 groups | "
          + " | ".join(f"{k} n / max / p90 / median" for k in ["calib", "holdout", *held])
          + " | eval's top 3 |")
    print("|---|---|---|" + "---|" * (3 + len(held)))
    for t, rows in res.items():
        for r in rows:
            c = r["real"]
            cells = [f"{len(c[k])} / {max(c[k]):.4f} / {q(c[k], .9):.4f} / {q(c[k], .5):.4f}"
                     for k in ["calib", "holdout", *held]]
            top = np.argsort(c["eval"])[::-1][:3]
            names = ", ".join(f"{eval_files[i].name} {c['eval'][i]:.4f}" for i in top) if eval_files else ""
            print(f"| {t} | {r['attempt']} | {len(r['quantized'])} | " + " | ".join(cells) + f" | {names} |")
    print("\n## Kernel room: real max|ΔP| / simulated max|ΔP| of the same plan, same images")
    print("| target | attempt | " + " | ".join(f"{k} real / sim" for k in ["calib+holdout", *held]) + " |")
    print("|---|---|" + "---|" * (1 + len(held)))
    ratios: dict[str, list[float]] = {}
    for t, rows in res.items():
        for r in rows:
            if not r["quantized"]:
                continue
            cells = []
            for k in ["calib+holdout", *held]:
                ks = ["calib", "holdout"] if k == "calib+holdout" else [k]
                a, s = (max(max(r[w][kk]) for kk in ks) for w in ("real", "sim"))
                ok = s >= 1e-3  # below 0.001 both are noise
                cells.append(f"{a:.4f} / {s:.4f} = {a / s:.2f}" if ok else f"{a:.4f} / {s:.4f} (noise)")
                if ok:
                    ratios.setdefault(t, []).append(a / s)
            print(f"| {t} | {r['attempt']} | " + " | ".join(cells) + " |")
    print("\nreal/sim ratio per backend (cells above 0.001): "
          + "; ".join(f"{t} {min(v):.2f}-{max(v):.2f}" for t, v in ratios.items())
          + f" -> KERNEL_ROOM {KERNEL_ROOM:g} (plan budget = max_dprob / {KERNEL_ROOM:g})")
    print("\n## The guard's bound from its default data (all 75 calibration images) vs max|ΔP| on unseen images")
    for method in BOUND_METHODS:
        print(f"\n{method}: {bound_description(method)}")
        print("| target | attempt | n | measured max | bound | " + " | ".join(f"{k} max" for k in held)
              + " | bound ≥ unseen max | verdict at 0.05 | unseen ≤ 0.05 |")
        print("|---|---|---|---|---|" + "---|" * len(held) + "---|---|---|")
        for t, rows in res.items():
            for r in rows:
                v = np.asarray(r["real"]["calib"] + r["real"]["holdout"])
                b = dprob_bound(v, method)["bound"]
                mx = [max(r["real"][k]) for k in held]
                print(f"| {t} | {r['attempt']} | {len(v)} | {v.max():.4f} | {b:.4f} | "
                      + " | ".join(f"{m:.4f}" for m in mx) + f" | {'yes' if b >= max(mx) else 'no'} | "
                      f"{'pass' if b <= 0.05 else 'refuse'} | {'yes' if max(mx) <= 0.05 else 'NO'} |")
    print("\n## 15 images (the old default: the held-out split) under each rule")
    print("| target | attempt | max on 15 | " + " | ".join(f"{m} bound (verdict)" for m in BOUND_METHODS)
          + " | eval max |")
    print("|---|---|---|" + "---|" * len(BOUND_METHODS) + "---|")
    for t, rows in res.items():
        for r in rows:
            v = np.asarray(r["real"]["holdout"])
            cells = []
            for m in BOUND_METHODS:
                b = dprob_bound(v, m)["bound"]
                cells.append(f"{b:.4f} ({'pass' if b <= 0.05 else 'refuse'})")
            print(f"| {t} | {r['attempt']} | {v.max():.4f} | " + " | ".join(cells)
                  + f" | {max(r['real']['eval']):.4f} |")


def resample(res: dict, extra_names: list[str], eval_files: list[Path], pool_pattern: str, reps: int = 300) -> None:
    """Random 75-image samples from the pooled images: the tail index the bound would need to reach
    the max of the rest, and how often each rule covers it / refuses at 0.05."""
    import math
    import re

    from msvit.quantize.guard import DPROB_FLOOR, MIN_TAIL_INDEX, tail_size

    keep = np.array([bool(re.search(pool_pattern, f.name)) for f in eval_files]) if eval_files else None
    print(f"\n## Resampling: 75 random images of calib + holdout + {' + '.join(extra_names)} + eval files matching "
          f"{pool_pattern!r} (same source), {reps} draws")
    print("| target | attempt | pool | index needed p50 / p95 | Hill index p50 | "
          + " | ".join(f"{m} covers / refuses" for m in BOUND_METHODS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(BOUND_METHODS))
    rng = np.random.default_rng(0)
    for t, rows in res.items():
        for r in rows:
            ev = np.asarray(r["real"]["eval"])
            pool = np.concatenate([r["real"]["calib"], r["real"]["holdout"], *[r["real"][k] for k in extra_names],
                                   ev if keep is None else ev[keep]])
            need, hills, cov = [], [], {m: [] for m in BOUND_METHODS}
            for _ in range(reps):
                idx = rng.permutation(len(pool))
                smp, rest = pool[idx[:75]], max(pool[idx[75:]].max(), DPROB_FLOOR)
                f = np.sort(np.maximum(smp, DPROB_FLOOR))[::-1]
                k = tail_size(75)
                u = f[k]
                hills.append(float(np.mean(np.log(f[:k] / u))))
                need.append(0.0 if smp.max() >= rest else math.log(rest / u) / math.log(k * 1000 / 75))
                for m in BOUND_METHODS:
                    b = dprob_bound(smp, m)["bound"]
                    cov[m].append((b >= pool[idx[75:]].max(), b > 0.05))
            cells = [f"{np.mean([c[0] for c in v]):.2f} / {np.mean([c[1] for c in v]):.2f}" for v in cov.values()]
            print(f"| {t} | {r['attempt']} | {len(pool)} | {np.median(need):.2f} / {np.quantile(need, .95):.2f} | "
                  f"{np.median(hills):.2f} | " + " | ".join(cells) + " |")
    print(f"(the bound uses tail index max(Hill, {MIN_TAIL_INDEX}))")


def table(model, cal_dir: str, ev, targets: list[str], out: Path) -> None:
    from msvit.export import ExportOptions, export

    print("\n## Default settings (--calib-data only): the guard's verdict vs eval/")
    print("| target | images used | verified | measured max|ΔP| | bound (method) | gate | guard | int8 groups | "
          "eval max|ΔP| | eval ≤ gate | export s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    cal = load_calibration(cal_dir)
    for t in targets:
        t0 = time.perf_counter()
        r = export(model, t, "int8", out / f"table-{t}", calib=cal, verify_data=ev,
                   options=ExportOptions(int8=Int8Options()), strict=False, log=None)
        g, e = r.extra["guard"], r.extra
        ev_max = r.parity.max_abs_dprob if r.parity else float("nan")
        print(f"| {t} | {g['n']} | {'weakly' if e['guard_weakly_verified'] else 'yes'} | {g['max_abs_dprob']:.4f} | "
              f"{e['guard_bound_dprob']:.4f} ({e['guard_bound_method'].split(':')[0]}) | {e['guard_max_dprob']} | "
              f"{'✅' if e['guard_passed'] else '❎'} | "
              f"{len(e['quantized_groups'])} (attempts {len(e['attempts'])}) | "
              f"{ev_max:.4f} | {'yes' if ev_max <= e['guard_max_dprob'] else 'NO'} | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--extra", action="append", default=[], help="more held-out folders (measure only)")
    ap.add_argument("--out", required=True, help="work folder; measure.json there is reused")
    ap.add_argument("--targets", default="onnx,openvino,executorch")
    ap.add_argument("--attempts", type=int, default=3, help="guard attempts to build per target (measure)")
    ap.add_argument("--measure", action="store_true")
    ap.add_argument("--pool-pattern", default="",
                    help="resampling pool: eval files whose name matches this regex (default all; '_f\\d' = the "
                         "video frames, leaving out eval's 7 still photos from another source)")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = args.targets.split(",")
    model = msvit.ms_eff_vit_b0(weights=args.weights)
    ev = load_images(args.eval)
    if args.measure:
        mj = out / "measure.json"
        res = json.loads(mj.read_text()) if mj.is_file() else {}
        extras = [Path(p).name for p in args.extra]
        if any(t not in res for t in targets):  # measure what is missing (minutes per build)
            cal = load_calibration(args.calib)
            sets = {"calib": cal.calib.x, "holdout": cal.holdout.x, "eval": ev.x,
                    **{Path(p).name: load_images(p).x for p in args.extra}}
            res = measure(model, cal, sets, targets, args.attempts, out, res)
        report({t: res[t] for t in targets if t in res}, extras, ev.files)
        resample({t: res[t] for t in targets if t in res}, extras, ev.files, args.pool_pattern)
    if args.table:
        table(model, args.calib, ev, targets, out)


if __name__ == "__main__":
    main()
