"""msvit-screen: screen a whole corpus of videos and images, resumable, on Ray Data or in-process.

Exit codes: 0 every input got a verdict (status ok); 1 some input failed or got no verdict (its
record says why), or --out's disk is full (every record written is whole); 2 bad arguments, an
unusable checkpoint or artifact (opened once before Ray starts), or an --out made with other
settings; 3 Ray is not installed (use --engine local), its cluster cannot be reached, or it does
not start within MSVIT_RAY_START_TIMEOUT s; 130 Ctrl-C, 143 SIGTERM (every finished record is
kept: run the same command again to resume).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from ..errors import UsageError, run_cli
from ..fileio import check_output_dir
from ..predict.cli import TABLE_WIDTH, add_model_args, add_pipeline_args, validate_pipeline
from ..predict.results import STATUSES
from .engines import ENGINES, ScreenConfig
from .job import STAGES, ScreenSummary, screen
from .store import JSONL, PARTS


def build_parser() -> argparse.ArgumentParser:
    statuses = "\n".join(f"  {k:<19} {v}" for k, v in STATUSES.items())
    p = argparse.ArgumentParser(
        prog="msvit-screen", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Screen a corpus of videos and images for deepfakes: msvit-predict's pipeline (DeepGuard's "
                    "rules) on every file, fanned out over Ray Data actors (each holds one model and one face "
                    "detector), one record per input written as it finishes. Resumable: the same command "
                    "again skips what is recorded.",
        epilog=f"results in --out: {JSONL} (one JSON record per input, the fields of msvit-predict --json)\n"
               f"and {PARTS}/part-NNNNN.parquet (the same records, flat); both readable while the job runs.\n"
               "A record is keyed by path + size + mtime + artifact sha256.\n\n"
               f"statuses (only ok and truncated carry a P(fake)):\n{statuses}\n\n"
               "exit codes: 0 all inputs ok; 1 some input without a verdict, or --out's disk full (records\n"
               "kept whole: free space, run again); 2 bad arguments, checkpoint or artifact, or --out made with\n"
               "other settings; 3 Ray not installed, unreachable or not started within\n"
               "MSVIT_RAY_START_TIMEOUT s (default 180); 130 Ctrl-C, 143 SIGTERM (both stop cleanly: every\n"
               "finished record kept, the same command resumes).\n\n"
               "examples:\n  msvit-screen uploads/ --artifact ms_eff_vit_b0.onnx --out screen-out/\n"
               "  msvit-screen list.csv --artifact b0.xml --out s/ --workers 2 --threads 1\n"
               "  ray start --head; msvit-screen /data/videos --artifact b0.onnx --out s/ --ray-address auto\n"
               "  msvit-screen photos/ --weights b0.bin --out s/ --engine local")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="image, video, folder (recursive) or .csv/.txt list of paths")
    add_model_args(p)
    add_pipeline_args(p)
    r = p.add_argument_group("engine")
    r.add_argument("--out", required=True, metavar="DIR", help="results folder (created; resumed when it exists)")
    r.add_argument("--engine", default="ray", choices=ENGINES,
                   help="ray: Ray Data actors (the [screen] extra); local: one pipeline in this process "
                        "(default %(default)s)")
    r.add_argument("--workers", type=int, default=None, metavar="N",
                   help="actors, each with one model session and one face detector (default: cluster CPUs "
                        "/ --threads)")
    r.add_argument("--ray-address", default=None, metavar="auto|ADDR",
                   help="join a running cluster (`ray start --head`); default: start a local one sized to "
                        "this machine")
    r.add_argument("--force", action="store_true", help="recompute every input (replaces --out's records)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--debug", action="store_true", help="print the full traceback of any error (also: MSVIT_DEBUG=1)")
    return p


def config_of(args: argparse.Namespace) -> ScreenConfig:
    return ScreenConfig(model=str(args.artifact or args.weights), model_name=args.model,
                        face_detector=None if args.faces_only else args.face_detector, conf_thres=args.conf_thres,
                        min_face_ratio=args.min_face_ratio, margin=args.margin, threshold=args.threshold,
                        tta_hflip=args.tta_hflip, det_size=args.det_size, threads=args.threads or 1,
                        num_frames=args.num_frames, agg=args.agg, faces_only=args.faces_only)


def validate(args: argparse.Namespace) -> None:
    validate_pipeline(args)
    check_output_dir(args.out)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.engine == "local" and (args.workers not in (None, 1) or args.ray_address):
        raise UsageError("--engine local runs one pipeline in this process: --workers and --ray-address need "
                         "--engine ray")


def threshold_line(args: argparse.Namespace) -> str:
    """The threshold the workers will use and where it came from (the artifact's calibration
    sidecar or metadata, --threshold, or the default), read without opening the model."""
    if args.threshold is not None:
        return f"threshold {args.threshold:.4g} (from --threshold)"
    if args.weights:
        return "threshold 0.5 (the model's default, uncalibrated: msvit-calibrate picks one for your footage)"
    from .. import runtime

    return runtime.operating_point(args.artifact, runtime.read_metadata(args.artifact)).describe()


def summary_lines(s: ScreenSummary, out: str) -> list[str]:
    """The closing summary, each line under 100 columns."""
    head = f"{s.inputs} inputs: {s.processed} screened now, {s.skipped} already recorded (skipped)"
    if s.duplicates:
        head += f", {s.duplicates} retried duplicates written once"
    lines = [head + (" · interrupted" if s.interrupted else "")]
    lines.append("verdicts: " + (", ".join(f"{v} {k}" for k, v in sorted(s.verdicts.items())) or "none"))
    lines.append("statuses: " + ", ".join(f"{v} {k}" for k, v in s.statuses.items()))
    if s.processed:
        per = ", ".join(f"{k} {s.stage_ms.get(k, 0) / max(1, s.frames):.1f}" for k in STAGES)
        lines.append(f"throughput: {s.files_per_s:.2f} files/s, {s.frames_per_s:.1f} sampled frames/s "
                     f"({s.wall_s:.1f} s)")
        lines.append(f"ms per sampled frame (summed over workers): {per}")
        rss = max(s.workers.values(), default=0.0)
        lines.append(f"workers: {len(s.workers)} ({s.engine}), peak memory per worker {rss:.0f} MB")
        if s.engine == "ray":
            lines += node_lines(s)
    if s.ignored:
        lines.append(f"{s.ignored} files in folders were neither images nor videos (not screened)")
    lines.append(f"records: {JSONL} and {PARTS}/ in {out}")
    return lines


def node_lines(s: ScreenSummary) -> list[str]:
    """Which Ray nodes screened this run's files, most files first: one line per node (node id's
    first 8 hex digits, IP, host, files, workers); a node Ray counted dead by the end is marked."""
    lost = sum(n.lost for n in s.nodes.values())
    lines = [f"nodes: {len(s.nodes)} screened files" + (f", {lost} lost mid-job (finished records kept, the rest "
                                                         "retried elsewhere)" if lost else "")]
    for n in sorted(s.nodes.values(), key=lambda n: (-n.files, n.label)):
        where = f"{n.node_ip or '?'} {n.host or '?'}"
        lines.append(f"  node {n.label}  {where[:40]:<40} {n.files:>6} files  {len(n.workers)} worker(s)"
                     + ("  LOST" if n.lost else ""))
    return lines


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    validate(args)
    config = config_of(args)
    print(threshold_line(args))
    if args.engine == "ray":
        from .engines import import_ray

        import_ray()  # not installed: exit 3 before any work

    class Speed(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed or 0:.2f} files/s")

    err = Console(stderr=True, width=TABLE_WIDTH)
    bar = Progress(TextColumn("screening"), BarColumn(), MofNCompleteColumn(), Speed(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=True,
                   disable=args.no_progress or not err.is_terminal)
    task = None

    def on_start(todo: int, workers: int) -> None:
        nonlocal task
        err.print(f"screening {todo} inputs with {workers} worker(s) ({args.engine})" if todo else
                  f"nothing to screen: every input is already recorded in {args.out} (--force recomputes)",
                  highlight=False)
        task = bar.add_task("screening", total=todo)

    def on_record(rec, new: bool) -> None:
        if new and task is not None:
            bar.advance(task)

    args.started = time.perf_counter()  # for the one line that says what an interrupted run kept
    with bar:
        summary = screen(args.sources, args.out, config, engine=args.engine, workers=args.workers,
                         ray_address=args.ray_address, num_cpus=os.cpu_count() if not args.ray_address else None,
                         force=args.force, on_start=on_start, on_record=on_record)
    for line in summary_lines(summary, args.out):
        print(line)
    return 0 if summary.all_ok else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def interrupted() -> str:  # Ctrl-C (exit 130) or SIGTERM (143): one line
        started = getattr(args, "started", None)
        after = f" after {time.perf_counter() - started:.0f} s" if started else ""
        return (f"interrupted{after}: every finished record is kept in {args.out}; run the same command again to "
                "resume")

    return run_cli(run, args, interrupted, prog="msvit-screen")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
