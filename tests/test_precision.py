"""Execution precision (metadata, runtime, card), bf16/fp16 refusals, and ``--precision auto``."""
from __future__ import annotations

import re

import numpy as np
import pytest

from msvit.export.auto import Candidate, choose


def test_auto_picks_the_fastest_passing_assignment_with_injected_timings():
    cands = [Candidate("fp32"), Candidate("bf16", "bf16"), Candidate("int8"), Candidate("int8", "bf16")]
    ms = {"fp32": 10.0, "bf16": 5.0, "int8": 7.0, "int8+bf16": 3.0}
    passes = {"fp32": True, "bf16": True, "int8": True, "int8+bf16": False}  # the fastest fails the guard
    timed = []

    def timing(cs):
        timed.append([c.name for c in cs])
        return [ms[c.name] for c in cs]

    ch = choose(cands, lambda c: passes[c.name], timing)
    assert ch.best.candidate.name == "bf16" and ch.timed
    assert ch.speedup == pytest.approx(2.0)
    assert timed == [["fp32", "bf16", "int8"]]  # failing candidates are not timed
    # all reduced candidates fail: the fp32 baseline stays
    ch = choose(cands, lambda c: c.name == "fp32", timing)
    assert ch.best.candidate.name == "fp32" and ch.speedup == pytest.approx(1.0)
    # a tie within timing noise is no reason to give up accuracy: the earlier candidate stays
    ms.update({"bf16": 9.9, "int8": 9.8})
    assert choose(cands, lambda c: passes[c.name], timing).best.candidate.name == "fp32"
    ms.update({"int8": 9.0})
    assert choose(cands, lambda c: passes[c.name], timing).best.candidate.name == "int8"
    # the baseline is kept even when its own guard says no: it is what the model is
    assert choose(cands[:1], lambda c: False, timing).best.candidate.name == "fp32"


def test_auto_untimed_device_maximises_int8_share_under_the_guard():
    cands = [Candidate("fp32"), Candidate("int8")]
    share = {"fp32": 0.0, "int8": 0.48}
    ch = choose(cands, lambda c: True, None, share=lambda c: share[c.name])
    assert ch.best.candidate.name == "int8" and not ch.timed and ch.speedup is None
    ch = choose(cands, lambda c: c.name == "fp32", None, share=lambda c: share[c.name])
    assert ch.best.candidate.name == "fp32"


def _cli(args, capsys):
    from msvit.export.cli import main

    rc = main(args)
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("args, code, words", [
    (["--target", "executorch", "--precision", "bf16"], 2, "not available for executorch"),
    (["--target", "trt", "--precision", "auto"], 2, "auto is not available for trt"),
    (["--target", "trt", "--precision", "auto", "--device-class", "phone"], 2, "auto is not available"),
    (["--target", "openvino", "--precision", "auto", "--device-class", "phone"], 2, "do not run on phones"),
])
def test_unsupported_precision_is_refused_before_any_work(tmp_path, capsys, args, code, words):
    out = tmp_path / "out"
    rc, err = _cli([*args, "--out", str(out)], capsys)
    assert rc == code and words in err
    assert not out.exists() or not any(out.iterdir())


def test_unknown_precision_exits_2(tmp_path):
    from msvit.export.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--target", "onnx", "--precision", "bf8", "--out", str(tmp_path)])
    assert e.value.code == 2


def test_precision_this_cpu_cannot_execute_is_refused_with_the_reason(tmp_path, capsys):
    pytest.importorskip("openvino")
    from msvit.runtime.precision import can_execute

    if can_execute("openvino", "bf16")[0]:
        pytest.skip("this CPU executes OpenVINO bf16")
    rc, err = _cli(["--target", "openvino", "--precision", "bf16", "--out", str(tmp_path / "o")], capsys)
    assert rc == 3 and "bf16 needs AVX512_BF16 or AMX" in err and "this CPU has" in err
    assert not (tmp_path / "o").exists()


def _tiny_ir(path, exec_precision=None):
    """A 1-op OpenVINO IR with msvit metadata: enough to check what the runtime compiles."""
    ov = pytest.importorskip("openvino")
    import openvino.opset13 as ops

    from msvit.runtime.openvino import set_metadata

    x = ops.parameter([1, 3, 224, 224], ov.Type.f32, name="image")
    y = ops.reduce_mean(x, [1, 2, 3], keep_dims=False)
    logit = ops.reshape(y, [1, 1], False)
    logit.output(0).get_tensor().set_names({"logit"})
    m = ov.Model([logit], [x], "tiny")
    meta = {"precision": "fp32", "input_shape": "1x3x224x224"}
    if exec_precision:
        meta["exec_precision"] = exec_precision
    set_metadata(m, meta)
    ov.save_model(m, str(path))
    return path


def test_openvino_runtime_applies_the_recorded_exec_precision(tmp_path):
    from msvit import runtime
    from msvit.errors import TargetUnavailableError
    from msvit.runtime.precision import can_execute

    with runtime.load(_tiny_ir(tmp_path / "old.xml")) as s:  # nothing recorded: f32, as always verified
        assert s.exec_precision == "fp32"
        assert str(s.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32", "float32")
    path = _tiny_ir(tmp_path / "bf.xml", "bf16")
    if can_execute("openvino", "bf16")[0]:
        with runtime.load(path) as s:
            assert s.exec_precision == "bf16"
            # OpenVINO spells the compiled hint "<Type: 'bfloat16'>"
            assert "bfloat16" in str(s.compiled.get_property("INFERENCE_PRECISION_HINT"))
    else:
        with pytest.raises(TargetUnavailableError, match="bf16 needs"):
            runtime.load(path)


@pytest.mark.slow
def test_openvino_card_snippet_runs_the_numerics_msvit_verified(demo_model, tmp_path, eval_inputs):
    """Parse the card's Python snippet, run it as an app would, compare with msvit.runtime."""
    pytest.importorskip("openvino")
    from msvit import runtime
    from msvit.export import export

    r = export(demo_model, "openvino", "fp32", tmp_path, log=None)
    card = r.card.read_text()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert '{"INFERENCE_PRECISION_HINT": "f32"}' in code
    assert "ov::hint::inference_precision(ov::element::f32)" in card  # the C++ line sets the same
    assert "**fp32**" in card and runtime.read_metadata(r.path)["exec_precision"] == "fp32"
    x = np.ascontiguousarray(eval_inputs[:1])
    ns = {"x": x}
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(code, ns)
    finally:
        os.chdir(cwd)
    snippet = np.asarray(ns["out"][0]).reshape(-1)
    with runtime.load(r.path) as s:
        verified = s.run(x).reshape(-1)
    np.testing.assert_allclose(snippet, verified, atol=1e-6)


@pytest.mark.slow
def test_fp16_onnx_reloads_with_its_recorded_precision_and_is_guarded(demo_model, tmp_path):
    pytest.importorskip("onnxruntime")
    from msvit import runtime
    from msvit.export import export

    r = export(demo_model, "onnx", "fp16", tmp_path, log=None)
    assert r.ok and r.extra["guard_passed"] and r.extra["guard"]["n"] == 8
    with runtime.load(r.path) as s:
        assert s.exec_precision == "fp16" and s.metadata["precision"] == "fp16"
    card = r.card.read_text()
    assert "**fp16**" in card and "fp16 types" in card


def test_fp16_under_the_floor_gate_measures_the_floor_of_its_own_verification_images(demo_model, tmp_path):
    """--max-dprob floor on a float precision: the guard measures FP32's noise floor on the
    images it judges (it crashed with 'needs the noise floor' before) and records it."""
    pytest.importorskip("onnxruntime")
    from msvit.export import ExportOptions, export
    from msvit.quantize import Int8Options
    from msvit.quantize.floor import noise_floor

    r = export(demo_model, "onnx", "fp16", tmp_path, log=None,
               options=ExportOptions(int8=Int8Options(max_dprob="floor")))
    assert r.ok and r.extra["guard_gate"] == "floor" and r.extra["guard"]["n"] == 8
    from msvit.data import resolve_data

    floor = noise_floor(demo_model, resolve_data(None, demo_model.img_size).x)
    assert r.extra["noise_floor_max_dprob"] == pytest.approx(floor.max_abs_dprob, abs=1e-6)
    assert r.extra["guard_max_dprob"] == pytest.approx(floor.max_abs_dprob, abs=1e-6)
    assert r.extra["guard"]["floor_ratio"] <= 1.0


@pytest.mark.slow
def test_executorch_fp16_is_judged_by_the_guard_and_reloads_with_its_precision(demo_model, tmp_path):
    """XNNPACK fp16 runs on this CPU; on this model it moves decisions (confident fixture: max |ΔP|
    0.40 on the calibration images), so the guard must say so and the artifact be marked failing."""
    pytest.importorskip("executorch")
    from msvit import runtime
    from msvit.export import export
    from msvit.runtime.precision import can_execute

    if not can_execute("executorch", "fp16")[0]:
        pytest.skip("this CPU has no F16C / fp16")
    r = export(demo_model, "executorch", "fp16", tmp_path, log=None, strict=False)
    g = r.extra["guard"]
    assert g["n"] == 8 and r.parity.max_abs_dlogit > 0  # fp16 arithmetic ran: not bit-equal to fp32
    assert r.ok == (g["passed"] and r.parity.passed)
    with runtime.load(r.path) as s:  # published either way (failing ones marked so in the manifest)
        assert s.exec_precision == "fp16" and s.metadata["precision"] == "fp16"
