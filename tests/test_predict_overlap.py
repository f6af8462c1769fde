"""The overlapped pipeline (issue 32): decode, detection and classification on their own
threads give the same frames, boxes and P(fake) as the sequential path, input by input, on the
shared videos and images and the bad inputs; stopping early leaves no thread behind."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import SHARED

from msvit.predict import Detector, discover, read_video_frames
from msvit.predict.overlap import STAGES, OverlappedPredictor, StageThreads

VIDEOS = SHARED / "data" / "videos"
IMAGES = SHARED / "data" / "images"
NUM_FRAMES = 8


@pytest.fixture(scope="module")
def detector(demo_model):
    from msvit.predict import detector_status
    from msvit.runtime import from_model

    if detector_status("blazeface") is not None:
        pytest.skip("face detector not installed")
    if not VIDEOS.is_dir() or not IMAGES.is_dir():
        pytest.skip("shared videos/images not found")
    return Detector(from_model(demo_model, threads=1), "blazeface", threads=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("corpus")
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("not a video\n")
    cut = d / "cut.mp4"
    cut.write_bytes((VIDEOS / "western_fake.mp4").read_bytes()[:40_000])
    (d / "blank.png").write_bytes((IMAGES / "western_real_1.jpg").read_bytes())  # unknown suffix: an image
    srcs = [str(VIDEOS / "western_real.mp4"), str(IMAGES / "western_real_1.jpg"), str(VIDEOS / "western_fake.mp4"),
            str(d / "missing.mp4"), str(d / "empty.mp4"), str(d / "notes.mp4"), str(cut)]
    srcs += sorted(str(p) for p in IMAGES.glob("*.jpg"))
    return srcs


def _same(a, b) -> None:
    assert (a.source, a.kind, a.status, a.verdict, a.message) == (b.source, b.kind, b.status, b.verdict, b.message)
    assert a.p_fake == b.p_fake  # bit for bit: the same calls in the same batches
    assert (a.n_frames, a.width, a.height) == (b.n_frames, b.width, b.height)
    assert len(a.frames) == len(b.frames)
    for fa, fb in zip(a.frames, b.frames):
        assert (fa.index, fa.status, fa.n_faces, fa.box, fa.crop_box, fa.score, fa.logit, fa.p_fake) == \
               (fb.index, fb.status, fb.n_faces, fb.box, fb.crop_box, fb.score, fb.logit, fb.p_fake)
        if fa.frame is not None or fb.frame is not None:
            assert np.array_equal(fa.frame, fb.frame) and np.array_equal(fa.crop, fb.crop)


@pytest.mark.parametrize("videos", [1, 3])  # 3 at once: slow videos beside quick images, ends kept in order
def test_overlapped_equals_sequential_on_the_shared_videos_images_and_bad_inputs(detector, corpus, videos):
    found = discover(corpus)
    seq = [detector.predict_source(s, NUM_FRAMES, "conf", keep=True) for s in found.sources]
    pipe = OverlappedPredictor(detector, decode_threads=1, queue_frames=3, videos=videos)  # small queue: back-pressure
    got = list(pipe.run(found.sources, NUM_FRAMES, "conf", keep=True))
    assert len(got) == len(seq) == len(found.sources)
    for a, b in zip(got, seq):
        _same(a, b)
    statuses = {p.status for p in got}
    assert {"ok", "missing", "unreadable"} <= statuses and any(p.p_fake is not None for p in got)
    st = pipe.stats
    assert st.inputs == len(seq) and st.wall > 0 and set(st.share()) == set(STAGES)
    assert all(0 <= v <= 1.05 for v in st.share().values()) and st.busy["decode"] > 0 and st.busy["classify"] > 0
    assert st.frames == sum(len(p.frames) for p in seq if p.kind in ("video", "image"))


def test_decoder_threads_and_the_frame_sink_do_not_change_the_frames():
    v = VIDEOS / "western_real.mp4"
    if not v.is_file():
        pytest.skip("shared videos not found")
    handed = {}
    a = read_video_frames(v, NUM_FRAMES, threads=1, on_frame=lambda i, rgb: handed.setdefault(i, rgb))
    b = read_video_frames(v, NUM_FRAMES, threads=2)
    c = read_video_frames(v, NUM_FRAMES, decoder="grab")
    assert list(a.frames) == list(b.frames) == sorted(c.frames) and set(handed) == set(a.frames)
    for i in a.frames:
        assert handed[i] is a.frames[i]  # handed on as converted: no copy
        assert np.array_equal(a.frames[i], b.frames[i]) and np.array_equal(a.frames[i], c.frames[i])


@pytest.mark.parametrize("videos", [1, 2])
def test_stopping_early_leaves_no_worker_thread(detector, videos):
    srcs = discover([str(VIDEOS / "western_real.mp4")] * 4).sources
    before = {t.ident for t in threading.enumerate()}
    gen = OverlappedPredictor(detector, videos=videos).run(srcs, NUM_FRAMES)
    first = next(gen)
    assert first.status == "ok"
    gen.close()  # what Ctrl-C in the consumer does: the generator's finally stops the workers
    left = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("msvit-")]
    assert not left, left


def test_stage_threads_label_and_record():
    t = StageThreads(0, 1, 2, "measured")
    assert t.label() == "decode auto · detect 1 · classify 2" and t.to_dict()["source"] == "measured"
    t2 = StageThreads(1, 1, 2, "measured", 2)
    assert t2.label() == "decode 1 x 2 videos at once · detect 1 · classify 2" and t2.to_dict()["videos"] == 2


def test_a_worker_crash_reaches_the_consumer(detector, monkeypatch):
    """An error outside any one input (here: the classify stage itself) is raised, not swallowed."""
    pipe = OverlappedPredictor(detector)

    def boom(*a, **k):
        raise RuntimeError("stage crashed")

    monkeypatch.setattr(pipe, "_classify", boom)
    with pytest.raises(RuntimeError, match="stage crashed"):
        list(pipe.run(discover([str(IMAGES / "western_real_1.jpg")]).sources, NUM_FRAMES))


def test_tuning_candidates_default_and_cache(tmp_path, monkeypatch):
    from msvit.predict.tune import Tuning, candidates, default_threads, load_tuning, save_tuning, tuning_key

    monkeypatch.setenv("MSVIT_CACHE_DIR", str(tmp_path))
    c2 = [(c.decode, c.detect, c.classify, c.videos) for c in candidates(2)]
    assert c2[0] == (0, 1, 2, 1) and len(c2) == len(set(c2)) and (1, 1, 1, 1) in c2 and (2, 2, 2, 1) in c2
    assert (1, 1, 2, 2) in c2  # two videos at once, one FFmpeg thread each
    assert [(c.decode, c.detect, c.classify, c.videos) for c in candidates(1)] == [(0, 1, 1, 1), (1, 1, 1, 1)]
    d = default_threads(3)
    assert (d.decode, d.detect, d.classify) == (0, 1, 3) and d.source.startswith("default")
    art = tmp_path / "a.onnx"
    art.write_bytes(b"x")
    key = tuning_key(art, "blazeface", None, 20, 2)
    assert key != tuning_key(art, "blazeface", None, 8, 2) and load_tuning(key) is None
    save_tuning(key, Tuning(StageThreads(1, 1, 2, "measured on this host (x)", 2), "v.mp4"))
    assert load_tuning(key) == StageThreads(1, 1, 2, "measured on this host (x)", 2)
    art.write_bytes(b"xy")  # a re-exported artifact is measured again
    assert tuning_key(art, "blazeface", None, 20, 2) != key


def test_stage_threads_flag_is_validated():
    from msvit.errors import DataError

    assert StageThreads.parse("auto") is None and StageThreads.parse("0,1,2") == StageThreads(0, 1, 2, "given (--stage-threads)")
    assert StageThreads.parse("1,1,2,2") == StageThreads(1, 1, 2, "given (--stage-threads)", 2)
    for bad in ("1,2", "a,b,c", "-1,1,1", "0,0,1", "1,1,1,0", "1,1,1,2,3"):
        with pytest.raises(DataError, match="--stage-threads"):
            StageThreads.parse(bad)


def test_cli_records_the_pipeline_and_both_modes_agree(tmp_path, capsys, demo_weights):
    """msvit-predict: overlapped by default (stage threads and their source, busy shares, videos/min
    in the JSON and under the table), --sequential the old path; same results, same exit code."""
    import json

    from msvit.predict import detector_status
    from msvit.predict.cli import main

    if detector_status("blazeface") is not None:
        pytest.skip("face detector not installed")
    srcs = [str(VIDEOS / "western_fake.mp4"), str(IMAGES / "asian_real_1.jpg"), str(tmp_path / "missing.mp4")]
    docs = {}
    for mode, extra in (("overlapped", ["--stage-threads", "1,1,1,2"]), ("sequential", ["--sequential"])):
        js = tmp_path / f"{mode}.json"
        rc = main([*srcs, "--weights", str(demo_weights), "--num-frames", "4", "--json", str(js), "--no-progress",
                   *extra])
        out = capsys.readouterr().out
        assert rc == 1  # the missing file: exit 1 either way
        docs[mode] = json.loads(js.read_text())
        assert f"pipeline: {mode}" in out and all(len(line) <= 100 for line in out.splitlines())
    pl = docs["overlapped"]["pipeline"]
    assert pl["mode"] == "overlapped" and pl["stage_threads"] == {"decode": 1, "detect": 1, "classify": 1,
                                                                  "source": "given (--stage-threads)", "videos": 2}
    assert set(pl["busy_share"]) == set(STAGES) and pl["videos_per_min"] > 0 and pl["inputs"] == 3
    assert docs["sequential"]["pipeline"]["mode"] == "sequential"
    strip = [{k: v for k, v in r.items() if k != "times_ms"} for r in docs["overlapped"]["results"]]
    assert strip == [{k: v for k, v in r.items() if k != "times_ms"} for r in docs["sequential"]["results"]]
    assert main([srcs[1], "--weights", str(demo_weights), "--stage-threads", "2,0,1"]) == 2
    assert "--stage-threads '2,0,1'" in capsys.readouterr().err
