"""Raw post-training INT8 methods at (nearly) full coverage: which one keeps the demo model's
decisions when the WHOLE network is int8? No sensitivity plan, no accuracy guard.

    nice -n 10 .venv/bin/python research/int8_methods.py [--rows trt ov et ...] [--json out.json]

Each row builds one INT8 model of the whole network, runs it on --eval and prints: the share of
multiply-adds in int8 (msvit.runtime.coverage on the artifact/program, not on a plan), agreement
of decisions at P=0.5 with PyTorch FP32, max |ΔP|, AUC and its drop vs the FP32 AUC, and the
seconds spent quantizing. A row that raises prints its one-line error instead.

Rows (``--rows`` takes names, name prefixes such as ``trt``/``ov``, or the group digits 0-7):

1 trt-minmax/-entropy/-percentile  onnxruntime quantize_static, TensorRT flavour: QDQ on the
                                   inputs of all Conv/MatMul/Gemm, symmetric int8 activations,
                                   per-channel symmetric int8 weights; run in onnxruntime CPU
2 ort-minmax/-percentile           onnxruntime flavour with convs: QDQ on inputs AND outputs
                                   (QLinearConv/QGemm style), U8S8
3 ov-*                             NNCF on the IR of the FP32 ONNX, no ignored scope: MIXED vs
                                   PERFORMANCE, full BiasCorrection, model_type TRANSFORMER
                                   (SmoothQuant), SmoothQuant on convs too, MEAN_QUANTILE ranges
4 et-xnnpack                       PT2E + XNNPACKQuantizer (global), the converted program run
                                   in torch (not lowered to .pte)
5 cle-quark / cle-aimet            cross-layer equalization of the FP32 ONNX by AMD Quark / AIMET
                                   (each in its own overlay venv, --quark-python/--aimet-python),
                                   then the row-1 quantizer (method: best row-1 method run, else
                                   percentile); cle-quark-bc: Quark's own pipeline, CLE + bias
                                   correction
6 mixed-k1/-k3/-k5                 the best row-1 method with the K most sensitive layer groups
                                   float (stem; + blocks.0-1; + blocks.2-3); mixed-k3-minmax /
                                   -k5-minmax: the same with minmax ranges
  mixed-se                         the same with every squeeze-excite conv float (their inputs are
                                   pooled vectors of range ~0.3; < 0.1 % of the MACs)
  w8a16-k5                         stem + blocks.0-3 with 16-bit activations (int8 weights), the
                                   rest W8A8 (onnxruntime TensorQuantOverrides, minmax); W8A16 is
                                   not int8
7 quark-adaround / -adaquant       AMD Quark's pipeline (as cle-quark-bc, no CLE) + AdaRound /
                                   AdaQuant weight optimisation, on --ada-images calibration images
                                   for --ada-iters iterations per layer (CPU: minutes per row)
0 fp32-noise                       not INT8: the FP32 ONNX on eval/ plus uniform noise of ±0.5
                                   pixel step (an 8-bit image's own rounding): the fixture's noise
                                   floor (research/int8_noise_floor.py measures it per layer)

The goal (issue 12): >= 95 % of MACs int8, agreement >= 0.99, max|ΔP| <= 0.02, AUC drop <= 0.005.
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

from msvit.data import load_images
from msvit.model import create_model

GOAL = {"mac_share": 0.95, "agreement": 0.99, "max_dp": 0.02, "auc_drop": 0.005}

GROUPS = {
    "1": ["trt-minmax", "trt-entropy", "trt-percentile"],
    "2": ["ort-minmax", "ort-percentile"],
    "3": ["ov-mixed", "ov-performance", "ov-fullbc", "ov-transformer", "ov-sq-conv", "ov-meanquantile"],
    "4": ["et-xnnpack"],
    "5": ["cle-quark", "cle-aimet", "cle-quark-bc"],
    "6": ["mixed-k1", "mixed-k3", "mixed-k5", "mixed-k3-minmax", "mixed-k5-minmax", "mixed-se", "w8a16-k5"],
    "7": ["quark-adaround", "quark-adaquant"],
    "0": ["fp32-noise"],
}
ALL = ["fp32-onnx"] + [r for k, g in GROUPS.items() if k != "0" for r in g] + GROUPS["0"]

#: layer groups left float by the mixed-precision rows, most sensitive first (project facts:
#: stem 1.7 % of MACs, blocks.0 1.6 %, blocks.1 8.5 %, blocks.2 5.9 %, blocks.3 6.8 %)
BB = "feat_extractor.backbone."
MIXED_FLOAT = {1: [BB + "conv_stem"],
               3: [BB + "conv_stem", BB + "blocks.0.", BB + "blocks.1."],
               5: [BB + "conv_stem", BB + "blocks.0.", BB + "blocks.1.", BB + "blocks.2.", BB + "blocks.3."]}


def short(prefixes: list[str]) -> str:
    """Module-name prefixes as a row note names them: ``conv_stem, blocks.0, ...``."""
    return ", ".join(p.removeprefix(BB).rstrip(".") for p in prefixes)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))


def one_line(e: BaseException) -> str:
    s = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {s}"[:300]


class Ctx:
    """What every row shares: model, data, the FP32 ONNX and the FP32 reference."""

    def __init__(self, a: argparse.Namespace, tmp: Path) -> None:
        import torch

        from msvit.export.onnx import export_fp32_onnx

        self.a, self.tmp = a, tmp
        self.model = create_model("ms_eff_vit_b0", weights=a.weights).eval()
        ev = load_images(a.eval)
        self.x, self.labels = ev.x.astype(np.float32), ev.labels
        cal = load_images(a.calib).x
        if a.calib_train:
            cal = np.concatenate([cal, load_images(a.train, limit=a.calib_train, seed=0).x])
        self.calib_x = cal.astype(np.float32)
        with torch.no_grad():
            self.ref_logit = np.concatenate([self.model(torch.from_numpy(self.x[i:i + 16])).numpy().reshape(-1)
                                             for i in range(0, len(self.x), 16)])
        self.ref_p = sigmoid(self.ref_logit)
        self.fp32 = tmp / "fp32.onnx"
        export_fp32_onnx(self.model, self.fp32)  # static batch 1
        self.best_trt: tuple[str, tuple] | None = None  # (method, score) of the best row-1 row
        self.results: dict[str, dict[str, Any]] = {}

    def metrics(self, logits: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import roc_auc_score

        p = sigmoid(np.asarray(logits).reshape(-1))
        auc_fp = roc_auc_score(self.labels, self.ref_p)
        auc = roc_auc_score(self.labels, p)
        return {"agreement": float(np.mean((p > 0.5) == (self.ref_p > 0.5))),
                "max_dp": float(np.max(np.abs(p - self.ref_p))), "mean_dp": float(np.mean(np.abs(p - self.ref_p))),
                "auc": float(auc), "auc_drop": float(auc_fp - auc)}


# ------------------------------------------------------------------ onnxruntime

class Reader:
    def __init__(self, x: np.ndarray) -> None:
        self.x, self.i = x, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        self.i += 1
        return {"image": np.ascontiguousarray(self.x[self.i - 1:self.i])}

    def rewind(self) -> None:
        self.i = 0


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 1]})[0].reshape(-1) for i in range(len(x))])


def ort_quantize(ctx: Ctx, src: Path, dst: Path, method: str, flavour: str,
                 exclude_modules: list[str] | None = None, a16_modules: list[str] | None = None) -> Path:
    """quantize_static QDQ on every Conv/MatMul/Gemm (less the nodes whose module name contains one
    of ``exclude_modules``);
    the inputs of ``a16_modules``' nodes get 16-bit activations (W8A16, onnxruntime's
    TensorQuantOverrides)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from msvit.quantize.onnx import node_modules, unleak_qdq

    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    extra: dict[str, Any] = {"WeightSymmetric": True}
    if flavour == "trt":  # input-side Q/DQ only, symmetric activations (TensorRT explicit quantization)
        extra.update(ActivationSymmetric=True, OpTypesToExcludeOutputQuantization=["Conv", "MatMul", "Gemm"])
    if method == "percentile":
        extra["CalibPercentile"] = 99.99
    ops = ("Conv", "MatMul", "Gemm")
    proto = onnx.load(str(src))
    excluded: list[str] = []
    mods = node_modules(proto)
    if exclude_modules:
        excluded = [n for n, m in mods.items() if any(p in m for p in exclude_modules)]
    if a16_modules:
        a16 = {n.input[0] for n in proto.graph.node
               if any(p in mods.get(n.name, "") for p in a16_modules)}
        extra["TensorQuantOverrides"] = {t: [{"quant_type": QuantType.QInt16 if flavour == "trt" else
                                              QuantType.QUInt16}] for t in sorted(a16)}
        # 16-bit Q/DQ is standard from opset 21 (the contrib-domain ops would hide shapes from
        # onnx shape inference, which coverage counts MACs with)
        if max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) < 21:
            from onnx import version_converter

            src = dst.with_name(dst.stem + "-opset21.onnx")
            onnx.save(version_converter.convert_version(proto, 21), str(src))
    quantized = {n.name for n in proto.graph.node if n.op_type in ops and n.name not in excluded}
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_static(str(src), str(dst), Reader(ctx.calib_x), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(ops), per_channel=True,
                        activation_type=QuantType.QInt8 if flavour == "trt" else QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=cm, nodes_to_exclude=excluded,
                        extra_options=extra)
    finally:
        root.setLevel(old)
    if excluded:  # float layers sharing an input with an int8 one must get the float tensor back
        q = onnx.load(str(dst))
        unleak_qdq(q, quantized)
        onnx.save(q, str(dst))
    return dst


def row_ort(ctx: Ctx, name: str, method: str, flavour: str, src: Path | None = None,
            exclude: list[str] | None = None, note: str = "", a16: list[str] | None = None) -> dict[str, Any]:
    from msvit.runtime.coverage import onnx_coverage

    dst = ctx.tmp / f"{name}.onnx"
    t0 = time.perf_counter()
    ort_quantize(ctx, src or ctx.fp32, dst, method, flavour, exclude, a16)
    tq = time.perf_counter() - t0
    cov = onnx_coverage(dst)
    return {"coverage": cov, "quant_s": tq, "logits": run_onnx(dst, ctx.x), "note": note}


# ------------------------------------------------------------------ OpenVINO / NNCF

def row_ov(ctx: Ctx, variant: str) -> dict[str, Any]:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters,
                                                       AdvancedSmoothQuantParameters)
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    from msvit.runtime.coverage import openvino_coverage

    base = ov.convert_model(str(ctx.fp32))
    kw: dict[str, Any] = {"preset": nncf.QuantizationPreset.MIXED}
    adv: dict[str, Any] = {}
    if variant == "performance":
        kw["preset"] = nncf.QuantizationPreset.PERFORMANCE
    elif variant == "fullbc":
        kw["fast_bias_correction"] = False
    elif variant == "transformer":
        kw["model_type"] = nncf.ModelType.TRANSFORMER
    elif variant == "sq-conv":
        kw["model_type"] = nncf.ModelType.TRANSFORMER
        adv["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(convolution=0.15, matmul=0.95)
    elif variant == "meanquantile":
        adv["activations_range_estimator_params"] = RangeEstimatorParametersSet.MEAN_QUANTILE
    data = nncf.Dataset([ctx.calib_x[i:i + 1] for i in range(len(ctx.calib_x))])
    lg = logging.getLogger("nncf")
    old = lg.level
    lg.setLevel(logging.ERROR)
    t0 = time.perf_counter()
    try:
        qm = nncf.quantize(base, data, subset_size=len(ctx.calib_x),
                           advanced_parameters=AdvancedQuantizationParameters(**adv), **kw)
    finally:
        lg.setLevel(old)
    tq = time.perf_counter() - t0
    xml = ctx.tmp / f"ov-{variant}.xml"
    ov.save_model(qm, str(xml), compress_to_fp16=False)
    cov = openvino_coverage(xml)
    cm = ov.Core().compile_model(str(xml), "CPU")
    req = cm.create_infer_request()
    logits = np.concatenate([np.asarray(req.infer({0: ctx.x[i:i + 1]})[cm.output(0)]).reshape(-1)
                             for i in range(len(ctx.x))])
    return {"coverage": cov, "quant_s": tq, "logits": logits, "note": ""}


# ------------------------------------------------------------------ ExecuTorch PT2E

def row_et(ctx: Ctx) -> dict[str, Any]:
    import torch

    from msvit.quantize.executorch import quantized_program
    from msvit.runtime.coverage import program_coverage

    t0 = time.perf_counter()
    ep = quantized_program(ctx.model, ctx.calib_x, None)
    tq = time.perf_counter() - t0
    cov = program_coverage(ep)
    m = ep.module()
    with torch.no_grad():
        logits = np.concatenate([m(torch.from_numpy(ctx.x[i:i + 1])).numpy().reshape(-1) for i in range(len(ctx.x))])
    return {"coverage": cov, "quant_s": tq, "logits": logits, "note": "program run in torch"}


# ------------------------------------------------------------------ CLE (overlay venvs)

QUARK_CLE = """
import sys, onnx
from quark.onnx.algorithm.cle.equalization import Equalization, cle_transforms
m = onnx.load(sys.argv[1])
n = len(Equalization(onnx.load(sys.argv[1]), ["Conv", "Gemm", "MatMul"], [], []).get_cle_pattern_pair())
onnx.save(cle_transforms(m, ["Conv", "Gemm", "MatMul"], [], [], cle_steps=-1), sys.argv[2])
print("CLE_PAIRS", n)
"""

AIMET_CLE = """
import sys, onnx
from aimet_onnx.cross_layer_equalization import equalize_model
m = onnx.load(sys.argv[1])
equalize_model(m)
onnx.save(m, sys.argv[2])
"""

# Quark's own pipeline: symmetric int8 QDQ (percentile) on every op Quark quantizes by default (not
# only Conv/MatMul/Gemm), per-channel weights, with one algorithm: cle-bc = CLE + bias correction;
# adaround / adaquant = per layer, the weights' rounding / the weights themselves optimised to
# reconstruct the float layer's output, on the first N images for ITERS iterations
QUARK_PIPELINE = """
import sys, numpy as np
import quark.onnx as Q
x = np.load(sys.argv[3]); algo, n, iters = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
class R(Q.CalibrationDataReader):
    def __init__(s): s.i = 0
    def get_next(s):
        if s.i >= len(x): return None
        s.i += 1; return {"image": x[s.i - 1:s.i]}
    def rewind(s): s.i = 0
kw = dict(num_iterations=iters, batch_size=1, num_batches=n, data_size=n)
algos = {"cle-bc": lambda: [Q.CLEConfig(cle_steps=-1), Q.BiasCorrectionConfig()],
         "adaround": lambda: [Q.AdaRoundConfig(**kw)],
         "adaquant": lambda: [Q.AdaQuantConfig(learning_rate=1e-5, **kw)]}[algo]()
cfg = Q.QConfig(global_config=Q.QLayerConfig(activation=Q.Int8Spec(),
                                             weight=Q.Int8Spec(quant_granularity=Q.QuantGranularity.Channel)),
                algo_config=algos)
Q.ModelQuantizer(cfg).quantize_model(sys.argv[1], sys.argv[2], R())
"""


def overlay(python: str | None, code: str, *args: str, timeout: int = 600, cwd: Path | None = None) -> str:
    """Run ``code`` in an overlay venv's python, in ``cwd`` (Quark writes quantized_info.csv there)."""
    if not python:
        raise RuntimeError("needs --quark-python / --aimet-python (see --help)")
    r = subprocess.run(["nice", "-n", "10", python, "-c", code, *args], capture_output=True, text=True,
                       timeout=timeout, cwd=cwd)
    if r.returncode:
        lines = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
        err = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "?")
        raise RuntimeError(f"{Path(python).parts[1:3]} rc={r.returncode}: {err.strip()}")
    return r.stdout


def changed_weights(a: Path, b: Path) -> int:
    import onnx
    from onnx import numpy_helper as nh

    wa = {i.name: nh.to_array(i) for i in onnx.load(str(a)).graph.initializer}
    wb = {i.name: nh.to_array(i) for i in onnx.load(str(b)).graph.initializer}
    return sum(1 for k, v in wa.items() if k in wb and v.shape == wb[k].shape and not np.allclose(v, wb[k]))


def row_quark(ctx: Ctx, algo: str) -> dict[str, Any]:
    """AMD Quark's own pipeline with ``algo`` (see QUARK_PIPELINE), in the Quark overlay venv."""
    from msvit.runtime.coverage import onnx_coverage

    ada = algo != "cle-bc"
    n = min(ctx.a.ada_images, len(ctx.calib_x)) if ada else len(ctx.calib_x)
    np.save(ctx.tmp / "calib.npy", ctx.calib_x)
    dst = ctx.tmp / f"quark-{algo}.onnx"
    t0 = time.perf_counter()
    overlay(ctx.a.quark_python, QUARK_PIPELINE, str(ctx.fp32), str(dst), str(ctx.tmp / "calib.npy"), algo, str(n),
            str(ctx.a.ada_iters), timeout=3600, cwd=ctx.tmp)
    what = f"{algo} ({n} images, {ctx.a.ada_iters} iterations/layer)" if ada else "CLE + BiasCorrection"
    return {"coverage": onnx_coverage(dst), "quant_s": time.perf_counter() - t0, "logits": run_onnx(dst, ctx.x),
            "note": f"Quark pipeline: {what}, sym int8 QDQ"}


def row_noise(ctx: Ctx) -> dict[str, Any]:
    from msvit.model.variants import IMAGENET_STD
    from msvit.runtime.coverage import onnx_coverage

    rng = np.random.default_rng(0)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    noise = (rng.uniform(-0.5, 0.5, ctx.x.shape) / 255 / std).astype(np.float32)
    return {"coverage": onnx_coverage(ctx.fp32), "quant_s": 0.0, "logits": run_onnx(ctx.fp32, ctx.x + noise),
            "note": "FP32, input + uniform ±0.5 pixel step: the fixture's noise floor, no quantization"}


def row_cle(ctx: Ctx, lib: str) -> dict[str, Any]:
    if lib == "quark-bc":
        return row_quark(ctx, "cle-bc")
    method = ctx.best_trt[0] if ctx.best_trt else "percentile"
    src = ctx.tmp / f"cle-{lib}.onnx"
    t0 = time.perf_counter()
    out = overlay(ctx.a.quark_python if lib == "quark" else ctx.a.aimet_python,
                  QUARK_CLE if lib == "quark" else AIMET_CLE, str(ctx.fp32), str(src), cwd=ctx.tmp)
    t_cle = time.perf_counter() - t0
    n = changed_weights(ctx.fp32, src)
    fp_cle = run_onnx(src, ctx.x)
    drift = float(np.max(np.abs(sigmoid(fp_cle) - ctx.ref_p)))
    pairs = next((ln.split()[1] for ln in out.splitlines() if ln.startswith("CLE_PAIRS")), "?")
    r = row_ort(ctx, f"cle-{lib}-q", method, "trt", src=src)
    r["quant_s"] += t_cle
    r["note"] = (f"CLE ({pairs} pairs, {n} tensors changed, FP32-after-CLE max|dP| {drift:.1e}) "
                 f"+ trt-{method}")
    return r


# ------------------------------------------------------------------ driver

def build_row(ctx: Ctx, name: str) -> dict[str, Any]:
    from msvit.runtime.coverage import onnx_coverage

    if name == "fp32-onnx":
        return {"coverage": onnx_coverage(ctx.fp32), "quant_s": 0.0, "logits": run_onnx(ctx.fp32, ctx.x),
                "note": "sanity: FP32 ONNX vs torch"}
    kind, _, rest = name.partition("-")
    if kind in ("trt", "ort"):
        return row_ort(ctx, name, rest, kind)
    if kind == "ov":
        return row_ov(ctx, rest)
    if kind == "et":
        return row_et(ctx)
    if kind == "cle":
        return row_cle(ctx, rest)
    if name == "fp32-noise":
        return row_noise(ctx)
    if kind == "quark":
        return row_quark(ctx, rest)
    method = ctx.best_trt[0] if ctx.best_trt else ctx.a.mixed_method
    if name == "mixed-se":
        return row_ort(ctx, name, method, "trt", exclude=[".se."], note=f"trt-{method}, SE convs float")
    if name == "w8a16-k5":  # minmax: onnxruntime's percentile calibrator fails on 16-bit overrides (ZeroDivisionError)
        return row_ort(ctx, name, "minmax", "trt", a16=MIXED_FLOAT[5],
                       note="trt-minmax, W8A16: " + short(MIXED_FLOAT[5]))
    if kind == "mixed":
        k_name, _, forced = rest.partition("-")  # mixed-k5-minmax: that method, not the best row-1 one
        k, method = int(k_name[1:]), forced or method
        return row_ort(ctx, name, method, "trt", exclude=MIXED_FLOAT[k],
                       note=f"trt-{method}, float: " + short(MIXED_FLOAT[k]))
    raise ValueError(f"unknown row {name}")


def select(spec: list[str] | None) -> list[str]:
    if not spec:
        return ALL
    out: list[str] = []
    for s in spec:
        names = GROUPS.get(s) or [r for r in ALL if r == s or r.startswith(s + "-") or r.startswith(s)]
        if not names:
            raise SystemExit(f"--rows: no row matches {s!r}; rows: {' '.join(ALL)}")
        out += [n for n in names if n not in out]
    return [r for r in ALL if r in out]  # fixed order: row 1 before CLE/mixed, which reuse its best method


def fmt(name: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{name:<16} ERROR {r['error']}"
    ok = all([r["mac_share"] >= GOAL["mac_share"], r["agreement"] >= GOAL["agreement"],
              r["max_dp"] <= GOAL["max_dp"], r["auc_drop"] <= GOAL["auc_drop"]])
    return (f"{name:<16} {100 * r['mac_share']:5.1f}% {r['layers']:>7} {r['agreement']:6.3f} {r['max_dp']:7.4f} "
            f"{r['mean_dp']:7.4f} {r['auc']:6.4f} {r['auc_drop']:+7.4f} {r['quant_s']:6.1f} {'YES' if ok else 'no':>4}")


HEAD = (f"{'row':<16} {'MACs':>6} {'layers':>7} {'agree':>6} {'max|dP|':>7} {'mean|dP|':>7} {'AUC':>6} "
        f"{'AUCdrop':>7} {'q s':>6} {'goal':>4}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", nargs="+", help="row names, prefixes or group digits 0-7 (default: all)")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--calib-train", type=int, default=0, help="add N seeded train/ images to calibration")
    ap.add_argument("--eval", required=True)
    ap.add_argument("--mixed-method", default="percentile", help="mixed rows' method when no row-1 row ran")
    ap.add_argument("--quark-python", default=None,
                    help="python of a venv with amd-quark 0.13 layered over .venv (row 5; its pins clash with "
                         ".venv's: python3 -m venv V, a .pth in V's site-packages with "
                         "'import site; site.addsitedir(\"<.venv site-packages>\")', V/bin/pip install amd-quark)")
    ap.add_argument("--aimet-python", default=None, help="the same with aimet-onnx 2.42 (row 5)")
    ap.add_argument("--ada-images", type=int, default=16, help="row 7: calibration images AdaRound/AdaQuant fit on")
    ap.add_argument("--ada-iters", type=int, default=100, help="row 7: optimisation iterations per layer")
    ap.add_argument("--top", type=int, default=3, help="name the N largest float layers of a row (0: none)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    a = ap.parse_args()
    rows = select(a.rows)

    with tempfile.TemporaryDirectory(prefix="int8_methods_") as tmp:
        t0 = time.perf_counter()
        ctx = Ctx(a, Path(tmp))
        from sklearn.metrics import roc_auc_score

        auc_fp = roc_auc_score(ctx.labels, ctx.ref_p)
        print(f"eval {len(ctx.x)} images, calib {len(ctx.calib_x)} images; FP32 (torch) AUC {auc_fp:.4f}, "
              f"|logit| median {np.median(np.abs(ctx.ref_logit)):.2f}; setup {time.perf_counter() - t0:.0f} s",
              flush=True)
        print(f"goal: MACs >= {100 * GOAL['mac_share']:.0f}%, agree >= {GOAL['agreement']}, "
              f"max|dP| <= {GOAL['max_dp']}, AUC drop <= {GOAL['auc_drop']}\n", flush=True)
        print(HEAD, flush=True)
        results: dict[str, dict[str, Any]] = {}
        for name in rows:
            t1 = time.perf_counter()
            try:
                r = build_row(ctx, name)
                cov = r.pop("coverage")
                res = {"mac_share": cov.mac_share, "layers": f"{cov.layers_int8}/{cov.layers_total}",
                       "macs_int8": cov.macs_int8, "macs_total": cov.macs_total, **ctx.metrics(r.pop("logits")),
                       "quant_s": r["quant_s"], "note": r.get("note", "")}
                floats = sorted((t for t in cov.by_layer if not t[2]), key=lambda t: -t[1])
                res["float_layers"] = [[n, m] for n, m, _ in floats]
                if floats and cov.mac_share < 0.999 and a.top:
                    res["note"] = "; ".join(filter(None, [res["note"], "largest float: " + ", ".join(
                        f"{n} {100 * m / cov.macs_total:.1f}%" for n, m, _ in floats[:a.top])]))
                if name.startswith("trt-"):
                    score = (res["agreement"], -res["max_dp"])
                    if ctx.best_trt is None or score > ctx.best_trt[1]:
                        ctx.best_trt = (name.split("-", 1)[1], score)
            except Exception as e:  # noqa: BLE001 - a failed method is a result
                res = {"error": one_line(e)}
            res["row_s"] = time.perf_counter() - t1
            results[name] = res
            print(fmt(name, res) + (f"\n{'':<17}({res['note']})" if res.get("note") else ""), flush=True)
        print(f"\ntotal {time.perf_counter() - t0:.0f} s")
        if a.json:
            a.json.write_text(json.dumps({"fp32_auc": auc_fp, "goal": GOAL, "calib_images": len(ctx.calib_x),
                                          "eval_images": len(ctx.x), "rows": results}, indent=1))


if __name__ == "__main__":
    main()
