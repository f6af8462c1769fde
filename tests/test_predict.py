"""msvit.predict: DeepGuard's sampling/aggregation rules, the face detector against the
manifest's crop boxes, the Detector API and msvit-predict on the shared videos and images,
and the bad-input catalogue (one test each). Fixtures are made in tmp dirs at test time."""
from __future__ import annotations

import csv
import json
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED
from PIL import Image

from msvit.errors import DataError
from msvit.predict import (
    Detector,
    FrameResult,
    aggregate,
    crop_box,
    frame_indices,
    iou,
    pipeline_stage_fns,
    select_face,
)
from msvit.predict.blazeface import BLAZEFACE, blazeface_anchors, weighted_nms
from msvit.predict.faces import Face

VIDEOS = SHARED / "data" / "videos"
IMAGES = SHARED / "data" / "images"
NUM_FRAMES = 8  # the rules are tested with 20 below; the pipeline tests sample 8 to stay fast


def _need(p: Path) -> Path:
    if not p.exists():
        pytest.skip(f"shared test data not found: {p}")
    return p


def _need_blazeface() -> None:
    from msvit.predict import detector_status

    why = detector_status("blazeface")
    if why is not None:
        pytest.skip(f"face detector not installed: {why}")


# ----------------------------------------------------------------------------- rules
def _deepguard_indices(n, k):  # DeepGuard's VideoPredictor._get_frame_indices, verbatim semantics
    return sorted(set(np.linspace(0, n - 1, num=k, endpoint=True, dtype=np.int32)))


@pytest.mark.parametrize("n,k", [(335, 20), (422, 20), (20, 20), (7, 20), (1, 20), (2, 20), (1000, 3), (5, 1)])
def test_frame_sampling_matches_deepguard(n, k):
    got = frame_indices(n, k)
    assert got == [int(i) for i in _deepguard_indices(n, k)]
    assert got == sorted(set(got)) and got[0] == 0 and got[-1] == (n - 1 if k > 1 else 0)
    if n < k:
        assert got == list(range(n))  # n < num_frames: every frame, once


def test_frame_sampling_edges():
    assert frame_indices(0, 20) == [] and frame_indices(-1, 20) == [] and frame_indices(10, 0) == []
    assert frame_indices(1, 20) == [0]
    assert frame_indices(335, 20)[:4] == [0, 17, 35, 52]


def test_aggregate_mean_and_vote_ties():
    p = [0.5, 0.5, 0.9, 0.1]
    assert aggregate(p, "mean") == pytest.approx(0.5)
    assert aggregate(p, "vote") == pytest.approx(0.25)  # P == 0.5 does not vote fake
    assert aggregate([0.5], "vote") == 0.0 and aggregate([0.5000001], "vote") == 1.0
    assert aggregate([0.5], "conf") == 0.5 and aggregate([0.5], "mean") == 0.5


def test_aggregate_conf_branches():
    # n = 20: 20 // 2.5 = 8 -> 9 confident fakes (> 0.8) take the mean of those
    p = [0.9] * 9 + [0.1] * 11
    assert aggregate(p, "conf") == pytest.approx(0.9)
    # 8 fakes is not more than 8: > 0.9 n reals? 12 < 18 -> mean of all
    p = [0.9] * 8 + [0.1] * 12
    assert aggregate(p, "conf") == pytest.approx(np.mean(p))
    # 19 of 20 below 0.2 (> 18): mean of those
    p = [0.05] * 19 + [0.7]
    assert aggregate(p, "conf") == pytest.approx(0.05)
    # exactly 18 of 20 below 0.2 is not > 18: mean of all
    p = [0.1] * 18 + [0.7, 0.7]
    assert aggregate(p, "conf") == pytest.approx(np.mean(p))
    # the thresholds are strict: 0.8 is not a confident fake, 0.2 not a confident real
    assert aggregate([0.8] * 5, "conf") == pytest.approx(0.8)
    assert aggregate([0.2] * 5, "conf") == pytest.approx(0.2)


def test_aggregate_small_n():
    assert aggregate([0.95], "conf") == pytest.approx(0.95)  # 1 > 1 // 2.5 = 0
    assert aggregate([0.1], "conf") == pytest.approx(0.1)  # 1 > 0.9
    assert aggregate([0.9, 0.1], "conf") == pytest.approx(0.9)  # 2 // 2.5 = 0: one fake is enough
    assert aggregate([0.9, 0.1, 0.1], "conf") == pytest.approx(np.mean([0.9, 0.1, 0.1]))  # 3 // 2.5 = 1.0: 1 > 1 is false
    assert aggregate([0.9, 0.9, 0.1], "conf") == pytest.approx(0.9)
    with pytest.raises(ValueError):
        aggregate([], "conf")
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate([0.5], "max")


def test_face_selection_and_crop_rules():
    faces = [Face((0, 0, 10, 10), 0.9), Face((0, 0, 40, 20), 0.49), Face((50, 50, 80, 80), 0.6)]
    sel = select_face(faces, (100, 100), conf_thres=0.5, min_face_ratio=0.01)
    assert sel.status == "ok" and sel.face.box == (50, 50, 80, 80) and sel.n_faces == 2  # 0.49 < 0.5 dropped
    assert sel.ratio == pytest.approx(0.09)
    sel = select_face(faces, (100, 100), conf_thres=0.5, min_face_ratio=0.1)
    assert sel.status == "face_too_small" and sel.face is None and sel.ratio == pytest.approx(0.09)
    assert select_face(faces, (100, 100), conf_thres=0.95).status == "no_face"
    assert select_face([], (100, 100)).status == "no_face"
    # margin 0.2 of width/height, int pads, clipped to the frame (DeepGuard's _crop_face)
    assert crop_box((100.7, 50.2, 200.9, 130.4), (720, 1280), 0.2) == (80, 34, 220, 146)
    assert crop_box((5, 5, 105, 55), (60, 100), 0.2) == (0, 0, 100, 60)
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_blazeface_anchors_and_nms():
    assert blazeface_anchors(BLAZEFACE["full"]).shape == (2304, 2)
    assert blazeface_anchors(BLAZEFACE["short"]).shape == (896, 2)
    boxes = np.asarray([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    out = weighted_nms(boxes, np.asarray([0.9, 0.6, 0.7], np.float32))
    assert len(out) == 2 and out[0][1] == pytest.approx(0.9)
    np.testing.assert_allclose(out[0][0], [0.4, 0.4, 10.4, 10.4], atol=1e-5)  # score-weighted mean


# ----------------------------------------------------------------------------- preprocessing inputs
@pytest.fixture(scope="module")
def face_rgb():
    from msvit.preprocess import load_image

    return load_image(_need(IMAGES / "western_real_1.jpg"))


def test_empty_arrays_raise_data_error():
    from msvit.preprocess import letterbox, preprocess

    for a in (np.zeros((0, 0, 3), np.uint8), np.zeros((0, 10, 3), np.uint8), np.zeros((10, 0, 3), np.uint8)):
        with pytest.raises(DataError, match="empty"):
            letterbox(a, 224)
        with pytest.raises(DataError, match="empty"):
            preprocess(a)


def test_image_modes_decode_correctly(tmp_path, face_rgb):
    from msvit.preprocess import load_image

    gray = np.asarray(Image.fromarray(face_rgb).convert("L"))
    # 16-bit PNG: read as all-white before; now the top 8 bits
    g16 = gray.astype(np.uint16) * 257
    Image.fromarray(g16).save(tmp_path / "g16.png")
    got = load_image(tmp_path / "g16.png")
    assert got.shape == (*gray.shape, 3) and np.array_equal(got[..., 0], gray)
    # grayscale, palette, RGBA (composited on black), CMYK
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert np.array_equal(load_image(tmp_path / "g.png")[..., 1], gray)
    rgba = np.dstack([face_rgb, np.full(gray.shape, 255, np.uint8)])
    rgba[:10, :, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    got = load_image(tmp_path / "a.png")
    assert np.array_equal(got[10:], face_rgb[10:]) and not got[:10].any()
    Image.fromarray(face_rgb).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == face_rgb.shape
    Image.fromarray(face_rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    got = load_image(tmp_path / "c.jpg")
    assert got.shape == face_rgb.shape and np.abs(got.astype(int) - face_rgb).mean() < 8


def test_exif_orientation_is_applied(tmp_path, face_rgb):
    from msvit.preprocess import load_image

    # stored rotated, with EXIF orientation 6 ("rotate 90 CW to display"): the upright image comes back
    stored = Image.fromarray(face_rgb).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "r.jpg", exif=exif, quality=98)
    got = load_image(tmp_path / "r.jpg")
    assert got.shape == face_rgb.shape
    assert np.abs(got.astype(int) - face_rgb).mean() < 4


# ----------------------------------------------------------------------------- face detector vs manifest
@pytest.mark.slow
def test_faces_overlap_manifest_crop_boxes():
    """Acceptance: crop boxes made the manifest's way (face box + 20% per side, clipped) overlap
    the manifest's with IoU >= 0.5 on >= 95% of the listed frames of both videos."""
    import cv2

    from msvit.predict import create_face_detector

    _need_blazeface()
    rows = list(csv.DictReader(open(_need(SHARED / "data" / "faces" / "manifest.csv"), newline="")))
    det = create_face_detector("blazeface", threads=1)
    for vid in ("western_real.mp4", "western_fake.mp4"):
        want = {int(r["frame"]): json.loads(r["bbox"]) for r in rows if r["origin"] == vid and r["frame"]}
        assert len(want) > 200
        cap = cv2.VideoCapture(str(_need(VIDEOS / vid)))
        hits = 0
        for i in range(max(want) + 1):
            assert cap.grab()
            if i in want:
                rgb = cv2.cvtColor(cap.retrieve()[1], cv2.COLOR_BGR2RGB)
                sel = select_face(det.detect(rgb), rgb.shape[:2])
                hits += sel.face is not None and iou(crop_box(sel.face.box, rgb.shape[:2], 0.2), want[i]) >= 0.5
        cap.release()
        assert hits / len(want) >= 0.95, (vid, hits, len(want))


# ----------------------------------------------------------------------------- Detector on real data
class CountingSession:
    """Wraps a Session and counts artifact calls (batching test)."""

    def __init__(self, s):
        self.s, self.calls, self.sizes = s, 0, []

    def __getattr__(self, k):
        return getattr(self.s, k)

    def run(self, x):
        self.calls += 1
        self.sizes.append(len(x))
        return self.s.run(x)


@pytest.fixture(scope="module")
def torch_session(demo_model):
    from msvit.runtime import from_model

    return CountingSession(from_model(demo_model, threads=1))


@pytest.fixture(scope="module")
def detector(torch_session):
    _need_blazeface()
    return Detector(torch_session, "blazeface", threads=1)


@pytest.fixture(scope="module")
def video_preds(detector):
    return {v: detector.predict_video(_need(VIDEOS / f"{v}.mp4"), num_frames=NUM_FRAMES, keep=True)
            for v in ("western_real", "western_fake")}


def test_predict_video_pipeline(video_preds, detector):
    for name, r in video_preds.items():
        n = {"western_real": 335, "western_fake": 422}[name]
        assert r.status == "ok" and r.kind == "video" and r.message == ""
        assert r.n_frames == n and (r.width, r.height) == (1280, 720)
        assert [f.index for f in r.frames] == frame_indices(n, NUM_FRAMES)
        assert r.frames_used == NUM_FRAMES and r.faces == NUM_FRAMES
        assert r.p_fake == pytest.approx(aggregate(r.p_frames, "conf"))
        assert r.verdict == ("fake" if r.p_fake >= detector.threshold else "real")
        for f in r.frames:
            assert f.status == "ok" and 0.01 < f.face_ratio < 0.2 and f.score >= 0.5
            x1, y1, x2, y2 = f.crop_box
            assert f.crop.shape == (y2 - y1, x2 - x1, 3) and f.frame.shape == (720, 1280, 3)
            assert f.p_fake == pytest.approx(1 / (1 + np.exp(-f.logit)))
        assert set(r.times_ms) >= {"decode", "detect", "crop", "classify", "total"}
        d = json.loads(json.dumps(r.to_dict()))
        assert d["p_fake"] == pytest.approx(r.p_fake, abs=1e-6) and len(d["frames"]) == NUM_FRAMES
        assert "frame" not in d["frames"][0] and "crop" not in d["frames"][0]


def test_one_decoder_thread_gives_the_same_frames_and_p(video_preds, torch_session):
    """A Ray actor decodes with its own CPU share (decode_threads = its --threads), not FFmpeg's
    thread per CPU: the sampled frames, boxes and P(fake) must not depend on it."""
    one = Detector(torch_session, "blazeface", threads=1, decode_threads=1)
    assert one.decode_threads == 1
    r = one.predict_video(_need(VIDEOS / "western_real.mp4"), num_frames=NUM_FRAMES, keep=True)
    ref = video_preds["western_real"]
    assert [f.index for f in r.frames] == [f.index for f in ref.frames]
    for a, b in zip(r.frames, ref.frames):
        np.testing.assert_array_equal(a.frame, b.frame)
        assert a.crop_box == b.crop_box and a.logit == b.logit
    assert r.p_fake == ref.p_fake


def test_crops_batched_in_one_call(detector, torch_session, clip):
    before = torch_session.calls
    r = detector.predict_video(clip, num_frames=5)
    assert r.frames_used == 5
    assert torch_session.calls - before == 1 and torch_session.sizes[-1] == 5


def test_same_crops_same_p_as_direct_preprocess(video_preds, demo_model):
    import torch

    from msvit.preprocess import preprocess

    r = video_preds["western_fake"]
    x = np.stack([preprocess(f.crop, 224) for f in r.frames])
    with torch.no_grad():
        ref = torch.sigmoid(demo_model(torch.from_numpy(x))).numpy().ravel()
    np.testing.assert_allclose([f.p_fake for f in r.frames], ref, atol=1e-5)


def test_tta_hflip(torch_session, clip):
    det = Detector(torch_session, "blazeface", tta_hflip=True, threads=1)
    r = det.predict_video(clip, num_frames=3)
    assert torch_session.sizes[-1] == 6  # plain + flipped, one call
    for f in r.frames:
        p0 = 1 / (1 + np.exp(-f.logit))
        assert f.p_fake == pytest.approx((p0 + f.p_fake_flip) / 2)


def test_agg_modes_on_same_frames(detector, clip):
    v = clip
    rs = {m: detector.predict_video(v, num_frames=6, agg=m) for m in ("conf", "mean", "vote")}
    p = rs["mean"].p_frames
    assert rs["mean"].p_fake == pytest.approx(p.mean())
    assert rs["vote"].p_fake == pytest.approx((p > 0.5).mean())
    assert rs["conf"].p_fake == pytest.approx(aggregate(p, "conf"))
    with pytest.raises(DataError, match="aggregation"):
        detector.predict_video(v, agg="median")


def test_predict_images(detector):
    for p in sorted(_need(IMAGES).glob("*.jpg")):
        r = detector.predict_image(p)
        assert r.status == "ok", (p, r.message)
        assert r.kind == "image" and r.frames_used == 1 and r.faces == 1 and 0 <= r.p_fake <= 1
    # arrays and PIL images too
    rgb = np.asarray(Image.open(IMAGES / "western_real_1.jpg").convert("RGB"))
    a, b = detector.predict_image(rgb), detector.predict_image(Image.fromarray(rgb))
    assert a.p_fake == pytest.approx(b.p_fake)


def test_faces_only_on_crops(torch_session, faces_dir):
    det = Detector(torch_session, None)
    crops = sorted((faces_dir / "eval" / "fake").glob("*.jpg"))[:3]
    for c in crops:
        r = det.predict_image(c)
        assert r.status == "ok" and r.frames[0].crop_box[:2] == (0, 0)
    assert det.detector_name.startswith("none")


def test_stream_from_a_video_file(detector, clip):
    r = detector.predict_stream(str(clip), num_frames=3, every=3)
    assert r.kind == "stream" and r.status == "ok" and r.message == ""
    assert [f.index for f in r.frames] == [0, 3, 6] and r.frames_used == 3


def test_pipeline_stage_fns(detector, clip):
    st = pipeline_stage_fns(detector, clip, num_frames=3)
    assert st.frames == 3 and st.faces == 3
    assert list(st.stages()) == ["decode", "detect", "crop", "classify", "end_to_end"]
    assert len(st.decode().frames) == 3
    assert len(st.detect()) == 3
    assert st.crop().shape == (3, 3, 224, 224)
    assert st.classify().shape == (3,)
    assert st.end_to_end().status == "ok"


# ----------------------------------------------------------------------------- bad inputs, one each
def _write_video(path: Path, frames: list[np.ndarray], fourcc: str = "MJPG", fps: float = 30) -> Path:
    import cv2

    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert wr.isOpened()
    for f in frames:
        wr.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    wr.release()
    return path


@pytest.fixture(scope="module")
def clip_frames(video_preds):
    """A few real 640x360 frames with a face (from the sampled frames)."""
    import cv2

    fr = [f.frame for f in video_preds["western_real"].frames]
    return [cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in fr]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, clip_frames):
    """A short real clip (8 frames of the real video, 640x360 MJPG): fast to decode."""
    return _write_video(tmp_path_factory.mktemp("clip") / "clip.avi", clip_frames)


def _box(n, typ, payload=b""):
    return struct.pack(">I4s", 8 + len(payload) + n, typ) + payload


def test_missing_file(detector, tmp_path):
    r = detector.predict_video(tmp_path / "nope.mp4")
    assert r.status == "missing" and r.p_fake is None and "no such file" in r.message
    assert detector.predict_image(tmp_path / "nope.jpg").status == "missing"


def test_truncated_video_without_index(detector, tmp_path):
    data = _need(VIDEOS / "western_real.mp4").read_bytes()
    p = tmp_path / "cut.mp4"
    p.write_bytes(data[: int(len(data) * 0.3)])
    r = detector.predict_video(p)
    assert r.status == "truncated" and r.p_fake is None and "moov" in r.message


def test_truncated_video_that_partly_decodes(detector, tmp_path, clip_frames):
    full = _write_video(tmp_path / "full.avi", clip_frames * 3)  # 24 frames, MJPG
    data = full.read_bytes()
    p = tmp_path / "half.avi"
    p.write_bytes(data[: len(data) // 2])
    r = detector.predict_video(p, num_frames=6)
    assert r.status == "truncated" and "decode" in r.message
    assert r.p_fake is not None and r.frames_used >= 1  # the readable part still counts
    assert max(f.index for f in r.frames) < 24


def test_zero_frame_videos(detector, tmp_path):
    import cv2

    for name, fourcc in (("z.mp4", "mp4v"), ("z.avi", "MJPG")):
        wr = cv2.VideoWriter(str(tmp_path / name), cv2.VideoWriter_fourcc(*fourcc), 30, (64, 64))
        wr.release()
        r = detector.predict_video(tmp_path / name)
        assert r.status == "no_frames" and r.p_fake is None, (name, r.status, r.message)


def test_audio_only_files(detector, tmp_path):
    wav = tmp_path / "voice.mp4"  # a WAV named .mp4
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(np.zeros(800, np.int16).tobytes())
    r = detector.predict_video(wav)
    assert r.status == "no_video_track" and "WAV" in r.message
    # an MP4 whose only track is sound
    hdlr = _box(0, b"hdlr", b"\0" * 8 + b"soun" + b"\0" * 13)
    moov = _box(0, b"moov", _box(0, b"trak", _box(0, b"mdia", hdlr)))
    m4a = tmp_path / "song.m4a.mp4"
    m4a.write_bytes(_box(0, b"ftyp", b"M4A \0\0\0\0M4A isom") + moov + _box(0, b"mdat", b"\0" * 64))
    r = detector.predict_video(m4a)
    assert r.status == "no_video_track" and "audio-only" in r.message


def test_text_file_named_mp4(detector, tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n")
    r = detector.predict_video(p)
    assert r.status == "unreadable" and "text file" in r.message
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert detector.predict_video(tmp_path / "empty.mp4").status == "unreadable"
    (tmp_path / "junk.mp4").write_bytes(bytes(range(256)) * 40)
    assert detector.predict_video(tmp_path / "junk.mp4").status == "unreadable"


def test_image_without_face(detector, tmp_path):
    yy, xx = np.mgrid[0:300, 0:400]
    img = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "gradient.png")
    r = detector.predict_image(tmp_path / "gradient.png")
    assert r.status == "no_face" and r.p_fake is None and r.verdict is None
    assert "--conf-thres" in r.message and "no score" in r.message


def test_face_smaller_than_min_face_ratio(detector, torch_session, tmp_path, face_rgb):
    import cv2

    small = cv2.resize(face_rgb, (300, round(300 * face_rgb.shape[0] / face_rgb.shape[1])))
    canvas = np.full((1080, 1920, 3), 90, np.uint8)
    canvas[300:300 + small.shape[0], 900:1200] = small
    Image.fromarray(canvas).save(tmp_path / "wide.jpg", quality=95)
    r = Detector(torch_session, "blazeface", min_face_ratio=0.05).predict_image(tmp_path / "wide.jpg")
    assert r.status == "face_too_small" and r.p_fake is None
    assert "--min-face-ratio" in r.message and r.max_face_ratio < 0.05
    ok = Detector(torch_session, "blazeface", min_face_ratio=r.max_face_ratio * 0.9).predict_image(tmp_path / "wide.jpg")
    assert ok.status == "ok" and ok.p_fake is not None


def test_small_face_found_by_tiles(detector, face_rgb):
    import cv2

    small = cv2.resize(face_rgb, (90, round(90 * face_rgb.shape[0] / face_rgb.shape[1])), interpolation=cv2.INTER_AREA)
    canvas = np.full((1080, 1920, 3), 90, np.uint8)
    canvas[400:400 + small.shape[0], 1000:1090] = small
    r = detector.predict_image(canvas)
    assert r.status == "face_too_small" and r.max_face_ratio < 0.01  # found (by the tile pass), then skipped
    assert "lower it" in r.message


def test_huge_image(detector, tmp_path, face_rgb):
    import cv2

    big = cv2.resize(face_rgb, (8000, 8000), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(tmp_path / "huge.jpg"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    del big
    r = detector.predict_image(tmp_path / "huge.jpg")
    assert r.status == "ok" and (r.width, r.height) == (8000, 8000)
    # over PIL's decompression-bomb limit: a clear message, not a crash
    Image.MAX_IMAGE_PIXELS, old = 10_000_000, Image.MAX_IMAGE_PIXELS
    try:
        r = detector.predict_image(tmp_path / "huge.jpg")
    finally:
        Image.MAX_IMAGE_PIXELS = old
    assert r.status == "unreadable" and "MAX_IMAGE_PIXELS" in r.message


@pytest.mark.parametrize("kind", ["gray", "rgba", "png16", "cmyk", "exif"])
def test_image_modes_predict(detector, tmp_path, face_rgb, kind):
    im = Image.fromarray(face_rgb)
    p = tmp_path / f"{kind}.{'jpg' if kind in ('cmyk', 'exif') else 'png'}"
    if kind == "gray":
        im.convert("L").save(p)
    elif kind == "rgba":
        im.convert("RGBA").save(p)
    elif kind == "png16":
        Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257).save(p)
    elif kind == "cmyk":
        im.convert("CMYK").save(p, quality=95)
    else:
        exif = Image.Exif()
        exif[0x0112] = 8  # rotate 90 CCW to display
        im.transpose(Image.Transpose.ROTATE_270).save(p, exif=exif, quality=95)
    r = detector.predict_image(p)
    assert r.status == "ok", (kind, r.message)
    ref = detector.predict_image(face_rgb)
    if kind in ("rgba", "exif", "cmyk"):
        assert iou(r.frames[0].box, ref.frames[0].box) > 0.8


def test_streams_that_end_or_cannot_open(detector, tmp_path, clip_frames):
    short = _write_video(tmp_path / "short.avi", clip_frames[:2])
    r = detector.predict_stream(str(short), num_frames=20, every=1)
    assert r.status == "ok" and r.frames_sampled == 2 and "ended" in r.message
    r = detector.predict_stream(str(tmp_path / "nothing.mp4"))
    assert r.status == "stream_unavailable" and r.p_fake is None
    (tmp_path / "t.mp4").write_text("text")
    assert detector.predict_stream(str(tmp_path / "t.mp4")).status in ("stream_unavailable", "stream_ended")


# ----------------------------------------------------------------------------- CLI
def _cli(argv, capsys):
    from msvit.predict.cli import main

    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, clip_frames, face_rgb):
    d = tmp_path_factory.mktemp("mixed")
    import shutil

    shutil.copy(_need(IMAGES / "asian_real_1.jpg"), d / "face.jpg")
    _write_video(d / "clip.avi", clip_frames[:4])
    (d / "notes.mp4").write_text("not a video")
    (d / "empty.mp4").write_bytes(b"")
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(d / "black.png")
    Image.fromarray(face_rgb).convert("RGBA").save(d / "rgba.png")
    (d / "sub").mkdir()
    Image.fromarray(np.asarray(Image.fromarray(face_rgb).convert("L")).astype(np.uint16) * 257).save(d / "sub" / "g16.png")
    (d / "README.md").write_text("ignored")
    return d


def test_cli_mixed_folder_json_csv(mixed_folder, demo_weights, tmp_path, capsys):
    j, c = tmp_path / "out.json", tmp_path / "out.csv"
    rc, out, err = _cli([mixed_folder, tmp_path / "missing.jpg", "--weights", demo_weights, "--threads", "1",
                         "--num-frames", "3", "--json", j, "--csv", c, "--save-crops", tmp_path / "crops",
                         "--annotate", tmp_path / "ann", "--no-progress"], capsys)
    assert rc == 1  # some inputs have no verdict
    doc = json.loads(j.read_text())
    st = {Path(r["source"]).name: r["status"] for r in doc["results"]}
    assert st == {"face.jpg": "ok", "clip.avi": "ok", "notes.mp4": "unreadable", "empty.mp4": "unreadable",
                  "black.png": "no_face", "rgba.png": "ok", "g16.png": "ok", "missing.jpg": "missing"}
    assert doc["ignored"] and doc["ignored"][0].endswith("README.md")
    rows = list(csv.DictReader(open(c)))
    assert len(rows) == 8 and {r["status"] for r in rows} >= {"ok", "missing", "no_face"}
    assert all(len(line) <= 100 for line in out.splitlines()), max(map(len, out.splitlines()))
    assert "P(fake)" in out and "no_face" in out
    assert len(list((tmp_path / "crops").glob("*.png"))) == 3 + 3  # 3 images with a face + 3 frames
    assert list((tmp_path / "ann").glob("0001_clip_f*.png"))
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_all_ok_exit_0_and_faces_only(faces_dir, demo_weights, tmp_path, capsys):
    crops = sorted((faces_dir / "eval" / "real").glob("*.jpg"))[:2]
    lst = tmp_path / "list.txt"
    lst.write_text("# two crops\n" + "\n".join(str(p) for p in crops) + "\n")
    rc, out, err = _cli([lst, "--weights", demo_weights, "--faces-only", "--threads", "1", "--no-progress",
                         "--threshold", "0.3"], capsys)
    assert rc == 0 and out.count(" ok ") >= 2 and "threshold 0.3" in out


def test_cli_bad_arguments_exit_2_before_any_work(demo_weights, tmp_path, capsys):
    img = _need(IMAGES / "asian_real_1.jpg")
    assert _cli([img], capsys)[0] == 2  # no model
    assert _cli([img, "--weights", demo_weights, "--artifact", "x.onnx"], capsys)[0] == 2
    assert _cli(["--weights", demo_weights], capsys)[0] == 2  # no source
    rc, out, err = _cli([img, "--weights", demo_weights, "--json", tmp_path / "no" / "dir" / "o.json"], capsys)
    assert rc == 2 and "does not exist" in err and out == ""  # validated before loading anything
    rc, out, err = _cli([img, "--weights", demo_weights, "--csv", tmp_path], capsys)
    assert rc == 2 and "folder" in err
    rc, out, err = _cli([img, "--weights", tmp_path / "nope.bin"], capsys)
    assert rc == 2 and "no such file" in err
    rc, out, err = _cli([img, "--weights", demo_weights, "--min-face-ratio", "2"], capsys)
    assert rc == 2
    with pytest.raises(SystemExit) as e:
        _cli([img, "--weights", demo_weights, "--agg", "median"], capsys)
    assert e.value.code == 2


def test_cli_unavailable_runtime_exit_3(demo_weights, tmp_path, capsys, monkeypatch):
    from msvit.errors import TargetUnavailableError
    from msvit.predict import detector as dmod

    def boom(*a, **k):
        raise TargetUnavailableError("BlazeFace needs a TFLite runtime: pip install ai-edge-litert")

    monkeypatch.setattr(dmod, "create_face_detector", boom)
    rc, out, err = _cli([_need(IMAGES / "asian_real_1.jpg"), "--weights", demo_weights], capsys)
    assert rc == 3 and "ai-edge-litert" in err


def test_cli_list_detectors(capsys, monkeypatch):
    from msvit.predict import cli, face_registry

    only = {k: v for k, v in face_registry.face_detectors().items() if k in ("blazeface", "haar")}
    monkeypatch.setattr(cli, "face_detectors", lambda: only)
    rc, out, err = _cli(["--list-detectors"], capsys)
    assert rc == 0 and "blazeface" in out and "available" in out


def test_frame_result_serialises_without_pixels():
    fr = FrameResult(3, "ok", 1, (1.0, 2.0, 3.0, 4.0), (0, 0, 5, 5), 0.9, 0.1, 0.2, 0.55,
                     frame=np.zeros((2, 2, 3), np.uint8))
    d = fr.to_dict()
    assert "frame" not in d and d["box"] == [1.0, 2.0, 3.0, 4.0] and json.dumps(d)
