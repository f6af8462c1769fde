"""msvit-bench: latency, memory, accuracy, compute and power of every MS-Eff-ViT artifact."""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Sequence

from ..errors import run_cli
from ..export.targets import PRECISIONS, TARGETS

EPILOG = textwrap.dedent("""\
    examples:
      msvit-bench                                   # b0: export every target runnable here, time it
      msvit-bench --weights W.bin --data faces/eval # + Acc/AUC/log-loss on real/ and fake/
      msvit-bench --artifacts artifacts/            # what msvit-export wrote (manifests read)
      msvit-bench --device cuda                     # torch CUDA, onnxruntime CUDA, TensorRT engines
      msvit-bench --device jetson --artifacts engines/   # + power (INA3221 / tegrastats), clocks

    Rows: PyTorch eager FP32 first (the baseline), then each artifact. All rows are timed in
    one interleaved run: round-robin, one block of --block runs each per round, so a busy or
    throttling machine slows every row alike. Speed-up = median over rounds of the baseline's
    block time / the row's; ±% = interquartile range of a row's block medians / their median.
    Without --threads, cores that other processes keep busy (sampled for 1 s before timing)
    are left to them: a thread pool sharing a core with a busy process waits a time slice at
    every barrier, and each runtime's pool suffers differently. When a row's ±% exceeds 25%
    or other processes take more than 15% of the CPUs, the report warns that absolute times
    cannot be trusted.
    ✅ ran and met its checks · ❎ exported but a check failed (e.g. parity) · ❌ not runnable here.
    Compute is counted on the graph that runs: GMACs = fvcore/DeepGuard "FLOPs", GFLOPs = 2 × GMACs.
    exit status: 0 no ❎ row; 1 a ❎ row, or an unexpected internal error (one line and the path
    of a file with the full traceback; --debug or MSVIT_DEBUG=1 prints it); 2 bad arguments or
    input (checked before any work, report paths included); 3 device not available;
    130 Ctrl-C, 143 SIGTERM.
""")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="msvit-bench", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=["ms_eff_vit_b0", "ms_eff_vit_b5"], default=None,
                   help="default: from the artifacts' manifests, else ms_eff_vit_b0")
    w = m.add_mutually_exclusive_group()
    w.add_argument("--weights", type=Path, help="local checkpoint; default: untrained")
    w.add_argument("--pretrained", choices=["celeb_df_v2", "ff++"], help="DeepGuard's release (cached)")
    m.add_argument("--attn-mode", choices=["deepguard", "applied"], default=None, help="default: deepguard")
    s = p.add_argument_group("what to benchmark")
    s.add_argument("--targets", default="all",
                   help=f"comma list of {','.join(TARGETS)} or 'all' (default); 'none' = PyTorch only")
    s.add_argument("--precisions", default=None,
                   help=f"comma list of {','.join(PRECISIONS)} (default: each target's own)")
    s.add_argument("--artifacts", type=Path, help="benchmark the files msvit-export wrote here instead of exporting")
    s.add_argument("--out", type=Path, help="keep exported artifacts here (default: a temp dir, removed)")
    s.add_argument("--device", choices=["cpu", "cuda", "jetson"], default="cpu")
    t = p.add_argument_group("timing")
    t.add_argument("--batch", type=int, default=1, help="also time batch N when N > 1 (default 1)")
    t.add_argument("--iters", type=int, default=50, help="timed runs, at least (default 50)")
    t.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    t.add_argument("--min-time", type=float, default=0.0, help="keep timing until this many seconds too")
    t.add_argument("--threads", type=int, default=None,
                   help="CPU threads for every backend (torch, ORT intra-op, OpenVINO); default torch's")
    t.add_argument("--block", type=int, default=10,
                   help="runs per block: rows are timed round-robin, one block each per round (default 10)")
    c = p.add_argument_group("checks")
    c.add_argument("--data", type=Path, help="folder/CSV of face crops; real/ and fake/ subfolders -> Acc/AUC/log-loss")
    c.add_argument("--fps", type=float, default=30.0,
                   help="real-time target: p99 at batch 1 <= 1000/fps ms; with --pipeline, end-to-end frames/s >= fps")
    pl = p.add_argument_group("end to end (msvit-predict's pipeline)")
    pl.add_argument("--pipeline", type=Path, metavar="VIDEO",
                    help="also time decode -> face detection -> crop -> classify on this video, per artifact")
    pl.add_argument("--pipeline-frames", type=int, default=20, help="frames sampled from the video (default 20)")
    pl.add_argument("--pipeline-iters", type=int, default=5, help="timed runs per stage and row (default 5)")
    pl.add_argument("--pipeline-videos", type=int, default=4,
                    help="overlapped pipeline (msvit-predict's): the video this many times back to back per run; "
                         "reports sampled frames/s, videos/min, each stage's busy share (0: skip; default 4)")
    pl.add_argument("--stage-threads", default="auto", metavar="auto|D,T,C[,V]",
                    help="overlapped stage threads: decode (per video; 0: FFmpeg's choice), detect, classify, "
                         "V videos decoded at once (default 1); auto "
                         "(default): measure the candidates per artifact (cached for msvit-predict)")
    pl.add_argument("--face-detector", default=None, help="face detector for --pipeline (default: msvit-predict's)")
    c.add_argument("--budget-gflops", type=float, default=0.68, dest="budget",
                   help="compute budget in GMACs (fvcore 'FLOPs' convention, as DeepGuard's 0.68 G; default 0.68)")
    o = p.add_argument_group("output")
    o.add_argument("--json", type=Path, help="write the report as JSON")
    o.add_argument("--markdown", type=Path, help="write the report as Markdown")
    o.add_argument("--plot", type=Path, help="write latency vs AUC/agreement as PNG")
    o.add_argument("--wide", action="store_true", help="every column (default: the essential ones, 100 columns)")
    o.add_argument("--quiet", action="store_true", help="no log lines or progress bar")
    o.add_argument("--debug", action="store_true", help="print the full traceback of any error (also: MSVIT_DEBUG=1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(_run, args, "interrupted: no report written", prog="msvit-bench")


def _check_output(path: Path, flag: str = "--json") -> None:
    from ..fileio import check_output_file

    check_output_file(path, flag)


def validate(args: argparse.Namespace) -> None:
    """Every check that needs no model: numbers, names and paths, before any work starts
    (a bad value exits 2; a report path that cannot be written must not lose a finished run)."""
    from ..errors import CheckpointError, DataError, UsageError
    from ..fileio import check_output_dir
    from .options import BenchError, check_ranges

    check_ranges(lambda name: getattr(args, "budget" if name == "budget_gmacs" else name, None))
    for name in _split(args.targets) or []:
        if name not in (*TARGETS, "all", "none"):
            raise UsageError(f"unknown target {name!r} in --targets; choose from {', '.join(TARGETS)}, all, none")
    for pr in _split(args.precisions) or []:
        if pr not in PRECISIONS:
            raise UsageError(f"unknown precision {pr!r} in --precisions; choose from {', '.join(PRECISIONS)}")
    for flag in ("--json", "--markdown", "--plot"):  # before the work: a report must never be lost
        path = getattr(args, flag[2:])
        if path is not None:
            _check_output(path, flag)
    if args.weights is not None:
        if not args.weights.exists():
            raise CheckpointError(f"--weights {args.weights}: no such file")
        if args.weights.is_dir():
            raise CheckpointError(f"--weights {args.weights}: is a folder, not a checkpoint file")
    if args.data is not None and not args.data.exists():
        raise DataError(f"--data {args.data}: no such file or folder")
    if args.artifacts is not None and not args.artifacts.is_dir():
        raise BenchError(f"--artifacts {args.artifacts}: "
                         f"{'not a folder' if args.artifacts.exists() else 'no such folder'}")
    if args.out is not None:
        check_output_dir(args.out)
    video = getattr(args, "pipeline", None)
    if video is not None and not Path(video).is_file():
        raise DataError(f"--pipeline {video}: {'not a file' if Path(video).exists() else 'no such file'}")


def _split(s: str | None) -> list[str] | None:
    return None if s is None else [x.strip() for x in s.split(",") if x.strip()]


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .options import BenchOptions
    from .run import run
    from .report import print_table, write_json, write_markdown, write_plot

    validate(args)
    err = Console(stderr=True, highlight=False)
    from rich.markup import escape

    # escape: messages carry "[...]" (pip extras such as msvit[litert]) that rich would eat as markup
    log = None if args.quiet else (lambda msg: err.print(f"[dim]msvit-bench:[/dim] {escape(msg)}"))
    targets = _split(args.targets)
    if targets in (["all"],):
        targets = None
    elif targets in (["none"], []):
        targets = []
    precisions = _split(args.precisions)
    opts = BenchOptions(model=args.model, weights=args.weights, pretrained=args.pretrained, attn_mode=args.attn_mode,
                        targets=targets, precisions=precisions, batch=args.batch, iters=args.iters,
                        warmup=args.warmup, min_time=args.min_time, threads=args.threads, data=args.data,
                        fps=args.fps, budget_gmacs=args.budget, out=args.out, artifacts=args.artifacts,
                        device=args.device, block=args.block, pipeline=args.pipeline,
                        pipeline_frames=args.pipeline_frames, pipeline_iters=args.pipeline_iters,
                        pipeline_videos=args.pipeline_videos, stage_threads=args.stage_threads,
                        face_detector=args.face_detector)
    rep = run(opts, log=log, progress=not args.quiet)
    print_table(rep, wide=args.wide)
    for path, writer in ((args.json, write_json), (args.markdown, write_markdown), (args.plot, write_plot)):
        if path:
            writer(rep, path)
            if log:
                log(f"wrote {path}")
    return 1 if any(r.status == "failed" for r in [*rep.rows, *rep.pipeline]) else 0


if __name__ == "__main__":
    sys.exit(main())
