"""Shared fixtures. Real data comes from ``../shared`` (face crops, demo weights,
DeepGuard reference logits); tests needing it skip with a reason when it is absent."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MSVIT_SHARED", ROOT.parent / "shared"))
FACES = SHARED / "data" / "faces"
DEMO_WEIGHTS = SHARED / "weights" / "ms_eff_vit_b0_demo.bin"
REFERENCE = FACES / "reference"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared test data not found: {path}")
    return path


@pytest.fixture(scope="session")
def demo_weights() -> Path:
    return _need(DEMO_WEIGHTS)


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return _need(FACES)


@pytest.fixture(scope="session")
def shift_manifest() -> Path:
    """../shared/data/shift/: 110 face crops from other public sources (its README)."""
    return _need(SHARED / "data" / "shift" / "manifest.csv")


@pytest.fixture(scope="session")
def reference() -> dict:
    """DeepGuard 1.1.1's own letterboxed uint8 inputs and logits for eval/."""
    ref = json.loads((_need(REFERENCE) / "eval_ref.json").read_text())
    ref["u8"] = np.load(REFERENCE / "eval_u8.npz")["u8"]
    return ref


@pytest.fixture(scope="session")
def eval_inputs(reference) -> np.ndarray:
    from msvit.preprocess import normalize

    return normalize(reference["u8"])


@pytest.fixture(scope="session")
def demo_model(demo_weights):
    import msvit

    return msvit.ms_eff_vit_b0(weights=demo_weights)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Weights/INT8-plan caches live in a per-run temp dir, never in ~/.cache."""
    os.environ["MSVIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("msvit-cache"))
    yield


@pytest.fixture(scope="session")
def eval_set(faces_dir):
    from msvit.data import load_images

    return load_images(faces_dir / "eval")


@pytest.fixture(scope="session")
def exported_all(demo_weights, faces_dir, tmp_path_factory) -> Path:
    """`msvit-export --target all` once per test run (demo weights, verified on eval/):
    what runtime, predict and bench tests open. TensorRT exits 'unavailable' here, which
    --target all reports without failing."""
    from msvit.export.cli import main

    out = tmp_path_factory.mktemp("all-artifacts")
    rc = main(["--target", "all", "--weights", str(demo_weights), "--out", str(out),
               "--verify-data", str(faces_dir / "eval")])
    assert rc == 0, f"msvit-export --target all exited {rc}"
    return out


# ---- artifacts shared across modules (each exported once per test run) ----------------

def _in(folder: Path, name: str) -> Path:
    p = folder / name
    assert p.exists(), f"{name} missing from msvit-export --target all"
    return p


@pytest.fixture(scope="session")
def artifact_onnx_fp32(exported_all) -> Path:
    return _in(exported_all, "ms_eff_vit_b0_fp32.onnx")


@pytest.fixture(scope="session")
def artifact_openvino_fp32(exported_all) -> Path:
    return _in(exported_all, "ms_eff_vit_b0_fp32.xml")


@pytest.fixture(scope="session")
def artifact_executorch_fp32(exported_all) -> Path:
    return _in(exported_all, "ms_eff_vit_b0_fp32.pte")


@pytest.fixture(scope="session")
def artifact_torchscript_fp32(exported_all) -> Path:
    return _in(exported_all, "ms_eff_vit_b0_fp32.ptl")


@pytest.fixture(scope="session")
def calib_set(faces_dir):
    from msvit.quantize import load_calibration

    return load_calibration(faces_dir / "calib")


def _int8_default(target: str, demo_model, calib_set, tmp_path_factory):
    """INT8 as a user gets it with default settings: the calibration folder only, no --verify-data."""
    from msvit.export import export

    return export(demo_model, target, "int8", tmp_path_factory.mktemp(f"int8-{target}"), calib=calib_set,
                  log=None, strict=False)


@pytest.fixture(scope="session")
def artifact_onnx_int8(demo_model, calib_set, tmp_path_factory):
    return _int8_default("onnx", demo_model, calib_set, tmp_path_factory)


@pytest.fixture(scope="session")
def artifact_openvino_int8(demo_model, calib_set, tmp_path_factory):
    return _int8_default("openvino", demo_model, calib_set, tmp_path_factory)


@pytest.fixture(scope="session")
def artifact_executorch_int8(demo_model, calib_set, tmp_path_factory):
    return _int8_default("executorch", demo_model, calib_set, tmp_path_factory)


@pytest.fixture
def refuses_truncations(tmp_path):
    """``check(data, suffix, cuts, *openers)``: every opener raises ArtifactError on each cut-short
    copy of ``data`` (the first one with a message naming why), nothing reaches a C++ loader."""
    from msvit.errors import ArtifactError

    def check(data: bytes, suffix: str, cuts, *openers) -> None:
        for cut in cuts:
            bad = tmp_path / f"cut{cut}{suffix}"
            bad.write_bytes(data[:cut])
            with pytest.raises(ArtifactError, match="empty|too small|truncated|corrupt"):
                openers[0](bad)
            for opener in openers[1:]:
                with pytest.raises(ArtifactError):
                    opener(bad)
    return check


# ---- the fast loop: `bash scripts/test.sh --fast` runs `-m "not slow"` ---------------------

#: fixtures that export or convert a model (tens of seconds to minutes on 2 cores, here and in
#: the test modules): every test that uses one is slow, as is every test using an artifact_* one
SLOW_FIXTURES = frozenset({"exported_all", "onnx_dir", "onnx_fp32", "coreml_result", "fp32", "fp16", "float_bytes",
                           "onnx_int8", "openvino_int8", "int8",
                           "onnx_path", "converted"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(item.fixturenames)
        if names & SLOW_FIXTURES or any(n.startswith("artifact_") for n in names):
            item.add_marker(pytest.mark.slow)
