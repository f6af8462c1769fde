"""The README's ``msvit-export --precision auto`` command vs torch eager vs a naive
``torch.onnx.export`` + onnxruntime session, in ONE interleaved process, and whether the chosen
artifact keeps decisions on eval/ and on data from other sources (issue 32).

    python research/auto_speed.py --weights-dir ../shared/weights --calib ../shared/data/faces/calib \\
        --eval ../shared/data/faces/eval --shift ../shared/data/shift/manifest.csv
    python research/auto_speed.py ... --tiny            # smoke run: 16 images, short timing
    python research/auto_speed.py ... --artifact confident=out/ms_eff_vit_b0_auto.xml --no-timing

Per fixture (``--fixtures``): the artifact is what ``msvit-export --target TARGET --precision auto
--weights W --calib-data CALIB`` writes (no other flag; ``--artifact fixture=PATH`` reuses one).
Rows, timed round-robin at batch 1 and ``--threads`` threads (each round runs every row
``--iters`` times): torch eager FP32, naive ORT (``torch.onnx.export`` + a default
``InferenceSession``: spinning on, its default), the auto artifact. Then, on each data set
(``--eval``, ``--shift``), against FP32 PyTorch: max |ΔP|, that set's own noise floor (FP32 under
±0.5 pixel-step input noise, worst of 3 seeds: :func:`msvit.quantize.floor.noise_floor`), flips
vs the floor's, AUC drop. "keeps" = max |ΔP| <= floor, flips <= floor's, AUC drop <= 0.005.
Public msvit API only; prints the CPU's int8/bf16 features beside the timings.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

# the naive ORT baseline and the interleaved timer are precision_speed.py's (this folder: on sys.path)
from precision_speed import interleaved, naive_ort

FIXTURES = {"demo": "ms_eff_vit_b0_demo.bin", "confident": "ms_eff_vit_b0_confident.bin"}
MAX_AUC_DROP = 0.005


def decisions(model, session, data, tiny: bool) -> dict:
    """The artifact vs FP32 PyTorch on one data set, against that set's own noise floor."""
    from msvit.metrics import label_metrics, sigmoid
    from msvit.quantize.floor import noise_floor

    x = data.x[:16] if tiny else data.x
    labels = None if data.labels is None else (data.labels[:16] if tiny else data.labels)
    with torch.no_grad():
        ref = np.concatenate([model(torch.from_numpy(x[i:i + 32])).numpy() for i in range(0, len(x), 32)])
    got = np.concatenate([np.asarray(session.run(np.ascontiguousarray(x[i:i + 1]))) for i in range(len(x))])
    p32, p = sigmoid(ref).reshape(-1), sigmoid(got).reshape(-1)
    fl = noise_floor(model, x)
    dp = float(np.abs(p - p32).max())
    flips = int(((p >= 0.5) != (p32 >= 0.5)).sum())
    auc32 = auc = drop = None
    if labels is not None and len(set(labels.tolist())) == 2:
        auc32, auc = label_metrics(ref, labels)["auc"], label_metrics(got, labels)["auc"]
        drop = auc32 - auc
    keeps = dp <= fl.max_abs_dprob and flips <= fl.flips and (drop is None or drop <= MAX_AUC_DROP)
    return {"n": len(x), "max_abs_dprob": dp, "floor": fl.max_abs_dprob, "ratio": dp / max(fl.max_abs_dprob, 1e-12),
            "flips": flips, "floor_flips": fl.flips, "auc_fp32": auc32, "auc": auc, "auc_drop": drop, "keeps": keeps}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default="confident,demo", help="comma list of demo,confident")
    ap.add_argument("--weights-dir", type=Path, required=True)
    ap.add_argument("--calib", type=Path, required=True, help="--calib-data of the README's command")
    ap.add_argument("--eval", type=Path, required=True)
    ap.add_argument("--shift", type=Path, default=None, help="crops from other sources (folder or manifest CSV)")
    ap.add_argument("--target", default="openvino", choices=["openvino", "onnx", "litert", "executorch", "ort"])
    ap.add_argument("--artifact", action="append", default=[], metavar="FIXTURE=PATH",
                    help="use this auto artifact instead of exporting (repeatable)")
    ap.add_argument("--out", type=Path, default=None, help="keep the exported artifacts here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--no-timing", action="store_true", help="decisions only")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--tiny", action="store_true", help="smoke run: 16 images per set, 2 rounds x 3")
    args = ap.parse_args(argv)

    from msvit import create_model, runtime
    from msvit.cpu import cpu_float16_features, cpu_int8_features, cpu_name, cpu_vector_summary
    from msvit.data import resolve_data
    from msvit.export.cli import main as export_main

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OPENVINO_TELEMETRY", "0")
    if args.tiny:
        args.rounds, args.iters = 2, 3
    given = dict(a.split("=", 1) for a in args.artifact)
    print(f"CPU: {cpu_name()} · {os.cpu_count()} cores · vector flags: {cpu_vector_summary()} · int8: "
          f"{', '.join(cpu_int8_features()) or 'none'} · float16/bf16: {', '.join(cpu_float16_features()) or 'none'}")
    print(f"threads {args.threads}, batch 1, {args.rounds} rounds x {args.iters} iterations, interleaved; "
          f"keeps = max|ΔP| <= the set's floor, flips <= floor's, AUC drop <= {MAX_AUC_DROP}")
    tmp = Path(tempfile.mkdtemp(prefix="auto-speed-"))
    rows = []
    for fixture in args.fixtures.split(","):
        weights = args.weights_dir / FIXTURES[fixture]
        model = create_model("ms_eff_vit_b0", weights=weights).eval()
        if fixture in given:
            path = Path(given[fixture])
        else:
            out = (args.out or tmp) / fixture
            cmd = ["--target", args.target, "--precision", "auto", "--weights", str(weights),
                   "--calib-data", str(args.calib), "--out", str(out), "--overwrite"]
            if args.tiny:
                cmd += ["--calib-size", "16"]
            print(f"\n$ msvit-export {' '.join(cmd)}", flush=True)
            rc = export_main(cmd)
            if rc not in (0, 1):
                print(f"msvit-export exited {rc}")
                return rc
            path = next(p for p in out.iterdir() if "_auto" in p.name and not p.name.endswith((".json", ".md", ".bin")))
        man = json.loads(Path(f"{path}.json").read_text()) if Path(f"{path}.json").is_file() else {}
        auto = man.get("result", {}).get("extra", {}).get("auto", {})
        session = runtime.load(path, threads=args.threads)
        meta = session.metadata
        print(f"\n## {fixture}: {path.name} · chosen {auto.get('chosen', meta.get('precision_assignment'))} "
              f"(test {next((c.get('test') for c in auto.get('candidates', []) if c['assignment'] == auto.get('chosen')), '?')}) · "
              f"exec {session.exec_precision} · int8 MACs {float(meta.get('int8_mac_share') or 0):.0%}")
        ms = {}
        if not args.no_timing:
            runners = {"torch eager fp32": lambda a: model(torch.from_numpy(a)).detach().numpy(),
                       "naive torch.onnx + ORT": naive_ort(model, model.img_size, args.threads, tmp),
                       f"msvit {args.target} auto": session.run}
            with torch.no_grad():
                x1 = np.ascontiguousarray(resolve_data(None, model.img_size).x[:1])
                ms = interleaved(runners, x1, args.rounds, args.iters)
            e, o = ms["torch eager fp32"], ms["naive torch.onnx + ORT"]
            print(f"{'row':<26} {'ms':>7} {'x eager':>8} {'x ORT':>7}")
            for k, v in ms.items():
                print(f"{k:<26} {v:7.2f} {e / v:8.2f} {o / v:7.2f}")
        sets = [("eval", args.eval)] + ([("shift", args.shift)] if args.shift else [])
        print(f"{'data':<6} {'n':>4} {'max|ΔP|':>8} {'floor':>7} {'/floor':>6} {'flips':>5} {'floor':>5} "
              f"{'AUC fp32':>8} {'AUC':>6} {'drop':>7} keeps")
        for name, spec in sets:
            data = resolve_data(spec, model.img_size)
            d = decisions(model, session, data, args.tiny)
            f = (lambda v, fmt: "—" if v is None else format(v, fmt))
            print(f"{name:<6} {d['n']:>4} {d['max_abs_dprob']:8.4f} {d['floor']:7.4f} {d['ratio']:6.2f} "
                  f"{d['flips']:5d} {d['floor_flips']:5d} {f(d['auc_fp32'], '8.4f')} {f(d['auc'], '6.4f')} "
                  f"{f(d['auc_drop'], '7.4f')} {'✅' if d['keeps'] else '❌'}")
            rows.append({"fixture": fixture, "artifact": str(path), "chosen": auto.get("chosen"), "data": name, **d,
                         **{f"ms_{k}": v for k, v in ms.items()}})
        session.close()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
