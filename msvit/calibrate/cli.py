"""msvit-calibrate: choose the threshold on your own labelled footage, at a target false-positive
rate (real inputs only) or true-positive rate (fakes too), with bootstrap intervals, optionally
temperature scaling, and carry it in a new artifact (or a sidecar beside the old one).

Exit codes: 0 a threshold was chosen and published (inputs without a score are listed and left
out); 1 the inputs that got a score cannot support the target (report written, nothing
published); 2 bad arguments, too few inputs for the target, or an artifact whose threshold cannot
be stored (before any work); 3 a runtime or the face detector is not installed; 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import DataError, UsageError, run_cli
from ..export.core import export_time
from ..fileio import check_output_dir
from ..predict.cli import TABLE_WIDTH, add_model_args, add_pipeline_args, short, validate_pipeline
from ..version import __version__
from . import stats
from .collect import LABELS, Scored, data_sha256, groups_of, read_groups, run_pipeline, scores
from .publish import (check_out_for_artifact, check_rewritable, check_sidecar_target, publish_calibrated,
                      write_sidecar)
from .report import PICTURES, Outcome, summary_lines, write_report

EXIT_OK, EXIT_REFUSED = 0, 1
PIPELINE_KEYS = ("num_frames", "agg", "faces_only", "face_detector", "conf_thres", "min_face_ratio", "margin",
                 "tta_hflip", "det_size")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="msvit-calibrate", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Choose the P(fake) threshold on your own labelled images/videos (msvit-predict's pipeline,\n"
                    "same flags) for a target false-positive rate (real inputs only) or true-positive rate\n"
                    "(fakes too), with 95% intervals for the rates it will give, and publish an artifact\n"
                    "that carries it.",
        epilog="how many inputs: a target rate r needs at least ~3/r inputs of the class it counts\n"
               "(real for --target-fpr: 300 for 1%, 60 for 5%; fakes for --target-tpr: 3/(1-r)); with fewer,\n"
               "the threshold would only sit above every real score and its rate could not be told from 0.\n"
               "With --group-by the floor counts groups (clips), not inputs.\n\n"
               "intervals (95%): the rate this threshold will have in the long run on footage like yours, and\n"
               "the share of a batch of --batch new inputs; both include the threshold's own variability.\n"
               "Independent inputs: exact (order statistics); --group-by: bootstrap of the whole procedure\n"
               "over groups, for inputs that are not independent (frames/crops of one clip).\n\n"
               "outputs in --out: report.md, report.json, " + ", ".join(PICTURES.values()) + ";\n"
               "and the calibrated artifact with its manifest (.json) and card (.md), or with --sidecar\n"
               "<artifact>.calibration.json beside the artifact.\n\n"
               "exit codes: 0 published; 1 too few inputs got a score (report only); 2 bad arguments, too few\n"
               "inputs, or an artifact that cannot carry a threshold; 3 runtime/detector not installed;\n"
               "130 interrupted.\n\n"
               "examples:\n"
               "  msvit-calibrate --artifact b0.onnx --real newsroom/real/ --target-fpr 0.01 --out cal/\n"
               "  msvit-calibrate --artifact b0.pte --real r/ --fake f/ --target-tpr 0.9 --fit-temperature \\\n"
               "      --sidecar --out cal/\n"
               "  msvit-calibrate --artifact b0.onnx --real real_crops.csv --fake fake_crops.csv --faces-only \\\n"
               "      --group-by clip --target-fpr 0.05 --out cal/   # crops of one clip: one group")
    add_model_args(p)
    d = p.add_argument_group("labelled data")
    d.add_argument("--real", nargs="+", default=[], metavar="SRC", required=True,
                   help="real (authentic) images/videos: files, folders (recursive) or .csv/.txt lists")
    d.add_argument("--fake", nargs="+", default=[], metavar="SRC", help="fake images/videos (same forms)")
    t = p.add_argument_group("operating point (one of)")
    tg = t.add_mutually_exclusive_group(required=True)
    tg.add_argument("--target-fpr", type=float, metavar="F",
                    help="share of real inputs you accept being called fake, e.g. 0.01")
    tg.add_argument("--target-tpr", type=float, metavar="T", help="share of fakes to catch, e.g. 0.9 (needs --fake)")
    t.add_argument("--fit-temperature", action="store_true",
                   help="also fit P(fake) = sigmoid(logit / T) to the labels (needs --fake): calibrated "
                        "probabilities, same ranking")
    t.add_argument("--group-by", metavar="COLUMN",
                   help="inputs are .csv lists (path column) whose COLUMN names each input's group (clip, "
                        "camera, person): correlated inputs, resampled together (default: every input "
                        "independent; a video is one input)")
    t.add_argument("--batch", type=int, default=1000, metavar="N",
                   help="also give the range of the share among N new inputs (default %(default)s)")
    t.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                   help="bootstrap resamples with --group-by (default %(default)s)")
    t.add_argument("--seed", type=int, default=0, help="bootstrap seed (default %(default)s)")
    add_pipeline_args(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, metavar="DIR", help="report folder, and the calibrated artifact set")
    o.add_argument("--sidecar", action="store_true",
                   help="write <artifact>.calibration.json beside the artifact instead of a new artifact "
                        "(any format; the artifact is not touched)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing calibrated set or sidecar")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument("--debug", action="store_true", help="print the full traceback of any error (also: MSVIT_DEBUG=1)")
    return p


# ----------------------------------------------------------------------------- before any work
def _discover(specs: list[str], flag: str) -> list[Any]:
    from ..predict import discover

    found = discover(specs)
    if not found.sources:
        raise DataError(f"{flag}: no image or video found in {', '.join(specs)}"
                        + (f" ({len(found.ignored)} other files ignored)" if found.ignored else ""))
    return found.sources


def _units(sources: list[Any], groups: dict[str, str]) -> int:
    """Independent units among ``sources``: their groups, an input without one counting alone."""
    return len({groups.get(str(Path(s.path).resolve())) or f"input {i}" for i, s in enumerate(sources)})


def validate(args: argparse.Namespace) -> tuple[list[Any], list[Any], dict[str, str]]:
    """Every check that needs no model: exit 2 before any work. Returns (real, fake) sources and
    each input's group (``--group-by``; empty without it)."""
    target = args.target_fpr if args.target_fpr is not None else args.target_tpr
    flag = "--target-fpr" if args.target_fpr is not None else "--target-tpr"
    if not 0.0 < target < 1.0:
        raise UsageError(f"{flag} must be in (0, 1) (a rate, e.g. 0.01 for 1%), got {target}")
    if args.threshold is not None:
        raise UsageError("--threshold: msvit-calibrate chooses the threshold; give --target-fpr or --target-tpr")
    if args.target_tpr is not None and not args.fake:
        raise UsageError("--target-tpr needs fake inputs: give --fake SRC (or use --target-fpr with real inputs only)")
    if args.fit_temperature and not args.fake:
        raise UsageError("--fit-temperature needs both classes: give --fake SRC too")
    if args.bootstrap < 100:
        raise UsageError(f"--bootstrap must be >= 100, got {args.bootstrap}")
    if args.batch < 1:
        raise UsageError(f"--batch must be >= 1 (inputs), got {args.batch}")
    validate_pipeline(args)
    out = check_output_dir(args.out)
    if args.artifact:
        art = Path(args.artifact)
        if args.sidecar:
            check_sidecar_target(art)
            side = Path(str(art) + ".calibration.json")
            if side.exists() and not args.overwrite:
                raise UsageError(f"{side.name} already exists beside the artifact: pass --overwrite to replace it")
        else:
            check_rewritable(art)
            check_out_for_artifact(art, out)
            taken = [n for n in (art.name, art.name + ".json") if (out / n).exists()]
            if taken and not args.overwrite:
                raise UsageError(f"{', '.join(taken)} already exist(s) in {out}: pass --overwrite to replace")
    elif args.sidecar:
        raise UsageError("--sidecar goes beside an artifact: give --artifact (with --weights the report states the "
                         "threshold; pass it to msvit-predict as --threshold)")
    real, fake = _discover(args.real, "--real"), _discover(args.fake, "--fake") if args.fake else []
    both = {Path(s.path).resolve() for s in real} & {Path(s.path).resolve() for s in fake}
    if both:
        raise UsageError(f"{len(both)} inputs are given as both real and fake, e.g. {sorted(both)[0]}")
    groups = read_groups(args.real + args.fake, args.group_by) if args.group_by else {}
    unit = "groups" if groups else "inputs"
    if args.target_fpr is not None and _units(real, groups) < stats.min_inputs(args.target_fpr):
        raise UsageError(stats.describe_need(_units(real, groups), args.target_fpr, "real", unit)
                         + " (nothing was run)")
    if args.target_tpr is not None and _units(fake, groups) < stats.min_inputs(1.0 - args.target_tpr):
        raise UsageError(stats.describe_need(_units(fake, groups), 1.0 - args.target_tpr, "fake", unit).replace(
            "rate", "miss rate", 1) + f" for TPR {100 * args.target_tpr:g}% (nothing was run)")
    return real, fake, groups


# ----------------------------------------------------------------------------- the statistics
def decide(items: list[Scored], args: argparse.Namespace, base_temperature: float = 1.0) -> Outcome:
    """Temperature (fitted or kept), threshold at the target, rates with intervals: from scores."""
    metric = "fpr" if args.target_fpr is not None else "tpr"
    target = args.target_fpr if metric == "fpr" else args.target_tpr
    p0, y = scores(items, base_temperature)
    temperature, log_loss = base_temperature, {}
    both = len(set(y.tolist())) == 2
    if args.fit_temperature and both:
        temperature = stats.fit_temperature(lambda t: scores(items, t)[0], y)
        log_loss = {"before": stats.log_loss(p0, y), "after": stats.log_loss(scores(items, temperature)[0], y)}
    elif both:
        log_loss = {"at T=%g" % base_temperature: stats.log_loss(p0, y)}
    p, _ = scores(items, temperature)
    real, fake = p[y == 0], p[y == 1]
    grouped = bool(getattr(args, "group_by", None))
    rg, fg = (groups_of(items, 0), groups_of(items, 1)) if grouped else (None, None)
    o = Outcome(metric, target, None, temperature, real, fake, raw_real=p0[y == 0], raw_fake=p0[y == 1],
                log_loss=log_loss, auc=stats.auc(real, fake), n_boot=args.bootstrap, grouped=grouped)
    unit = "groups" if grouped else "inputs"
    n_real, n_fake = (len(set(rg)), len(set(fg))) if grouped else (len(real), len(fake))
    if args.fit_temperature and not both:
        o.refused = "temperature scaling needs inputs of both classes with a score"
    elif metric == "fpr" and n_real < stats.min_inputs(target):
        o.refused = stats.describe_need(n_real, target, "real", unit) + " (inputs without a score do not count)"
    elif metric == "tpr" and n_fake < stats.min_inputs(1 - target):
        o.refused = stats.describe_need(n_fake, 1 - target, "fake", unit) + " (inputs without a score do not count)"
    if o.refused:
        return o
    o.threshold, o.fpr, o.tpr = stats.operating_point(real, fake, metric, target, real_groups=rg, fake_groups=fg,
                                                      batch=args.batch, n_boot=args.bootstrap, seed=args.seed)
    o.grouped = any(r is not None and r.groups < r.of for r in (o.fpr, o.tpr))  # else exact for both
    return o


def provenance(o: Outcome, args: argparse.Namespace, det: Any, items: list[Scored], sha: str) -> dict[str, Any]:
    return {
        "target": {"metric": o.target_metric, "value": o.target}, "threshold": o.threshold,
        "temperature": o.temperature, "fitted_temperature": bool(args.fit_temperature),
        "fpr": o.fpr.to_dict() if o.fpr else None, "tpr": o.tpr.to_dict() if o.tpr else None,
        "auc": o.auc, "log_loss": o.log_loss, "interval": o.method(), "batch": args.batch,
        "group_by": getattr(args, "group_by", None), "seed": args.seed,
        "counts": {"real": len(o.real), "fake": len(o.fake), "skipped": sum(not s.usable for s in items)},
        "data_sha256": sha, "date": export_time(), "msvit_version": __version__, "model": det.model_name,
        "pipeline": {k: getattr(args, k) for k in PIPELINE_KEYS} | {"face_detector": det.detector_name},
    }


# ----------------------------------------------------------------------------- the command
def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..predict import Detector

    real, fake, groups = validate(args)
    labelled = [(s, 0) for s in real] + [(s, 1) for s in fake]
    err = Console(stderr=True, width=TABLE_WIDTH)
    det = Detector(args.artifact or args.weights, None if args.faces_only else args.face_detector,
                   conf_thres=args.conf_thres, min_face_ratio=args.min_face_ratio, margin=args.margin,
                   tta_hflip=args.tta_hflip, det_size=args.det_size, threads=args.threads, model_name=args.model)
    before = det.session.operating_point
    det.temperature = 1.0  # raw logits: decide() applies the temperature itself, per frame as the pipeline does
    print(f"model {det.model_name} · faces {det.detector_name} · {len(real)} real, {len(fake)} fake inputs")
    print(f"now: {before.describe()}")
    t0 = time.perf_counter()
    try:
        with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=True,
                      disable=args.no_progress or not err.is_terminal) as bar:
            task = bar.add_task("scoring", total=len(labelled))
            items = run_pipeline(det, labelled, args, lambda s: bar.advance(task), groups)
    finally:
        det.close()
    o = decide(items, args, before.temperature if not args.fit_temperature else 1.0)
    o.failed = [(LABELS[s.label], s.source, s.status, s.message) for s in items if not s.usable]
    sha = data_sha256([(s.path, lab) for s, lab in labelled if Path(s.path).is_file()])
    prov = provenance(o, args, det, items, sha)
    out = Path(args.out)
    published, code = "nothing (no threshold chosen)", EXIT_REFUSED
    if o.ok and args.artifact and args.sidecar:
        published = f"sidecar {write_sidecar(Path(args.artifact), o.threshold, o.temperature, prov)}"
        code = EXIT_OK
    elif o.ok and args.artifact:
        files = publish_calibrated(Path(args.artifact), det.session.metadata, o.threshold, o.temperature, prov, out)
        published = f"{files[0].name} with its manifest and card in {out}"
        code = EXIT_OK
    elif o.ok:
        published = f"nothing (--weights): pass --threshold {o.threshold:.6g} to msvit-predict"
        code = EXIT_OK
    write_report(o, prov, out, published)
    for s in items:
        if not s.usable:
            print(f"{s.status} ({LABELS[s.label]}) {short(s.source, 50)}: {s.message[:120]}")
    print(f"{len(items)} inputs scored in {time.perf_counter() - t0:.1f} s: {len(o.real)} real and {len(o.fake)} "
          f"fake with a score, {prov['counts']['skipped']} without")
    for line in summary_lines(o):
        print(line)
    print(f"published: {published}")
    print(f"report: {out / 'report.md'}")
    return code


def main(argv: list[str] | None = None) -> int:
    return run_cli(run, build_parser().parse_args(argv), "interrupted: nothing was published", prog="msvit-calibrate")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
