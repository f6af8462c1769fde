"""Decode throughput of the sampled frames: one video at a time with N FFmpeg threads against N
videos at once with one thread each (what ``--stage-threads 1,1,C,N`` does), interleaved rounds.

    python research/decode_lanes.py ../shared/data/videos --copies 10 --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from msvit.cpu import cpu_name
from msvit.predict.media import read_video_frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", type=Path)
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--num-frames", type=int, default=20)
    ap.add_argument("--lanes", type=int, default=2)
    a = ap.parse_args()
    vids = sorted(str(p) for p in a.videos.glob("*.mp4")) * a.copies
    n, k = a.num_frames, a.lanes

    def one_at_a_time(threads: int) -> None:
        for v in vids:
            read_video_frames(v, n, threads=threads)

    def at_once(threads: int) -> None:
        with ThreadPoolExecutor(k) as ex:
            list(ex.map(lambda v: read_video_frames(v, n, threads=threads), vids))

    modes = {f"1 video at a time, {k} FFmpeg threads": lambda: one_at_a_time(k),
             "1 video at a time, 1 FFmpeg thread": lambda: one_at_a_time(1),
             f"{k} videos at once, 1 FFmpeg thread each": lambda: at_once(1)}
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(a.rounds):
        for m, fn in modes.items():
            t0 = time.perf_counter()
            fn()
            times[m].append(time.perf_counter() - t0)
    frames = len(vids) * n
    print(f"{cpu_name()} · {len(vids)} videos x {n} sampled frames · median of {a.rounds} interleaved rounds")
    base = statistics.median(times[next(iter(modes))])
    for m, v in times.items():
        t = statistics.median(v)
        print(f"{m:42s} {t:6.2f} s  {frames / t:6.1f} sampled frames/s  x {base / t:.2f}")


if __name__ == "__main__":
    main()
