"""INT8 coverage of real artifacts with default settings: the share of MACs and of weighted
layers that each backend's INT8 export really runs in int8 (read off the exported graph), next
to its decisions on a held-out folder (agreement at 0.5 and max |ΔP| vs PyTorch FP32).

    python research/int8_coverage.py --weights ../shared/weights/ms_eff_vit_b0_demo.bin \
        --calib ../shared/data/faces/calib --eval ../shared/data/faces/eval --targets onnx trt openvino executorch

The guard never sees --eval (it verifies on the calibration images, the default); ExecuTorch
takes minutes. ``--top N`` also lists each artifact's N largest float layers.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from msvit.data import load_images
from msvit.export import export
from msvit.model import create_model
from msvit.quantize import load_calibration
from msvit.runtime.coverage import Coverage, onnx_coverage, openvino_coverage

#: targets whose file can be re-read here (a .pte hides its graph: its export records the
#: coverage of the program it lowered)
FROM_FILE = {"onnx": onnx_coverage, "trt": onnx_coverage, "openvino": openvino_coverage}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--targets", nargs="+", default=["onnx", "openvino"])
    ap.add_argument("--out", type=Path, default=None, help="keep the artifacts here (default: a temp dir)")
    ap.add_argument("--top", type=int, default=0, help="list the N largest float layers of each artifact")
    a = ap.parse_args()

    model = create_model("ms_eff_vit_b0", weights=a.weights)
    calib, eval_set = load_calibration(a.calib), load_images(a.eval)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = a.out or Path(tmp)
        for target in a.targets:
            res = export(model, target, "int8", out / target, calib=calib, verify_data=eval_set, log=None,
                         strict=False)
            # trt: no engine can be built here; its Q/DQ ONNX (what trtexec would build from) is judged
            onnx_only = target == "trt" and res.path is not None and res.path.suffix == ".onnx"
            if (res.status != "ok" and not onnx_only) or "macs_total" not in res.extra:
                rows.append((target, f"{res.status}: {res.message}", "", "", "", ""))
                continue
            e = res.extra
            cov = FROM_FILE[target](res.path) if target in FROM_FILE else None
            recorded = Coverage(e["int8_macs"], e["macs_total"], e["int8_layers"], e["layers_total"])
            if cov is not None:  # what the export recorded is what the file holds
                assert cov.info() == recorded.info(), (cov.info(), recorded.info())
            p = res.parity  # trt too: the export verifies the Q/DQ ONNX in onnxruntime
            rows.append((target, f"{100 * recorded.mac_share:.1f}%",
                         f"{recorded.macs_int8 / 1e6:.0f}/{recorded.macs_total / 1e6:.0f}",
                         f"{recorded.layers_int8}/{recorded.layers_total}",
                         f"{p.agreement:.3f}" if p else "-", f"{p.max_abs_dprob:.4f}" if p else "-"))
            print(f"{target}: {recorded.summary()}; guard {'passed' if e.get('guard_passed') else 'FAILED'}, "
                  f"{len(e.get('quantized_groups', []))} groups int8, {len(e.get('float_groups', []))} float"
                  + (f", parity {p.summary()}" if p else ""), flush=True)
            if a.top and cov is not None:
                for name, macs, _ in sorted((r for r in cov.by_layer if not r[2]), key=lambda r: -r[1])[:a.top]:
                    print(f"    float {macs / 1e6:7.2f} M MACs  {name}")
    head = ("target", "int8 MACs", "M MACs int8/total", "layers int8/total", "agreement", "max |ΔP|")
    w = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]
    print()
    for r in (head, *rows):
        print("  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip())


if __name__ == "__main__":
    main()
