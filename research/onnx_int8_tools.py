"""Which tool makes the INT8 ONNX for onnxruntime on CPU: onnxruntime quantize_static, NNCF
on ONNX, or TensorRT Model Optimizer (modelopt.onnx.quantization), on the same layers.

Each tool quantizes (a) msvit's plan (the MatMul/Gemm layers the sensitivity plan admits)
and (b) the whole model with its defaults; each artifact is judged on eval/ against FP32
(agreement at 0.5, max |ΔP|) and timed against FP32 in onnxruntime, block-interleaved
(medians of 60 runs, batch 1, 1 and 2 threads).

nvidia-modelopt pins onnxruntime-gpu and an older onnx, so run this in a side venv that
sees msvit's environment:

    python -m venv /tmp/mo && echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/mo/lib/python3.11/site-packages/msvit.pth
    /tmp/mo/bin/pip install --no-deps nvidia-modelopt onnx_graphsurgeon PuLP polygraphy onnxconverter-common Mako lief cppimport pybind11 nvidia-ml-py
    PYTHONPATH=$PWD /tmp/mo/bin/python research/onnx_int8_tools.py --weights ../shared/weights/ms_eff_vit_b0_demo.bin \
        --calib ../shared/data/faces/calib --eval ../shared/data/faces/eval
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

import msvit
from msvit.data import load_images
from msvit.export import export
from msvit.metrics import agreement_metrics
from msvit.quantize import load_calibration, plan_for
from msvit.quantize.onnx import CalibrationReader, node_modules

from int8_cpu import interleaved_ms, runner  # same timing as the INT8 benchmark


def ort_tool(src: Path, dst: Path, nodes: list[str] | None, cal) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(str(src), str(dst), CalibrationReader(cal.calib.x, 1), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                    op_types_to_quantize=["MatMul", "Gemm"] if nodes else None,
                    extra_options={"WeightSymmetric": True,  # msvit's recipe on the plan: Q/DQ on op inputs only
                                   **({"OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]} if nodes else {})})


def nncf_tool(src: Path, dst: Path, nodes: list[str] | None, cal) -> None:
    import nncf

    logging.getLogger("nncf").setLevel(logging.ERROR)
    proto = onnx.load(str(src))
    kw = {}
    if nodes:
        kw["ignored_scope"] = nncf.IgnoredScope(names=[n.name for n in proto.graph.node if n.name not in nodes],
                                                validate=False)
    data = nncf.Dataset([{"image": cal.calib.x[i:i + 1]} for i in range(len(cal.calib))])
    onnx.save(nncf.quantize(proto, data, subset_size=len(cal.calib), preset=nncf.QuantizationPreset.MIXED, **kw),
              str(dst))


def modelopt_tool(src: Path, dst: Path, nodes: list[str] | None, cal) -> None:
    from modelopt.onnx.quantization import quantize

    kw = {"op_types_to_quantize": ["MatMul", "Gemm"], "nodes_to_quantize": nodes} if nodes else {}
    quantize(str(src), quantize_mode="int8", calibration_data={"image": cal.calib.x}, calibration_method="max",
             calibration_eps=["cpu"], high_precision_dtype="fp32", output_path=str(dst), log_level="ERROR", **kw)


TOOLS = {"onnxruntime quantize_static": ort_tool, "NNCF (ONNX)": nncf_tool, "modelopt.onnx": modelopt_tool}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--iters", type=int, default=60)
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    out = Path(tempfile.mkdtemp(prefix="msvit-int8-tools-"))
    model = msvit.ms_eff_vit_b0(weights=args.weights)
    cal, ev = load_calibration(args.calib), load_images(args.eval)
    src = export(model, "onnx", "fp32", out, log=None).path
    linear = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    plan, _ = plan_for(model, cal, "minmax", 0.02, symmetric_act=False)
    wanted = set(plan.restrict(linear).quantized_modules())
    nodes = [n for n, m in node_modules(onnx.load(str(src))).items() if m in wanted]
    fp32 = runner("onnx", src, 2)
    ref = np.concatenate([fp32(ev.x[i:i + 1]) for i in range(len(ev))])
    x1 = np.ascontiguousarray(ev.x[:1])
    print(f"\nonnxruntime CPU, batch 1, eval {len(ev)} imgs; plan = {len(nodes)} MatMul/Gemm nodes\n")
    print("| tool | scope | agreement | max abs dP | speed-up vs FP32 (1t/2t) | quantize s |")
    print("|---|---|---|---|---|---|")
    for name, tool in TOOLS.items():
        for scope, sel in (("msvit plan", nodes), ("whole model", None)):
            dst = out / f"{name.split()[0]}_{scope.split()[0]}.onnx"
            t0 = time.time()
            try:
                tool(src, dst, sel, cal)
            except Exception as e:  # a tool that cannot run here is a row, not a crash
                print(f"| {name} | {scope} | failed: {type(e).__name__}: {str(e)[:120]} | | | |")
                continue
            qs = time.time() - t0
            q = runner("onnx", dst, 2)
            a = agreement_metrics(ref, np.concatenate([q(ev.x[i:i + 1]) for i in range(len(ev))]))
            sp = [(lambda r: r[0] / r[1])(interleaved_ms([runner("onnx", src, t), runner("onnx", dst, t)], x1,
                                                         args.iters)) for t in (1, 2)]
            print(f"| {name} | {scope} | {a['agreement']:.3f} | {a['max_abs_dprob']:.3f} | {sp[0]:.2f}× / {sp[1]:.2f}× "
                  f"| {qs:.0f} |", flush=True)


if __name__ == "__main__":
    main()
