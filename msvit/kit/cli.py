"""``python -m msvit.kit write | run | check`` and msvit-export's ``--kit DATA``.

msvit-export lives below this layer, so it cannot import the kit: :func:`add_kit_argument`
adds the flag to its parser and :func:`write_export_kits` writes a kit beside each artifact
an export produced; the msvit-export console entry (msvit.web.cli.export_main) wires both in.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from ..errors import DataError, UsageError, run_cli
from ..predict.aggregate import AGG_MODES

KIT_SUFFIX = ".kit"
NO_DATA = ("--kit needs DATA: a folder (or list) of images and videos with faces, e.g. --kit faces/ or "
           "--kit clip.mp4. msvit ships no sample faces, and synthetic faces would test no face detector: the "
           "kit's cases must come from the kind of input your app will see")


def add_kit_argument(parser: argparse.ArgumentParser) -> None:
    """msvit-export's ``--kit DATA`` (repeatable paths after it are not taken: one DATA)."""
    parser.add_argument("--kit", nargs="?", const="", default=None, metavar="DATA",
                        help="also write a conformance kit beside each artifact that runs here "
                             "(<artifact>.kit/: golden frames, boxes, crops, P(fake) per stage; "
                             "docs/kit.md) from the images/videos in DATA (required: msvit ships no faces)")


def check_kit_argument(args: argparse.Namespace) -> None:
    """Before any export work: DATA given and present."""
    if args.kit is None:
        return
    if args.kit == "":
        raise UsageError(NO_DATA)
    if not Path(args.kit).exists():
        raise UsageError(f"--kit {args.kit}: no such file or folder")


def kit_dir_for(artifact: Path) -> Path:
    return artifact.parent / (artifact.name + KIT_SUFFIX)


def write_export_kits(results: list, data: str, overwrite: bool = False, threads: int | None = None,
                      log: Callable[[str], None] | None = print) -> list[Path]:
    """A kit beside every export result that is ok and ran here (``verified == "ran"``):
    ``<artifact>.kit/``. Returns the kit folders written."""
    from .write import write_kit

    done = []
    for r in results:
        if not r.ok or r.path is None or r.verified != "ran":
            if log and r.path is not None and r.ok:
                log(f"kit: {r.path.name} cannot run here (structure verified only): no kit written")
            continue
        out = kit_dir_for(Path(r.path))
        if log:
            log(f"kit: {out} from {data}")
        write_kit(r.path, data, out, overwrite=overwrite, threads=threads, log=log)
        done.append(out)
    return done


# --------------------------------------------------------------------------- python -m msvit.kit
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m msvit.kit", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Conformance kits: golden cases of msvit's whole pipeline (frames, face boxes, crop box,\n"
                    "letterboxed crop, model input, P(fake), verdict) that an app's pipeline is tested against.",
        epilog="examples:\n"
               "  python -m msvit.kit write --artifact b0.onnx faces/ clip.mp4 --out b0.kit\n"
               "  python -m msvit.kit run b0.kit --artifact b0_int8.tflite --out run.json\n"
               "  python -m msvit.kit check b0.kit run.json\n\n"
               "exit codes: 0 ok / conforms; 1 a stage departs; 2 bad arguments or unreadable kit/run;\n"
               "3 a runtime or the face detector is not installed.\nschema and tolerances: docs/kit.md")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write a kit for an artifact from images/videos")
    w.add_argument("data", nargs="+", metavar="DATA", help="images, videos, folders or .csv/.txt lists")
    w.add_argument("--artifact", required=True, help="artifact (or weights file) whose P(fake) the kit records")
    w.add_argument("--out", required=True, help="kit folder to create")
    w.add_argument("--num-frames", type=int, default=20, help="frames sampled per video (default %(default)s)")
    w.add_argument("--agg", default="conf", choices=AGG_MODES, help="video aggregation (default %(default)s)")
    w.add_argument("--conf-thres", type=float, default=0.5)
    w.add_argument("--min-face-ratio", type=float, default=0.01)
    w.add_argument("--margin", type=float, default=0.2)
    w.add_argument("--threshold", type=float, default=None, help="default: the artifact's own")
    w.add_argument("--overwrite", action="store_true", help="replace an existing kit folder")
    r = sub.add_parser("run", help="run a kit with an artifact and msvit's pipeline: a run JSON to check")
    r.add_argument("kit", help="kit folder")
    r.add_argument("--artifact", required=True)
    r.add_argument("--out", required=True, help="run JSON to write")
    r.add_argument("--save-crops", action="store_true", help="write the run's crops as PNG beside the JSON")
    c = sub.add_parser("check", help="compare a run with a kit stage by stage")
    c.add_argument("kit", help="kit folder (or its kit.json)")
    c.add_argument("run", help="run JSON (an app's, or from `run`), or another kit")
    c.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    for s in (w, r, c):
        s.add_argument("--debug", action="store_true", help="print the full traceback of any error")
    return p


def _run(args: argparse.Namespace) -> int:
    if args.cmd == "write":
        from .write import write_kit

        kit = write_kit(args.artifact, args.data, args.out, conf_thres=args.conf_thres,
                        min_face_ratio=args.min_face_ratio, margin=args.margin, num_frames=args.num_frames,
                        agg=args.agg, threshold=args.threshold, overwrite=args.overwrite, log=print)
        print(f"wrote {args.out}: {len(kit.cases)} cases, {sum(len(c.frames) for c in kit.cases)} frames")
        return 0
    if args.cmd == "run":
        from .run import run_kit

        run = run_kit(args.kit, args.artifact, args.out, save_crops=args.save_crops, log=print)
        print(f"wrote {args.out}: {len(run.cases)} cases")
        return 0
    from ..fileio import atomic_write_text
    from .check import check

    if args.json and Path(args.json).is_dir():
        raise DataError(f"--json {args.json}: is a folder")
    rep = check(args.kit, args.run)
    print(rep.summary())
    if args.json:
        atomic_write_text(args.json, json.dumps(rep.to_dict(), indent=1) + "\n")
    return 0 if rep.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_run, build_parser().parse_args(argv), "interrupted: nothing half-written", prog="msvit.kit")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
