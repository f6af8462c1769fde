"""msvit.runtime: every artifact `msvit-export --target all` writes opens with one load(),
reproduces its manifest's parity and carries its metadata; bad files give clear errors."""
from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from msvit import runtime
from msvit.errors import ArtifactError, DataError, TargetUnavailableError


def _manifests(folder: Path) -> dict[str, dict]:
    return {p.name[:-5]: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def test_every_exported_artifact_loads_and_reproduces_its_parity(exported_all, demo_model, eval_set):
    with torch.no_grad():
        ref = demo_model(torch.from_numpy(eval_set.x)).numpy()
    seen = set()
    for name, man in _manifests(exported_all).items():
        path, res = exported_all / name, man["result"]
        fmt = runtime.detect_format(path)
        seen.add(fmt.name if man["metadata"]["target"] != "trt" else "trt")
        if fmt.name == "coreml" and platform.system() != "Darwin":
            with pytest.raises(TargetUnavailableError, match="macOS"):
                runtime.load(path)
            assert runtime.read_metadata(path)["weights_sha256"] == demo_model.weights_sha256
            continue
        with runtime.load(path, threads=2) as s:
            got = s.run(eval_set.x)
            assert got.shape == (len(eval_set), 1) and got.dtype == np.float32
            d = np.abs(got.astype(np.float64) - ref)
            recorded = res["parity"]
            assert recorded["n"] == len(eval_set)
            assert d.max() == pytest.approx(recorded["max_abs_dlogit"], rel=1e-3, abs=1e-6), name
            assert s.metadata == runtime.read_metadata(path)
            for key in ("model", "precision", "weights_sha256", "input_shape", "threshold"):
                assert s.metadata[key] == man["metadata"][key], (name, key)
            assert s.batch == 1 and s.input_size == 224 and s.threshold == 0.5
    assert {"onnx", "trt", "coreml", "torchscript", "openvino", "executorch"} <= seen


def test_static_batch_sessions_take_any_batch(exported_all, eval_set):
    with runtime.load(exported_all / "ms_eff_vit_b0_fp32.onnx") as s:
        assert s.batch == 1
        one_by_one = np.concatenate([s.run(eval_set.x[i:i + 1]) for i in range(5)])
        np.testing.assert_array_equal(s.run(eval_set.x[:5]), one_by_one)  # chunked, last chunk padded
        assert s.run(eval_set.x[:0]).shape == (0, 1)
        with pytest.raises(DataError, match=r"takes \(N, 3, 224, 224\)"):
            s.run(np.zeros((2, 3, 100, 100), np.float32))


def test_from_model_is_the_reference(demo_model, eval_set):
    s = runtime.from_model(demo_model)
    with torch.no_grad():
        ref = demo_model(torch.from_numpy(eval_set.x[:4])).numpy()
    np.testing.assert_array_equal(s.run(eval_set.x[:4]), ref)
    assert s.batch is None and s.metadata["model"] == "ms_eff_vit_b0" and s.format == "torch"


@pytest.mark.parametrize("suffix", [".onnx", ".xml", ".pte", ".ptl"])
def test_truncated_artifact_is_a_clear_error(exported_all, tmp_path, suffix):
    src = next(p for p in exported_all.glob(f"*{suffix}") if "trt" not in p.name)
    dst = tmp_path / src.name
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 3])
    if suffix == ".xml":
        shutil.copy(src.with_suffix(".bin"), dst.with_suffix(".bin"))
    with pytest.raises(ArtifactError, match=dst.name):
        runtime.load(dst)


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(ArtifactError, match="no such file"):
        runtime.load(tmp_path / "missing.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ArtifactError, match="empty file"):
        runtime.load(tmp_path / "empty.onnx")
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="unknown artifact type '.h5'"):
        runtime.load(tmp_path / "model.h5")
    (tmp_path / "lone.xml").write_text("<net/>")
    with pytest.raises(ArtifactError, match="lone.bin is missing"):
        runtime.load(tmp_path / "lone.xml")
    (tmp_path / "x.engine").write_bytes(b"ab")
    with pytest.raises(ArtifactError, match="too short"):
        runtime.read_metadata(tmp_path / "x.engine")
    with pytest.raises(ValueError, match="threads"):
        runtime.load(tmp_path / "empty.onnx", threads=0)


def test_every_artifact_has_a_card_stating_its_own_metadata(exported_all):
    from msvit.export.card import card_facts

    for name, man in _manifests(exported_all).items():
        card = (exported_all / f"{name}.md").read_text()
        meta = runtime.read_metadata(exported_all / name)
        assert card.startswith(f"# {name}")
        for key, value in card_facts(meta).items():
            if key in ("weights_sha256",):
                assert value[:16] in card, (name, key)
            else:
                assert value in card, (name, key, value)
        assert "Letterbox" in card and "## Use" in card and f'"{name}"' in card
