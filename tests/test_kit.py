"""Conformance kits (msvit.kit): written by msvit-export --kit from real images and a real video,
reloaded, checked against themselves and against another runtime of the same weights, and
deliberately wrong runs named at the stage that is wrong."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED

IMAGES = SHARED / "data" / "images"
VIDEO = SHARED / "data" / "videos" / "western_real.mp4"


@pytest.fixture(scope="module")
def onnx_fp32(demo_weights, faces_dir, tmp_path_factory) -> Path:
    """msvit-export --target onnx --kit DATA (its console entry, msvit.web.cli.export_main): the artifact and its kit."""
    if not IMAGES.is_dir() or not VIDEO.is_file():
        pytest.skip(f"needs {IMAGES} and {VIDEO}")
    from msvit.web.cli import export_main  # the msvit-export console entry

    out = tmp_path_factory.mktemp("kit-export")
    data = out.parent / "kit-data.txt"
    data.write_text(f"{IMAGES}\n{VIDEO}\n")
    rc = export_main(["--target", "onnx", "--weights", str(demo_weights), "--out", str(out),
                      "--verify-data", str(faces_dir / "eval"), "--kit", str(data)])
    assert rc == 0
    return out / "ms_eff_vit_b0_fp32.onnx"


@pytest.fixture(scope="module")
def kit_dir(onnx_fp32) -> Path:
    from msvit.kit import kit_dir_for

    d = kit_dir_for(onnx_fp32)
    assert (d / "kit.json").is_file()
    return d


def test_kit_reloads_and_records_msvit_predict(kit_dir, onnx_fp32):
    from msvit.kit import check, load, tensor_of, verify_files
    from msvit.kit.schema import read_png
    from msvit.predict import Detector
    from msvit.preprocess import normalize

    kit = load(kit_dir)
    assert kit.kind == "kit" and kit.schema == 1 and len(kit.cases) == 8
    assert {c.kind for c in kit.cases} == {"image", "video"}
    video = next(c for c in kit.cases if c.kind == "video")
    assert len(video.frames) == 20 and video.n_frames == 335 and video.source.file is not None
    assert verify_files(kit) >= 8 + 7 + 2 * 20  # sources, frames and crops decode to their checksums
    assert set(kit.tolerances) >= {"box_px", "crop_max_abs", "tensor_stat", "p_fake"}
    assert all(t.why for t in kit.tolerances.values())
    # the kit's P is msvit-predict's
    with Detector(onnx_fp32) as det:
        for c in kit.cases:
            src = kit.path(c.source.file)
            p = det.predict(str(src), num_frames=20).p_fake
            assert p == pytest.approx(c.p_fake, abs=1e-6), c.id
    # the documented tensor rule is msvit's normalisation, bit for bit
    f = video.frames[0]
    crop = read_png(kit.path(f.crop.file))
    assert np.array_equal(tensor_of(crop, kit.settings["normalize"]["mean"], kit.settings["normalize"]["std"]),
                          normalize(crop[None]))
    rep = check(kit_dir, kit_dir)
    assert rep.passed and rep.stages["letterbox"].passed == 7 + 20


def test_another_runtime_of_the_same_weights_conforms(kit_dir, demo_weights, tmp_path):
    from msvit.kit import check, run_kit

    run = run_kit(kit_dir, demo_weights, tmp_path / "run.json")  # PyTorch, isolated stages
    rep = check(kit_dir, tmp_path / "run.json")
    assert rep.passed, rep.summary()
    assert all(rep.stages[s].passed for s in ("detect", "select", "crop_box", "letterbox", "normalize", "classify",
                                              "aggregate", "end_to_end"))
    kit = json.loads((kit_dir / "kit.json").read_text())
    dp = max(abs(c["p_fake"] - r.p_fake) for c, r in zip(kit["cases"], run.cases))
    assert dp < 1e-4  # fp32 ONNX vs PyTorch


def _first(kit_dir, weights, tmp_path, **stages):
    from msvit.kit import Stages, check, run_kit

    run_kit(kit_dir, weights, tmp_path / "run.json", stages=Stages(**stages), save_crops=True)
    return check(kit_dir, tmp_path / "run.json")


def test_shifted_box_is_named_at_detect(kit_dir, demo_weights, tmp_path):
    from msvit.predict import Face

    rep = _first(kit_dir, demo_weights, tmp_path,
                 boxes=lambda faces: [Face((f.box[0] + 12, f.box[1], f.box[2] + 12, f.box[3]), f.score) for f in faces])
    assert not rep.passed and rep.first_stage == "detect", rep.summary()
    assert "face box off by 12" in rep.first_failure.what


def test_other_resize_is_named_at_letterbox(kit_dir, demo_weights, tmp_path):
    from PIL import Image

    def pil_letterbox(rgb, box, size):  # PIL's antialiased bilinear instead of OpenCV INTER_LINEAR
        x1, y1, x2, y2 = box
        c = rgb[y1:y2, x1:x2]
        h, w = c.shape[:2]
        s = size / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        out = np.zeros((size, size, 3), np.uint8)
        t, l = (size - nh) // 2, (size - nw) // 2
        out[t:t + nh, l:l + nw] = np.asarray(Image.fromarray(c).resize((nw, nh), Image.BILINEAR))
        return out

    rep = _first(kit_dir, demo_weights, tmp_path, letterbox=pil_letterbox)
    assert rep.first_stage == "letterbox", rep.summary()
    assert "max |Δ|" in rep.first_failure.what  # measured on the run's crop PNG
    assert rep.stages["detect"].failed == 0 and rep.stages["crop_box"].failed == 0


def test_wrong_normalisation_is_named_at_normalize(kit_dir, demo_weights, tmp_path):
    def zero_one(u8, mean, std):  # [0, 1] pixels, no ImageNet mean/std
        return np.ascontiguousarray(np.moveaxis(u8.astype(np.float32) / 255.0, -1, 0)[None])

    rep = _first(kit_dir, demo_weights, tmp_path, normalize=zero_one)
    assert rep.first_stage == "normalize", rep.summary()
    assert rep.stages["letterbox"].failed == 0


def test_edited_run_json_is_named_at_its_stage(kit_dir, tmp_path):
    from msvit.kit import check

    doc = json.loads((kit_dir / "kit.json").read_text())
    doc["kind"] = "run"
    for c in doc["cases"]:  # paths stay relative to the kit folder: write the run there
        for f in c["frames"]:
            f["file"] = None
    video = next(c for c in doc["cases"] if c["kind"] == "video")
    video["frames"][3]["crop_box"][0] += 40
    video["verdict"] = "fake" if video["verdict"] == "real" else "real"
    run = tmp_path / "run.json"
    run.write_text(json.dumps(doc))
    rep = check(kit_dir, run)
    assert rep.first_stage == "crop_box" and rep.first_failure.frame == video["frames"][3]["index"]
    assert any(f.stage == "aggregate" for f in rep.failures) or abs(video["p_fake"] - 0.5) <= 0.05
    del video["frames"][5]
    run.write_text(json.dumps(doc))
    assert check(kit_dir, run).first_stage == "sample"


def test_cli_exit_codes(kit_dir, tmp_path, capsys):
    from msvit.kit.cli import main

    assert main(["check", str(kit_dir), str(kit_dir / "kit.json"), "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True
    assert "PASS" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": 7, "kind": "run", "cases": []}')
    assert main(["check", str(kit_dir), str(bad)]) == 2
    assert "schema 7" in capsys.readouterr().err
    assert main(["check", str(kit_dir), str(tmp_path / "absent.json")]) == 2


def test_bad_inputs_leave_nothing(onnx_fp32, tmp_path):
    from msvit.errors import DataError, UsageError
    from msvit.kit import KitError, load, verify_files, write_kit

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no image or video"):
        write_kit(onnx_fp32, empty, tmp_path / "k1")
    fake = tmp_path / "data" / "notes.mp4"
    fake.parent.mkdir()
    fake.write_text("not a video")
    with pytest.raises(DataError, match="notes.mp4"):
        write_kit(onnx_fp32, fake.parent, tmp_path / "k2")
    assert not (tmp_path / "k1").exists() and not (tmp_path / "k2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".msvit-tmp")]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        write_kit(onnx_fp32, IMAGES / "western_real_1.jpg", busy)
    assert (busy / "keep.txt").read_text() == "mine"
    # a kit whose crop was altered is refused on reload
    k = write_kit(onnx_fp32, IMAGES / "western_real_1.jpg", tmp_path / "k3")
    crop = k.path(k.cases[0].frames[0].crop.file)
    from msvit.kit.schema import png_bytes, read_png

    px = read_png(crop).copy()
    px[100, 100] ^= 1
    crop.write_bytes(png_bytes(px))
    with pytest.raises(KitError, match="does not decode to its rgb_sha256"):
        verify_files(load(tmp_path / "k3"))
    with pytest.raises(KitError, match="no such kit"):
        load(tmp_path / "nowhere")


def test_export_kit_without_data_says_why(demo_weights, tmp_path, capsys):
    from msvit.web.cli import export_main  # the msvit-export console entry

    assert export_main(["--target", "onnx", "--weights", str(demo_weights), "--out", str(tmp_path), "--kit"]) == 2
    assert "msvit ships no sample faces" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
