"""The fixture's own noise floor, and which INT8 quantizer breaks decisions: how far P(fake)
moves when the *input* gets sub-pixel noise that no decoder would call a different image, next
to each early layer's INT8 error on its own (activation alone, weight alone), in PyTorch.

    nice python research/int8_noise_floor.py [--weights W] [--calib DIR] [--eval DIR] [--layers stem 0 1 2 3]

Input noise: uniform in ±A pixel steps (A/255 of the [0, 1] range, per channel through the
model's normalisation; an 8-bit image's own rounding is ±0.5 step), 3 seeds each, worst seed
shown. Layers: msvit.quantize.sensitivity's fake quantization (what the INT8 plan simulates:
per-tensor asymmetric uint8 activations from min/max over --calib, per-channel symmetric int8
weights), one Conv/Linear at a time, measured on --eval against FP32. A quantizer whose
error alone reaches the input-noise floor cannot be in an artifact held to a bound below it.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


from msvit.data import load_images
from msvit.model import create_model
from msvit.model.variants import IMAGENET_STD
from msvit.quantize.sensitivity import (
    fake_quantize_weight,
    activation_ranges,
    fake_quantized,
    layer_macs,
    quantizable_layers,
)

BB = "feat_extractor.backbone."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.25, 0.5, 1.0], help="±pixel steps")
    ap.add_argument("--layers", nargs="*", default=["stem", "0", "1", "2", "3"],
                    help="backbone parts whose layers are listed one by one (stem, block digits; none: skip)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    model = create_model("ms_eff_vit_b0", weights=a.weights).eval()
    ev = load_images(a.eval)
    x = torch.from_numpy(ev.x.astype(np.float32))
    calib = load_images(a.calib).x.astype(np.float32)

    @torch.no_grad()
    def probs(inp: torch.Tensor) -> np.ndarray:
        return torch.cat([torch.sigmoid(model(inp[i:i + 28])).reshape(-1) for i in range(0, len(inp), 28)]).numpy()

    ref = probs(x)
    dec = ref > 0.5

    def stats(p: np.ndarray) -> tuple[float, float, float]:
        d = np.abs(p - ref)
        return float(d.max()), float(d.mean()), float(np.mean((p > 0.5) == dec))

    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    print(f"eval {len(x)} images, calib {len(calib)}; FP32 |logit| median "
          f"{np.median(np.abs(np.log(ref / (1 - ref)))):.2f}; torch threads {torch.get_num_threads()}\n")
    print(f"{'perturbation':<44} {'max|dP|':>8} {'mean|dP|':>8} {'agree':>6}")
    for amp in a.noise:
        worst = None
        for seed in range(3):
            g = torch.Generator().manual_seed(seed)
            noise = (torch.rand(x.shape, generator=g) * 2 - 1) * (amp / 255) / std
            s = stats(probs(x + noise))
            worst = s if worst is None or s[0] > worst[0] else worst
        print(f"{f'input noise, uniform ±{amp:g} pixel step':<44} {worst[0]:8.4f} {worst[1]:8.4f} {worst[2]:6.3f}",
              flush=True)
    if not a.layers:
        return
    ranges = activation_ranges(model, calib)
    layers = quantizable_layers(model)
    macs = layer_macs(model, x)
    total = sum(macs.values())
    prefixes = [BB + ("conv_stem" if p == "stem" else f"blocks.{p}.") for p in a.layers]
    names = [n for n in layers if n in ranges and any(n.startswith(p) for p in prefixes)]
    print(f"\none layer int8 at a time ({len(names)} layers; activation: input range over calib/, "
          f"per-tensor uint8; weight: per-channel int8)")
    print(f"{'layer':<28} {'MACs %':>6} {'act range':>17} {'act max|dP|':>11} {'w max|dP|':>9}")
    for n in names:
        with fake_quantized(model, [n], ranges, symmetric_act=False):
            da = stats(probs(x))[0]
        mod = layers[n]
        w = mod.weight.data
        mod.weight.data = fake_quantize_weight(w)
        try:
            dw = stats(probs(x))[0]
        finally:
            mod.weight.data = w
        lo, hi = ranges[n]
        print(f"{n.removeprefix(BB):<28} {100 * macs.get(n, 0) / total:6.2f} [{lo:7.2f},{hi:7.2f}] {da:11.4f} "
              f"{dw:9.4f}", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
