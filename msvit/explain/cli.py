"""msvit-explain (and ``msvit-predict --explain DIR``): the verdict, and where in the face each
branch saw it. The face pipeline and frame sampling are msvit-predict's (same options); for every
input with a verdict, the frames that drive it (top-k by P(fake) for a fake verdict, bottom-k for
a real one) get their maps.

Exit codes: msvit-predict's (0 all inputs ok; 1 some input got no verdict; 2 bad arguments, an
unknown method or one the artifact cannot serve; 3 runtime not installed; 130 interrupted).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MsvitError, UsageError, run_cli
from ..fileio import atomic_write, atomic_write_text, check_output_dir
from ..predict import cli as predict_cli, draw
from ..predict.detector import WEIGHTS_SUFFIXES
from .methods import ARTIFACT_METHODS, METHODS, ArtifactExplainer, MapSpec, TorchExplainer, map_drift, plan_maps

INDEX_NAME = "explain.json"
EPILOG = """\
methods (array <branch>_<method> in <input stem>.npz; DeepGuard's branch in brackets):
{methods}
  --weights: all of them through pytorch-grad-cam (default: DeepGuard's six, each on its branch).
  --artifact: gradient-free ones ({artifact}) from an artifact exported with
  msvit-export --explain-outputs (onnx, openvino, executorch); --reference adds the map drift
  (correlation with the reference's map, e.g. an FP32 artifact or the weights).

outputs in --out: per input (per explained frame of a video) <stem>.npz with the (S, S) maps in
[0, 1] at the model's input resolution, an overlay PNG per map (<stem>_<branch>_<method>.png, the
crop's size, letterbox padding removed), a contact sheet <stem>_sheet.png for videos, and
explain.json indexing inputs, frames, P(fake) and files.

exit codes: 0 all inputs ok; 1 some input got no verdict (status says why; no map); 2 bad
arguments, unknown method or a method the artifact cannot serve (before any work); 3 runtime
not installed; 130 interrupted.

examples:
  msvit-explain clip.mp4 face.jpg --weights ms_eff_vit_b0_celeb_df_v2.bin --out why/
  msvit-explain face.jpg --weights W.bin --out why/ --method hirescam --method eigencam
  msvit-explain clip.mp4 --artifact b0_int8_explain.onnx --reference b0_fp32_explain.onnx --out why/
  msvit-predict photos/ --artifact b0_fp32_explain.onnx --explain why/"""


def add_explain_arguments(p: argparse.ArgumentParser, predict: bool) -> None:
    g = p.add_argument_group("explain")
    if predict:
        g.add_argument("--explain", dest="explain_dir", metavar="DIR",
                       help="also draw class-activation maps into DIR (see msvit-explain --help)")
    else:
        g.add_argument("--out", dest="explain_dir", metavar="DIR", required=True, help="folder for maps and overlays")
    g.add_argument("--method", action="append", choices=list(METHODS), metavar="M",
                   help=f"repeatable: {', '.join(METHODS)} (default: DeepGuard's six with --weights, "
                        f"{', '.join(ARTIFACT_METHODS)} with --artifact)")
    g.add_argument("--branch", default="both", choices=("low", "high", "both"),
                   help="ViT branch(es) to explain (default both)")
    g.add_argument("--target", default="fake", choices=("fake", "real"),
                   help="class the gradient methods explain (default fake)")
    g.add_argument("--top-k", type=int, default=3, help="videos: frames explained (default 3)")
    g.add_argument("--box-threshold", type=float, default=None, metavar="T",
                   help="draw a box around the map's values >= T (0..1) on the overlays")
    g.add_argument("--reference", metavar="PATH",
                   help="artifact or weights to compare gradient-free maps with (map drift: correlation)")
    g.add_argument("--timing", action="store_true", help="print the cost of each map per crop (ms)")


def build_parser() -> argparse.ArgumentParser:
    p = predict_cli.build_parser()
    p.prog = "msvit-explain"
    p.description = ("The verdict for images and videos, and where in the face each ViT branch sees it:\n"
                     "class-activation maps per branch, as DeepGuard's results page shows them.")
    p.epilog = EPILOG.format(methods="\n".join(f"  {n:<19} [{m.branch}] {m.cam}"
                                               + ("" if m.gradients else " (no gradients: artifacts too)")
                                               for n, m in METHODS.items()),
                             artifact=", ".join(ARTIFACT_METHODS))
    add_explain_arguments(p, predict=False)
    return p


def build_predict_parser() -> argparse.ArgumentParser:
    p = predict_cli.build_parser()
    add_explain_arguments(p, predict=True)
    return p


def _explain_info(meta: dict[str, str], path: str, what: str) -> dict[str, Any]:
    if not meta.get("explain_outputs"):
        raise UsageError(f"{what} {path} has no explanation outputs: re-export it with msvit-export "
                         "--explain-outputs (onnx, openvino, executorch), or give --weights W.bin, which serves "
                         f"every method ({', '.join(METHODS)})")
    return json.loads(meta["explain_outputs"])


def _model_info(model: Any) -> dict[str, Any]:
    """The ``explain_outputs`` record a PyTorch model's own tokens answer to."""
    return {f"{b}_tokens": {"branch": b, "grid": g, "prefix_tokens": 1} for b, (_, g) in model.cam_layers().items()}


def validate(args: argparse.Namespace) -> list[MapSpec]:
    """Everything checked before any work: predict's checks, then the maps and what can serve them."""
    predict_cli.validate(args)
    check_output_dir(args.explain_dir, "--out" if args.prog_explain else "--explain")
    if args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    if args.box_threshold is not None and not 0 <= args.box_threshold <= 1:
        raise UsageError(f"--box-threshold must be in [0, 1], got {args.box_threshold}")
    specs = plan_maps(args.method, args.branch, gradients=bool(args.weights))
    if args.artifact:
        from .. import runtime

        _explain_info(runtime.read_metadata(args.artifact), args.artifact, "--artifact")
    if args.reference:
        ref = Path(args.reference)
        if not ref.exists():
            raise UsageError(f"--reference {ref}: no such file")
        if not any(not METHODS[s.method].gradients for s in specs):
            raise UsageError(f"--reference compares gradient-free maps ({', '.join(ARTIFACT_METHODS)}): add "
                             f"--method {ARTIFACT_METHODS[0]}")
        if ref.suffix.lower() not in WEIGHTS_SUFFIXES:
            from .. import runtime

            _explain_info(runtime.read_metadata(ref), str(ref), "--reference")
    args.keep_pixels = True
    return specs


@dataclass
class Explained:
    """What was drawn for one input (a row of explain.json)."""

    source: str
    kind: str
    status: str
    p_fake: float | None
    verdict: str | None
    message: str = ""
    frames: list[dict[str, Any]] = field(default_factory=list)
    sheet: str | None = None


class MapWriter:
    """``on_prediction`` hook of msvit-predict's loop: draws, saves and indexes the maps of one input."""

    def __init__(self, args: argparse.Namespace, specs: list[MapSpec]) -> None:
        self.args, self.specs = args, specs
        self.out = Path(args.explain_dir)
        self.explainer: Any = None
        self.reference: Any = None
        self.rows: list[Explained] = []
        self.ms: dict[str, list[tuple[float, int]]] = {s.key: [] for s in specs}  # (ms per crop, crops) per call

    def _open(self, det: Any) -> None:
        from ..predict.detector import open_session

        if self.args.weights:
            self.explainer = TorchExplainer(det.session.module, self.args.target)
        else:
            self.explainer = ArtifactExplainer(det.session, _explain_info(det.session.metadata, self.args.artifact,
                                                                          "--artifact"), det.size)
        if self.args.reference:
            ref = open_session(self.args.reference, self.args.threads, self.args.model)
            info = _model_info(ref.module) if hasattr(ref, "module") \
                else _explain_info(ref.metadata, self.args.reference, "--reference")
            self.reference = ArtifactExplainer(ref, info, det.size)
        self.out.mkdir(parents=True, exist_ok=True)

    def __call__(self, i: int, pred: Any, det: Any) -> None:
        row = Explained(pred.source, pred.kind, pred.status, pred.p_fake, pred.verdict, pred.message)
        self.rows.append(row)
        frames = [fr for fr in pred.frames if fr.p_fake is not None and fr.crop is not None]
        if not frames:
            return  # the status says why (no face, unreadable, ...): no map
        if pred.kind != "image":  # the frames that drive the verdict
            frames = sorted(frames, key=lambda f: f.p_fake, reverse=pred.verdict != "real")[: self.args.top_k]
        try:
            self._draw(i, pred, det, frames, row)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # one input's maps never stop the run (as in msvit-predict); the row says why
            if os.environ.get("MSVIT_DEBUG"):
                raise
            row.status = "explain_failed"
            row.message = str(e) if isinstance(e, MsvitError) else f"{type(e).__name__}: {e}"

    def _draw(self, i: int, pred: Any, det: Any, frames: list[Any], row: Explained) -> None:
        from ..preprocess import letterbox, normalize
        from .render import contact_sheet, overlay

        if self.explainer is None:
            self._open(det)
        x = normalize(np.stack([letterbox(fr.crop, det.size) for fr in frames]))
        maps, ms = self.explainer.maps(x, self.specs)
        for k, v in ms.items():
            self.ms[k].append((v, len(frames)))
        free = [s for s in self.specs if not METHODS[s.method].gradients]
        ref = self.reference.maps(x, free)[0] if self.reference is not None and free else {}
        stem = draw.safe_stem(i, pred.source)
        sheet_rows = []
        for j, fr in enumerate(frames):
            fstem = stem + (f"_f{fr.index:06d}" if pred.kind != "image" else "")
            arrays = {k: v[j] for k, v in maps.items()}
            atomic_write(self.out / f"{fstem}.npz", lambda f, a=arrays: _savez(f, a))
            files, tiles = {}, [("crop", fr.crop)]
            for spec in self.specs:
                img = overlay(fr.crop, arrays[spec.key], self.args.box_threshold)
                name = f"{fstem}_{spec.key}.png"
                draw.write_png(self.out / name, img)
                files[spec.key] = name
                tiles.append((spec.key, img))
            drift = {k: round(map_drift(arrays[k], r[j]), 4) for k, r in ref.items()}
            row.frames.append({"index": fr.index, "p_fake": round(fr.p_fake, 6), "npz": f"{fstem}.npz",
                               "overlays": files, **({"map_drift": drift} if drift else {})})
            sheet_rows.append((f"f{fr.index} P {fr.p_fake:.2f}", tiles))
        if pred.kind != "image":
            row.sheet = f"{stem}_sheet.png"
            draw.write_png(self.out / row.sheet, contact_sheet(sheet_rows))

    def finish(self) -> None:
        if not self.out.exists():
            self.out.mkdir(parents=True, exist_ok=True)
        doc = {"methods": [s.key for s in self.specs], "target": self.args.target,
               "model": self.args.artifact or self.args.weights, "reference": self.args.reference,
               "ms_per_crop": {k: round(_steady_ms(v), 3) for k, v in self.ms.items() if v},
               "inputs": [r.__dict__ for r in self.rows]}
        atomic_write_text(self.out / INDEX_NAME, json.dumps(doc, indent=1) + "\n")
        self.report()

    def report(self) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        out = Console(width=predict_cli.TABLE_WIDTH, soft_wrap=False)
        n = sum(len(r.frames) for r in self.rows)
        out.print(f"explained {n} crops of {sum(bool(r.frames) for r in self.rows)} inputs "
                  f"({', '.join(s.key for s in self.specs)}) -> {escape(str(self.out))}/ (index {INDEX_NAME})",
                  highlight=False)
        for r in self.rows:
            if r.status == "explain_failed":
                out.print(f"[yellow]explain_failed[/] {escape(r.source)}: {escape(r.message)}", highlight=False)
            drifts = [d for fr in r.frames for d in [fr.get("map_drift")] if d]
            if drifts:
                mean = {k: np.mean([d[k] for d in drifts]) for k in drifts[0]}
                out.print(f"{escape(predict_cli.short(r.source, 30))}: {r.verdict} {r.p_fake:.3f} · map drift r "
                          + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()), highlight=False)
        if self.args.timing and any(self.ms.values()):
            t = Table(title="cost per crop (ms; artifact maps include their forward pass)", width=70)
            for c in ("map", "crops", "first call", "median after"):
                t.add_column(c, justify="left" if c == "map" else "right")
            for k, v in self.ms.items():
                if v:
                    t.add_row(k, str(sum(n for _, n in v)), f"{v[0][0]:.1f}",
                              f"{_steady_ms(v):.1f}" if len(v) > 1 else "-")
            out.print(t)
            out.print("first call: includes one-time setup (imports, the runtime's warm-up)", style="dim")


def _steady_ms(calls: list[tuple[float, int]]) -> float:
    """Median cost per crop after the first call, which pays one-time setup (imports, warm-up)."""
    rest = [ms for ms, n in calls[1:] for _ in range(n)]
    return float(np.median(rest or [calls[0][0]]))


def _savez(f: Any, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v, np.float32) for k, v in arrays.items()})
    f.write(buf.getvalue())


def _run(args: argparse.Namespace) -> int:
    if args.list_detectors:
        return predict_cli.list_detectors()
    specs = validate(args)  # before the model is opened or anything is written
    writer = MapWriter(args, specs)
    rc = predict_cli.run(args, on_prediction=writer)
    writer.finish()
    return rc


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.prog_explain = True
    return run_cli(_run, args, "interrupted: files already written are complete (each written whole)",
                   prog="msvit-explain")


def predict_main(argv: list[str] | None = None) -> int:
    """``msvit-predict``, with ``--explain DIR``."""
    args = build_predict_parser().parse_args(argv)
    if args.explain_dir is None:
        return run_cli(predict_cli.run, args, "interrupted: nothing half-written (outputs are written whole at "
                                              "the end)", prog="msvit-predict")
    args.prog_explain = False
    return run_cli(_run, args, "interrupted: files already written are complete", prog="msvit-predict")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
