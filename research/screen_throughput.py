"""Screening throughput: msvit-screen on Ray with 1 and 2 workers vs msvit-predict, per artifact,
on the same files; plus decode (seek vs grab) and end-to-end frames/s for one clip.

Not a test and not the product: a measurement to run on a quiet machine. Uses public msvit API only.

    python research/screen_throughput.py --artifact b0.onnx --artifact b0.xml \\
        --files ../shared/data/videos ../shared/data/images --copies 4 --workers 1 2 \\
        --clip ../shared/data/videos/western_real.mp4 --json screen_throughput.json

Each configuration screens a fresh --out (no resume). files/s counts the whole job (Ray actor
start-up included); steady files/s is from the first record to the last (what a long job sees).
Memory per worker is each actor's peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def corpus(files: list[str], copies: int, into: Path) -> list[str]:
    """``copies`` copies of every image/video under ``files`` (distinct paths = distinct inputs)."""
    from msvit.predict import discover

    found = discover(files).sources
    for c in range(copies):
        d = into / f"copy{c}"
        d.mkdir(parents=True)
        for i, s in enumerate(found):
            shutil.copy(s.path, d / f"{i:03d}_{Path(s.path).name}")
    return [str(into)]


def run_predict(artifact: str, sources: list[str], num_frames: int, threads: int) -> dict:
    from msvit.predict import Detector, discover

    found = discover(sources).sources
    t0 = time.perf_counter()
    det = Detector(artifact, threads=threads)
    t1 = time.perf_counter()
    preds = [det.predict_source(s, num_frames) for s in found]
    t2 = time.perf_counter()
    det.close()
    frames = sum(p.frames_sampled for p in preds)
    return dict(engine="msvit-predict (in-process)", workers=1, threads=threads, files=len(preds), frames=frames,
                wall_s=t2 - t0, files_per_s=len(preds) / (t2 - t0), steady_files_per_s=len(preds) / (t2 - t1),
                frames_per_s=frames / (t2 - t0))


def run_screen(artifact: str, sources: list[str], num_frames: int, workers: int, cpus: int, out: Path) -> dict:
    from msvit.screen import ScreenConfig, screen

    stamps: list[float] = []
    threads = max(1, cpus // workers)
    cfg = ScreenConfig(model=artifact, num_frames=num_frames, threads=threads)
    s = screen(sources, out, cfg, engine="ray", workers=workers, num_cpus=cpus, force=True,
               on_record=lambda rec, new: stamps.append(time.perf_counter()))
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
    return dict(engine="msvit-screen (ray)", workers=workers, threads=threads, files=s.processed, frames=s.frames,
                wall_s=s.wall_s, files_per_s=s.files_per_s, steady_files_per_s=steady,
                frames_per_s=s.frames_per_s, rss_mb_per_worker=sorted(s.workers.values()),
                stage_ms=s.stage_ms)


def decode_figures(clip: str, artifact: str, num_frames: int, threads: int, iters: int) -> dict:
    from msvit.predict import Detector, read_video_frames

    out = {}
    for decoder in ("grab", "seek"):
        read_video_frames(clip, num_frames, decoder=decoder)
        t = time.perf_counter()
        for _ in range(iters):
            vf = read_video_frames(clip, num_frames, decoder=decoder)
        out[f"decode_ms_per_sampled_frame_{decoder}"] = 1e3 * (time.perf_counter() - t) / iters / len(vf.frames)
    with Detector(artifact, threads=threads) as det:
        det.predict_video(clip, num_frames)
        t = time.perf_counter()
        for _ in range(iters):
            p = det.predict_video(clip, num_frames)
        out["end_to_end_sampled_frames_per_s"] = iters * p.frames_sampled / (time.perf_counter() - t)
    out.update(clip=clip, num_frames=num_frames, threads=threads, iters=iters)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", action="append", required=True, help="ONNX, OpenVINO .xml, ... (repeatable)")
    ap.add_argument("--files", nargs="+", required=True)
    ap.add_argument("--copies", type=int, default=4, help="copies of the files (a bigger corpus)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray cluster")
    ap.add_argument("--num-frames", type=int, default=20)
    ap.add_argument("--clip", default="", help="a video for the decode figure (none: skipped)")
    ap.add_argument("--clip-iters", type=int, default=5)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    import ray

    from msvit.cpu import cpu_int8_features, cpu_name

    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    env = dict(cpu=cpu_name(), cpus=args.cpus, avx2="avx2" in flags, avx512f="avx512f" in flags,
               int8_features=cpu_int8_features())
    print(json.dumps(env))
    rows, tmp = [], Path(tempfile.mkdtemp(prefix="screen-bench-"))
    try:
        sources = corpus(args.files, args.copies, tmp / "corpus")
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        for art in args.artifact:
            rows.append(dict(artifact=art, **run_predict(art, sources, args.num_frames, args.cpus)))
            print(json.dumps(rows[-1]))
            for w in args.workers:
                rows.append(dict(artifact=art, **run_screen(art, sources, args.num_frames, w, args.cpus,
                                                            tmp / f"out-{len(rows)}")))
                print(json.dumps(rows[-1]))
        ray.shutdown()
        decode = decode_figures(args.clip, args.artifact[0], args.num_frames, args.cpus, args.clip_iters) \
            if args.clip else None
        print(json.dumps(decode))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'artifact':<28} {'engine':<28} {'w':>2} {'thr':>3} {'files/s':>8} {'steady':>7} {'frames/s':>9} "
          f"{'MB/worker':>9}")
    for r in rows:
        mb = max(r.get("rss_mb_per_worker") or [0])
        print(f"{Path(r['artifact']).name[:28]:<28} {r['engine'][:28]:<28} {r['workers']:>2} {r['threads']:>3} "
              f"{r['files_per_s']:>8.2f} {r['steady_files_per_s']:>7.2f} {r['frames_per_s']:>9.1f} "
              f"{mb:>9.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(env=env, rows=rows, decode=decode), indent=1))


if __name__ == "__main__":
    main()
