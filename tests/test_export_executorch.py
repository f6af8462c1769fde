"""ExecuTorch (.pte, XNNPACK): FP32 parity on the eval crops, metadata round trip,
INT8 with the accuracy guard. One export per artifact kind (they take minutes on 2 cores)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("executorch")

from msvit.errors import ExportError  # noqa: E402
from msvit.export import ExportOptions, Int8Options  # noqa: E402


@pytest.fixture(scope="module")
def fp32(demo_model, eval_set, tmp_path_factory):
    from msvit.export import export

    return export(demo_model, "executorch", "fp32", tmp_path_factory.mktemp("et32"), verify_data=eval_set, log=None)


def test_fp32_parity(fp32, eval_set):
    assert fp32.status == "ok", fp32.message
    assert fp32.verified == "ran"
    assert fp32.path.suffix == ".pte" and fp32.path.is_file()
    assert fp32.parity.n == len(eval_set)
    assert fp32.parity.max_abs_dlogit <= 1e-4
    assert fp32.parity.agreement == 1.0


def test_fp32_reloads_and_metadata(fp32, demo_model, demo_weights, eval_set):
    import torch

    from msvit.model.weights import sha256_file
    from msvit.runtime import load, read_metadata

    run = load(fp32.path)
    x = eval_set.x[:2]
    got = np.concatenate([run(x[i:i + 1]) for i in range(len(x))])
    with torch.no_grad():
        ref = demo_model(torch.from_numpy(x)).numpy()
    assert got.shape == (2, 1)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    md = read_metadata(fp32.path)
    assert md["weights_sha256"] == sha256_file(demo_weights) == demo_model.weights_sha256
    assert md["target"] == "executorch" and md["precision"] == "fp32" and md["model"] == "ms_eff_vit_b0"


def test_dynamic_batch_refused(demo_model, tmp_path):
    from msvit.export import export

    with pytest.raises(ExportError, match="dynamic-batch"):
        export(demo_model, "executorch", "fp32", tmp_path, dynamic_batch=True, log=None)
    assert not any(p.suffix == ".pte" for p in tmp_path.rglob("*"))


@pytest.fixture(scope="module")
def int8(demo_model, faces_dir, eval_set, tmp_path_factory):
    """Default settings (calibration folder only: the guard verifies on its 75 images); the
    export's parity run is on eval/, which the guard never saw (issue 14)."""
    import warnings

    from msvit.export import export
    from msvit.quantize import load_calibration

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "calibrating on 60 images (< 100)"
        cal = load_calibration(faces_dir / "calib")
    with pytest.warns(UserWarning, match="weakly verified"):
        res = export(demo_model, "executorch", "int8", tmp_path_factory.mktemp("et8"), calib=cal,
                     verify_data=eval_set, options=ExportOptions(int8=Int8Options()), strict=False, log=None)
    return res, cal


@pytest.mark.slow
def test_int8_guard(int8, eval_set):
    res, cal = int8
    info = res.extra
    assert res.path is not None and res.path.is_file()
    g = info["guard"]
    assert g["n"] == info["guard_n"] == len(cal.calib) + len(cal.holdout) == 75
    assert info["guard_weakly_verified"] is True
    assert info["quantized_groups"], "nothing was quantized"
    assert info["attempts"] and len(info["attempts"]) <= 4
    # measured on the demo weights: agreement 1.000, max|ΔP| 0.002 on the 75, eval/ 0.0075 (8 of 15 groups int8)
    assert res.status == "ok", res.message
    assert info["guard_passed"] is True
    assert g["agreement"] >= 0.97
    assert g["auc_drop"] is not None and g["auc_drop"] <= 0.02
    assert res.verified == "ran" and res.parity.atol is None  # judged by decisions, not a logit atol


@pytest.mark.slow
def test_int8_default_settings_stay_within_their_gate_on_eval(int8, eval_set):
    from msvit.runtime import read_metadata

    res, _ = int8
    gate = float(read_metadata(res.path)["guard_max_dprob"])  # embedded at build time: msvit-bench reads it
    assert gate == res.extra["guard_max_dprob"] == 0.05
    assert res.extra["guard_max_dprob"] >= res.extra["guard_bound_dprob"] >= res.extra["guard"]["max_abs_dprob"]
    assert res.parity.n == len(eval_set) == 83
    assert res.parity.max_abs_dprob <= gate, res.parity.summary()


def test_int8_metadata(int8):
    import json

    from msvit.runtime import read_metadata

    res, cal = int8
    md = read_metadata(res.path)
    assert md["precision"] == "int8" and md["calib_sha256"] == cal.sha256
    assert json.loads(md["quantized_groups"]) == res.extra["quantized_groups"]
    assert "XNNPACKQuantizer" in md["quant_tool"]
