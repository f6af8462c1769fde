"""INT8 with calibration and the accuracy guard (onnx, TensorRT Q/DQ, openvino);
calibration data errors; hashes and caches.

The onnx and openvino artifacts are exported with default settings (``--calib-data`` only:
the guard verifies on every calibration image) and then run on eval/, which the guard never
saw: they must stay within the gate they record (issue 14)."""
from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from msvit.errors import CalibrationError
from msvit.export import ExportOptions, Int8Options, export
from msvit.quantize import load_calibration, plan_for


@pytest.fixture(scope="module")
def calib(faces_dir):
    return load_calibration(faces_dir / "calib")


def _default_int8(demo_model, target, calib, eval_set, out):
    """INT8 with default settings (no --verify-data); the export's own parity run is on eval/,
    images the guard never saw. A 75-image guard warns that it is weakly verified."""
    with pytest.MonkeyPatch.context() as mp, pytest.warns(UserWarning, match="weakly verified"):
        mp.setenv("SOURCE_DATE_EPOCH", "1700000000")  # export time is embedded: pin it
        return export(demo_model, target, "int8", out, calib=calib, verify_data=eval_set,
                      options=ExportOptions(int8=Int8Options()), log=None, strict=False)


def _within_own_gate_on_unseen_images(res, calib):
    """The guard's promise, checked on eval/ (83 images it never saw)."""
    from msvit.runtime import read_metadata

    md = read_metadata(res.path)
    gate = float(md["guard_max_dprob"])
    assert gate == res.extra["guard_max_dprob"] == 0.05
    g = res.extra["guard"]
    assert g["n"] == res.extra["guard_n"] == len(calib.calib) + len(calib.holdout) == 75
    assert g["data"].startswith("75 calibration images (60 calibrated on, 15 held out)")
    assert res.extra["guard_weakly_verified"] is True and "weakly verified" in res.message
    assert res.extra["guard_bound_dprob"] >= g["max_abs_dprob"]
    assert res.extra["guard_bound_method"].startswith("tail:")
    assert res.extra["guard_passed"] is True and res.status == "ok", res.message
    assert res.extra["guard_bound_dprob"] <= gate
    assert res.parity.n == 83 and res.parity.max_abs_dprob <= gate, res.parity.summary()
    assert res.parity.agreement >= 0.97
    return md


@pytest.fixture(scope="module")
def onnx_int8(demo_model, calib, eval_set, tmp_path_factory):
    return _default_int8(demo_model, "onnx", calib, eval_set, tmp_path_factory.mktemp("q"))


@pytest.mark.slow
def test_onnx_int8_default_settings_stay_within_their_gate_on_eval(onnx_int8, calib):
    md = _within_own_gate_on_unseen_images(onnx_int8, calib)
    assert md["guard_bound_dprob"] == str(onnx_int8.extra["guard_bound_dprob"])  # embedded, for msvit-bench
    assert onnx_int8.extra["quantized_groups"], "nothing was quantized"
    assert float(md["sensitivity_dprob"]) == pytest.approx(0.05 / 3, abs=1e-6)


@pytest.mark.slow
def test_onnx_int8_is_really_int8_and_self_describing(onnx_int8, calib):
    import onnx

    from msvit.runtime import read_metadata

    proto = onnx.load(str(onnx_int8.path))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") >= 10 and ops.count("DequantizeLinear") >= 10
    md = read_metadata(onnx_int8.path)
    assert md["calib_method"] == "minmax" and md["calib_size"] == str(len(calib.calib)) == "60"
    assert md["int8_method"].startswith("selective PTQ: sensitivity plan, minmax ranges, accuracy guard")
    assert md["calib_sha256"] == calib.sha256 and "onnxruntime" in md["quant_tool"]
    assert "backbone.stem" in md["float_groups"]


def test_onnx_int8_cpu_flavour_quantizes_what_onnxruntime_runs_in_int8(onnx_int8, tmp_path):
    """Q/DQ feed only MatMul/Gemm (an input-only Q/DQ Conv runs as a float Conv in onnxruntime,
    slower than FP32), and onnxruntime really fuses them into integer kernels."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(onnx_int8.path))
    producers = {o: n.op_type for n in proto.graph.node for o in n.output}
    consumers: dict[str, set[str]] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, set()).add(n.op_type)
    act_dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and producers.get(n.input[0]) == "QuantizeLinear"]
    assert act_dq and all(consumers[dq.output[0]] <= {"MatMul", "Gemm"} for dq in act_dq)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(str(onnx_int8.path), so, providers=["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert sum(op in ("QGemm", "MatMulIntegerToFloat", "QLinearMatMul") for op in fused) == len(act_dq)


@pytest.mark.slow
def test_int8_same_inputs_same_artifact(onnx_int8, demo_model, calib, eval_set, tmp_path):
    again = _default_int8(demo_model, "onnx", calib, eval_set, tmp_path)
    assert again.extra["plan_cache"] == "hit"
    h = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (again.path, onnx_int8.path)]
    assert h[0] == h[1]


@pytest.mark.slow
def test_trt_int8_qdq_onnx_is_symmetric_on_op_inputs(demo_model, calib, eval_set, tmp_path):
    import onnx
    from onnx import numpy_helper

    r = export(demo_model, "trt", "int8", tmp_path, calib=calib, options=ExportOptions(int8=Int8Options(verify_data=eval_set)), log=None,
               strict=False)
    assert r.status == "unavailable" and r.path.name.endswith("_trt10.onnx")
    assert "--stronglyTyped" in r.extra["trtexec"] and "--int8" not in r.extra["trtexec"]
    assert r.extra["guard"]["agreement"] >= 0.97
    # --verify-data adds to the calibration images; 158 >= 100: not weakly verified
    assert r.extra["guard"]["n"] == 75 + 83 and r.extra["guard_weakly_verified"] is False
    assert r.extra["guard"]["data"].startswith("75 calibration images") and "+ 83 images" in r.extra["guard"]["data"]
    proto = onnx.load(str(r.path))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    zps = [inits[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)  # symmetric int8 activations
    producers = {o: n.op_type for n in proto.graph.node for o in n.output}
    consumers: dict[str, list[str]] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    act_dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and producers.get(n.input[0]) == "QuantizeLinear"]
    assert act_dq
    for dq in act_dq:  # Q/DQ feed only Conv/MatMul/Gemm inputs: norms, softmax, sigmoid, residuals stay float
        assert set(consumers[dq.output[0]]) <= {"Conv", "MatMul", "Gemm"}


@pytest.fixture(scope="module")
def openvino_int8(demo_model, calib, eval_set, tmp_path_factory):
    return _default_int8(demo_model, "openvino", calib, eval_set, tmp_path_factory.mktemp("ov"))


@pytest.mark.slow
def test_openvino_int8_default_settings_stay_within_their_gate_on_eval(openvino_int8, calib):
    """Issue 14: with 15 held-out images this target's first attempt passed at max|ΔP| 0.008 and
    reached 0.057 on eval/; now the plan leaves room for that and the guard judges all 75."""
    md = _within_own_gate_on_unseen_images(openvino_int8, calib)
    assert md["calib_sha256"] == calib.sha256 and "nncf" in md["quant_tool"]
    assert openvino_int8.extra["guard"]["auc_drop"] <= 0.02


# ---- calibration data ------------------------------------------------------------------

@pytest.mark.slow
def test_changed_image_changes_hash_and_recalibrates(demo_model, faces_dir, tmp_path):
    src = sorted((faces_dir / "calib" / "fake").glob("*.jpg"))[:5] + sorted((faces_dir / "calib" / "real").glob("*.jpg"))[:5]
    d = tmp_path / "cal"
    d.mkdir()
    for p in src:
        shutil.copy(p, d / p.name)
    a = load_calibration(d, holdout_fraction=0)
    plan1, info1 = plan_for(demo_model, a, "minmax", 0.02, False)
    _, info2 = plan_for(demo_model, load_calibration(d, holdout_fraction=0), "minmax", 0.02, False)
    assert (info1["plan_cache"], info2["plan_cache"]) == ("miss", "hit")
    shutil.copy(src[0], d / src[1].name)  # one image replaced by another
    b = load_calibration(d, holdout_fraction=0)
    assert b.sha256 != a.sha256
    _, info3 = plan_for(demo_model, b, "minmax", 0.02, False)
    assert info3["plan_cache"] == "miss" and info3["plan_key"] != info1["plan_key"]
    _, info4 = plan_for(demo_model, b, "percentile", 0.02, False)
    assert info4["plan_key"] != info3["plan_key"]  # the method is part of the key too


def test_calibration_data_errors(tmp_path, faces_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="no files found"):
        load_calibration(empty)
    junk = tmp_path / "junk"
    junk.mkdir()
    for i in range(10):
        (junk / f"{i}.txt").write_text("hello")
        (junk / f"{i}.jpg").write_text("not a jpeg")
    with pytest.raises(CalibrationError, match="none of 20 files is a readable image"):
        load_calibration(junk)
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted((faces_dir / "calib" / "real").glob("*.jpg"))[:3]:
        shutil.copy(p, few / p.name)
    (few / "notes.txt").write_text("skipped and counted")
    with pytest.raises(CalibrationError, match="only 3 readable image"):
        load_calibration(few)
    with pytest.raises(CalibrationError, match="at least 8"):
        load_calibration(faces_dir / "calib", calib_size=4)


def test_skipped_files_are_counted(tmp_path, faces_dir):
    d = tmp_path / "mixed"
    d.mkdir()
    for p in sorted((faces_dir / "calib" / "real").glob("*.jpg"))[:10]:
        shutil.copy(p, d / p.name)
    (d / "broken.png").write_bytes(b"\x89PNG broken")
    (d / "readme.md").write_text("x")
    with pytest.warns(UserWarning, match="< 100"):
        c = load_calibration(d)
    assert c.describe()["calib_skipped"] == 2 and len(c.calib) + len(c.holdout or []) == 10


def test_guard_gates_on_agreement_auc_and_max_dprob():
    from msvit.quantize.guard import Gate, evaluate

    rng = np.random.default_rng(0)
    fp32 = rng.normal(0, 2, (40, 1)).astype(np.float32)
    labels = (fp32[:, 0] > 0).astype(np.int64)
    fp32[0, 0] = 0.05  # one confident-enough image stays on its side but moves a lot in P
    moved = fp32.copy()
    moved[0, 0] = 0.9  # P 0.512 -> 0.711: same decision, |ΔP| 0.2
    idx = np.arange(40, dtype=np.float32).reshape(40, 1, 1, 1)  # "images" that index the logit tables
    rep = evaluate(fp32, lambda x: moved[x[:, 0, 0, 0].astype(int)], idx, labels, Gate(), "synthetic")
    assert rep.agreement == 1.0 and not rep.passed and any("max|ΔP|" in r for r in rep.reasons)
    assert evaluate(fp32, lambda x: moved[x[:, 0, 0, 0].astype(int)], idx, labels, Gate(max_dprob=0.25),
                    "synthetic").passed
    flipped = fp32.copy()
    flipped[:2, 0] *= -1
    rep = evaluate(fp32, lambda x: flipped[x[:, 0, 0, 0].astype(int)], idx, labels, Gate(max_dprob=1.0), "synthetic")
    assert rep.agreement == 0.95 and any("agreement" in r for r in rep.reasons)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "openvino", "executorch"])
def test_int8_with_image_input(target, demo_model, calib, eval_set, tmp_path, reference):
    """--input image with --precision int8: calibration feeds the uint8 pixels the app will feed,
    the in-graph cast and normalisation stay float, and the guard applies as with tensors."""
    import torch

    from msvit.preprocess import normalize
    from msvit.runtime import load, read_metadata

    with pytest.warns(UserWarning, match="weakly verified"):
        r = export(demo_model, target, "int8", tmp_path, calib=calib, verify_data=eval_set,
                   options=ExportOptions(input="image"), log=None, strict=False)
    assert r.status == "ok" and r.extra["guard_passed"] is True, r.message
    assert r.path.stem.endswith("_int8_img") and r.extra["quantized_groups"]
    md = read_metadata(r.path)
    assert md["input_kind"] == "image" and md["precision"] == "int8"
    assert r.parity.n == 83 and r.parity.agreement >= 0.97 and r.parity.max_abs_dprob <= 0.05, r.parity.summary()
    s = load(r.path)
    try:
        assert s.input_spec.kind == "image" and s.input_spec.dtype == "uint8"
        u8 = reference["u8"][:6]  # DeepGuard's own letterboxed pixels, fed as pixels
        got = s.run(normalize(u8))
    finally:
        s.close()
    with torch.no_grad():
        ref = demo_model(torch.from_numpy(normalize(u8))).numpy()
    assert np.abs(1 / (1 + np.exp(-got)) - 1 / (1 + np.exp(-ref))).max() <= 0.05


@pytest.mark.slow
def test_openvino_int8_stress_view_catches_the_range_overrun_shifted_footage_hits(openvino_int8, demo_model, shift_manifest):
    """Issue 32: the demo checkpoint's first INT8 plan passed the tail test on the calibration
    crops, yet a DFDC crop of shift/ drove backbone.blocks.6 and a patch embedding 10-23x past
    their calibrated ranges and moved P by 2.7x that set's floor. The stress view (contrast x1.5)
    shows the overrun on the guard's own images (|ΔP| past the 0.05 gate); the guard returns the
    overrun group to float, and what ships keeps decisions on shift/, which no step ever saw."""
    import torch

    from msvit.data import resolve_data
    from msvit.quantize import noise_floor
    from msvit.runtime import load, read_metadata

    ex = openvino_int8.extra
    first = ex["attempts"][0]
    assert first["stress_passed"] is False and first["passed"] is False
    assert first["stress_max_abs_dprob"] > 0.05 and first["stress_flips"] > 5, first
    assert ex["guard_passed"] is True and ex["guard_stress_passed"] is True
    assert ex["guard_stress_view"] == "contrast x1.5" and ex["guard_stress_max_abs_dprob"] <= 0.05
    assert "backbone.blocks.6" in ex["float_groups"] or "h_vit.patch_embed.proj" in ex["float_groups"]
    assert read_metadata(openvino_int8.path)["guard_stress_passed"] == "true"

    shift = resolve_data(shift_manifest, demo_model.img_size)
    with torch.no_grad():
        p32 = torch.sigmoid(demo_model(torch.from_numpy(shift.x))).numpy().reshape(-1)
    with load(openvino_int8.path, threads=2) as s:
        p8 = 1 / (1 + np.exp(-np.concatenate([s.run(shift.x[i:i + 1]) for i in range(len(shift.x))]).reshape(-1)))
    fl = noise_floor(demo_model, shift.x)
    assert np.abs(p8 - p32).max() <= fl.max_abs_dprob, (np.abs(p8 - p32).max(), fl.describe())
    assert int(((p8 >= 0.5) != (p32 >= 0.5)).sum()) <= fl.flips
