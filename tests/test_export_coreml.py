"""Core ML (.mlpackage): on Linux the package is verified structurally (no Core ML
runtime); one conversion per precision tested (about a minute each on 2 cores)."""
from __future__ import annotations

import importlib.util
import platform

import pytest

from msvit.export import export


def test_unavailable_without_coremltools(demo_model, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "coremltools" else real(name, *a, **k))
    out = tmp_path / "out"
    res = export(demo_model, "coreml", "fp16", out, strict=False, log=None)
    assert res.status == "unavailable"
    assert "pip install 'msvit[coreml]'" in res.message and "coremltools" in res.message
    assert res.path is None and not res.files
    assert not out.exists() or not any(out.iterdir())


pytestmark_ct = pytest.mark.skipif(importlib.util.find_spec("coremltools") is None, reason="coremltools missing")


@pytest.mark.skipif(platform.system() == "Darwin", reason="W8A8 calibration runs on macOS")
@pytestmark_ct
def test_w8a8_unavailable_off_macos(demo_model, tmp_path):
    res = export(demo_model, "coreml", "int8", tmp_path, calib="unused-off-macos", strict=False, log=None)
    assert res.status == "unavailable"
    assert "macOS" in res.message and "int8-weights" in res.message
    assert not any(p.name.endswith(".mlpackage") for p in tmp_path.rglob("*"))


@pytestmark_ct
def test_batch_refused(demo_model, tmp_path):
    from msvit.errors import ExportError

    with pytest.raises(ExportError, match="one image per prediction"):
        export(demo_model, "coreml", "fp16", tmp_path, dynamic_batch=True, log=None)


@pytest.fixture(scope="module", params=["fp16", "int8-weights"])
def coreml_result(request, demo_model, tmp_path_factory):
    if importlib.util.find_spec("coremltools") is None:
        pytest.skip("coremltools missing")
    return export(demo_model, "coreml", request.param, tmp_path_factory.mktemp("cm"), log=None)


def test_structure(coreml_result, demo_model):
    from msvit.runtime.coreml import inspect, read_metadata

    r = coreml_result
    assert r.status == "ok", r.message
    assert r.path.name.endswith(".mlpackage") and r.path.is_dir()
    if platform.system() != "Darwin":
        assert r.verified == "structure" and r.parity is None
    s = r.extra["structure"]
    assert s["inputs"] == {"image": "imageType"}
    assert s["image"] == {"width": 224, "height": 224, "color_space": "RGB"}
    assert s["outputs"]["prob_fake"] == [1, 1]
    md = read_metadata(r.path)
    assert md["weights_sha256"] == demo_model.weights_sha256
    assert md["model"] == "ms_eff_vit_b0" and md["precision"] == r.precision
    info = inspect(r.path)
    dt = info["const_tensor_dtypes"]
    assert dt.get("FLOAT16") and not dt.get("FLOAT32")
    if r.precision == "fp16":
        assert not info["constexpr_ops"]
    else:
        assert info["constexpr_ops"].get("constexpr_affine_dequantize", 0) > 50
        assert "int8" in md["weight_compression"]
    assert (r.path.parent / (r.path.name + ".json")).is_file()  # manifest beside the package
