"""msvit-predict over a corpus: the sequential stages (``--sequential``, what it did before
issue 32) vs the overlapped pipeline (its default), videos/min in ONE run, alternating rounds.

    python research/predict_overlap_speed.py --videos ../shared/data/videos --copies 10 \\
        --artifact out/ms_eff_vit_b0_auto.xml --threads 2
    python research/predict_overlap_speed.py --videos ../shared/data/videos --copies 1 --rounds 1 \\
        --artifact ... --num-frames 4                     # smoke run

The corpus is every video of ``--videos`` linked ``--copies`` times into a temp folder (the
same bytes: page cache alike for both modes). Each round runs both modes through
``msvit.predict.cli.main`` in this process (the console script's code, with ``--json``), in
alternating order; the table gives the median videos/min of each, the ratio, and the
overlapped run's stage threads and busy shares. Both modes' P(fake) must agree file by file.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def corpus(videos: Path, copies: int, dest: Path) -> list[Path]:
    files = sorted(p for p in videos.iterdir() if p.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv", ".webm"))
    out = []
    for i in range(copies):
        for f in files:
            link = dest / f"{i:02d}_{f.name}"
            os.symlink(f.resolve(), link)
            out.append(link)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=Path, required=True)
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--artifact", required=True, help="artifact (or weights file) for msvit-predict")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--num-frames", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stage-threads", default="auto", help="msvit-predict --stage-threads (overlapped)")
    args = ap.parse_args(argv)

    from msvit.cpu import cpu_float16_features, cpu_int8_features, cpu_name, cpu_vector_summary
    from msvit.predict.cli import main as predict_main

    print(f"CPU: {cpu_name()} · {os.cpu_count()} cores · vector flags: {cpu_vector_summary()} · int8: "
          f"{', '.join(cpu_int8_features()) or 'none'} · float16/bf16: {', '.join(cpu_float16_features()) or 'none'}")
    tmp = Path(tempfile.mkdtemp(prefix="predict-overlap-"))
    (tmp / "c").mkdir()
    files = corpus(args.videos, args.copies, tmp / "c")
    model = ["--weights" if Path(args.artifact).suffix in (".bin", ".safetensors") else "--artifact", args.artifact]
    base = [str(tmp / "c"), *model, "--threads", str(args.threads), "--num-frames", str(args.num_frames),
            "--no-progress"]
    modes = {"sequential": ["--sequential"], "overlapped": ["--stage-threads", args.stage_threads]}
    print(f"{len(files)} videos ({args.copies} x {args.videos}), {args.num_frames} sampled frames each, "
          f"--threads {args.threads}, {args.rounds} rounds, modes alternating")
    (tmp / "w").mkdir()
    os.symlink(files[0].resolve(), tmp / "w" / files[0].name)
    for m in modes:  # warm-up, untimed: imports, model and detector loading, OS file cache; with
        # --stage-threads auto and >= 8 videos the overlapped run measures its split here (then cached)
        folder = tmp / "c" if m == "overlapped" and args.stage_threads == "auto" else tmp / "w"
        with contextlib.redirect_stdout(io.StringIO()):
            predict_main([str(folder)] + base[1:] + modes[m])
    vpm: dict[str, list[float]] = {m: [] for m in modes}
    last: dict[str, dict] = {}
    for r in range(args.rounds):
        order = list(modes) if r % 2 == 0 else list(modes)[::-1]
        for m in order:
            js = tmp / f"{m}.json"
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                rc = predict_main(base + modes[m] + ["--json", str(js)])
            wall = time.perf_counter() - t0
            if rc not in (0, 1):
                print(f"msvit-predict ({m}) exited {rc}")
                return rc
            doc = json.loads(js.read_text())
            last[m] = doc
            vpm[m].append(60.0 * len(files) / wall)
            print(f"  round {r + 1} {m:<10} {wall:7.1f} s  {vpm[m][-1]:6.1f} videos/min", flush=True)
    p = {m: {x["source"]: x["p_fake"] for x in last[m]["results"]} for m in modes}
    same = p["sequential"] == p["overlapped"]
    med = {m: float(np.median(v)) for m, v in vpm.items()}
    pl = last["overlapped"]["pipeline"]
    t, share = pl["stage_threads"], pl["busy_share"]
    print(f"\n{'mode':<11} {'videos/min':>10} {'x seq':>6}  stage threads (decode/detect/classify), busy share")
    print(f"{'sequential':<11} {med['sequential']:10.1f} {1.0:6.2f}")
    print(f"{'overlapped':<11} {med['overlapped']:10.1f} {med['overlapped'] / med['sequential']:6.2f}  "
          f"{t['decode'] or 'auto'}{'x' + str(t['videos']) if t.get('videos', 1) > 1 else ''}/{t['detect']}/"
          f"{t['classify']} ({t['source']}), "
          + ", ".join(f"{k} {v:.0%}" for k, v in share.items()))
    print(f"P(fake) identical file by file: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
