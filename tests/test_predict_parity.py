"""Acceptance: on both sample videos, per-frame P(fake) from the ONNX, OpenVINO, ExecuTorch and
TorchScript artifacts is within 1e-4 of PyTorch on the same crops, with the same video verdicts;
INT8 artifacts stay within their accuracy guard's budget.

Artifacts come from session-scoped fixtures in conftest.py when they exist (``artifact_<target>_<precision>``,
a path or an ExportResult); otherwise this module exports the FP32 ones itself (slow) and skips INT8.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from msvit.predict import Detector, create_face_detector

pytestmark = pytest.mark.slow

VIDEOS = ("western_real", "western_fake")
FP32 = {"onnx": "onnxruntime", "openvino": "openvino", "executorch": "executorch", "torchscript": "torch"}
INT8 = {"onnx": "onnxruntime", "openvino": "openvino", "executorch": "executorch"}
MAX_DPROB_INT8 = 0.05  # the guard's default --max-dprob


def _path(obj) -> Path:
    return Path(getattr(obj, "path", obj))


def _artifact(request, target: str, precision: str, tmp_path_factory, demo_model) -> Path:
    name = f"artifact_{target}_{precision}"
    try:
        return _path(request.getfixturevalue(name))
    except pytest.FixtureLookupError:
        pass
    if precision != "fp32":
        pytest.skip(f"no {name} fixture (INT8 exports need calibration; conftest provides them)")
    pytest.importorskip(FP32[target])
    from msvit.export import export

    res = export(demo_model, target, "fp32", tmp_path_factory.mktemp(f"pp-{target}"), log=None)
    return _path(res)


@pytest.fixture(scope="module")
def videos():
    paths = {v: SHARED / "data" / "videos" / f"{v}.mp4" for v in VIDEOS}
    for p in paths.values():
        if not p.exists():
            pytest.skip(f"shared test data not found: {p}")
    return paths


@pytest.fixture(scope="module")
def faces():
    from msvit.predict import detector_status

    why = detector_status("blazeface")
    if why is not None:
        pytest.skip(f"face detector not installed: {why}")
    return create_face_detector("blazeface", threads=1)


@pytest.fixture(scope="module")
def reference(demo_model, videos, faces):
    """PyTorch on the crops of 20 sampled frames per video: the batch and the predictions."""
    from msvit.predict import read_video_frames
    from msvit.runtime import from_model

    det = Detector(from_model(demo_model, threads=1), faces)
    out = {}
    for v, p in videos.items():
        frames = read_video_frames(p, 20).frames
        results = det.detect_faces(frames)
        x = det.preprocess(det.crops(frames, results))
        assert len(x) == 20
        out[v] = (x, 1 / (1 + np.exp(-det.classify(x).astype(np.float64))), det.predict_video(p, 20))
    return out


@pytest.mark.parametrize("target", list(FP32))
def test_fp32_artifact_same_frames_and_verdicts(target, request, tmp_path_factory, demo_model, reference, faces,
                                                videos):
    from msvit.runtime import load

    path = _artifact(request, target, "fp32", tmp_path_factory, demo_model)
    with load(path, threads=1) as s:
        det = Detector(s, faces)
        for v, (x, p_ref, pred_ref) in reference.items():
            p = 1 / (1 + np.exp(-det.classify(x).astype(np.float64)))
            assert np.abs(p - p_ref).max() <= 1e-4, (target, v, np.abs(p - p_ref).max())
            r = det.predict_video(videos[v], 20)
            assert r.status == "ok" and r.verdict == pred_ref.verdict
            assert [f.index for f in r.frames] == [f.index for f in pred_ref.frames]
            np.testing.assert_allclose(r.p_frames, pred_ref.p_frames, atol=1e-4)
            assert abs(r.p_fake - pred_ref.p_fake) <= 1e-4


@pytest.mark.parametrize("target", list(INT8))
def test_int8_artifact_within_guard_budget(target, request, tmp_path_factory, demo_model, reference):
    from msvit.runtime import load

    path = _artifact(request, target, "int8", tmp_path_factory, demo_model)
    with load(path, threads=1) as s:
        for v, (x, p_ref, _) in reference.items():
            p = 1 / (1 + np.exp(-np.asarray(s.run(x), np.float64).ravel()))
            assert np.abs(p - p_ref).max() <= MAX_DPROB_INT8, (target, v, np.abs(p - p_ref).max())
            from msvit.predict import aggregate

            ref_video = reference[v][2].p_fake
            if abs(ref_video - 0.5) > MAX_DPROB_INT8:  # a verdict clear of the budget must not flip
                assert (aggregate(p, "conf") >= 0.5) == (ref_video >= 0.5)
