"""The seeking video reader (PyAV) gives exactly the frames of OpenCV's grab() walk."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from msvit.predict.media import read_video_frames

av = pytest.importorskip("av")
VIDEOS = SHARED / "data" / "videos"  # conftest: ../shared, or $MSVIT_SHARED


def _same(a, b) -> None:
    assert a.planned == b.planned
    assert sorted(a.frames) == sorted(b.frames) == sorted(b.planned)
    for k in b.frames:
        assert a.frames[k].dtype == np.uint8 and a.frames[k].shape == b.frames[k].shape
        assert np.array_equal(a.frames[k], b.frames[k]), f"frame {k} differs"
    assert (a.n_frames, a.width, a.height, a.fps, a.truncated) == (b.n_frames, b.width, b.height, b.fps, b.truncated)


def write_vfr(path: Path, codec: str = "libx264", n: int = 90, options: dict | None = None) -> Path:
    """A variable-frame-rate clip with explicit, irregular pts (1 ms time base) and B-frames."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=1000, options=options or {})
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        t = 0
        for i in range(n):
            img = np.zeros((240, 320, 3), np.uint8)
            img[:, (i * 3) % 320:] = (i * 7 % 255, 100, 200 - i % 200)
            img[(i * 2) % 240:(i * 2) % 240 + 20] = 255
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            fr.pts = t
            t += int(rng.choice([10, 33, 50, 100]))
            for pk in s.encode(fr):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return path


@pytest.mark.slow  # decodes two 720p clips both ways, 4 times
@pytest.mark.parametrize("name", ["western_real.mp4", "western_fake.mp4"])
@pytest.mark.parametrize("num_frames", [20, 3])
def test_seek_equals_grab_on_shared_clips(name, num_frames):
    clip = VIDEOS / name
    if not clip.is_file():
        pytest.skip(f"{clip} missing")
    _same(read_video_frames(clip, num_frames, decoder="seek"), read_video_frames(clip, num_frames, decoder="grab"))


@pytest.mark.parametrize("codec,options", [("libx264", {"g": "25", "bf": "3"}),
                                           ("libx264", {"x264-params": "open-gop=1:keyint=30"}),
                                           ("mpeg4", {"g": "12", "bf": "2"})])
def test_seek_equals_grab_on_variable_frame_rate(tmp_path, codec, options):
    f = write_vfr(tmp_path / "vfr.mp4", codec, options=options)
    with av.open(str(f)) as c:
        pts = sorted(p.pts for p in c.demux(c.streams.video[0]) if p.size)
    assert len(set(np.diff(pts))) > 1, "the test clip should have irregular frame durations"
    for k in (20, 7, 90):
        _same(read_video_frames(f, k, decoder="seek"), read_video_frames(f, k, decoder="grab"))


def test_seek_skips_unreferenced_frames(tmp_path):
    """Part of the speed-up: H.264 frames nobody references are not decoded unless sampled."""
    from msvit.predict import media

    f = write_vfr(tmp_path / "vfr.mp4", "libx264", options={"g": "25", "bf": "3"})
    with av.open(str(f)) as c:
        pkts = media._index(c, c.streams.video[0])
    assert pkts is not None and 0 < sum(not q.ref for q in pkts) < len(pkts)
    keys = [i for i, q in enumerate(pkts) if q.key]
    assert len(keys) > 1
    # from the last keyframe before it (decode order), not from the start of the file
    assert media._ranges(pkts, [60]) == [(max(k for k in keys if k <= 60), 60)]


def test_auto_falls_back_to_grab_for_a_cut_file(tmp_path):
    """A file the seek reader cannot index exactly is read by the walk: same result as grab."""
    f = write_vfr(tmp_path / "vfr.avi", "mpeg4", options={"g": "12"})
    data = f.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    a, b = read_video_frames(cut, 20, decoder="auto"), read_video_frames(cut, 20, decoder="grab")
    _same(a, b)
    with pytest.raises(ValueError):
        read_video_frames(f, 20, decoder="nope")
