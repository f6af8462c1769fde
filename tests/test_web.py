"""The browser app (msvit.web) in a real Chromium: Debian's chromium driven by Playwright.

Parity with msvit-predict on the shared images and videos (fp32 and int8 artifacts), no request
outside the page's origin, no network, bad files, the live camera path (Chromium's fake camera
streaming a shared clip), the ported resize kernels against OpenCV, and the server and CLI."""
from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED

from msvit.web.browser import browser_status, open_page

IMAGES = SHARED / "data" / "images"
VIDEOS = SHARED / "data" / "videos"
WEB_SRC = Path(__file__).resolve().parents[1] / "msvit" / "web"
#: every host but loopback unresolvable: the page must not need the network
NO_NETWORK = ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",)

needs_browser = pytest.mark.skipif(browser_status() is not None, reason=str(browser_status()))


def _inputs() -> list[Path]:
    if not IMAGES.is_dir() or not VIDEOS.is_dir():
        pytest.skip(f"shared images/videos not found under {SHARED}")
    return sorted(IMAGES.glob("*.jpg")) + sorted(VIDEOS.glob("*.mp4"))


# ---------------------------------------------------------------- fast: server, CLI, kernels
def test_serve_sends_isolation_headers_and_refuses_remote(tmp_path):
    from msvit.errors import UsageError
    from msvit.web import make_server, serve_in_thread

    (tmp_path / "index.html").write_text("<p>hi</p>")
    (tmp_path / "a.wasm").write_bytes(b"\0asm")
    srv, base = serve_in_thread(tmp_path)
    try:
        with urllib.request.urlopen(base + "a.wasm") as r:
            assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert r.headers["Content-Type"] == "application/wasm"
    finally:
        srv.shutdown()
        srv.server_close()
    with pytest.raises(UsageError, match="loopback"):
        make_server(tmp_path, 0, "0.0.0.0")
    with pytest.raises(UsageError, match="not a web folder"):
        make_server(tmp_path / "nope", 0)


def test_export_cli_adds_web_target_and_checks_before_work(tmp_path, capsys):
    from msvit.web.cli import export_main, export_parser

    assert "web" in next(a for a in export_parser()._actions if a.dest == "target").choices
    assert export_main(["--target", "web", "--precision", "bf16", "--out", str(tmp_path)]) == 2
    assert "fp32, fp16, int8" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written
    assert export_main(["--target", "web", "--kit", "--out", str(tmp_path)]) == 2  # --kit without DATA
    assert "--kit needs DATA" in capsys.readouterr().err
    assert export_main(["--target", "web", "--kit", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    with pytest.raises(SystemExit) as e:
        export_main(["--target", "onnx", "--web-runtime", "onnx", "--out", str(tmp_path)])
    assert e.value.code == 2 and "--web-runtime goes with --target web" in capsys.readouterr().err


def test_build_refuses_a_kit_of_another_artifact(tmp_path):
    from msvit.errors import UsageError
    from msvit.web import build_web

    art = tmp_path / "a.tflite"
    art.write_bytes(b"TFL3 not really a model")
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "kit.json").write_text(json.dumps({"schema": 1, "kind": "kit", "cases": [],
                                              "artifact": {"file": "b.tflite", "sha256": "0" * 64}}))
    with pytest.raises(UsageError, match="written for b.tflite"):
        build_web(art, tmp_path / "web", kit=kit)
    (kit / "kit.json").write_text(json.dumps({"schema": 1, "kind": "run", "cases": []}))
    with pytest.raises(UsageError, match="not a schema-1 kit"):
        build_web(art, tmp_path / "web", kit=kit)
    assert not (tmp_path / "web").exists()


@needs_browser
def test_js_kernels_equal_msvit(tmp_path):
    """resize.js (cv2 INTER_LINEAR / INTER_AREA), frame_indices and aggregate against msvit's own."""
    import cv2

    from msvit.predict import aggregate, frame_indices

    rng = np.random.default_rng(0)
    from PIL import Image

    real = np.asarray(Image.open(IMAGES / "western_real_1.jpg").convert("RGB")) if IMAGES.is_dir() else \
        rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    cases = []
    for i in range(16):
        h, w = (int(v) for v in rng.integers(60, min(real.shape[:2]) - 40, 2))
        img = np.ascontiguousarray(real[:h, :w])
        mode = "area" if i % 2 else "linear"
        s = rng.uniform(0.15, 0.95) if mode == "area" else rng.uniform(0.3, 2.5)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        cases.append((mode, img, nw, nh))
    p_sets = [rng.uniform(0, 1, int(n)).tolist() for n in rng.integers(1, 30, 20)] + [[0.9] * 9 + [0.1] * 11, [0.1] * 19 + [0.5]]
    with open_page(WEB_SRC, args=NO_NETWORK) as page:
        page.wait_for("document.readyState === 'complete'", 30)
        out = page.page.evaluate("""async ([cases, psets]) => {
            const R = await import('./app/resize.js'), P = await import('./app/pipeline.js');
            const dec = (b) => Uint8Array.from(atob(b), (c) => c.charCodeAt(0));
            const enc = (a) => { let s = ''; for (let i = 0; i < a.length; i += 8192) s += String.fromCharCode(...a.subarray(i, i + 8192)); return btoa(s); };
            return {
              resized: cases.map(([mode, b, w, h, nw, nh]) => enc((mode === 'area' ? R.resizeArea : R.resizeLinear)(
                {data: dec(b), width: w, height: h}, nw, nh).data)),
              agg: psets.map((p) => ['conf', 'mean', 'vote'].map((m) => P.aggregate(p, m))),
              idx: [[335, 20], [422, 20], [5, 20], [1, 1], [100, 7]].map(([n, k]) => P.frameIndices(n, k)),
            };
        }""", [[(m, base64.b64encode(im.tobytes()).decode(), im.shape[1], im.shape[0], nw, nh)
                for m, im, nw, nh in cases], p_sets])
    for (mode, img, nw, nh), b in zip(cases, out["resized"]):
        ref = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if mode == "area" else cv2.INTER_LINEAR)
        got = np.frombuffer(base64.b64decode(b), np.uint8).reshape(ref.shape)
        d = np.abs(got.astype(int) - ref)
        # INTER_AREA is bit-exact; INTER_LINEAR differs by 1 grey level on <1% of values
        # (OpenCV's IPP/SIMD paths round a few tail pixels differently)
        assert d.max() <= (0 if mode == "area" else 1) and (d > 0).mean() < 0.01, (mode, img.shape, nw, nh)
    for p, got in zip(p_sets, out["agg"]):
        assert got == pytest.approx([aggregate(p, m) for m in ("conf", "mean", "vote")], abs=1e-12)
    assert out["idx"] == [frame_indices(n, k) for n, k in [(335, 20), (422, 20), (5, 20), (1, 1), (100, 7)]]


# ---------------------------------------------------------------- slow: artifacts in the page
def _web_export(out: Path, precision: str, weights: Path, *extra: str) -> Path:
    """msvit-export --target web --kit DATA (the shared images and videos, as a .txt list) as a user
    runs it: the LiteRT artifact, its kit beside it, the web folder with the kit inside."""
    pytest.importorskip("litert_torch")
    from msvit.web.cli import export_main

    data = out / "kit-data.txt"
    data.write_text("".join(f"{p}\n" for p in _inputs()))
    rc = export_main(["--target", "web", "--precision", precision, "--weights", str(weights), "--kit", str(data),
                      "--out", str(out), *extra])
    assert rc == 0
    art = out / f"ms_eff_vit_b0_{precision}.tflite"
    assert art.is_file() and (out / f"{art.name}.kit" / "kit.json").is_file()
    assert (out / f"{art.stem}_web" / "kit" / "kit.json").is_file()
    return art


@pytest.fixture(scope="module")
def artifact_litert_fp32(demo_weights, tmp_path_factory) -> Path:
    """The classifier --target web exports by default: LiteRT (.tflite, float32 NCHW input)."""
    return _web_export(tmp_path_factory.mktemp("web-fp32"), "fp32", demo_weights)


@pytest.fixture(scope="module")
def artifact_litert_int8(demo_weights, faces_dir, tmp_path_factory) -> Path:
    return _web_export(tmp_path_factory.mktemp("web-int8"), "int8", demo_weights,
                       "--calib-data", str(faces_dir / "calib"))


@pytest.fixture(scope="module")
def artifact_onnx_web(demo_model, tmp_path_factory) -> Path:
    """An fp32 ONNX classifier (--web-runtime onnx), exported alone (not --target all)."""
    from msvit.export import export

    return export(demo_model, "onnx", "fp32", tmp_path_factory.mktemp("onnx-fp32"), log=None).path


@pytest.fixture(scope="module")
def web_fp32(artifact_litert_fp32) -> Path:
    return artifact_litert_fp32.with_name(f"{artifact_litert_fp32.stem}_web")


@pytest.fixture(scope="module")
def web_int8(artifact_litert_int8) -> Path:
    return artifact_litert_int8.with_name(f"{artifact_litert_int8.stem}_web")


@pytest.fixture(scope="module")
def tolerance(demo_model, reference) -> float:
    """The model's own 8-bit input-rounding floor: max |ΔP| of FP32 under ±0.5 grey-level noise on
    DeepGuard's eval crops (0.042 for the demo checkpoint). The browser decodes JPEG and H.264 with
    its own decoders (YUV planes converted here as swscale does) and ports the resize kernels:
    what is left is about that rounding, so the verdict's P must stay within it."""
    from msvit.quantize.floor import noise_floor

    return noise_floor(demo_model, reference["u8"]).max_abs_dprob


def _parity(folder: Path, artifact: Path, tol: float) -> list[dict]:
    from msvit.predict import Detector

    files = _inputs()
    with open_page(folder, args=NO_NETWORK) as page:
        page.wait_ready(300)
        web = page.run_files(files, timeout_s=1200)
        origin = page.url.split("/index.html")[0]
        outside = [u for u in page.requests if not u.startswith(origin) and not u.startswith(("blob:", "data:"))]
    assert not outside, f"requests outside the page's origin: {outside}"
    rows = []
    with Detector(artifact) as det:
        for f, w in zip(files, web):
            py = det.predict(str(f), num_frames=20)
            assert w["source"] == f.name and w["status"] == py.status == "ok", (w["status"], w["message"])
            assert [fr["index"] for fr in w["frames"]] == [fr.index for fr in py.frames]
            for a, b in zip(w["frames"], py.frames):  # the same face chosen: crop boxes within 1 px
                assert np.abs(np.subtract(a["crop_box"], b.crop_box)).max() <= 1, (f.name, a["index"])
            dp = abs(w["p_fake"] - py.p_fake)
            per_frame = max(abs(a["p_fake"] - b.p_fake) for a, b in zip(w["frames"], py.frames))
            rows.append({"input": f.name, "web": w["p_fake"], "predict": py.p_fake, "dP": dp,
                         "frame_dP": per_frame, "verdicts_equal": w["verdict"] == py.verdict})
    print(json.dumps(rows, indent=1))
    for r in rows:
        assert r["verdicts_equal"] and r["dP"] <= tol, r
    return rows


@needs_browser
def test_web_fp32_matches_predict(web_fp32, artifact_litert_fp32, tolerance):
    # a .tflite folder runs everything on LiteRT.js: no onnxruntime-web copied (~15 MB)
    assert sorted(p.name for p in (web_fp32 / "runtime").iterdir()) == ["litert"]
    _parity(web_fp32, artifact_litert_fp32, tolerance)


@needs_browser
def test_web_int8_matches_predict(web_int8, artifact_litert_int8, tolerance):
    _parity(web_int8, artifact_litert_int8, tolerance)


@needs_browser
def test_onnx_classifier_on_onnxruntime_web(artifact_onnx_web, tmp_path):
    """--web-runtime onnx: the .onnx classifier on onnxruntime-web gives native onnxruntime's logit
    on the same crop, threaded in a cross-origin isolated page; a .tflite folder carries no ORT."""
    from msvit import runtime
    from msvit.web import build_web

    folder = build_web(artifact_onnx_web, tmp_path / "onnx_web")
    assert (folder / "runtime" / "ort").is_dir() and (folder / "runtime" / "litert").is_dir()
    x = np.sin(np.arange(3 * 224 * 224, dtype=np.float32)).reshape(1, 3, 224, 224) * 2
    with runtime.load(artifact_onnx_web) as s:
        want = float(s.run(x).reshape(-1)[0])
    with open_page(folder, args=NO_NETWORK) as page:
        state = page.wait_ready(300)
        got = page.page.evaluate("""async () => {
            const rt = await import('./app/runtime.js');
            const m = await rt.loadModel(window.msvit.config.model);
            const x = Float32Array.from({length: 3 * 224 * 224}, (_, i) => Math.sin(i) * 2);
            return {logit: (await m.run(x, [1, 3, 224, 224]))[0][0], threads: m.threads,
                    cores: navigator.hardwareConcurrency, isolated: self.crossOriginIsolated};
        }""")
    assert state["runtime"]["classifier"].startswith("onnxruntime-web") and got["isolated"]
    assert got["threads"] == max(1, min(4, got["cores"]))
    assert abs(got["logit"] - want) < 1e-3, (got, want)


@needs_browser
def test_bad_files_get_a_status(web_fp32, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    data = (VIDEOS / "western_real.mp4").read_bytes() if VIDEOS.is_dir() else b"\0" * 1000
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    junk = tmp_path / "photo.jpg"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with open_page(web_fp32, args=NO_NETWORK) as page:
        page.wait_ready(300)
        res = page.run_files([text, cut, junk, empty], timeout_s=300)
        lines = page.page.eval_on_selector_all(".card .line", "els => els.map(e => e.textContent)")
    by = {r["source"]: r for r in res}
    assert by["notes.mp4"]["status"] == "unreadable" and by["photo.jpg"]["status"] == "unreadable"
    assert by["empty.png"]["status"] == "unreadable"
    assert by["cut.mp4"]["status"] in ("unreadable", "truncated", "ok"), by["cut.mp4"]
    assert all(r["message"] or r["status"] == "ok" for r in res)
    assert len(lines) == 4 and all(line and "working" not in line for line in lines)


@needs_browser
def test_live_camera_reports_frames_and_running_verdict(web_fp32, tmp_path):
    import av

    y4m = tmp_path / "clip.y4m"
    with av.open(str(VIDEOS / "western_fake.mp4")) as src, av.open(str(y4m), "w", format="yuv4mpegpipe") as dst:
        s = dst.add_stream("rawvideo", rate=30)
        s.width, s.height, s.pix_fmt = 640, 360, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i >= 45:
                break
            for pkt in s.encode(frame.reformat(640, 360, "yuv420p")):
                dst.mux(pkt)
        for pkt in s.encode():
            dst.mux(pkt)
    args = (*NO_NETWORK, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}")
    with open_page(web_fp32, args=args) as page:
        page.wait_ready(300)
        page.page.click("#camera")
        page.wait_for("window.msvit.live && window.msvit.live.frames.filter(f => f.p_fake !== null).length >= 3"
                      " && window.msvit.live.verdict !== null", 300, "3 live frames with P(fake)")
        live = page.page.evaluate("window.msvit.live")
        page.page.click("#camera")
        page.wait_for("window.msvit.results.length === 1 && !window.msvit.busy", 120, "camera stop")
        rec = page.page.evaluate("window.msvit.results[0]")
    assert all(0 <= f["p_fake"] <= 1 for f in live["frames"] if f["p_fake"] is not None)
    assert live["verdict"] in ("fake", "real") and 0 <= live["p_fake"] <= 1
    assert rec["kind"] == "stream" and rec["status"] == "ok" and rec["frames_used"] >= 3


# ---------------------------------------------------------------- kit mode (?kit)
def _kit_in_page(folder: Path, out: Path) -> tuple[dict, Path]:
    """Open ``folder?kit``, wait for the kit run; returns the page's report and the run JSON
    (with the page's crops as PNGs beside it, so msvit.kit.check can measure them too)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    with open_page(folder, query="?kit", args=NO_NETWORK) as page:
        page.wait_ready(900)
        page.wait_for("window.msvit.kit && window.msvit.kit.done", 900, "kit mode")
        res = page.page.evaluate("({run: window.msvit.kit.run, report: window.msvit.kit.report,"
                                 " error: window.msvit.kit.error})")
        assert res["error"] is None, res["error"]
        panel = page.page.inner_text("#kitpanel")
        for case in res["run"]["cases"]:
            for fr in case["frames"]:
                if fr.get("crop"):
                    b = page.page.evaluate("([c, i]) => window.msvit.kit.cropB64(c, i)", [case["id"], fr["index"]])
                    rel = f"crops/{case['id']}-{fr['index']:06d}.png"
                    (out / "crops").mkdir(exist_ok=True)
                    Image.fromarray(np.frombuffer(base64.b64decode(b), np.uint8).reshape(224, 224, 3)).save(out / rel)
                    fr["crop"]["file"] = rel
    run = out / "run.json"
    run.write_text(json.dumps(res["run"]))
    res["report"]["panel"] = panel
    return res["report"], run


@needs_browser
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_kit_passes_in_the_page(precision, request, tmp_path):
    """The kit msvit-export --target web --kit wrote (native LiteRT, msvit-predict's pipeline) for
    the artifact the page runs passes in the page, stage by stage: the page's own check and
    msvit.kit.check on the run it hands out agree, and no stage is left untested. A kit whose face
    box was moved fails at `detect`, named as the first departing stage."""
    from msvit import kit as kitlib

    folder = request.getfixturevalue(f"web_{precision}")
    report, run = _kit_in_page(folder, tmp_path / "run")
    assert report["passed"], report["first_failure"]
    assert "PASS" in report["panel"]
    for stage in ("decode", "sample", "detect", "select", "crop_box", "letterbox", "normalize", "classify",
                  "aggregate", "end_to_end"):
        assert report["stages"][stage]["passed"] > 0 and not report["stages"][stage]["failed"], stage
    py = kitlib.check(folder / "kit", run)
    assert py.passed, py.summary()
    assert {s: (t.passed, t.failed, t.skipped) for s, t in py.stages.items()} == \
        {s: (t["passed"], t["failed"], t["skipped"]) for s, t in report["stages"].items()}
    assert py.cases == len(_inputs())

    if precision == "fp32":  # a departure is caught and named (on a copy: the fixture's folder is shared)
        import shutil

        bad_folder = shutil.copytree(folder, tmp_path / "web-bad")
        doc = json.loads((bad_folder / "kit" / "kit.json").read_text())
        case = next(c for c in doc["cases"] if c["kind"] == "image" and c["frames"][0]["detections"])
        case["frames"][0]["detections"][0]["box"][0] += 40
        (bad_folder / "kit" / "kit.json").write_text(json.dumps(doc))
        bad, _ = _kit_in_page(bad_folder, tmp_path / "run-bad")
        assert not bad["passed"] and bad["first_stage"] == "detect"
        assert bad["first_failure"]["case"] == case["id"] and "FAIL at stage detect" in bad["panel"]


@needs_browser
def test_calibrated_operating_point_reaches_the_page(artifact_litert_fp32, tmp_path):
    """A sidecar from msvit-calibrate (threshold, temperature) is what the page uses and shows:
    its P(fake) is sigmoid(logit / T) as msvit-predict's on the same artifact, verdict at the threshold."""
    import shutil

    from msvit.predict import Detector
    from msvit.runtime.calibration import sidecar_document, sidecar_path
    from msvit.web import build_web

    art = tmp_path / artifact_litert_fp32.name
    shutil.copy2(artifact_litert_fp32, art)
    prov = {"target": {"metric": "fpr", "value": 0.05}, "counts": {"real": 300, "fake": 0}, "date": "2026-12-07"}
    sidecar_path(art).write_text(json.dumps(sidecar_document(art, 0.3, 2.5, prov)))
    folder = build_web(art, tmp_path / "cal_web")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["threshold"] == 0.3 and cfg["temperature"] == 2.5 and "calibrated for FPR 5%" in cfg["operating_point"]
    image = IMAGES / "western_fake_1.jpg"
    with open_page(folder, args=NO_NETWORK) as page:
        page.wait_ready(300)
        shown = page.page.inner_text("#model")
        [w] = page.run_files([image], timeout_s=300)
    with Detector(art) as det:
        py = det.predict(str(image))
    assert "calibrated for FPR 5%" in shown and w["threshold"] == 0.3
    assert abs(w["p_fake"] - py.p_fake) < 2e-3 and w["verdict"] == py.verdict, (w["p_fake"], py.p_fake)
    # the temperature really applies: sigmoid(logit) of the same frame is further from 0.5
    logit = w["frames"][0]["logit"]
    assert abs(w["p_fake"] - 1 / (1 + np.exp(-logit / 2.5))) < 1e-6
