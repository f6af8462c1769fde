"""``msvit-web`` (serve / build a web folder) and ``msvit-export``'s console script.

``msvit-export`` is served from here, the top layer, because its web target needs msvit.predict's
face detector (a layer above export): :func:`export_main` builds msvit.export.cli's parser, adds
``web`` to ``--target`` and otherwise runs export's CLI unchanged (``python -m msvit.export.cli``
stays the plain command, without ``--target web``)."""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Sequence

from ..errors import OutputExistsError, UsageError, run_cli
from ..export import cli as export_cli
from ..kit.cli import add_kit_argument, check_kit_argument, kit_dir_for, write_export_kits
from .build import WEB_PRECISIONS, build_web, check_vendored, web_folder_name

#: --web-runtime -> the export target whose artifact the page runs
WEB_RUNTIMES = {"litert": "litert", "onnx": "onnx"}

WEB_HELP = textwrap.dedent("""\
    web target (msvit-export --target web):
      msvit-export --target web --weights W.bin --out site/                      # fp32
      msvit-export --target web --precision int8 --weights W.bin --calib-data faces/calib --out site/
      msvit-export --target web --weights W.bin --kit faces/ --out site/         # + a kit (?kit)
      msvit-web serve site/ms_eff_vit_b0_fp32_web                                # open the printed URL
    exports and verifies the classifier as --target litert does (--web-runtime onnx: as --target onnx),
    then writes <artifact>_web/ beside it: index.html, app/, the artifact with its manifest and card,
    msvit-predict's BlazeFace model and the runtime's JS/WASM files (no CDN: works offline). LiteRT.js
    runs the .tflite faster than onnxruntime-web runs the .onnx in the browser (docs/web.md).
    --kit DATA: also the artifact's conformance kit, beside it (<artifact>.kit/) and in the folder
    (kit/), which the page runs at index.html?kit, stage by stage (docs/kit.md).
""")


def export_parser() -> argparse.ArgumentParser:
    p = export_cli.build_parser()
    p.epilog = (p.epilog or "") + "\n" + WEB_HELP
    for a in p._actions:
        if a.dest == "target":
            a.choices = [*a.choices, "web"]
            a.help = (a.help or "") + "; web: a static browser app around a LiteRT (or ONNX) artifact (see below)"
    p.add_argument("--web-runtime", choices=WEB_RUNTIMES, default=None,
                   help="--target web: the classifier's format and browser runtime: litert (default: .tflite on "
                        "LiteRT.js, the faster one measured) or onnx (.onnx on onnxruntime-web)")
    add_kit_argument(p)
    return p


def export_main(argv: Sequence[str] | None = None) -> int:
    """``msvit-export``: export's CLI plus ``--target web``."""
    parser = export_parser()
    args = parser.parse_args(argv)
    if args.target != "web" and args.web_runtime is not None:
        parser.error("--web-runtime goes with --target web")
    if args.target != "web":
        return run_cli(_export, args, export_cli._interrupted, prog="msvit-export")
    return run_cli(_export_web, args, export_cli._interrupted, prog="msvit-export")


def _export(args: argparse.Namespace) -> int:
    """Any other target: export's own work, then a kit beside each artifact with --kit DATA."""
    check_kit_argument(args)
    rc, results = export_cli.run_exports(args)
    if args.kit and rc == 0:
        write_export_kits(results, args.kit, overwrite=args.overwrite)
    return rc


def _export_web(args: argparse.Namespace) -> int:
    precision = args.precision or "fp32"
    if precision not in WEB_PRECISIONS:
        raise UsageError(f"--target web --precision {precision}: choose one of {', '.join(WEB_PRECISIONS)}")
    if args.input != "tensor":
        raise UsageError("--target web feeds the float32 tensor: drop --input image")
    check_kit_argument(args)
    check_vendored()
    target = WEB_RUNTIMES[args.web_runtime or "litert"]
    if target == "litert" and precision == "fp16":
        print("⚠️  --target web --precision fp16: half the download, but LiteRT.js runs fp16 weights several times "
              "slower than fp32 (it dequantizes them on every run; docs/web.md): fp32 or int8 are faster in the browser",
              file=sys.stderr)
    args.target, args.precision = target, precision
    artifact = Path(args.out) / export_cli.final_names(args, target, precision)[0]
    folder = Path(args.out) / web_folder_name(artifact)
    if folder.exists() and not args.overwrite:
        raise OutputExistsError(f"{folder} already exists: pass --overwrite to replace it (nothing was done)")
    rc, results = export_cli.run_exports(args)
    if rc != 0 or not artifact.is_file():
        return rc or 1
    kit = None
    if args.kit:  # written by msvit's own pipeline on this artifact, then copied into the folder
        mine = [r for r in results if r.path is not None and Path(r.path).resolve() == artifact.resolve()]
        kit = next(iter(write_export_kits(mine, args.kit, overwrite=args.overwrite)), None)
    build_web(artifact, folder, kit=kit, overwrite=args.overwrite)
    print(f"web app: {folder}\n  serve it: msvit-web serve {folder}" +
          (f"\n  kit mode: open index.html?kit there (the kit: {kit})" if kit else ""))
    return 0


# ------------------------------------------------------------------ msvit-web
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="msvit-web", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run msvit's deepfake check in a browser: serve a web folder (msvit-export --target web)\n"
                    "on this machine, or build one from a LiteRT (.tflite) or ONNX artifact already exported.",
        epilog=textwrap.dedent("""\
            examples:
              msvit-web serve msvit-artifacts/ms_eff_vit_b0_fp32_web            # http://127.0.0.1:8000/
              msvit-web serve DIR --port 0                                       # any free port
              msvit-web build msvit-artifacts/ms_eff_vit_b0_int8.tflite          # <artifact>_web/ beside it
              msvit-web build msvit-artifacts/ms_eff_vit_b0_fp32.onnx            # on onnxruntime-web

            file://: Chromium refuses ES modules and fetch() from file:// pages, so open the folder
            through a server: this one (loopback only, COOP/COEP sent so WASM runs threaded), or any
            static server (single-threaded without those headers).
            """))
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve a web folder on loopback")
    s.add_argument("folder", type=Path)
    s.add_argument("--port", type=int, default=8000, help="default 8000; 0: a free port")
    s.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback)")
    s.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (serves to the network)")
    b = sub.add_parser("build", help="build a web folder from an exported LiteRT or ONNX artifact")
    b.add_argument("artifact", type=Path)
    b.add_argument("--out", type=Path, help="default: <artifact>_web beside the artifact")
    b.add_argument("--kit", type=Path, help="a conformance kit folder to include (kit mode: index.html?kit)")
    b.add_argument("--overwrite", action="store_true")
    return p


def _run(args: argparse.Namespace) -> int:
    from .serve import make_server

    if args.cmd == "build":
        check_vendored()
        out = args.out or args.artifact.with_name(web_folder_name(args.artifact))
        build_web(args.artifact, out, kit=args.kit, overwrite=args.overwrite)
        print(f"web app: {out}\n  serve it: msvit-web serve {out}")
        return 0
    srv = make_server(args.folder, args.port, args.host, args.allow_remote)
    host = args.host if ":" not in args.host else f"[{args.host}]"
    print(f"serving {args.folder} at http://{host}:{srv.server_port}/  (Ctrl-C stops)", flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_run, build_parser().parse_args(argv), prog="msvit-web")


if __name__ == "__main__":
    sys.exit(main())
