"""Which single Conv/Linear layers break decisions in int8, weighted by their share of MACs:
the simulated (PyTorch fake-quant) |ΔP| of each layer alone vs the model's noise floor, on eval/.

    nice python research/int8_layer_sensitivity.py --weights W --calib DIR --eval DIR [--percentile]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from msvit.data import load_images
from msvit.model import create_model
from msvit.quantize import group_of, noise_floor
from msvit.quantize.sensitivity import activation_ranges, fake_quantized, layer_macs, quantizable_layers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--method", default="minmax", choices=["minmax", "percentile"])
    ap.add_argument("--symmetric", action="store_true", help="symmetric int8 activations (TensorRT)")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = create_model("ms_eff_vit_b0", weights=a.weights).eval()
    x = load_images(a.eval).x.astype(np.float32)
    calib = load_images(a.calib).x.astype(np.float32)
    fl = noise_floor(model, x)
    print(fl.describe())
    xt = torch.from_numpy(x)

    @torch.no_grad()
    def probs() -> np.ndarray:
        return torch.cat([torch.sigmoid(model(xt[i:i + 28])).reshape(-1) for i in range(0, len(xt), 28)]).numpy()

    ref = probs()
    ranges = activation_ranges(model, calib, a.method)
    macs = layer_macs(model, xt[:1])
    total = sum(macs.values())
    names = [n for n in quantizable_layers(model) if n in ranges]
    print(f"{'layer':<52} {'group':<26} {'MACs%':>6} {'max|dP|':>8} {'/floor':>6}")
    rows = []
    for n in names:
        with fake_quantized(model, [n], ranges, a.symmetric):
            d = float(np.abs(probs() - ref).max())
        rows.append((n, 100 * macs.get(n, 0) / total, d))
        print(f"{n:<52} {group_of(n):<26} {rows[-1][1]:6.2f} {d:8.4f} {d / fl.max_abs_dprob:6.2f}", flush=True)
    bad = sorted(rows, key=lambda r: -r[2])
    print("\nworst 15:", *(f"{n} {m:.2f}% {d:.3f}" for n, m, d in bad[:15]), sep="\n  ")


if __name__ == "__main__":
    main()
