"""Per target: the guarded INT8 artifact's share of MACs in int8, and whether it keeps decisions
on eval/ (max |ΔP| vs FP32 / the noise floor, flips, AUC drop), for one checkpoint.

    nice python research/int8_targets.py --targets openvino executorch \\
        --weights W --calib DIR --eval DIR [--max-dprob floor|0.05] [--sensitivity-dprob S] [--calib-method M] [--out DIR]

Export through msvit.export.export (the product path: sensitivity plan, backend quantizer,
guard on the calibration images), then judge the artifact on --eval with msvit.runtime.load.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from msvit.data import load_images
from msvit.export import ExportOptions, Int8Options, export
from msvit.metrics import label_metrics
from msvit.model import create_model
from msvit.quantize import load_calibration, noise_floor
from msvit.runtime import load


def judge(path: Path, model: torch.nn.Module, x: np.ndarray, y: np.ndarray, floor) -> dict:
    with torch.no_grad():
        ref = torch.cat([model(torch.from_numpy(x[i:i + 28])) for i in range(0, len(x), 28)]).numpy().reshape(-1)
    sess = load(path)
    try:
        got = np.concatenate([np.asarray(sess(x[i:i + 1])).reshape(-1) for i in range(len(x))])
        meta = dict(sess.metadata)
    finally:
        sess.close()
    p32, p8 = 1 / (1 + np.exp(-ref.astype(np.float64))), 1 / (1 + np.exp(-got.astype(np.float64)))
    d = np.abs(p8 - p32)
    auc32, auc8 = label_metrics(ref, y)["auc"], label_metrics(got, y)["auc"]
    return {"int8_mac_share": float(meta.get("int8_mac_share", "nan")), "max_abs_dprob": float(d.max()),
            "floor": floor.max_abs_dprob, "ratio": floor.ratio(float(d.max())),
            "flips": int(np.sum((p8 >= 0.5) != (p32 >= 0.5))), "floor_flips": floor.flips,
            "auc_drop": float(auc32 - auc8),
            "keeps_decisions": bool(d.max() <= floor.max_abs_dprob and np.sum((p8 >= 0.5) != (p32 >= 0.5))
                                    <= floor.flips and auc32 - auc8 <= 0.005),
            "guard_passed": meta.get("guard_passed"), "quantized_groups": meta.get("quantized_groups")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="+", default=["openvino"])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--max-dprob", default="floor")
    ap.add_argument("--sensitivity-dprob", type=float, default=None)
    ap.add_argument("--calib-method", default=None)
    ap.add_argument("--out", type=Path, default=Path("/tmp/msvit-int8-targets"))
    a = ap.parse_args()
    model = create_model("ms_eff_vit_b0", weights=a.weights).eval()
    ev = load_images(a.eval)
    x, y = ev.x.astype(np.float32), ev.labels
    floor = noise_floor(model, x)
    print(f"{Path(a.weights).name}, eval/ {floor.describe()}", flush=True)
    calib = load_calibration(a.calib, model.img_size)
    gate = a.max_dprob if a.max_dprob == "floor" else float(a.max_dprob)
    opts = ExportOptions(int8=Int8Options(calib_method=a.calib_method, max_dprob=gate,
                                          sensitivity_dprob=a.sensitivity_dprob), overwrite=True)
    rows = []
    for t in a.targets:
        t0 = time.perf_counter()
        res = export(model, t, "int8", a.out / t, calib=calib, options=opts, log=print, strict=False)
        if not res.ok:
            print(f"{t}: {res.status} {res.message}")
            continue
        r = {"target": t, "weights": Path(a.weights).name, "gate": str(gate), **judge(res.path, model, x, y, floor),
             "seconds": round(time.perf_counter() - t0)}
        rows.append(r)
        print(json.dumps(r), flush=True)
    print("\n| target | int8 MACs | max\\|ΔP\\| eval | floor | ratio | flips (floor) | AUC drop | keeps | guard |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['target']} | {100 * r['int8_mac_share']:.1f}% | {r['max_abs_dprob']:.4f} | {r['floor']:.4f} | "
              f"{r['ratio']:.2f} | {r['flips']} ({r['floor_flips']}) | {r['auc_drop']:.4f} | "
              f"{'yes' if r['keeps_decisions'] else 'no'} | {r['guard_passed']} |")


if __name__ == "__main__":
    main()
