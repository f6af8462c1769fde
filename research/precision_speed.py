"""How fast each precision runs, and whether it keeps decisions: one process, interleaved, batch 1.

    python research/precision_speed.py --weights-dir ../shared/weights --eval ../shared/data/faces/eval \\
        --calib ../shared/data/faces/calib                          # both fixtures, every target/precision
    python research/precision_speed.py --weights-dir ../shared/weights --eval ../shared/data/faces/eval \
        --calib ../shared/data/faces/calib --tiny                   # a smoke run (few images, short timing)
    python research/precision_speed.py --targets openvino,onnx --precisions fp32,int8,auto

Rows: torch eager FP32, a naive ``torch.onnx.export`` + onnxruntime session (no msvit), and every
msvit artifact asked for (``--precisions`` per ``--targets``; those a target or this CPU cannot do
are listed, not faked). All timed in one process, round-robin (each round runs every row
``--iters`` times) at ``--threads`` threads, so drift on a shared host falls on all rows alike.

Per row: median ms, speed-up vs eager and vs naive ORT, share of MACs per precision (int8 share
read off the artifact's graph, the rest in its exec_precision), and against FP32 PyTorch on
``--eval``: max |ΔP| / the fixture's noise floor, decision flips (count), AUC. The noise floor is
FP32's own max |ΔP| under uniform ±0.5 pixel-step noise on the uint8 input (worst of 3 seeds),
and the flips that noise causes. Public msvit API only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from msvit import metrics

ROOT = Path(__file__).resolve().parents[1]
#: the two checkpoints of the shared data's weights/ folder (--weights-dir)
FIXTURES = {"demo": "ms_eff_vit_b0_demo.bin", "confident": "ms_eff_vit_b0_confident.bin"}


def sigmoid(z: np.ndarray) -> np.ndarray:
    """msvit's P(fake), flattened."""
    return metrics.sigmoid(z).reshape(-1)


def noise_floor(model: torch.nn.Module, x: np.ndarray, seeds: int = 3, steps: float = 0.5) -> tuple[float, int]:
    """FP32's max |ΔP| and flips under uniform ±``steps`` pixel-step noise (worst seed)."""
    from msvit.model import IMAGENET_STD

    std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    with torch.no_grad():
        p0 = sigmoid(model(torch.from_numpy(x)).numpy())
        worst, flips = 0.0, 0
        for s in range(seeds):
            noise = np.random.default_rng(s).uniform(-steps, steps, x.shape).astype(np.float32) / 255.0 / std
            p = sigmoid(model(torch.from_numpy(x + noise)).numpy())
            worst = max(worst, float(np.abs(p - p0).max()))
            flips = max(flips, int(((p >= 0.5) != (p0 >= 0.5)).sum()))
    return worst, flips


def naive_ort(model: torch.nn.Module, size: int, threads: int, tmp: Path):
    """What a user gets without msvit: torch.onnx.export, default session options."""
    import onnxruntime as ort

    path = tmp / "naive.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), input_names=["image"],
                          output_names=["logit"], dynamo=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda x: s.run(None, {"image": x})[0]


def interleaved(runners: dict[str, callable], x1: np.ndarray, rounds: int, iters: int, warmup: int = 3) -> dict:
    for fn in runners.values():
        for _ in range(warmup):
            fn(x1)
    samples = {k: [] for k in runners}
    for _ in range(rounds):
        for k, fn in runners.items():
            for _ in range(iters):
                t0 = time.perf_counter()
                fn(x1)
                samples[k].append(1e3 * (time.perf_counter() - t0))
    return {k: float(np.median(v)) for k, v in samples.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default="demo,confident", help="comma list of demo,confident")
    ap.add_argument("--weights-dir", type=Path, required=True, help="folder holding the fixtures' .bin files")
    ap.add_argument("--eval", type=Path, required=True)
    ap.add_argument("--calib", type=Path, required=True)
    ap.add_argument("--targets", default="onnx,openvino,executorch,litert")
    ap.add_argument("--precisions", default="fp32,fp16,bf16,int8,auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None, help="keep the artifacts here (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="write every row as JSON here")
    ap.add_argument("--max-dprob", default="0.05",
                    help="the guard's gate, as msvit-export's: a number, or 'floor' (keeps decisions: within FP32's "
                         "own noise floor)")
    ap.add_argument("--time-failing", action="store_true",
                    help="also time artifacts the guard or parity check failed (rows marked 'failed')")
    ap.add_argument("--tiny", action="store_true", help="smoke run: 16 eval images, 16 calib, 2 rounds x 3")
    args = ap.parse_args(argv)

    from msvit import create_model, runtime
    from msvit.cpu import cpu_int8_features, cpu_name, cpu_vector_summary
    from msvit.data import resolve_data
    from msvit.export import TARGETS, export
    from msvit.metrics import label_metrics
    from msvit.quantize import load_calibration

    from msvit.export import ExportOptions
    from msvit.quantize import Int8Options

    gate = args.max_dprob if args.max_dprob == "floor" else float(args.max_dprob)
    options = ExportOptions(int8=Int8Options(max_dprob=gate))
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OPENVINO_TELEMETRY", "0")
    if args.tiny:
        args.rounds, args.iters = 2, 3
    print(f"CPU: {cpu_name()} · {os.cpu_count()} cores · vector flags: {cpu_vector_summary()} · "
          f"int8 features: {', '.join(cpu_int8_features()) or 'none (no VNNI/AMX/dot-product)'}")
    print(f"threads {args.threads}, batch 1, {args.rounds} rounds x {args.iters} iterations, interleaved; "
          f"guard gate --max-dprob {args.max_dprob}")
    tmp_root = Path(tempfile.mkdtemp(prefix="precision-speed-"))
    rows = []
    for fixture in args.fixtures.split(","):
        model = create_model("ms_eff_vit_b0", weights=args.weights_dir / FIXTURES[fixture]).eval()
        ev = resolve_data(args.eval, model.img_size)
        x, labels = ev.x[:16] if args.tiny else ev.x, (ev.labels[:16] if args.tiny else ev.labels) \
            if ev.labels is not None else None
        calib = load_calibration(args.calib, model.img_size, 16 if args.tiny else None)
        with torch.no_grad():
            ref = np.concatenate([model(torch.from_numpy(x[i:i + 32])).numpy() for i in range(0, len(x), 32)])
        p_ref = sigmoid(ref)
        floor, floor_flips = noise_floor(model, x)
        print(f"\n## {fixture} ({FIXTURES[fixture]}): {len(x)} eval images · noise floor max|ΔP| "
              f"{floor:.4f}, {floor_flips} flips (±0.5 pixel step, worst of 3 seeds)")
        out = (args.out or tmp_root) / fixture
        runners = {"torch eager fp32": lambda a: model(torch.from_numpy(a)).detach().numpy()}
        with torch.no_grad():
            runners["naive torch.onnx + ORT"] = naive_ort(model, model.img_size, args.threads, tmp_root)
        facts = {"torch eager fp32": {}, "naive torch.onnx + ORT": {}}
        sessions = []
        for t in args.targets.split(","):
            for p in args.precisions.split(","):
                if p != "auto" and p not in TARGETS[t].precisions:
                    continue
                r = export(model, t, p, out, verify_data=args.eval, calib=calib if p in ("int8", "auto") else None,
                           log=None, strict=False, options=options)
                name = f"{t} {p}"
                if not r.ok or r.path is None:
                    print(f"  {name}: {r.status}: {r.message[:160]}")
                    if not (args.time_failing and r.path is not None and r.path.exists()):
                        continue
                    name += " (failed)"
                s = runtime.load(r.path, threads=args.threads)
                sessions.append(s)
                runners[name] = s.run
                meta = s.metadata
                share = float(meta.get("int8_mac_share") or 0.0)
                auto = r.extra.get("auto", {})
                facts[name] = {"exec": s.exec_precision, "int8_share": share,
                               "assignment": auto.get("chosen", meta.get("precision")),
                               "auto_speedup_vs_fp32": auto.get("speedup_vs_fp32")}
        with torch.no_grad():
            ms = interleaved(runners, np.ascontiguousarray(x[:1]), args.rounds, args.iters)
        hdr = (f"{'path':<26} {'assignment':<11} {'MACs int8/float':<16} {'ms':>7} {'vs eager':>8} {'vs ORT':>7} "
               f"{'max|ΔP|':>8} {'/floor':>6} {'flips':>5} {'AUC':>6}")
        print(hdr)
        for name, fn in runners.items():
            with torch.no_grad():
                logits = np.concatenate([np.asarray(fn(np.ascontiguousarray(x[i:i + 1]))) for i in range(len(x))])
            p = sigmoid(logits)
            dp = float(np.abs(p - p_ref).max())
            flips = int(((p >= 0.5) != (p_ref >= 0.5)).sum())
            auc = label_metrics(logits, labels)["auc"] if labels is not None else None
            f = facts[name]
            macs = (f"{100 * f['int8_share']:.0f}% / {100 - 100 * f['int8_share']:.0f}% {f['exec']}" if f else
                    "100% fp32")
            row = {"fixture": fixture, "path": name, "ms": ms[name], "speedup_vs_eager": ms["torch eager fp32"] / ms[name],
                   "speedup_vs_naive_ort": ms["naive torch.onnx + ORT"] / ms[name], "max_abs_dprob": dp,
                   "dprob_over_floor": dp / floor if floor else None, "flips": flips, "floor_flips": floor_flips,
                   "auc": auc, **f}
            rows.append(row)
            print(f"{name:<26} {str(f.get('assignment', 'fp32')):<11} {macs:<16} {ms[name]:7.2f} "
                  f"{row['speedup_vs_eager']:8.2f} {row['speedup_vs_naive_ort']:7.2f} {dp:8.4f} "
                  f"{row['dprob_over_floor']:6.2f} {flips:5d} {auc if auc is None else round(auc, 4)!s:>6}")
        for s in sessions:
            s.close()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
