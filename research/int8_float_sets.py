"""How much of the network can be int8 in simulation (PyTorch fake quant, the plan's model of the
backends) while keeping decisions: keep only *small* layers float (squeeze-excite convs, depthwise
convs, the stem) and report the int8 share of MACs, max |ΔP| / noise floor and flips on eval/.

    nice python research/int8_float_sets.py --weights W --calib DIR --eval DIR [--method minmax|percentile] [--symmetric]
"""
from __future__ import annotations

import argparse
import re

import numpy as np
import torch

from msvit.data import load_images
from msvit.model import create_model
from msvit.quantize import noise_floor
from msvit.quantize.sensitivity import activation_ranges, fake_quantized, layer_macs

FLOAT_SETS = {
    "none": [],
    "se": [r"\.se\."],
    "se+dw": [r"\.se\.", r"conv_dw"],
    "se+dw(b0-3)": [r"\.se\.", r"backbone\.blocks\.[0-3]\..*conv_dw"],
    "se+dw(b0-3)+stem": [r"\.se\.", r"backbone\.blocks\.[0-3]\..*conv_dw", r"conv_stem"],
    "se+dw+stem": [r"\.se\.", r"conv_dw", r"conv_stem"],
    "blocks0-3 (group plan)": [r"backbone\.blocks\.[0-3]\."],
    "stem": [r"conv_stem"],
    "stem+b0": [r"conv_stem", r"backbone\.blocks\.0\."],
    "stem+b0-1": [r"conv_stem", r"backbone\.blocks\.[01]\."],
    "stem+b0-2": [r"conv_stem", r"backbone\.blocks\.[0-2]\."],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--method", default="minmax", choices=["minmax", "percentile"])
    ap.add_argument("--symmetric", action="store_true", help="symmetric int8 activations (TensorRT)")
    ap.add_argument("--convs-only", action="store_true", help="Linear layers stay float (AVX2 OpenVINO)")
    ap.add_argument("--sets", nargs="+", default=None, help=f"float sets to try (default all: {', '.join(FLOAT_SETS)})")
    a = ap.parse_args()
    model = create_model("ms_eff_vit_b0", weights=a.weights).eval()
    x = load_images(a.eval).x.astype(np.float32)
    calib = load_images(a.calib).x.astype(np.float32)
    fl = noise_floor(model, x)
    print(f"{a.weights}: {fl.describe()}; {a.method}, {'symmetric' if a.symmetric else 'asymmetric'} activations")
    xt = torch.from_numpy(x)

    @torch.no_grad()
    def probs() -> np.ndarray:
        return torch.cat([torch.sigmoid(model(xt[i:i + 28])).reshape(-1) for i in range(0, len(xt), 28)]).numpy()

    ref = probs()
    ranges = activation_ranges(model, calib, a.method)
    macs = layer_macs(model, xt[:1])
    total = sum(macs.values())
    mods = dict(model.named_modules())
    print(f"{'float set':<24} {'int8 MACs':>9} {'max|dP|':>8} {'/floor':>6} {'flips':>5}")
    for name, pats in FLOAT_SETS.items():
        if a.sets and name not in a.sets:
            continue
        rx = [re.compile(p) for p in pats]
        q = [n for n in ranges if not any(r.search(n) for r in rx)
             and not (a.convs_only and isinstance(mods[n], torch.nn.Linear))]
        with fake_quantized(model, q, ranges, a.symmetric):
            p = probs()
        d = np.abs(p - ref)
        flips = int(np.sum((p >= 0.5) != (ref >= 0.5)))
        share = sum(macs.get(n, 0) for n in q) / total
        print(f"{name:<24} {100 * share:8.1f}% {d.max():8.4f} {d.max() / fl.max_abs_dprob:6.2f} {flips:5d}", flush=True)


if __name__ == "__main__":
    main()
