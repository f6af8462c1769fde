"""msvit-export: turn an MS-Eff-ViT checkpoint into verified deployment artifacts."""
from __future__ import annotations

import argparse
import math
import re
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

from ..errors import CheckpointError, DataError, MsvitError, OutputExistsError, UsageError, run_cli
from ..fileio import check_output_dir
from .auto import AUTO_TARGETS, DEVICE_CLASSES
from .targets import AUTO, PRECISIONS, TARGETS

EPILOG = textwrap.dedent("""\
    targets (artifact · precisions · where it runs):
    {table}

    examples:
      msvit-export --target onnx --weights ms_eff_vit_b0_celeb_df_v2.bin
      msvit-export --target trt --precision fp16 --weights W.bin          # Jetson: TensorRT 10 plan
      msvit-export --target trt --precision int8 --weights W.bin --calib-data faces/
      msvit-export --target coreml --precision fp16 --weights W.bin --min-deployment-target iOS16
      msvit-export --target all --weights W.bin --out artifacts/ --verify-data faces/eval
      msvit-export --target openvino --precision auto --weights W.bin --calib-data faces/calib
      msvit-export --target executorch --precision auto --device-class phone --weights W.bin --calib-data faces/calib

    Every artifact that can run here is compared with the PyTorch model before it is
    reported ✅ (FP32: |Δlogit| <= 1e-4, FP16: <= 1e-2 and the float test, BF16: the float
    test, INT8: decision agreement guard).
    Without --verify-data, 8 deterministic synthetic images are used: real face crops
    are a better check. A manifest <artifact>.json (metadata, parity, sha256) is written
    beside each artifact; files appear under their final names only once complete.
    Every argument and the --out folder are checked before any work starts. An artifact
    already under its final name is refused (exit 2) unless --overwrite is given.
    Work folders (.msvit-tmp-*) left in --out by killed exports are removed at the next
    export into the same folder. Files of --calib-data/--verify-data that cannot be read
    are skipped: the first few are named here, all of them in the manifest.

    exit status: 0 all requested artifacts ✅; 1 an export or a parity check failed, or an
    unexpected internal error (one line and the path of a file with the full traceback;
    --debug or MSVIT_DEBUG=1 prints it); 2 bad arguments or input (nothing is done);
    3 the target cannot be finished on this host (e.g. TensorRT without a GPU: the ONNX
    and the trtexec line are still written; or a precision this CPU cannot execute, e.g.
    OpenVINO bf16 without AVX512-BF16/AMX: said before any work); 130 Ctrl-C, 143 SIGTERM
    (the message names every artifact published before it; the one in progress is published
    whole or not at all, even under SIGKILL: the next export into --out rolls a killed
    publish back). With --target all, targets that cannot be finished here are reported but
    do not fail the run.
    TorchScript-mobile is deprecated upstream: prefer ExecuTorch (--target executorch).
""")


def _target_table() -> str:
    rows = []
    for t in TARGETS.values():
        where = {"any": "runs here", "macos": "runs on macOS/iOS", "cuda": "needs CUDA+TensorRT"}[t.runs_on]
        rows.append(f"  {t.name:<12} {t.suffix:<11} {','.join(t.precisions):<28} {where}"
                    + (f"  ({t.note})" if t.note else ""))
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="msvit-export",
        description="Export an MS-Eff-ViT (DeepGuard) model to ONNX, TensorRT, Core ML, TorchScript-mobile, "
                    "OpenVINO or ExecuTorch, verify it against PyTorch, and embed its metadata.",
        epilog=EPILOG.format(table=_target_table()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--target", default="onnx", choices=[*TARGETS, "all"], help="what to produce (default: onnx)")
    p.add_argument("--precision", choices=[*PRECISIONS, AUTO],
                   help="default: the target's own (fp32; fp16 for trt/coreml). bf16/fp16 run where the target's "
                        "runtime executes them on this CPU, judged against the model's own input-rounding noise "
                        "(--float-gate); int8 by its accuracy guard; auto: the fastest assignment that passes, "
                        "measured with the target's runtime here (docs: Precision, INT8 and auto)")
    p.add_argument("--device-class", choices=DEVICE_CLASSES, default="host",
                   help="auto: where the artifact will run. host (default): timed here; phone: not timed here, "
                        "the guarded candidate with the largest share of MACs in int8 wins")
    m = p.add_argument_group("model")
    m.add_argument("--model", default="ms_eff_vit_b0", choices=["ms_eff_vit_b0", "ms_eff_vit_b5"])
    w = m.add_mutually_exclusive_group()
    w.add_argument("--weights", type=Path, help="local checkpoint (.bin/.pth/.pt/.safetensors); default: untrained")
    w.add_argument("--pretrained", choices=["celeb_df_v2", "ff++"], help="download DeepGuard's release (cached)")
    m.add_argument("--attn-mode", default="deepguard", choices=["deepguard", "applied"],
                   help="ViT block: 'deepguard' (published checkpoints; attention output discarded) or 'applied'")
    s = p.add_argument_group("shape and graph")
    s.add_argument("--batch", type=int, default=1, help="static batch size (default 1)")
    s.add_argument("--dynamic-batch", action="store_true", help="dynamic batch axis (TensorRT: optimisation profile)")
    s.add_argument("--max-batch", type=int, default=16, help="TensorRT profile max batch with --dynamic-batch")
    s.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17, default 18)")
    s.add_argument("--prob", action="store_true", help="ONNX: add a 'prob' output = sigmoid(logit)")
    s.add_argument("--explain-outputs", action="store_true",
                   help="add each ViT branch's class-activation tokens as outputs low_tokens/high_tokens (logit "
                        "unchanged), so msvit-explain --artifact draws EigenCAM maps from the artifact alone "
                        "(onnx fp32/fp16/int8, openvino fp32/fp16, executorch fp32)")
    s.add_argument("--input", choices=["tensor", "image"], default="tensor",
                   help="tensor (default): normalised float32 NCHW; image: letterboxed uint8 RGB NHWC, the cast, "
                        "layout change and ImageNet normalisation in the graph, outputs prob + logit "
                        "(onnx, ort, openvino, executorch, torchscript, litert)")
    o = p.add_argument_group("output and checks")
    o.add_argument("--out", type=Path, default=Path("msvit-artifacts"), help="output folder (default msvit-artifacts)")
    o.add_argument("--verify-data", type=Path, help="folder/CSV of face images to verify parity on")
    o.add_argument("--overwrite", action="store_true",
                   help="replace artifacts already under their final names (default: refuse, exit 2)")
    o.add_argument("--debug", action="store_true",
                   help="print the full traceback of any error (also: MSVIT_DEBUG=1)")
    q = p.add_argument_group("int8")
    q.add_argument("--calib-data", type=Path, help="folder (recursive) or CSV of face images for INT8 calibration")
    q.add_argument("--calib-size", type=int, default=None,
                   help="images to use (default all up to 512; 8..512, larger is refused)")
    q.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"], default=None,
                   help="activation range method (default: the measured best per target, see docs/int8.md)")
    q.add_argument("--max-auc-drop", type=float, default=0.005, help="accuracy guard: max AUC drop vs FP32")
    q.add_argument("--min-agreement", type=float, default=0.99, help="accuracy guard: min decision agreement")
    q.add_argument("--max-dprob", type=_dprob_gate, default=0.05, metavar="DPROB|floor",
                   help="accuracy guard: max |P(fake) INT8 - P(fake) FP32| on any verify image (default 0.05); "
                        "'floor': keep decisions - max |ΔP| and flips within FP32's own under ±0.5 pixel-step "
                        "input noise on the same images (the model's noise floor; docs: Precision, INT8 and auto)")
    q.add_argument("--float-gate", choices=["floor", "int8"], default="floor",
                   help="how bf16/fp16 execution (alone or for an INT8 plan's float groups) is judged: "
                        "'floor' (default): max |ΔP| and flips within FP32's own input-rounding noise on the "
                        "same images, AUC drop <= --max-auc-drop; 'int8': INT8's gate (--max-dprob, tail bound)")
    q.add_argument("--no-stress-check", dest="stress", action="store_false",
                   help="skip INT8's stress check: by default an INT8 plan's max |ΔP| must also stay within "
                        "--max-dprob on its verification images with contrast x1.5, which drives activations "
                        "past their calibrated ranges as footage from elsewhere can")
    q.add_argument("--sensitivity-dprob", type=float, default=None,
                   help="INT8 plan: simulated |ΔP| bound the chosen INT8 layers may add "
                        "(default --max-dprob / 3: room for the real kernels' extra error)")
    t = p.add_argument_group("target options")
    t.add_argument("--trt-version", default=None, help="plan for TensorRT 10 or 11 (default: installed, else 10)")
    t.add_argument("--min-deployment-target", default="iOS16", help="Core ML minimum deployment target")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_run, build_parser().parse_args(argv), _interrupted, prog="msvit-export")


def _interrupted() -> str:
    """What Ctrl-C/SIGTERM print: exactly the sets published before it (publishing is never cut
    half-way: the signal waits for the set in progress)."""
    from .core import published_summary

    return f"interrupted: {published_summary()}"


def _plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(target, precision) of every export this command will run, in order."""
    out = []
    for name, t in (TARGETS.items() if args.target == "all" else [(args.target, TARGETS[args.target])]):
        if args.target == "all" and args.precision and args.precision not in (*t.precisions, *(
                [AUTO] if name in AUTO_TARGETS else [])):
            continue  # --target all: each target that takes the precision
        out.append((name, args.precision or t.default_precision))
    return out


def _trt_major(args: argparse.Namespace) -> int:
    from .tensorrt import DEFAULT_TRT_VERSION, installed_trt_version

    version = str(args.trt_version or installed_trt_version() or DEFAULT_TRT_VERSION)
    m = re.match(r"\s*(\d+)(?:\.|\s*$)", version)  # 10, 10.3, 10.3.0.post1
    if not m or int(m.group(1)) < 10:
        raise UsageError(f"--trt-version {version!r}: give a TensorRT version >= 10 (e.g. 10 or 10.3; "
                         "older TensorRT lacks name-based I/O)")
    return int(m.group(1))


def final_names(args: argparse.Namespace, target: str, precision: str) -> list[str]:
    """The names ``target`` publishes in --out (its manifest is ``<main>.json``)."""
    from .request import artifact_stem

    t = TARGETS[target]
    stem = artifact_stem(SimpleNamespace(variant=args.model, attn_mode=args.attn_mode), precision, args.batch,
                         args.dynamic_batch, args.input, args.explain_outputs)
    names = [stem + t.suffix]
    if target == "ort":
        names.append(stem + ".required_operators.config")
    if target == "openvino":
        names.append(stem + ".bin")
    if target == "trt":
        names.append(f"{stem}_trt{_trt_major(args)}.onnx")  # what the engine is built from (published too)
    return names


def _dprob_gate(text: str) -> float | str:
    """``--max-dprob``: a number, or ``floor`` (range checks are :func:`validate`'s)."""
    if text.strip().lower() == "floor":
        return "floor"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use a number in [0, 1] or 'floor'") from None


def _number(args, flag: str, lo: float | None = None, hi: float | None = None) -> None:
    v = getattr(args, flag.lstrip("-").replace("-", "_"))
    if v is None or isinstance(v, str):  # --max-dprob floor
        return
    if isinstance(v, float) and not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = (f"between {lo:g} and {hi:g}" if lo is not None and hi is not None
               else f">= {lo:g}" if lo is not None else f"<= {hi:g}")
        raise UsageError(f"{flag} must be {rng}, got {v}")


def validate(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Every check that needs neither the model nor the data: run before any work starts
    (a bad value exits 2 with nothing built, downloaded or written). Returns the plan."""
    from ..quantize.calib import MAX_CALIB, MIN_CALIB
    from .request import check_request
    from .core import existing_outputs, export_time
    from .onnx import OPSET_MIN

    for flag, lo, hi in (("--batch", 1, None), ("--max-batch", 1, None), ("--max-auc-drop", 0, 1),
                         ("--min-agreement", 0, 1), ("--max-dprob", 0, 1), ("--sensitivity-dprob", 0, 1)):
        _number(args, flag, lo, hi)
    try:
        import onnx

        opset_max = int(onnx.defs.onnx_opset_version())
    except Exception:  # onnx not installed: ONNX targets report that themselves
        opset_max = None
    if args.opset < OPSET_MIN or (opset_max is not None and args.opset > opset_max):
        raise UsageError(f"--opset {args.opset}: msvit exports opset {OPSET_MIN}"
                         + (f"..{opset_max} (the newest this onnx knows)" if opset_max else " or newer"))
    if args.calib_size is not None and not MIN_CALIB <= args.calib_size <= MAX_CALIB:
        raise UsageError(f"--calib-size {args.calib_size}: calibrate on {MIN_CALIB}..{MAX_CALIB} images "
                         f"(100-500 face crops is typical); larger sets are not used")
    plan = _plan(args)
    if args.input == "image" and args.target == "all":  # --target all skips what a target cannot do
        from .request import IMAGE_INPUT_TARGETS

        plan = [(n, p) for n, p in plan if n in IMAGE_INPUT_TARGETS]
    if args.explain_outputs:
        from .request import EXPLAIN_TARGETS, check_explain

        if args.target == "all":
            plan = [(n, p) for n, p in plan if p in EXPLAIN_TARGETS.get(n, ())]
        for name, prec in plan:
            try:
                check_explain(TARGETS[name], prec)
            except MsvitError as e:
                raise UsageError(str(e)) from None
    if not plan:
        raise UsageError(f"no target takes --precision {args.precision}" + (" with --input image"
                                                                            if args.input == "image" else ""))
    for name, prec in plan if args.target != "all" else []:
        if prec == AUTO:
            from .auto import check_auto

            check_auto(name, args.device_class)
            continue
        check_request(TARGETS[name], prec, calib_given=bool(args.calib_data))
        if args.input == "image":
            from .request import check_input

            try:
                check_input(TARGETS[name], prec, args.input)
            except MsvitError as e:
                raise UsageError(str(e)) from None
    if args.target in ("coreml", "all") and args.min_deployment_target:
        if not re.fullmatch(r"(iOS|macOS|watchOS|tvOS|visionOS)\d+", args.min_deployment_target):
            raise UsageError(f"--min-deployment-target {args.min_deployment_target!r}: expected e.g. iOS16, "
                             "iOS17, macOS13")
    if args.target == "coreml" and (args.dynamic_batch or args.batch != 1):
        raise UsageError("--target coreml takes one image per prediction: drop --batch/--dynamic-batch")
    if any(n == "trt" for n, _ in plan):
        _trt_major(args)
    export_time()  # SOURCE_DATE_EPOCH
    if args.weights is not None:
        if not args.weights.exists():
            raise CheckpointError(f"--weights {args.weights}: no such file")
        if args.weights.is_dir():
            raise CheckpointError(f"--weights {args.weights}: is a folder, not a checkpoint file")
    for flag, path in (("--verify-data", args.verify_data), ("--calib-data", args.calib_data)):
        if path is not None and not path.exists():
            raise DataError(f"{flag} {path}: no such file or folder")
    check_output_dir(args.out)
    if not args.overwrite:
        taken = [p for n, pr in plan for p in existing_outputs(args.out, final_names(args, n, pr))]
        if taken:
            raise OutputExistsError(f"{', '.join(p.name for p in taken)} already exist(s) in {args.out}: pass "
                                    "--overwrite to replace (nothing was done)")
    return plan


def _say_skipped(skipped, source, used: str) -> None:
    from ..data import skipped_summary

    if skipped:
        print(f"⚠️  {skipped_summary(skipped, source, used)} (all listed in the manifests)", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    return run_exports(args)[0]


def run_exports(args: argparse.Namespace) -> tuple[int, list]:
    """The command's work: (exit status, the ExportResult of every export), for callers that
    act on the artifacts afterwards (msvit.kit's ``--kit``)."""
    from .core import PUBLISHED

    PUBLISHED.clear()  # what this command publishes (main() may run more than once in a process)
    plan = validate(args)  # before building the model, reading data or writing anything

    from ..data import resolve_data
    from ..model import create_model
    from ..quantize import Int8Options
    from .api import export
    from .core import ExportOptions

    model = create_model(args.model, weights=args.weights, pretrained=bool(args.pretrained),
                         dataset=args.pretrained or "celeb_df_v2", attn_mode=args.attn_mode)
    calib = None
    if args.calib_data and any(prec in ("int8", AUTO, "bf16", "fp16") for _, prec in plan):
        # bf16/fp16 execution is judged by the guard on the same images as int8
        from ..quantize.calib import load_calibration

        calib = load_calibration(args.calib_data, model.img_size, args.calib_size)
        _say_skipped(calib.skipped, args.calib_data, "(calibration)")
    elif args.calib_data:
        print(f"⚠️  --calib-data {args.calib_data} is not used: no guarded export (int8, auto, bf16, fp16) "
              "was asked for", file=sys.stderr)
    verify = resolve_data(args.verify_data, model.img_size)  # read once, for every target
    _say_skipped(verify.skipped, args.verify_data, "(verification)")
    int8 = Int8Options(calib_method=args.calib_method, min_agreement=args.min_agreement,
                       max_auc_drop=args.max_auc_drop, max_dprob=args.max_dprob,
                       sensitivity_dprob=args.sensitivity_dprob, float_gate=args.float_gate, stress=args.stress,
                       verify_data=verify if args.verify_data else None)
    options = ExportOptions(input=args.input, with_prob=args.prob, explain_outputs=args.explain_outputs, trt_version=args.trt_version, max_batch=args.max_batch,
                            minimum_deployment_target=args.min_deployment_target, int8=int8,
                            overwrite=args.overwrite)
    results = []
    for name, prec in plan:
        results.append(export(model, name, prec if args.precision else None, args.out, batch=args.batch,
                              dynamic_batch=args.dynamic_batch, opset=args.opset, verify_data=verify, calib=calib,
                              options=options, strict=False, device_class=args.device_class))
    _print_table(results)
    for r in results:
        if "trtexec" in r.extra and not r.ok:
            print(f"TensorRT: finish on the device with:\n  cd {args.out} && {r.extra['trtexec']}")
    if any(r.status == "failed" for r in results):
        return 1, results
    if args.target != "all" and any(r.status == "unavailable" for r in results):
        return 3, results
    return 0, results


def _sci(x: float) -> str:  # 4.2e-6, not 4.2e-06: the table must fit 100 columns
    return f"{x:.1e}".replace("e-0", "e-").replace("e+0", "e+")


def _print_table(results: list) -> None:
    """One row per artifact in 100 columns; what is not ok, or only structure-verified, is said
    in a line under the table (a notes column would not fit)."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    datas = {r.parity.data for r in results if r.parity}
    tab = Table(title="msvit-export", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                caption=(f"max |Δ| and agreement vs PyTorch on {', '.join(sorted(datas))}; " if datas else "")
                + "INT8 = share of MACs run in int8")
    for col in ("", "target", "prec", "artifact", "MB", "s", "|Δlogit|", "|ΔP|", "agree", "INT8"):
        tab.add_column(col, justify="right" if col in ("MB", "s", "|Δlogit|", "|ΔP|", "agree", "INT8") else "left",
                       no_wrap=col != "artifact", overflow="fold")
    notes = []
    for r in results:
        par, share = r.parity, r.extra.get("int8_mac_share")
        tab.add_row(r.icon, r.target, r.precision, r.path.name if r.path else "-",
                    f"{r.size_bytes / 1e6:.1f}" if r.size_bytes else "-", f"{r.seconds:.0f}",
                    _sci(par.max_abs_dlogit) if par else "-", _sci(par.max_abs_dprob) if par else "-",
                    f"{par.agreement:.3f}" if par else "-", f"{100 * float(share):.0f}%" if share is not None else "")
        if r.ok and "auto" in r.extra:
            notes.append(f"{r.icon} {r.target} {r.message}")
        if not r.ok or r.verified == "structure":
            notes.append(f"{r.icon} {r.target} {r.precision}: "
                         + (r.message if not r.ok else "structure verified (cannot run here)"))
    con = Console()
    con = con if con.is_terminal else Console(width=100)
    con.print(tab)
    for n in notes:
        con.print(escape(n), highlight=False)  # notes may carry "[extra]"


if __name__ == "__main__":
    sys.exit(main())
