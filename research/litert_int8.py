"""LiteRT INT8 recipes vs FP32 on this CPU: decisions (agreement at 0.5, max |ΔP|, AUC vs PyTorch
FP32 on a held-out folder) and interpreter latency (ai-edge-litert, XNNPACK, batch 1, 1 and 2
threads) of FP32, FP16 and the INT8 variants, timed interleaved in one process.

    python research/litert_int8.py --weights ../shared/weights/ms_eff_vit_b0_demo.bin \\
        --calib ../shared/data/faces/calib --eval ../shared/data/faces/eval [--skip-pt2e] [--a16w8]

Recipes (the toolchain's own quantizers only):
- ai-edge-quantizer static int8 (``static_wi8_ai8``: per-channel int8 weights, per-tensor int8
  activations, min/max calibrated on --calib in the interpreter): the stock recipe on every op;
  the same on Conv/DepthwiseConv/FullyConnected only; and msvit's default group plan
  (``msvit.export.litert.DEFAULT_INT8_GROUPS``), float I/O.
- ai-edge-quantizer dynamic int8 (``dynamic_wi8_afp32``: int8 weights, activations quantized
  at run time), whole model and on msvit's groups.
- litert-torch PT2E (``PT2EQuantizer``, per-channel symmetric, XNNPACK-style; calibrated in
  PyTorch; full-integer I/O), whole model and on msvit's groups (``--skip-pt2e`` leaves them out:
  several minutes each on 2 cores).
- ``--a16w8``: ai-edge-quantizer ``static_wi8_ai16`` (int16 activations) on the whole model:
  accuracy only - its int16 kernels are the reference ones (~1 s per image here).

Timing is interleaved: every artifact is loaded side by side and run round-robin (order
rotating each round) so all see the same machine state; medians of --iters runs after warm-up.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import msvit
from msvit.data import load_images
from msvit.export.litert import (DEFAULT_INT8_GROUPS, INT8_OPS, quantize_bytes, quiet_converter, convert_float_bytes, fp16_recipe,
                                 int8_recipe, scope_regex, tool_versions)
from msvit.runtime.litert import LiteRTSession

CALIB_BATCH = 16
# msvit group name -> PyTorch module-name prefixes (for PT2E's module filter)
GROUP_MODULES = {"backbone.blocks.6": ("feat_extractor.backbone.blocks.6",), "l_vit": ("l_vit",),
                 "h_vit": ("h_vit",), "head": ("head",)}


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def cpu_flags() -> str:
    try:
        out = subprocess.run("grep -o -E 'avx512_vnni|avx_vnni|amx_int8|asimddp' /proc/cpuinfo | sort -u",
                             shell=True, capture_output=True, text=True, timeout=10).stdout.split()
    except Exception:
        out = []
    return " ".join(out) or "(none: no VNNI/AMX/dot-product int8 instructions)"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def decisions(ref_logits, logits, labels) -> dict:
    from sklearn.metrics import roc_auc_score

    p0, p1 = sigmoid(ref_logits).ravel(), sigmoid(logits).ravel()
    out = {"agreement": float(np.mean((p0 > 0.5) == (p1 > 0.5))), "max_dp": float(np.abs(p1 - p0).max()),
           "mean_dp": float(np.abs(p1 - p0).mean()), "auc": None}
    if labels is not None and len(set(labels.tolist())) == 2:
        out["auc"] = float(roc_auc_score(labels, p1))
    return out


class _Named(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        return {"logit": self.model(image)}


def pt2e_bytes(model, calib_x: np.ndarray, groups: tuple[str, ...] | None) -> bytes:
    """litert-torch PT2E: prepare on a batch-dynamic export, calibrate in PyTorch, convert, lower."""
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer as pq
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    config = pq.get_symmetric_quantization_config(is_per_channel=True)
    if groups is None:
        quantizer = pq.PT2EQuantizer().set_global(config)
    else:
        prefixes = tuple(p for g in groups for p in GROUP_MODULES[g])

        def wanted(n) -> bool:
            for path, _ in (n.meta.get("nn_module_stack") or {}).values():
                name = path.removeprefix("L['self'].").removeprefix("model.")
                if any(name == p or name.startswith(p + ".") for p in prefixes):
                    return True
            return False

        class _Selective(pq.PT2EQuantizer):
            def _annotate_for_static_quantization_config(self, gm):
                self._annotate_all_static_patterns(gm, self.global_config, wanted)
                return gm

        quantizer = _Selective().set_global(config)
    size = int(getattr(model, "img_size", 224))
    dyn = torch.export.Dim("batch", min=1, max=CALIB_BATCH)
    with quiet_converter():
        gm = torch.export.export(_Named(model).eval(), (), {"image": torch.zeros(2, 3, size, size)},
                                 dynamic_shapes={"image": {0: dyn}}).module()
        prepared = prepare_pt2e(gm, quantizer)
        with torch.no_grad():
            for i in range(0, len(calib_x), CALIB_BATCH):
                prepared(image=torch.from_numpy(np.ascontiguousarray(calib_x[i:i + CALIB_BATCH])))
        converted = convert_pt2e(prepared, fold_quantize=False)
        edge = litert_torch.convert(converted, sample_kwargs={"image": torch.zeros(1, 3, size, size)},
                                    quant_config=QuantConfig(pt2e_quantizer=quantizer))
        with tempfile.TemporaryDirectory() as tmp:
            edge.export(f"{tmp}/m.tflite")
            return Path(f"{tmp}/m.tflite").read_bytes()


def aeq_dynamic_recipe(groups: tuple[str, ...] | None) -> list[dict]:
    from ai_edge_quantizer import recipe

    base = recipe.dynamic_wi8_afp32()
    if groups is None:
        return base
    return [{**base[0], "regex": scope_regex(g), "operation": op} for g in groups for op in INT8_OPS]


def time_interleaved(fns: list, iters: int, warmup: int = 5) -> list[float]:
    for f in fns:
        for _ in range(warmup):
            f()
    ms = [[] for _ in fns]
    order = list(range(len(fns)))
    for r in range(iters):
        k = r % len(order)
        for i in order[k:] + order[:k]:
            t0 = time.perf_counter()
            fns[i]()
            ms[i].append((time.perf_counter() - t0) * 1e3)
    return [float(np.median(m)) for m in ms]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--out", default=None, help="keep the .tflite files here (default: a temp dir)")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--skip-pt2e", action="store_true")
    ap.add_argument("--a16w8", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--reuse", action="store_true", help="load the .tflite files already in --out instead of "
                    "rebuilding them (re-time on a quieter machine)")
    args = ap.parse_args(argv)

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="litert-int8-"))
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    model = msvit.create_model("ms_eff_vit_b0", weights=args.weights).eval()
    calib, ev = load_images(args.calib), load_images(args.eval)
    with torch.no_grad():
        ref = model(torch.from_numpy(ev.x)).numpy()
    print(f"# LiteRT INT8 on {cpu_model()}; int8 dot-product flags: {cpu_flags()}")
    print(f"# tools: {json.dumps(tool_versions())}; calib {len(calib)} images ({args.calib}), "
          f"eval {len(ev)} images ({args.eval})")
    t0 = time.perf_counter()
    fp32_file = out / "fp32.tflite"
    fb = fp32_file.read_bytes() if args.reuse and fp32_file.is_file() else convert_float_bytes(model)
    print(f"# FP32 conversion (litert-torch): {time.perf_counter() - t0:.0f} s")
    cal = [{"image": calib.x[i:i + 1]} for i in range(len(calib))]
    groups = tuple(DEFAULT_INT8_GROUPS)

    variants: list[tuple[str, str, callable]] = [
        ("fp32", "float32", lambda: fb),
        ("fp16", "AEQ weight-only float16", lambda: quantize_bytes(fb, fp16_recipe(), None, 2)),
        ("int8 aeq-static msvit-groups", "AEQ static_wi8_ai8 on " + "+".join(groups) + " (conv/fc)",
         lambda: quantize_bytes(fb, int8_recipe(groups), cal, 2)),
        ("int8 aeq-static all-ops", "AEQ static_wi8_ai8 stock recipe, every op",
         lambda: quantize_bytes(fb, int8_recipe(None), cal, 2)),
        ("int8 aeq-static conv/fc", "AEQ static_wi8_ai8 on every conv/fc",
         lambda: quantize_bytes(fb, int8_recipe(("backbone", "l_vit", "h_vit", "head")), cal, 2)),
        ("int8 aeq-dynamic all", "AEQ dynamic_wi8_afp32, whole model", lambda: quantize_bytes(fb, aeq_dynamic_recipe(None),
                                                                                         None, 2)),
        ("int8 aeq-dynamic msvit-groups", "AEQ dynamic_wi8_afp32 on " + "+".join(groups),
         lambda: quantize_bytes(fb, aeq_dynamic_recipe(groups), None, 2)),
    ]
    if not args.skip_pt2e:
        variants += [
            ("int8 pt2e all", "litert-torch PT2EQuantizer per-channel, whole model",
             lambda: pt2e_bytes(model, calib.x, None)),
            ("int8 pt2e msvit-groups", "litert-torch PT2EQuantizer per-channel on " + "+".join(groups),
             lambda: pt2e_bytes(model, calib.x, groups)),
        ]
    if args.a16w8:
        variants.append(("a16w8 aeq-static all-ops", "AEQ static_wi8_ai16, every op (reference int16 kernels)",
                         lambda: quantize_bytes(fb, int8_recipe(None, activation_bits=16), cal, 2)))

    rows = []
    for name, desc, build in variants:
        t0 = time.perf_counter()
        path = out / (re.sub(r"[^a-z0-9]+", "_", name).strip("_") + ".tflite")
        try:
            data = path.read_bytes() if args.reuse and path.is_file() else build()
        except Exception as e:  # report and go on: one recipe failing is a result too
            print(f"{name}: FAILED to build: {str(e).splitlines()[0][:300]}", flush=True)
            rows.append({"name": name, "desc": desc, "error": str(e).splitlines()[0][:300]})
            continue
        if not (args.reuse and path.is_file()):
            path.write_bytes(data)
        build_s = time.perf_counter() - t0
        s = LiteRTSession(path, threads=2)
        t1 = time.perf_counter()
        got = s(ev.x)
        eval_s = time.perf_counter() - t1
        d = decisions(ref, got, ev.labels)
        row = {"name": name, "desc": desc, "path": str(path), "size_mb": round(len(data) / 1e6, 2),
               "build_s": round(build_s, 1), "eval_ms_per_image": round(1e3 * eval_s / len(ev), 1),
               "input_dtype": s.input_spec.dtype, **d}
        rows.append(row)
        auc = f"{d['auc']:.3f}" if d["auc"] is not None else "-"
        print(f"{name:32s} {row['size_mb']:5.1f} MB  agreement {d['agreement']:.3f}  max|dP| {d['max_dp']:.4f}  "
              f"AUC {auc}  (built in {build_s:.0f} s, {row['eval_ms_per_image']} ms/img in eval)", flush=True)
    fp32_auc = decisions(ref, ref, ev.labels)["auc"]
    print(f"# PyTorch FP32 AUC on eval: {fp32_auc:.3f}" if fp32_auc is not None else "# no labels: no AUC")

    timed = [r for r in rows if "path" in r and not r["name"].startswith("a16w8")]
    lat: dict[str, dict[int, float]] = {r["name"]: {} for r in timed}
    x1 = ev.x[:1]
    for th in [int(t) for t in args.threads.split(",") if t]:
        sessions = [LiteRTSession(r["path"], threads=th) for r in timed]
        fns = [lambda s=s: s(x1) for s in sessions]
        for r, ms in zip(timed, time_interleaved(fns, args.iters)):
            lat[r["name"]][th] = ms
        del sessions, fns
    ths = [int(t) for t in args.threads.split(",") if t]
    print("\n| variant | size MB | " + " | ".join(f"{t} thread{'s' if t > 1 else ''} ms" for t in ths)
          + " | vs FP32 | agreement | max abs ΔP | AUC |")
    print("|---|---|" + "---|" * len(ths) + "---|---|---|---|")
    base = lat.get("fp32", {})
    for r in rows:
        if "path" not in r:
            print(f"| {r['name']} | build failed: {r['error'][:80]} |")
            continue
        ms = lat.get(r["name"], {})
        speed = " / ".join(f"{base[t] / ms[t]:.2f}×" for t in ths if t in ms and t in base) or "(not timed)"
        cells = " | ".join(f"{ms[t]:.1f}" if t in ms else f"~{r['eval_ms_per_image']:.0f} (eval)" for t in ths)
        auc = f"{r['auc']:.3f}" if r["auc"] is not None else "-"
        print(f"| {r['name']} | {r['size_mb']:.1f} | {cells} | {speed} | {r['agreement']:.3f} | "
              f"{r['max_dp']:.3f} | {auc} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_model(), "flags": cpu_flags(), "tools": tool_versions(),
                                               "rows": rows, "latency_ms": lat, "fp32_auc": fp32_auc}, indent=2))
    return 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sys.exit(main())
