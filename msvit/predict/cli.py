"""msvit-predict: images, videos, folders, lists and streams -> faces -> P(fake), offline.

Exit codes: 0 every input got a verdict (status ok); 1 some input failed or got no verdict
(missing, unreadable, truncated, no face, face too small, ...: one line each says why);
2 bad arguments or an unusable artifact/weights file; 3 the artifact's runtime or the face
detector is not installed here; 130 interrupted.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import DataError, UsageError, run_cli
from ..fileio import atomic_write, check_output_dir, check_output_file
from .aggregate import AGG_MODES
from .face_registry import DEFAULT_FACE_DETECTOR, face_detectors
from .draw import save_visuals
from .results import STATUSES, Prediction

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
#: a corpus with at least this many videos measures the stage threads first when none are cached
TUNE_MIN_VIDEOS = 8
TABLE_WIDTH = 100
FILE_COL = 30  # the table's other columns take 70 of the 100


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--artifact | --weights, --model (msvit-predict and msvit-screen)."""
    src = p.add_argument_group("model (one of)")
    src.add_argument("--artifact", help="exported artifact: .onnx .xml .pte .ptl .tflite .engine .mlpackage")
    src.add_argument("--weights", help="PyTorch checkpoint (.bin/.safetensors), run eagerly")
    src.add_argument("--model", default="ms_eff_vit_b0", choices=("ms_eff_vit_b0", "ms_eff_vit_b5"),
                     help="variant for --weights (default %(default)s)")


def add_pipeline_args(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Frames, faces, aggregation, threshold, threads (msvit-predict and msvit-screen)."""
    g = p.add_argument_group("pipeline")
    g.add_argument("--num-frames", type=int, default=20, help="frames sampled per video (default %(default)s)")
    g.add_argument("--agg", default="conf", choices=AGG_MODES, help="video aggregation (default %(default)s)")
    g.add_argument("--conf-thres", type=float, default=0.5, help="face detector confidence (default %(default)s)")
    g.add_argument("--min-face-ratio", type=float, default=0.01,
                   help="skip faces smaller than this fraction of the frame area (default %(default)s)")
    g.add_argument("--margin", type=float, default=0.2, help="crop margin per side, x box size (default %(default)s)")
    g.add_argument("--tta-hflip", action="store_true", help="average P(fake) of each crop and its mirror image")
    g.add_argument("--threshold", type=float, default=None,
                   help="P(fake) at or above which the verdict is fake (default: the artifact's own)")
    g.add_argument("--face-detector", default=DEFAULT_FACE_DETECTOR, choices=sorted(face_detectors()),
                   help="default %(default)s")
    g.add_argument("--det-size", type=int, default=None, metavar="PX",
                   help="downscale frames to this longest side before detection (0: full size; "
                        "default: the detector's own)")
    g.add_argument("--faces-only", action="store_true",
                   help="inputs are already face crops: no detection, every input is trusted to be a face "
                        "(one that is not still gets a verdict)")
    g.add_argument("--threads", type=int, default=None, help="threads for the artifact and the face detector")
    return g


def build_parser() -> argparse.ArgumentParser:
    statuses = "\n".join(f"  {k:<19} {v}" for k, v in STATUSES.items())
    dets = "\n".join(f"  {n:<16} {i.description}{' (phone-class)' if i.mobile else ''}"
                     for n, i in face_detectors().items())
    p = argparse.ArgumentParser(
        prog="msvit-predict", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Images and videos -> faces -> P(fake) with any msvit artifact (or PyTorch weights), "
                    "offline. Defaults are DeepGuard's: 20 frames, conf aggregation, largest face, 20% margin.",
        epilog=f"statuses (one per input; only ok and truncated carry a P(fake)):\n{statuses}\n\n"
               f"face detectors:\n{dets}\n\n"
               "exit codes: 0 all inputs ok; 1 some input failed or got no verdict; 2 bad arguments or "
               "unusable artifact; 3 runtime or face detector not installed; 130 interrupted.\n\n"
               "examples:\n  msvit-predict clip.mp4 photos/ --artifact ms_eff_vit_b0.onnx\n"
               "  msvit-predict list.csv --weights ms_eff_vit_b0_celeb_df_v2.bin --json out.json\n"
               "  msvit-predict --stream 0 --artifact b0.pte --num-frames 30")
    p.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="image, video, folder (recursive), .csv/.txt list of paths, or stream URL")
    add_model_args(p)
    g = add_pipeline_args(p)
    g.add_argument("--stream", action="append", default=[], metavar="SRC",
                   help="camera index (0) or stream URL, or a video file read as a live stream (repeatable)")
    g.add_argument("--stream-every", type=int, default=5, metavar="N",
                   help="streams: classify one frame every N (default %(default)s)")
    g.add_argument("--stage-threads", default="auto", metavar="auto|D,T,C[,V]",
                   help="threads of the overlapped stages: decode (FFmpeg, per video; 0 = its choice), face "
                        "detection, classification, and V videos decoded at once (default 1). "
                        "auto (default): the split measured fastest on this host for this "
                        "artifact (msvit-bench --pipeline measures and caches it; a corpus of >= "
                        f"{TUNE_MIN_VIDEOS} videos measures it first), else decode 0, detect 1, classify --threads")
    g.add_argument("--sequential", action="store_true",
                   help="run decode, detection and classification one after another (no overlap)")
    o = p.add_argument_group("output")
    o.add_argument("--json", metavar="PATH", help="write every result, per frame, as JSON")
    o.add_argument("--csv", metavar="PATH", help="write one row per input as CSV")
    o.add_argument("--save-crops", metavar="DIR", help="save the face crops that were classified")
    o.add_argument("--annotate", metavar="DIR", help="save the sampled frames with the face box and P(fake)")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument("--list-detectors", action="store_true", help="list face detectors and whether they run here")
    o.add_argument("--debug", action="store_true", help="print the full traceback of any error (also: MSVIT_DEBUG=1)")
    return p


# ----------------------------------------------------------------------------- validation
def _check_output(path: str, flag: str, folder: bool = False) -> Path:
    """fileio's output checks (exit 2 before any work), with one rule of msvit-predict's own: the
    folder a report or an image folder goes into must already exist (nothing is created above it)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not (folder and p.is_dir()) and not parent.is_dir():
        raise UsageError(f"{flag} {p}: folder {parent} does not exist")
    return check_output_dir(p, flag) if folder else check_output_file(p, flag)


def validate_pipeline(args: argparse.Namespace) -> None:
    """The model and pipeline flags (:func:`add_model_args`, :func:`add_pipeline_args`)."""
    if bool(args.artifact) == bool(args.weights):
        raise DataError("give exactly one of --artifact PATH or --weights PATH")
    from .detector import check_options

    check_options(True, conf_thres=args.conf_thres, min_face_ratio=args.min_face_ratio, margin=args.margin,
                  threshold=args.threshold)
    if args.num_frames < 1:
        raise DataError(f"--num-frames must be >= 1, got {args.num_frames}")
    if args.threads is not None and args.threads < 1:
        raise DataError(f"--threads must be >= 1, got {args.threads}")
    if args.det_size is not None and args.det_size < 0:
        raise DataError(f"--det-size must be >= 0, got {args.det_size}")
    model = Path(args.artifact or args.weights)
    if not model.exists():
        raise DataError(f"{'--artifact' if args.artifact else '--weights'} {model}: no such file")


def validate(args: argparse.Namespace) -> None:
    """Every flag, before any work: output paths first, then the model and pipeline flags."""
    if not args.sources and not args.stream:
        raise DataError("nothing to predict: give SOURCE paths or --stream SRC")
    if args.stream_every < 1:
        raise DataError(f"--stream-every must be >= 1, got {args.stream_every}")
    parse_stage_threads(getattr(args, "stage_threads", "auto"))
    for flag in ("json", "csv"):
        if getattr(args, flag):
            _check_output(getattr(args, flag), f"--{flag}")
    if args.json and args.csv and Path(args.json).resolve() == Path(args.csv).resolve():
        raise DataError("--json and --csv name the same file")
    for flag in ("save_crops", "annotate"):
        if getattr(args, flag):
            _check_output(getattr(args, flag), "--" + flag.replace("_", "-"), folder=True)
    validate_pipeline(args)


def parse_stage_threads(text: str):
    """``--stage-threads``: see :meth:`~msvit.predict.overlap.StageThreads.parse`."""
    from .overlap import StageThreads

    return StageThreads.parse(text)


def stage_threads_for(args: argparse.Namespace, videos: list[str], say: Callable[[str], None]):
    """The split this run uses: given, cached measurement, measured now (large corpora), or default."""
    from .overlap import stage_detector
    from .tune import (available_cores, default_threads, load_tuning, save_tuning, tune_stage_threads,
                       tuning_key)

    given = parse_stage_threads(args.stage_threads)
    if given is not None:
        return given
    budget = args.threads or available_cores()
    fd = None if args.faces_only else args.face_detector
    key = tuning_key(args.artifact or args.weights, fd, args.det_size, args.num_frames, budget)
    cached = load_tuning(key)
    if cached is not None:
        return cached
    if len(videos) < TUNE_MIN_VIDEOS:
        return default_threads(budget)
    say(f"measuring the stage threads on {Path(videos[0]).name} (once per host and artifact; cached)...")
    tuning = tune_stage_threads(lambda t: stage_detector(args.artifact or args.weights, fd, t, **_det_options(args)),
                                videos[0], budget=budget, num_frames=args.num_frames, log=say)
    save_tuning(key, tuning)
    return tuning.best


def _det_options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(conf_thres=args.conf_thres, min_face_ratio=args.min_face_ratio, margin=args.margin,
                threshold=args.threshold, tta_hflip=args.tta_hflip, det_size=args.det_size, model_name=args.model)


# ----------------------------------------------------------------------------- writing
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Readers never see half a file (temp file in the same folder + rename)."""
    atomic_write(path, lambda f: f.write(data))


CSV_FIELDS = ("source", "kind", "status", "verdict", "p_fake", "threshold", "agg", "frames_sampled",
              "frames_used", "faces", "n_frames", "width", "height", "ms_total", "ms_decode", "ms_detect",
              "ms_crop", "ms_classify", "message")


def to_csv(preds: list[Prediction]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for p in preds:
        d = p.to_dict(frames=False)
        row = {k: d.get(k) for k in CSV_FIELDS}
        for k in ("total", "decode", "detect", "crop", "classify"):
            row[f"ms_{k}"] = d["times_ms"].get(k)
        w.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue().encode("utf-8", "surrogateescape")  # a name that is not UTF-8: its own bytes


# ----------------------------------------------------------------------------- table
def summary_table(preds: list[Prediction], width: int = TABLE_WIDTH):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=None, width=width, show_lines=False, pad_edge=False)
    t.add_column("file", no_wrap=True, overflow="crop", width=FILE_COL)
    t.add_column("verdict", no_wrap=True, width=7)
    t.add_column("P(fake)", justify="right", no_wrap=True, width=7)
    t.add_column("frames", justify="right", no_wrap=True, width=6)
    t.add_column("faces", justify="right", no_wrap=True, width=5)
    t.add_column("status", no_wrap=True, overflow="ellipsis", width=18)
    t.add_column("ms", justify="right", no_wrap=True, width=6)
    for p in preds:
        verdict = {"fake": "[red]fake[/]", "real": "[green]real[/]"}.get(p.verdict or "", "—")
        prob = f"{p.p_fake:.3f}" if p.p_fake is not None else "—"
        frames = f"{p.frames_used}/{p.frames_sampled}" if p.kind != "image" else str(p.frames_used)
        status = p.status if p.status == "ok" else f"[yellow]{p.status}[/]"
        t.add_row(escape(short(p.source, FILE_COL)), verdict, prob, frames, str(p.faces), status,
                  f"{p.times_ms.get('total', 0):.0f}")
    return t


def short(source: str, width: int = 34) -> str:
    """A path for the table: relative when shorter, and its tail (the file name) when too long."""
    try:
        rel = os.path.relpath(source)
        s = rel if len(rel) < len(source) else source
    except ValueError:
        s = source
    return s if len(s) <= width else "…" + s[-(width - 1):]


def _message(p: Prediction) -> str:
    """The message without a leading repetition of the file name."""
    m = p.message
    for prefix in (f"{p.source}: ", f"cannot read image {p.source}: "):
        if m.startswith(prefix):
            return m[len(prefix):] if prefix.startswith(p.source) else "cannot read image: " + m[len(prefix):]
    return m


# ----------------------------------------------------------------------------- run
def _guarded(det, src, args) -> Prediction:
    return det.predict_source(src, args.num_frames, args.agg, args.faces_only,
                              keep=bool(args.save_crops or args.annotate or getattr(args, "keep_pixels", False)),
                              stream_every=args.stream_every)


def list_detectors() -> int:
    from .face_registry import detector_status

    for name, info in face_detectors().items():
        why = detector_status(name)
        print(f"{name:<16} {'available' if why is None else 'unavailable'}"
              f"{' · runs on phones' if info.mobile else ''} · {info.description}"
              + ("" if why is None else f"\n{'':<17}{why}"))
    return EXIT_OK


def run(args: argparse.Namespace, on_prediction: Callable[[int, Prediction, Any], None] | None = None) -> int:
    """The command. ``on_prediction(i, prediction, detector)`` runs for each input while its pixels
    are held (``args.keep_pixels``; msvit-explain draws its maps there), before they are dropped."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .detector import Detector
    from .sources import discover

    if args.list_detectors:
        return list_detectors()
    validate(args)
    found = discover(args.sources, args.stream)
    if not found.sources:
        raise DataError("no image or video found in " + ", ".join(args.sources)
                        + (f" ({len(found.ignored)} other files ignored)" if found.ignored else ""))
    err = Console(stderr=True, width=TABLE_WIDTH)
    # msvit-explain's hook uses the session between inputs: then the stages must not overlap
    sequential = bool(getattr(args, "sequential", False)) or on_prediction is not None
    fd = None if args.faces_only else args.face_detector
    stages = None
    if sequential:
        det = Detector(args.artifact or args.weights, fd, threads=args.threads, **_det_options(args))
    else:
        from .overlap import OverlappedPredictor, stage_detector

        stages = stage_threads_for(args, [s.path for s in found.sources if s.kind == "video"],
                                   lambda m: err.print(m, highlight=False, markup=False))
        det = stage_detector(args.artifact or args.weights, fd, stages, **_det_options(args))
        pipe = OverlappedPredictor.with_threads(det, stages)
    crops_dir = Path(args.save_crops) if args.save_crops else None
    ann_dir = Path(args.annotate) if args.annotate else None
    for d in (crops_dir, ann_dir):
        if d is not None:
            d.mkdir(parents=False, exist_ok=True)
    preds: list[Prediction] = []
    t0 = time.perf_counter()
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True,
                  disable=args.no_progress or not err.is_terminal) as bar:
        task = bar.add_task("predicting", total=len(found.sources))
        keep = bool(args.save_crops or args.annotate or getattr(args, "keep_pixels", False))
        preds_in = (_guarded(det, src, args) for src in found.sources) if sequential else \
            pipe.run(found.sources, args.num_frames, args.agg, args.faces_only, keep=keep,
                     stream_every=args.stream_every)
        for i, pred in enumerate(preds_in):
            bar.update(task, description=f"{Path(pred.source).name[:40]}")
            if crops_dir is not None or ann_dir is not None:
                try:
                    save_visuals(i, pred, crops_dir, ann_dir)
                except (OSError, DataError) as e:
                    pred.message = (pred.message + "; " if pred.message else "") + f"could not save images: {e}"
            if on_prediction is not None:
                on_prediction(i, pred, det)
            for fr in pred.frames:  # pixels are not needed any more
                fr.frame = fr.crop = None
            preds.append(pred)
            bar.advance(task)
    wall = time.perf_counter() - t0
    det.close()
    pipeline: dict[str, Any] = {"mode": "sequential"}
    if stages is not None:
        pipeline = {"mode": "overlapped", "stage_threads": stages.to_dict(), **pipe.stats.to_dict()}
    n_videos = sum(p.kind == "video" for p in preds)
    if n_videos and wall > 0:
        pipeline["videos_per_min"] = round(60.0 * n_videos / wall, 2)

    out = Console(width=TABLE_WIDTH, soft_wrap=False)
    out.print(f"model {det.model_name} · faces {det.detector_name}", highlight=False)
    out.print(det.threshold_note.replace("given by the caller", "from --threshold"), highlight=False)
    out.print(summary_table(preds))
    bad = [p for p in preds if p.status != "ok"]
    for p in preds:
        if p.message:
            out.print(f"[yellow]{p.status}[/] {escape(short(p.source, 60))}: {escape(_message(p))}", highlight=False,
                      soft_wrap=False, markup=True)
    n_fake = sum(p.verdict == "fake" for p in preds)
    n_real = sum(p.verdict == "real" for p in preds)
    out.print(f"{len(preds)} inputs: {n_fake} fake, {n_real} real, {len(bad)} without status ok "
              f"({wall:.1f} s)" + (f"; {len(found.ignored)} files in folders were not images/videos"
                                   if found.ignored else ""), highlight=False)
    out.print(pipeline_line(pipeline), highlight=False, markup=False)
    if args.json:
        doc = {"model": det.model_name, "face_detector": det.detector_name, "threshold": det.threshold,
               "temperature": det.temperature, "threshold_note": det.threshold_note,
               "options": {k: getattr(args, k) for k in ("num_frames", "agg", "conf_thres", "min_face_ratio",
                                                          "margin", "tta_hflip", "faces_only", "det_size")},
               "pipeline": pipeline, "ignored": found.ignored, "results": [p.to_dict() for p in preds]}
        atomic_write_bytes(Path(args.json), json.dumps(doc, indent=1).encode())
    if args.csv:
        atomic_write_bytes(Path(args.csv), to_csv(preds))
    return EXIT_FAILED if bad else EXIT_OK


def pipeline_line(pipeline: dict[str, Any]) -> str:
    """How the stages ran (fits 100 columns on two lines): threads, busy shares, videos/min."""
    vpm = f" · {pipeline['videos_per_min']:.1f} videos/min" if pipeline.get("videos_per_min") else ""
    if pipeline["mode"] != "overlapped":
        return f"pipeline: sequential{vpm}"
    t, share = pipeline["stage_threads"], pipeline["busy_share"]
    busy = ", ".join(f"{k} {v:.0%}" for k, v in share.items())
    lanes = f" x {t['videos']} videos at once" if t.get("videos", 1) > 1 else ""
    return (f"pipeline: overlapped · stage threads decode {t['decode'] or 'auto'}{lanes}, detect {t['detect']}, "
            f"classify {t['classify']} ({t['source'].split(' (')[0]})\n"
            f"busy: {busy} of {pipeline['wall_s']:.1f} s{vpm}")


def main(argv: list[str] | None = None) -> int:
    return run_cli(run, build_parser().parse_args(argv),
                   "interrupted: nothing half-written (outputs are written whole at the end)", prog="msvit-predict")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
