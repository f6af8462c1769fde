"""Explanations (issue 23): msvit's maps equal pytorch-grad-cam's on DeepGuard 1.1.1's own model,
an ``--explain-outputs`` artifact gives the PyTorch EigenCAM from its outputs alone with an
unchanged logit, and the CLI writes real overlays, gives bad inputs a status and refuses what
it cannot serve before any work."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from test_deepguard_oracle import _dg_model, deepguard  # noqa: F401  (the oracle fixture)

import msvit
from msvit.errors import UsageError
from msvit.explain import (DEEPGUARD_METHODS, ArtifactExplainer, MapSpec, TorchExplainer, map_drift, map_to_crop,
                           plan_maps)

pytest.importorskip("pytorch_grad_cam", reason="pip install 'msvit[explain]'")


def test_plan_maps_defaults_and_refusals():
    assert [s.key for s in plan_maps(None, "both", gradients=True)] == [
        "low_hirescam", "low_gradcamelementwise", "low_layercam", "high_eigengradcam", "high_gradcamplusplus",
        "high_xgradcam"]
    assert [s.key for s in plan_maps(None, "high", gradients=True)] == [f"high_{m}" for m in DEEPGUARD_METHODS[3:]]
    assert [s.key for s in plan_maps(None, "both", gradients=False)] == ["low_eigencam", "high_eigencam"]
    assert [s.key for s in plan_maps(["hirescam"], "both", gradients=True)] == ["low_hirescam", "high_hirescam"]
    with pytest.raises(UsageError, match="unknown method 'gradcam'.*hirescam"):
        plan_maps(["gradcam"], "both", gradients=True)
    with pytest.raises(UsageError, match="hirescam needs gradients.*--weights.*serves: eigencam"):
        plan_maps(["hirescam"], "low", gradients=False)


def test_timing_keeps_the_first_call_apart():
    from msvit.explain.cli import _steady_ms

    # (ms per crop, crops) per call: the first pays one-time setup; the rest are weighted by crops
    assert _steady_ms([(1700.0, 1), (40.0, 3), (50.0, 1)]) == 40.0
    assert _steady_ms([(1700.0, 1), (40.0, 1), (50.0, 3)]) == 50.0
    assert _steady_ms([(90.0, 3)]) == 90.0  # one call: nothing to set apart


def test_map_to_crop_removes_the_letterbox_padding():
    from msvit.preprocess import letterbox, letterbox_geometry

    crop = np.full((150, 90, 3), 200, np.uint8)  # tall crop: padding left and right
    top, left, h, w = letterbox_geometry(150, 90, 224)
    boxed = letterbox(crop, 224)
    assert (boxed[:, :left] == 0).all() and (boxed[top:top + h, left:left + w] == 200).all()
    cam = np.ones((224, 224), np.float32)
    cam[top:top + h, left:left + w] = 0.25  # padding = 1, the crop = 0.25
    out = map_to_crop(cam, (150, 90))
    assert out.shape == (150, 90) and np.allclose(out, 0.25)
    assert map_drift(cam, cam) == pytest.approx(1.0) and map_drift(cam, -cam) == pytest.approx(-1.0)


@pytest.mark.slow
def test_maps_equal_grad_cam_on_deepguards_own_model(deepguard, demo_weights, demo_model, eval_inputs):  # noqa: F811
    from pytorch_grad_cam import EigenCAM, HiResCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    theirs = _dg_model(deepguard, applied=False)
    theirs.load_state_dict(torch.load(demo_weights, weights_only=True), strict=True)
    x = eval_inputs[:1]
    specs = [MapSpec(b, m) for b in ("low", "high") for m in ("hirescam", "eigencam")]
    ours, ms = TorchExplainer(demo_model).maps(x, specs)
    assert set(ms) == {s.key for s in specs} and all(v > 0 for v in ms.values())

    def grid_tokens(grid):  # DeepGuard's patch tokens (cls first), row-major on the branch grid
        return lambda t: t[:, 1:].reshape(t.shape[0], grid[0], grid[1], t.shape[2]).permute(0, 3, 1, 2)

    for branch, vit, grid in (("low", theirs.l_vit, (28, 28)), ("high", theirs.h_vit, (7, 7))):
        for name, cls in (("hirescam", HiResCAM), ("eigencam", EigenCAM)):
            cam = cls(model=theirs, target_layers=[vit.blocks[-1].norm1], reshape_transform=grid_tokens(grid))
            ref = cam(input_tensor=torch.from_numpy(x), targets=[BinaryClassifierOutputTarget(1)])
            got = ours[f"{branch}_{name}"]
            assert got.shape == (1, 224, 224) and got.max() == pytest.approx(1.0, abs=1e-5) and got.min() >= 0
            assert np.abs(got - ref).max() <= 1e-4, (branch, name)


@pytest.fixture(scope="module")
def explain_onnx(demo_model, tmp_path_factory):
    from msvit.export import ExportOptions, export

    out = tmp_path_factory.mktemp("explain-onnx")
    plain = export(demo_model, "onnx", out_dir=out, log=None)
    explained = export(demo_model, "onnx", out_dir=out, options=ExportOptions(explain_outputs=True), log=None)
    return plain, explained


@pytest.mark.slow
def test_explain_outputs_artifact_eigencam_and_unchanged_logit(explain_onnx, demo_model, eval_inputs):
    import msvit.runtime as rt

    plain, explained = explain_onnx
    assert explained.path.name == "ms_eff_vit_b0_fp32_explain.onnx" and explained.ok
    x = eval_inputs[:4]
    with rt.load(plain.path) as a, rt.load(explained.path) as b:
        assert a.output_names == ("logit",)
        assert b.output_names == ("logit", "low_tokens", "high_tokens")
        outs = b.run_all(x)
        assert outs["low_tokens"].shape == (4, 785, 120) and outs["high_tokens"].shape == (4, 50, 160)
        assert np.abs(a.run(x) - outs["logit"]).max() <= 1e-5  # --explain-outputs leaves the logit alone
        assert np.abs(b.run(x) - outs["logit"]).max() == 0
        info = json.loads(b.metadata["explain_outputs"])
        assert info["low_tokens"]["layer"] == "l_vit.blocks.1.norm1" and info["high_tokens"]["grid"] == [7, 7]
        specs = [MapSpec("low", "eigencam"), MapSpec("high", "eigencam")]
        art, _ = ArtifactExplainer(b, info, 224).maps(x, specs)
    ref, _ = TorchExplainer(demo_model).maps(x, specs)
    for k in ref:
        assert np.abs(art[k] - ref[k]).max() <= 1e-3, k
    card = explained.card.read_text()
    assert "low_tokens" in card and "l_vit.blocks.1.norm1" in card


def _explain(argv):
    from msvit.explain.cli import main

    return main([str(a) for a in argv])


@pytest.mark.slow
def test_cli_overlays_are_pngs_of_the_crop_and_bad_input_gets_a_status(demo_weights, faces_dir, tmp_path, capsys):
    img = faces_dir.parent / "images" / "asian_fake_1.jpg"  # 435 x 490: not square
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    out = tmp_path / "why"
    rc = _explain([img, bad, "--weights", demo_weights, "--out", out, "--faces-only", "--no-progress",
                   "--method", "eigencam", "--method", "hirescam", "--branch", "high", "--box-threshold", "0.8",
                   "--timing"])
    text = capsys.readouterr().out
    assert rc == 1  # one input without a verdict
    assert "unreadable" in text and "Traceback" not in text and "high_hirescam" in text
    index = json.loads((out / "explain.json").read_text())
    ok, broken = index["inputs"]
    assert broken["status"] == "unreadable" and broken["frames"] == []
    frame = ok["frames"][0]
    w, h = Image.open(img).size
    for key in ("high_eigencam", "high_hirescam"):
        png = Image.open(out / frame["overlays"][key])
        assert png.format == "PNG" and png.size == (w, h) and png.mode == "RGB"
    maps = np.load(out / frame["npz"])
    assert sorted(maps.files) == ["high_eigencam", "high_hirescam"]
    assert maps["high_eigencam"].shape == (224, 224) and 0 <= maps["high_eigencam"].min() < maps["high_eigencam"].max()
    assert index["ms_per_crop"].keys() == {"high_eigencam", "high_hirescam"}


@pytest.mark.slow
def test_cli_artifact_maps_with_drift(explain_onnx, demo_weights, faces_dir, tmp_path, capsys):
    _, explained = explain_onnx
    out = tmp_path / "why"
    face = faces_dir / "eval" / "fake" / "asian_fake_1.jpg"
    rc = _explain([face, "--artifact", explained.path, "--out", out, "--faces-only", "--no-progress",
                   "--reference", demo_weights])
    text = capsys.readouterr().out
    assert rc == 0 and "map drift r" in text
    frame = json.loads((out / "explain.json").read_text())["inputs"][0]["frames"][0]
    assert set(frame["map_drift"]) == {"low_eigencam", "high_eigencam"}
    assert all(r > 0.999 for r in frame["map_drift"].values())  # FP32 artifact vs its own weights


def test_cli_refuses_before_work(tmp_path, capsys, demo_weights, faces_dir):
    face = faces_dir / "eval" / "fake" / "asian_fake_1.jpg"
    fake_artifact = tmp_path / "m.onnx"
    fake_artifact.write_bytes(b"x")
    with pytest.raises(SystemExit) as e:  # argparse: names the methods that exist
        _explain([face, "--weights", demo_weights, "--out", tmp_path / "o", "--method", "gradcam"])
    assert e.value.code == 2 and "hirescam" in capsys.readouterr().err
    rc = _explain([face, "--artifact", fake_artifact, "--out", tmp_path / "o", "--method", "layercam"])
    err = capsys.readouterr().err
    assert rc == 2 and "layercam needs gradients" in err and "eigencam" in err
    assert not (tmp_path / "o").exists()  # nothing written


@pytest.mark.slow
def test_cli_refuses_artifact_without_explain_outputs(explain_onnx, faces_dir, tmp_path, capsys):
    plain, _ = explain_onnx
    face = faces_dir / "eval" / "fake" / "asian_fake_1.jpg"
    rc = _explain([face, "--artifact", plain.path, "--out", tmp_path / "o"])
    err = capsys.readouterr().err
    assert rc == 2 and "no explanation outputs" in err and "--explain-outputs" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_predict_explain_flag(demo_weights, faces_dir, tmp_path, capsys):
    from msvit.explain.cli import predict_main

    face = faces_dir / "eval" / "real" / sorted(p.name for p in (faces_dir / "eval" / "real").iterdir())[0]
    j = tmp_path / "out.json"
    rc = predict_main([str(face), "--weights", str(demo_weights), "--faces-only", "--no-progress", "--json", str(j),
                       "--explain", str(tmp_path / "why"), "--method", "eigencam", "--branch", "low"])
    assert rc == 0
    verdict = json.loads(j.read_text())["results"][0]
    entry = json.loads((tmp_path / "why" / "explain.json").read_text())["inputs"][0]
    assert entry["p_fake"] == pytest.approx(verdict["p_fake"], abs=1e-6)
    assert list(entry["frames"][0]["overlays"]) == ["low_eigencam"]
    assert Image.open(tmp_path / "why" / entry["frames"][0]["overlays"]["low_eigencam"]).size == Image.open(face).size


@pytest.mark.slow
@pytest.mark.parametrize("target", ["openvino", "executorch"])
def test_explain_outputs_other_runtimes(target, demo_model, eval_inputs, tmp_path):
    pytest.importorskip(target)
    import msvit.runtime as rt
    from msvit.export import ExportOptions, export

    res = export(demo_model, target, out_dir=tmp_path, options=ExportOptions(explain_outputs=True), log=None)
    x = eval_inputs[:2]
    with torch.no_grad():
        logit = demo_model(torch.from_numpy(x)).numpy()
    specs = [MapSpec("low", "eigencam"), MapSpec("high", "eigencam")]
    with rt.load(res.path) as s:
        outs = s.run_all(x)
        art, _ = ArtifactExplainer(s, json.loads(s.metadata["explain_outputs"]), 224).maps(x, specs)
    assert list(outs) == ["logit", "low_tokens", "high_tokens"]
    assert np.abs(outs["logit"] - logit).max() <= 1e-4
    ref, _ = TorchExplainer(demo_model).maps(x, specs)
    for k in ref:
        assert np.abs(art[k] - ref[k]).max() <= 1e-3, k


def test_explain_outputs_refused_where_not_written(demo_model, tmp_path):
    from msvit.errors import ExportError
    from msvit.export import ExportOptions, export

    with pytest.raises(ExportError, match="--explain-outputs is not available for torchscript.*onnx fp32"):
        export(demo_model, "torchscript", out_dir=tmp_path, options=ExportOptions(explain_outputs=True), log=None)
    assert not list(tmp_path.iterdir())


def test_export_cli_refuses_explain_outputs_before_work(tmp_path, capsys):
    from msvit.export.cli import main

    assert main(["--target", "litert", "--explain-outputs", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "--explain-outputs is not available for litert" in err and "openvino fp32/fp16" in err
    assert not (tmp_path / "a").exists()
