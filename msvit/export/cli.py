"""msvit-export: turn an MS-Eff-ViT checkpoint into verified deployment artifacts."""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Sequence

from ..errors import MsvitError, run_cli
from .targets import PRECISIONS, TARGETS

EPILOG = textwrap.dedent("""\
    targets (artifact · precisions · where it runs):
    {table}

    examples:
      msvit-export --target onnx --weights ms_eff_vit_b0_celeb_df_v2.bin
      msvit-export --target trt --precision fp16 --weights W.bin          # Jetson: TensorRT 10 plan
      msvit-export --target trt --precision int8 --weights W.bin --calib-data faces/
      msvit-export --target coreml --precision fp16 --weights W.bin --min-deployment-target iOS16
      msvit-export --target all --weights W.bin --out artifacts/ --verify-data faces/eval

    Every artifact that can run here is compared with the PyTorch model before it is
    reported ✅ (FP32: |Δlogit| <= 1e-4, FP16: <= 1e-2, INT8: decision agreement guard).
    Without --verify-data, 8 deterministic synthetic images are used: real face crops
    are a better check. A manifest <artifact>.json (metadata, parity, sha256) is written
    beside each artifact; files appear under their final names only once complete.

    exit status: 0 all requested artifacts ✅; 1 an export or a parity check failed;
    2 bad arguments or input; 3 the target cannot be finished on this host (e.g. TensorRT
    without a GPU: the ONNX and the trtexec line are still written). With --target all,
    targets that cannot be finished here are reported but do not fail the run.
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
    p.add_argument("--precision", choices=PRECISIONS, help="default: the target's own (fp32; fp16 for trt/coreml)")
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
    o = p.add_argument_group("output and checks")
    o.add_argument("--out", type=Path, default=Path("msvit-artifacts"), help="output folder (default msvit-artifacts)")
    o.add_argument("--verify-data", type=Path, help="folder/CSV of face images to verify parity on")
    q = p.add_argument_group("int8")
    q.add_argument("--calib-data", type=Path, help="folder (recursive) or CSV of face images for INT8 calibration")
    q.add_argument("--calib-size", type=int, default=None, help="images to use (default all, max 512)")
    q.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"], default=None,
                   help="activation range method (default: the measured best per target, see README)")
    q.add_argument("--max-auc-drop", type=float, default=0.005, help="accuracy guard: max AUC drop vs FP32")
    q.add_argument("--min-agreement", type=float, default=0.99, help="accuracy guard: min decision agreement")
    q.add_argument("--max-dprob", type=float, default=0.05,
                   help="accuracy guard: max |P(fake) INT8 - P(fake) FP32| on any verify image (default 0.05)")
    q.add_argument("--sensitivity-dprob", type=float, default=0.02,
                   help="INT8 plan: simulated max |ΔP| the chosen INT8 layers may add (default 0.02)")
    t = p.add_argument_group("target options")
    t.add_argument("--trt-version", default=None, help="plan for TensorRT 10 or 11 (default: installed, else 10)")
    t.add_argument("--min-deployment-target", default="iOS16", help="Core ML minimum deployment target")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_run, build_parser().parse_args(argv), "interrupted: nothing was published for the target in progress")


def _run(args: argparse.Namespace) -> int:
    from ..data import resolve_data
    from ..model import create_model
    from ..quantize import Int8Options
    from . import TARGETS as T
    from . import ExportOptions, check_request, export

    names = list(T) if args.target == "all" else [args.target]
    if args.precision and args.target != "all":  # fail before building the model or downloading weights
        check_request(T[args.target], args.precision, calib_given=bool(args.calib_data))
    model = create_model(args.model, weights=args.weights, pretrained=bool(args.pretrained),
                         dataset=args.pretrained or "celeb_df_v2", attn_mode=args.attn_mode)
    calib = None
    if args.calib_data:
        from ..quantize.calib import load_calibration

        calib = load_calibration(args.calib_data, model.img_size, args.calib_size)
    verify = resolve_data(args.verify_data, model.img_size)  # read once, for every target
    int8 = Int8Options(calib_method=args.calib_method, min_agreement=args.min_agreement,
                       max_auc_drop=args.max_auc_drop, max_dprob=args.max_dprob,
                       sensitivity_dprob=args.sensitivity_dprob, verify_data=verify if args.verify_data else None)
    options = ExportOptions(with_prob=args.prob, trt_version=args.trt_version, max_batch=args.max_batch,
                            minimum_deployment_target=args.min_deployment_target, int8=int8)
    results = []
    for name in names:
        prec = args.precision if args.precision in T[name].precisions else None
        if args.target == "all" and args.precision and prec is None:
            continue
        results.append(export(model, name, prec, args.out, batch=args.batch, dynamic_batch=args.dynamic_batch,
                              opset=args.opset, verify_data=verify, calib=calib, options=options,
                              strict=False))
    _print_table(results)
    for r in results:
        if "trtexec" in r.extra and not r.ok:
            print(f"TensorRT: finish on the device with:\n  cd {args.out} && {r.extra['trtexec']}")
    if any(r.status == "failed" for r in results):
        return 1
    if args.target != "all" and any(r.status == "unavailable" for r in results):
        return 3
    return 0


def _print_table(results: list) -> None:
    from rich.console import Console
    from rich.table import Table

    tab = Table(title="msvit-export", show_lines=False)
    for col in ("", "target", "precision", "artifact", "MB", "s", "max|Δlogit|", "max|ΔP|", "agree", "note"):
        tab.add_column(col, justify="right" if col in ("MB", "s", "max|Δlogit|", "max|ΔP|", "agree") else "left")
    for r in results:
        par = r.parity
        note = r.message if not r.ok else ("structure verified (cannot run here)" if r.verified == "structure"
                                          else (par.data if par else ""))
        tab.add_row(r.icon, r.target, r.precision, r.path.name if r.path else "-",
                    f"{r.size_bytes / 1e6:.1f}" if r.size_bytes else "-", f"{r.seconds:.1f}",
                    f"{par.max_abs_dlogit:.1e}" if par else "-", f"{par.max_abs_dprob:.1e}" if par else "-",
                    f"{par.agreement:.3f}" if par else "-", note)
    Console(width=max(160, Console().width)).print(tab)


if __name__ == "__main__":
    sys.exit(main())
