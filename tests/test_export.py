"""msvit-export: ONNX, TensorRT (up to the builder), OpenVINO, TorchScript-mobile;
parity on real crops, embedded metadata, atomic writes, and every bad input."""
from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import msvit
from msvit.errors import CalibrationError, ExportError
from msvit.export import ExportOptions, export
from msvit.runtime import load


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def onnx_fp32(demo_model, eval_set, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("SOURCE_DATE_EPOCH", "1700000000")
    return export(demo_model, "onnx", out_dir=tmp_path_factory.mktemp("onnx"), verify_data=eval_set, log=None)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_onnx_fp32_parity_on_real_crops(onnx_fp32, eval_set):
    r = onnx_fp32
    assert r.status == "ok" and r.verified == "ran"
    assert r.parity.n == len(eval_set) == 83
    assert r.parity.max_abs_dlogit <= 1e-4 and r.parity.agreement == 1.0
    assert r.path.name == "ms_eff_vit_b0_fp32.onnx" and r.size_bytes == r.path.stat().st_size


def test_onnx_metadata_graph_and_manifest(onnx_fp32, demo_model):
    import onnx

    from msvit.runtime import read_metadata

    proto = onnx.load(str(onnx_fp32.path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    assert [i.name for i in proto.graph.input] == ["image"] and [o.name for o in proto.graph.output] == ["logit"]
    md = read_metadata(onnx_fp32.path)
    assert md["weights_sha256"] == demo_model.weights_sha256
    assert md["model"] == "ms_eff_vit_b0" and md["attn_mode"] == "deepguard" and md["threshold"] == "0.5"
    assert json.loads(md["mean"]) == [0.485, 0.456, 0.406] and md["input_shape"] == "1x3x224x224"
    assert md["exported_at"] == "2023-11-14T22:13:20Z" and "onnxruntime_version" in md
    man = json.loads(onnx_fp32.manifest.read_text())
    assert man["sha256"][onnx_fp32.path.name] == _sha(onnx_fp32.path)
    assert man["result"]["parity"]["max_abs_dlogit"] == onnx_fp32.parity.max_abs_dlogit
    assert not list(onnx_fp32.path.parent.glob(".msvit-tmp-*"))  # temp dir cleaned


@pytest.mark.slow
def test_onnx_is_byte_reproducible(onnx_fp32, demo_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    again = export(demo_model, "onnx", out_dir=tmp_path, log=None)
    assert _sha(again.path) == _sha(onnx_fp32.path)


def test_onnx_runner_reload(onnx_fp32, demo_model, eval_set):
    run = load(onnx_fp32.path, threads=1)
    with torch.no_grad():
        ref = demo_model(torch.from_numpy(eval_set.x[:3])).numpy()
    np.testing.assert_allclose(np.concatenate([run(eval_set.x[i:i + 1]) for i in range(3)]), ref, atol=1e-4)


@pytest.mark.slow
def test_onnx_fp16_with_dynamic_batch_and_prob(demo_model, eval_set, tmp_path):
    import onnx
    import onnxruntime as ort

    r = export(demo_model, "onnx", "fp16", tmp_path, dynamic_batch=True, verify_data=eval_set,
               options=ExportOptions(with_prob=True), log=None)
    assert r.status == "ok" and r.path.name == "ms_eff_vit_b0_fp16_dyn.onnx"
    assert r.parity.max_abs_dlogit <= 1e-2 and r.parity.agreement >= 0.98
    proto = onnx.load(str(r.path))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)
    sess = ort.InferenceSession(str(r.path), providers=["CPUExecutionProvider"])
    logit, prob = sess.run(["logit", "prob"], {"image": eval_set.x[:5]})
    assert logit.shape == prob.shape == (5, 1)
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-logit)), atol=1e-3)


@pytest.mark.slow
def test_trt_without_gpu_writes_onnx_and_trtexec_line(demo_model, eval_set, tmp_path):
    r = export(demo_model, "trt", "fp16", tmp_path, dynamic_batch=True, verify_data=eval_set, strict=False, log=None)
    assert r.status == "unavailable"
    assert "no engine built" in r.message and "tensorrt" in r.message.lower() and "\n" not in r.message
    assert r.path.name == "ms_eff_vit_b0_fp16_dyn_trt10.onnx" and r.path.is_file()  # what the engine builds from
    assert r.parity.max_abs_dlogit <= 1e-4  # the FP32 ONNX (TensorRT 10 adds --fp16) verified in onnxruntime
    cmd = r.extra["trtexec"]
    assert cmd.startswith("trtexec --onnx=ms_eff_vit_b0_fp16_dyn_trt10.onnx") and "--fp16" in cmd
    assert "--minShapes=image:1x3x224x224" in cmd and "--maxShapes=image:16x3x224x224" in cmd
    assert not list(tmp_path.glob("*.engine"))
    with pytest.raises(msvit.errors.TargetUnavailableError):
        export(demo_model, "trt", "fp16", tmp_path / "strict", log=None)


@pytest.mark.slow
def test_openvino_fp32_and_metadata(demo_model, eval_set, tmp_path):
    from msvit.runtime import read_metadata

    r = export(demo_model, "openvino", out_dir=tmp_path, verify_data=eval_set, log=None)
    assert r.status == "ok" and r.parity.max_abs_dlogit <= 1e-4
    assert sorted(f.name for f in r.files) == ["ms_eff_vit_b0_fp32.bin", "ms_eff_vit_b0_fp32.xml"]
    md = read_metadata(r.path)
    assert md["weights_sha256"] == demo_model.weights_sha256 and md["target"] == "openvino"


@pytest.mark.slow
def test_torchscript_mobile(demo_model, eval_set, tmp_path):
    from msvit.runtime import read_metadata

    r = export(demo_model, "torchscript", out_dir=tmp_path, verify_data=eval_set, log=None)
    assert r.status == "ok" and r.path.suffix == ".ptl" and r.parity.max_abs_dlogit <= 1e-4
    md = read_metadata(r.path)
    assert md["weights_sha256"] == demo_model.weights_sha256
    assert md["mobile_optimized"] in ("true", "false")


# ---- bad input: typed errors, nothing half-written ----------------------------------

def test_unknown_target_and_precision(demo_model, tmp_path):
    with pytest.raises(ExportError, match="unknown target 'tflite'"):
        export(demo_model, "tflite", out_dir=tmp_path)
    with pytest.raises(ExportError, match="precision 'fp16' is not available for torchscript"):
        export(demo_model, "torchscript", "fp16", tmp_path)
    with pytest.raises(CalibrationError, match="--calib-data"):
        export(demo_model, "onnx", "int8", tmp_path)
    with pytest.raises(ExportError, match="use --target executorch --precision int8"):
        export(demo_model, "torchscript", "int8", tmp_path)
    assert not list(tmp_path.iterdir())


def test_b5_refused_where_it_cannot_go(tmp_path):
    b5 = msvit.ms_eff_vit_b5()
    with pytest.raises(ExportError, match="cannot hold ms_eff_vit_b5"):
        export(b5, "torchscript", out_dir=tmp_path)


def test_output_dir_not_writable(demo_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a folder should be (root ignores chmod, this it cannot)
    r = export(demo_model, "onnx", out_dir=blocker / "out", strict=False, log=None)
    assert r.status == "failed" and str(blocker) in r.message


@pytest.mark.slow
def test_disk_full_mid_write_leaves_nothing(demo_model, tmp_path, monkeypatch):
    import onnx

    real_save = onnx.save

    def full_disk(proto, path, *a, **k):
        Path(path).write_bytes(b"partial")  # some bytes made it out...
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save", full_disk)
    with pytest.raises(ExportError, match="disk full"):
        export(demo_model, "onnx", out_dir=tmp_path, log=None)
    monkeypatch.setattr(onnx, "save", real_save)
    assert list(tmp_path.iterdir()) == []  # no artifact, no manifest, no temp dir


@pytest.mark.slow
def test_artifact_and_manifest_publish_together(demo_model, tmp_path, monkeypatch):
    """Issue 13: with room for the .onnx but not for its manifest, the run used to publish the
    artifact and then say nothing was published. Now the manifest is staged beside the files
    and everything moves as one step: a failure rolls back what was moved."""
    import msvit.fileio as fileio

    real = fileio.atomic_write

    def no_room_for_json(path, write, **k):
        if str(path).endswith(".json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, write, **k)

    monkeypatch.setattr(fileio, "atomic_write", no_room_for_json)
    with pytest.raises(ExportError, match="disk full.*nothing was published"):
        export(demo_model, "onnx", out_dir=tmp_path, log=None)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(fileio, "atomic_write", real)

    old = tmp_path / "ms_eff_vit_b0_fp32.onnx"  # a move that fails half way restores what it replaced
    old.write_bytes(b"previous artifact")
    real_replace = os.replace

    def fail_on_manifest(src, dst):
        if str(dst).endswith(".onnx.json"):
            raise OSError(errno.EIO, "I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_manifest)
    with pytest.raises(ExportError, match="I/O error"):
        export(demo_model, "onnx", out_dir=tmp_path, log=None)
    monkeypatch.setattr(os, "replace", real_replace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ms_eff_vit_b0_fp32.onnx"]
    assert old.read_bytes() == b"previous artifact"


def test_manifest_is_as_readable_as_the_artifact(onnx_fp32):
    assert (onnx_fp32.manifest.stat().st_mode & 0o777) == (onnx_fp32.path.stat().st_mode & 0o777) == 0o644


@pytest.mark.slow
def test_interrupted_export_publishes_nothing(demo_model, tmp_path, monkeypatch):
    import onnx

    monkeypatch.setattr(onnx, "save", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        export(demo_model, "onnx", out_dir=tmp_path, log=None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_parity_failure_is_a_typed_error(demo_model, tmp_path, monkeypatch):
    from msvit.errors import ToleranceError
    from msvit.runtime import onnx as onnx_runtime

    class Broken(onnx_runtime.OrtSession):
        def _run(self, x):
            return super()._run(x) + 0.5

    monkeypatch.setattr(onnx_runtime, "OrtSession", Broken)
    with pytest.raises(ToleranceError, match="atol 0.0001"):
        export(demo_model, "onnx", out_dir=tmp_path, log=None)
    r = json.loads((tmp_path / "ms_eff_vit_b0_fp32.onnx.json").read_text())["result"]
    assert r["status"] == "failed" and r["parity"]["passed"] is False


# ---- CLI ------------------------------------------------------------------------------

def test_cli_help_teaches(capsys):
    from msvit.export.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for word in ("trtexec", "executorch", "--calib-data", "deprecated", "exit status"):
        assert word in out


def test_cli_bad_inputs_exit_codes(demo_weights, tmp_path, capsys):
    from msvit.export.cli import main

    assert main(["--target", "onnx", "--precision", "int8", "--weights", str(demo_weights)]) == 2
    assert "--calib-data" in capsys.readouterr().err
    assert main(["--target", "torchscript", "--precision", "fp16"]) == 2
    assert main(["--model", "ms_eff_vit_b5", "--weights", str(demo_weights), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "ms_eff_vit_b0 weights but the model is ms_eff_vit_b5" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["--target", "tflite"])


@pytest.mark.slow
def test_cli_trt_exits_nonzero_with_one_line_reason(demo_weights, tmp_path, capsys):
    from msvit.export.cli import main

    code = main(["--target", "trt", "--weights", str(demo_weights), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 3
    assert "trtexec --onnx=ms_eff_vit_b0_fp16_trt10.onnx" in out and "Traceback" not in out
    assert (tmp_path / "ms_eff_vit_b0_fp16_trt10.onnx").is_file()


@pytest.mark.slow
def test_image_input_artifact_matches_preprocess_plus_tensor_artifact(demo_model, eval_set, tmp_path, reference):
    """--input image: uint8 letterboxed NHWC pixels in, (prob, logit) out; the cast, layout change
    and normalisation are in the graph. P within 1e-4 of msvit.preprocess + the tensor model."""
    import onnxruntime as ort

    r = export(demo_model, "onnx", out_dir=tmp_path, verify_data=eval_set, options=ExportOptions(input="image"),
               log=None)
    assert r.ok and r.path.name == "ms_eff_vit_b0_fp32_img.onnx" and r.parity.max_abs_dprob <= 1e-4
    s = ort.InferenceSession(str(r.path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape) for i in s.get_inputs()] == [("image", "tensor(uint8)", [1, 224, 224, 3])]
    assert [o.name for o in s.get_outputs()] == ["prob", "logit"]
    from msvit.preprocess import normalize

    u8 = reference["u8"][:6]  # DeepGuard's own letterboxed pixels
    with torch.no_grad():
        ref_p = torch.sigmoid(demo_model(torch.from_numpy(normalize(u8)))).numpy()
    got = np.concatenate([s.run(["prob"], {"image": u8[i:i + 1]})[0] for i in range(len(u8))])
    np.testing.assert_allclose(got, ref_p, atol=1e-4)
    card = r.card.read_text()
    assert "uint8" in card and "1x224x224x3" in card and "(applied inside the graph)" in card


@pytest.mark.slow
@pytest.mark.parametrize("target", ["openvino", "executorch", "torchscript", "ort"])
def test_image_input_parity_per_target(target, demo_model, eval_set, tmp_path, reference):
    """--input image for every other target that can hold the preprocessing: uint8 NHWC pixels
    in; P(fake) within 1e-4 of msvit.preprocess + the PyTorch model, fed DeepGuard's own pixels."""
    from msvit.preprocess import normalize
    from msvit.runtime import load, read_metadata

    r = export(demo_model, target, out_dir=tmp_path, verify_data=eval_set.subset(range(8)),
               options=ExportOptions(input="image"), log=None)
    assert r.ok and r.path.stem.endswith("_fp32_img") and r.parity.max_abs_dprob <= 1e-4, r.message
    assert read_metadata(r.path)["input_kind"] == "image"
    u8 = reference["u8"][:4]
    with load(r.path) as s:
        assert (s.input_spec.kind, s.input_spec.dtype, s.input_spec.layout) == ("image", "uint8", "NHWC")
        got = s.run(normalize(u8))  # the session feeds an image-input artifact its exact pixels
    with torch.no_grad():
        ref = demo_model(torch.from_numpy(normalize(u8))).numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-got)), 1 / (1 + np.exp(-ref)), atol=1e-4)
    assert "uint8" in r.card.read_text()


def test_image_input_refused_where_it_cannot_go(demo_model, tmp_path):
    with pytest.raises(ExportError, match="Core ML packages always take an image"):
        export(demo_model, "coreml", out_dir=tmp_path, options=ExportOptions(input="image"), log=None)
    with pytest.raises(ExportError, match="--input must be one of"):
        export(demo_model, "onnx", out_dir=tmp_path, options=ExportOptions(input="nhwc"), log=None)
    assert list(tmp_path.iterdir()) == []
