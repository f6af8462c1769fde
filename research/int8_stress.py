"""Which input changes expose INT8's range overrun, and does the stress check fix what ships?
(issue 32)

    python research/int8_stress.py --weights-dir ../shared/weights --calib ../shared/data/faces/calib \\
        --shift ../shared/data/shift/manifest.csv [--fixtures demo,confident] [--target openvino]

Per fixture, two INT8 exports with default settings (``--calib-data`` only): one with
``--no-stress-check`` (the guard before issue 32's stress view) and one with it. For each:
  1. on the calibration crops under input changes a camera, grade or encoder can make
     (contrast x1.5, brightness x0.6, down to 64/96/128 px and back, JPEG q20, Gaussian blur r2):
     max |ΔP| vs FP32 PyTorch and flips (P >= 0.5);
  2. on ``--shift`` (crops from other sources, never seen): max |ΔP|, that set's own noise floor
     (FP32 under ±0.5 pixel-step input noise, worst of 3 seeds), flips vs the floor's.
The export runs in fp32 execution (``--precision int8``), so only INT8's error is measured.
Public msvit API only.
"""
from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

FIXTURES = {"demo": "ms_eff_vit_b0_demo.bin", "confident": "ms_eff_vit_b0_confident.bin"}
VIEWS = ["none", "contrast x1.5", "brightness x0.6", "64 px", "96 px", "128 px", "jpeg q20", "blur r2"]


def view(u8: np.ndarray, kind: str) -> np.ndarray:
    out = []
    for a in u8:
        im = Image.fromarray(a)
        if kind.endswith(" px"):
            s = int(kind.split()[0])
            im = im.resize((s, s), Image.BILINEAR).resize(im.size, Image.BICUBIC)
        elif kind == "jpeg q20":
            b = io.BytesIO()
            im.save(b, "JPEG", quality=20)
            im = Image.open(b).convert("RGB")
        elif kind == "blur r2":
            im = im.filter(ImageFilter.GaussianBlur(2))
        elif kind == "contrast x1.5":
            im = ImageEnhance.Contrast(im).enhance(1.5)
        elif kind == "brightness x0.6":
            im = ImageEnhance.Brightness(im).enhance(0.6)
        out.append(np.asarray(im))
    return np.stack(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights-dir", type=Path, required=True)
    ap.add_argument("--calib", type=Path, required=True)
    ap.add_argument("--shift", type=Path, required=True)
    ap.add_argument("--fixtures", default="demo,confident")
    ap.add_argument("--target", default="openvino", choices=["openvino", "onnx", "litert", "executorch"])
    args = ap.parse_args(argv)

    from msvit import create_model, runtime
    from msvit.data import resolve_data
    from msvit.export.cli import main as export_main
    from msvit.preprocess import normalize
    from msvit.quantize import noise_floor
    from msvit.runtime.base import to_image_u8

    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="int8-stress-"))
    print(f"{'fixture':<10} {'guard':<10} {'int8':>5} {'view / set':<16} {'max|ΔP|':>8} {'flips':>5}  floor (flips)")
    for fixture in args.fixtures.split(","):
        weights = args.weights_dir / FIXTURES[fixture]
        model = create_model("ms_eff_vit_b0", weights=weights).eval()
        calib = resolve_data(args.calib, model.img_size).x
        shift = resolve_data(args.shift, model.img_size).x
        u8 = to_image_u8(calib)

        def probs(x):
            with torch.no_grad():
                return torch.sigmoid(model(torch.from_numpy(x))).numpy().reshape(-1)

        fl = noise_floor(model, shift)
        for guard, extra in (("no stress", ["--no-stress-check"]), ("stress", [])):
            out = tmp / f"{fixture}-{guard.replace(' ', '')}"
            export_main(["--target", args.target, "--precision", "int8", "--weights", str(weights),
                         "--calib-data", str(args.calib), "--out", str(out), *extra])
            path = next(p for p in out.iterdir() if "_int8" in p.name and not p.name.endswith((".json", ".md", ".bin")))
            s = runtime.load(path, threads=2)
            share = float(s.metadata.get("int8_mac_share") or 0)

            def run(x):
                return 1 / (1 + np.exp(-np.concatenate([s.run(x[i:i + 1]) for i in range(len(x))]).reshape(-1)))

            for kind in VIEWS:
                x = calib if kind == "none" else normalize(view(u8, kind))
                p32, p8 = probs(x), run(x)
                print(f"{fixture:<10} {guard:<10} {share:5.0%} {kind:<16} {np.abs(p8 - p32).max():8.4f} "
                      f"{int(((p8 >= .5) != (p32 >= .5)).sum()):5d}", flush=True)
            p32, p8 = probs(shift), run(shift)
            d = np.abs(p8 - p32).max()
            flips = int(((p8 >= .5) != (p32 >= .5)).sum())
            keeps = d <= fl.max_abs_dprob and flips <= fl.flips
            print(f"{fixture:<10} {guard:<10} {share:5.0%} {'shift/ (' + str(len(shift)) + ')':<16} {d:8.4f} {flips:5d}  "
                  f"{fl.max_abs_dprob:.4f} ({fl.flips}) {'keeps' if keeps else 'DOES NOT keep'} decisions", flush=True)
            s.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
