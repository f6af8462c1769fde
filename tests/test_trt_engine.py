"""TensorRT engine planning, trtexec lines, engine headers and compatibility checks (no TensorRT needed)."""

from __future__ import annotations

import json
import shlex
import sys
import types
from pathlib import Path

import pytest

from msvit.export import trt_engine as tb  # noqa: E402  (planning and building)
from msvit.runtime import tensorrt as rt  # noqa: E402  (probing, engine header, loading)

FAKE_ENGINE = b"ftrt" + bytes(range(256)) * 4  # raw TensorRT plans start with the b"ftrt" magic


# ---------------------------------------------------------------- plan_build


@pytest.mark.parametrize("ver", ["10.0.1", "10.3.0.26", "10.13.2"])
def test_plan_trt10(ver: str) -> None:
    fp32 = tb.plan_build(ver, "fp32", dynamic_batch=False, max_batch=1, batch=1)
    assert (fp32.trt_major, fp32.strongly_typed, fp32.builder_flags, fp32.onnx_kind) == (10, True, [], "fp32")
    assert fp32.profile is None

    fp16 = tb.plan_build(ver, "FP16", dynamic_batch=False, max_batch=1, batch=1)
    assert fp16.precision == "fp16"
    assert fp16.builder_flags == ["FP16"] and fp16.strongly_typed is False and fp16.onnx_kind == "fp32"

    int8 = tb.plan_build(ver, "int8", dynamic_batch=False, max_batch=1, batch=1)
    assert int8.builder_flags == [] and int8.strongly_typed is True and int8.onnx_kind == "qdq"


@pytest.mark.parametrize("ver", ["11.0.0", "11.4.1.3"])
@pytest.mark.parametrize("precision,kind", [("fp32", "fp32"), ("fp16", "fp16"), ("int8", "qdq")])
def test_plan_trt11_is_always_strongly_typed_without_flags(ver: str, precision: str, kind: str) -> None:
    p = tb.plan_build(ver, precision, dynamic_batch=False, max_batch=1, batch=1)
    assert p.trt_major == 11
    assert p.strongly_typed is True
    assert p.builder_flags == []
    assert p.onnx_kind == kind


@pytest.mark.parametrize("ver", ["10.8.0", "11.1.0"])
def test_plan_dynamic_batch_profile(ver: str) -> None:
    p = tb.plan_build(ver, "fp16", dynamic_batch=True, max_batch=32, batch=8, input_hw=(224, 224))
    assert p.profile == {"input": "image", "min": [1, 3, 224, 224], "opt": [8, 3, 224, 224], "max": [32, 3, 224, 224]}
    q = tb.plan_build(ver, "fp32", dynamic_batch=True, max_batch=4, batch=1, input_name="x", input_hw=(256, 192))
    assert q.profile == {"input": "x", "min": [1, 3, 256, 192], "opt": [1, 3, 256, 192], "max": [4, 3, 256, 192]}


@pytest.mark.parametrize(
    "args",
    [
        ("10.0.0", "int4"),
        ("10.0.0", "bf16"),
        ("8.6.1", "fp32"),
        ("9.3.0", "fp16"),
        ("garbage", "fp32"),
    ],
)
def test_plan_rejects(args: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        tb.plan_build(*args, dynamic_batch=False, max_batch=1, batch=1)


def test_plan_rejects_bad_batches() -> None:
    with pytest.raises(ValueError):
        tb.plan_build("10.0.0", "fp32", dynamic_batch=True, max_batch=4, batch=8)
    with pytest.raises(ValueError):
        tb.plan_build("10.0.0", "fp32", dynamic_batch=False, max_batch=1, batch=0)


def test_plan_is_json_serializable() -> None:
    p = tb.plan_build("11.0.0", "int8", dynamic_batch=True, max_batch=16, batch=4)
    assert json.loads(json.dumps(tb.plan_as_dict(p)))["onnx_kind"] == "qdq"


# ---------------------------------------------------------------- trtexec_command


def test_trtexec_trt10_fp16_dynamic() -> None:
    p = tb.plan_build("10.3.0", "fp16", dynamic_batch=True, max_batch=16, batch=4, workspace_bytes=2 << 30)
    cmd = tb.trtexec_command("m.onnx", "m.engine", p)
    argv = shlex.split(cmd)
    assert argv[0] == "trtexec"
    assert "--onnx=m.onnx" in argv and "--saveEngine=m.engine" in argv
    assert "--fp16" in argv
    assert "--stronglyTyped" not in argv  # weak typing: flags and strong typing are exclusive
    assert "--minShapes=image:1x3x224x224" in argv
    assert "--optShapes=image:4x3x224x224" in argv
    assert "--maxShapes=image:16x3x224x224" in argv
    assert "--memPoolSize=workspace:2048M" in argv


def test_trtexec_trt10_int8_static() -> None:
    p = tb.plan_build("10.3.0", "int8", dynamic_batch=False, max_batch=1, batch=1)
    argv = shlex.split(tb.trtexec_command("m_qdq.onnx", "m.engine", p))
    assert "--stronglyTyped" in argv
    assert not any(a in argv for a in ("--int8", "--fp16", "--best"))
    assert not any(a.startswith(("--minShapes", "--optShapes", "--maxShapes")) for a in argv)
    assert "--memPoolSize=workspace:1024M" in argv


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_trtexec_trt11_has_no_precision_flags(precision: str) -> None:
    p = tb.plan_build("11.0.0", precision, dynamic_batch=True, max_batch=8, batch=8)
    argv = shlex.split(tb.trtexec_command("model.onnx", "out.engine", p))
    assert not any(a in argv for a in ("--fp16", "--int8", "--best", "--stronglyTyped"))
    assert "--maxShapes=image:8x3x224x224" in argv


def test_trtexec_quotes_paths_with_spaces() -> None:
    p = tb.plan_build("10.3.0", "fp32", dynamic_batch=False, max_batch=1, batch=1)
    argv = shlex.split(tb.trtexec_command("my dir/m.onnx", "out dir/m.engine", p))
    assert "--onnx=my dir/m.onnx" in argv and "--saveEngine=out dir/m.engine" in argv


# ---------------------------------------------------------------- header round-trip


def test_header_roundtrip(tmp_path: Path) -> None:
    meta = {"model": "cnn_vit", "input": "image", "output": "logit", "tensorrt_version": "10.3.0", "note": "naïve ✓"}
    path = tmp_path / "sub" / "model.engine"
    rt.write_engine_file(path, FAKE_ENGINE, meta)
    got, offset = rt.read_engine_metadata(path)
    assert got == meta
    assert path.read_bytes()[offset:] == FAKE_ENGINE
    raw = path.read_bytes()
    # Ultralytics-compatible layout: int32 LE length of the JSON, JSON, engine.
    n = int.from_bytes(raw[:4], "little", signed=True)
    assert json.loads(raw[4 : 4 + n].decode()) == meta and offset == 4 + n
    assert [p.name for p in path.parent.iterdir()] == ["model.engine"]  # no leftover tmp file


def test_header_write_is_atomic_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "model.engine"
    rt.write_engine_file(path, FAKE_ENGINE, {"v": 1})

    with pytest.raises(TypeError):  # not a buffer: write fails after the header went to the tmp file
        rt.write_engine_file(path, object(), {"v": 2})
    assert rt.read_engine_metadata(path)[0] == {"v": 1}  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["model.engine"]


def test_headerless_engine(tmp_path: Path) -> None:
    path = tmp_path / "raw.engine"
    path.write_bytes(FAKE_ENGINE)
    assert rt.read_engine_metadata(path) == ({}, 0)


def test_too_short(tmp_path: Path) -> None:
    path = tmp_path / "x.engine"
    path.write_bytes(b"ab")
    with pytest.raises(ValueError):
        rt.read_engine_metadata(path)


# ---------------------------------------------------------------- compatibility


def test_check_compatibility() -> None:
    meta = {"tensorrt_version": "10.3.0", "gpu_name": "NVIDIA H100 80GB HBM3"}
    rt.check_compatibility(meta, "10.3.0", "NVIDIA  H100 80GB HBM3")  # whitespace-insensitive
    rt.check_compatibility(meta, "10.3.0", None)  # GPU unknown at runtime: not checked
    rt.check_compatibility({}, "11.0.0", "anything")  # headerless: nothing to check
    with pytest.raises(rt.EngineMismatch, match=r"TensorRT 10\.3\.0.*TensorRT 10\.4\.0"):
        rt.check_compatibility(meta, "10.4.0", "NVIDIA H100 80GB HBM3")
    with pytest.raises(rt.EngineMismatch, match="NVIDIA A100"):
        rt.check_compatibility(meta, "10.3.0", "NVIDIA A100-SXM4-80GB")
    with pytest.raises(rt.EngineMismatch) as ei:
        rt.check_compatibility(meta, "11.0.0", "NVIDIA A100-SXM4-80GB")
    assert "TensorRT" in str(ei.value) and "GPU" in str(ei.value)


def _fake_trt(version: str) -> types.ModuleType:
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version  # type: ignore[attr-defined]
    return mod


def test_load_engine_version_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.engine"
    rt.write_engine_file(path, FAKE_ENGINE, {"tensorrt_version": "10.3.0.26", "gpu_name": "NVIDIA L4"})
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt("10.9.0.34"))
    monkeypatch.setattr(rt, "current_gpu", lambda: {"gpu_name": "NVIDIA L4"})
    with pytest.raises(rt.EngineMismatch, match=r"m\.engine: built with TensorRT 10\.3\.0\.26, running TensorRT 10\.9\.0\.34"):
        rt.load_engine(path)


def test_load_engine_gpu_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.engine"
    rt.write_engine_file(path, FAKE_ENGINE, {"tensorrt_version": "11.0.0", "gpu_name": "NVIDIA L4"})
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt("11.0.0"))
    monkeypatch.setattr(rt, "current_gpu", lambda: {"gpu_name": "NVIDIA H100 80GB HBM3"})
    with pytest.raises(rt.EngineMismatch, match="built on GPU 'NVIDIA L4'"):
        rt.load_engine(path)


def test_load_engine_without_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.engine"
    rt.write_engine_file(path, FAKE_ENGINE, {"tensorrt_version": "10.3.0"})
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    with pytest.raises(rt.TensorRTUnavailable, match="tensorrt is not importable"):
        rt.load_engine(path)


# ---------------------------------------------------------------- probe


def test_probe_unavailable_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    ok, reason = rt.probe()
    assert ok is False and "tensorrt" in reason and "\n" not in reason


def test_probe_real_environment_never_raises() -> None:
    ok, reason = rt.probe()
    assert isinstance(ok, bool) and isinstance(reason, str) and reason
    try:
        import tensorrt  # noqa: F401
    except Exception:
        assert ok is False


def test_probe_tensorrt_but_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt("10.3.0"))
    monkeypatch.setattr(rt, "_gpu_count", lambda: (0, "torch"))
    assert rt.probe() == (False, "no CUDA GPU visible (checked via torch)")
    monkeypatch.setattr(rt, "_gpu_count", lambda: (1, "torch"))
    monkeypatch.setattr(rt, "current_gpu", lambda: {"gpu_name": "NVIDIA L4"})
    assert rt.probe() == (True, "TensorRT 10.3.0 on NVIDIA L4")


def test_build_engine_without_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    plan = tb.plan_build("10.3.0", "fp32", dynamic_batch=False, max_batch=1, batch=1)
    with pytest.raises(rt.TensorRTUnavailable):
        tb.build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", plan, {})
    assert not (tmp_path / "m.engine").exists()
