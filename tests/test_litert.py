"""LiteRT (.tflite via litert-torch, run in the ai-edge-litert interpreter): FP32 parity on the
eval crops, FP16, uint8 image input, INT8 (ai-edge-quantizer) agreement, metadata round trip,
truncated files. One conversion per artifact kind (module fixtures: ~25 s each on 2 cores)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("ai_edge_quantizer")

from msvit.errors import ArtifactError, CalibrationError, ExportError  # noqa: E402

N_EVAL = 8  # images for the float parity checks (the interpreter runs batch 1)
META = {"model": "ms_eff_vit_b0", "threshold": "0.5", "target": "litert", "note": "ünïcode ok"}


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


@pytest.fixture(scope="module")
def lt_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("litert")


@pytest.fixture(scope="module")
def float_bytes(demo_model) -> bytes:
    from msvit.export.litert import convert_float_bytes

    return convert_float_bytes(demo_model, "tensor", batch=1)


@pytest.fixture(scope="module")
def ref_logits(demo_model, eval_set) -> np.ndarray:
    import torch

    with torch.no_grad():
        return demo_model(torch.from_numpy(eval_set.x)).numpy()


@pytest.fixture(scope="module")
def fp32(demo_model, float_bytes, lt_dir):
    from msvit.export.litert import convert_litert

    path = lt_dir / "b0_fp32.tflite"
    info = convert_litert(demo_model, path, "fp32", META, float_bytes=float_bytes)
    return path, info


@pytest.fixture(scope="module")
def fp16(demo_model, float_bytes, lt_dir):
    from msvit.export.litert import convert_litert

    path = lt_dir / "b0_fp16.tflite"
    return path, convert_litert(demo_model, path, "fp16", META, float_bytes=float_bytes)


def test_fp32_parity(fp32, eval_set, ref_logits):
    from msvit.runtime.litert import LiteRTSession

    path, info = fp32
    s = LiteRTSession(path, threads=2)
    assert s.batch == 1 and s.input_spec.kind == "tensor" and s.input_spec.layout == "NCHW"
    assert s.input_spec.shape == (1, 3, 224, 224)
    got = s(eval_set.x[:N_EVAL])  # N=8 through a batch-1 model: chunked by the session
    assert got.shape == (N_EVAL, 1) and got.dtype == np.float32
    assert np.abs(got - ref_logits[:N_EVAL]).max() <= 1e-4
    assert info["precision"] == "fp32" and info["size_bytes"] == path.stat().st_size
    assert info["tool_versions"]["litert-torch"] and info["tool_versions"]["ai-edge-litert"]


def test_fp16_within_1e2(fp16, fp32, eval_set, ref_logits):
    from msvit.runtime.litert import LiteRTSession

    path, info = fp16
    got = LiteRTSession(path, threads=2)(eval_set.x[:N_EVAL])
    assert np.abs(got - ref_logits[:N_EVAL]).max() <= 1e-2
    assert path.stat().st_size < 0.6 * fp32[0].stat().st_size  # float16 weights
    assert "float16" in info["quant_scheme"]


@pytest.mark.slow
def test_image_input_parity(demo_model, faces_dir, lt_dir):
    """uint8 NHWC letterboxed pixels in, (prob, logit) out; normalisation inside the graph."""
    import torch

    from msvit.data import discover
    from msvit.export.litert import convert_litert
    from msvit.preprocess import letterbox, load_image, normalize
    from msvit.runtime.litert import LiteRTSession

    path = lt_dir / "b0_image.tflite"
    info = convert_litert(demo_model, path, "fp32", META, input_kind="image")
    assert info["input_shape"] == [1, 224, 224, 3] and info["outputs"] == ["prob", "logit"]
    s = LiteRTSession(path, threads=2)
    assert s.input_spec.kind == "image" and s.input_spec.dtype == "uint8" and s.input_spec.layout == "NHWC"
    assert set(s.output_names) == {"prob", "logit"}
    files = discover(faces_dir / "eval")[0][:6]
    u8 = np.stack([letterbox(load_image(f), 224) for f in files])
    with torch.no_grad():
        ref_p = torch.sigmoid(demo_model(torch.from_numpy(normalize(u8)))).numpy()
    got_p = np.concatenate([s.run_image(u8[i])["prob"] for i in range(len(u8))])
    assert np.abs(got_p - ref_p).max() <= 1e-4
    # the Session interface (normalised float NCHW in) reaches the same pixels exactly
    assert np.abs(_sigmoid(s(normalize(u8))) - ref_p).max() <= 1e-4
    assert s.metadata["input_kind"] == "image" and s.metadata["input_shape"] == "1x224x224x3"


def test_metadata_round_trip(fp32, tmp_path):
    from msvit.export.litert import embed_metadata
    from msvit.runtime.litert import metadata_names, read_metadata

    path, info = fp32
    md = read_metadata(path)  # no interpreter: straight from the flatbuffer
    for k, v in META.items():
        assert md[k] == v
    assert md["precision"] == "fp32" and md["input_shape"] == "1x3x224x224"
    assert md["litert_torch_version"] == info["tool_versions"]["litert-torch"]
    assert md == info["metadata"]
    # replacing it keeps one entry, and the model still runs
    copy = tmp_path / "copy.tflite"
    copy.write_bytes(path.read_bytes())
    embed_metadata(copy, {"a": "1", "b": "x" * 1000})
    assert read_metadata(copy) == {"a": "1", "b": "x" * 1000}
    assert metadata_names(copy).count("msvit") == 1
    from msvit.runtime.litert import LiteRTSession

    assert LiteRTSession(copy).metadata == {"a": "1", "b": "x" * 1000}


def test_truncated_and_foreign_files(fp32, tmp_path, refuses_truncations):
    from msvit.runtime.litert import LiteRTSession, check_tflite_file, read_metadata

    data = fp32[0].read_bytes()
    refuses_truncations(data, ".tflite", (0, 6, 64, len(data) // 2, len(data) - 16), LiteRTSession, read_metadata)
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x08\x07" + b"not a flatbuffer at all" * 10)
    with pytest.raises(ArtifactError, match="TFL3"):
        check_tflite_file(junk)
    with pytest.raises(ArtifactError, match="no such file"):
        LiteRTSession(tmp_path / "missing.tflite")


def test_bad_arguments(demo_model, tmp_path):
    from msvit.export.litert import convert_litert, scope_regex

    with pytest.raises(ExportError, match="precision"):
        convert_litert(demo_model, tmp_path / "x.tflite", "int4", {})
    with pytest.raises(ExportError, match="input_kind"):
        convert_litert(demo_model, tmp_path / "x.tflite", "fp32", {}, input_kind="nhwc")
    with pytest.raises(CalibrationError):
        convert_litert(demo_model, tmp_path / "x.tflite", "int8", {})
    with pytest.raises(ExportError, match="unknown layer group"):
        scope_regex("backbone.nope")
    assert not list(tmp_path.iterdir())


def test_scope_regexes_match_the_converted_graph(fp32):
    """Every msvit layer group maps onto ops of the real flatbuffer (litert-torch's scope names)."""
    import re

    from ai_edge_litert.interpreter import Interpreter

    from msvit.export.litert import scope_regex

    it = Interpreter(model_path=str(fp32[0]))
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    scopes = [(o["op_name"], ";".join(names.get(i, "") for i in o["outputs"])) for o in it._get_ops_details()]
    weighted = [s for op, s in scopes if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]

    def hits(group):
        rx = re.compile(scope_regex(group))
        return sum(bool(rx.search(s)) for s in weighted)

    assert hits("backbone.stem") == 1
    assert [hits(f"backbone.blocks.{i}") for i in range(7)] == [4, 10, 10, 15, 15, 20, 5]
    for b in ("l_vit", "h_vit"):
        assert hits(f"{b}.patch_embed.proj") == 1 and hits(f"{b}.patch_embed.mbconv1") == 4
        assert hits(f"{b}.blocks") == 2 * (2 if b == "l_vit" else 4)
    assert hits("head") == 1  # head[1]; the final FC writes the graph output (no scope): float


@pytest.mark.slow
def test_int8_agreement(demo_model, faces_dir, float_bytes, eval_set, ref_logits, lt_dir):
    """ai-edge-quantizer static int8 on the default groups, calibrated on calib/, judged on eval/."""
    from msvit.data import load_images
    from msvit.export.litert import DEFAULT_INT8_GROUPS, convert_litert
    from msvit.runtime.litert import LiteRTSession, read_metadata

    calib = load_images(faces_dir / "calib")
    path = lt_dir / "b0_int8.tflite"
    info = convert_litert(demo_model, path, "int8", META, calib_x=calib.x, float_bytes=float_bytes, calib_limit=48)
    assert info["int8_groups"] == list(DEFAULT_INT8_GROUPS) and info["calib_images"] == 48
    got = LiteRTSession(path, threads=2)(eval_set.x)
    p0, p1 = _sigmoid(ref_logits), _sigmoid(got)
    agreement = float(np.mean((p0 > 0.5) == (p1 > 0.5)))
    max_dp = float(np.abs(p1 - p0).max())
    print(f"LiteRT INT8 vs FP32 PyTorch on eval (n={len(got)}): agreement {agreement:.3f}, max|dP| {max_dp:.4f}")
    assert agreement >= 0.97
    assert max_dp <= 0.05
    md = read_metadata(path)
    assert md["precision"] == "int8" and "static int8" in md["quant_scheme"] and md["calib_images"] == "48"
    assert path.stat().st_size < 0.8 * info["fp32_size_bytes"]
