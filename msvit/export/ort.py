"""ONNX Runtime Mobile: the ``.ort`` model, its reduced-operator config, and onnxruntime's own
mobile-usability report, all from onnxruntime's tools (no subprocess).

- ``onnxruntime.tools.convert_onnx_models_to_ort``: optimizes the ONNX model (level ``all``,
  "Fixed" style: the optimized graph is saved, nothing is replayed at load time) and writes
  ``<stem>.ort`` plus ``<stem>.required_operators.config`` (``…_and_types.config`` with type
  reduction): the operator list a reduced ORT Mobile build (``build.sh --minimal_build
  --include_ops_by_config``) needs. ``target_platform="arm"`` (the default: phones) leaves out the
  x86-only NCHWc layout transformer and lets QDQ int8 nodes fuse as on ARM.
- ``onnxruntime.tools.mobile_helpers.usability_checker``: NNAPI (Android) and Core ML
  (NeuralNetwork / MLProgram, iOS) coverage - partitions, supported nodes, unsupported ops -
  and its recommendation, from the same code ``python -m
  onnxruntime.tools.check_onnx_model_mobile_usability`` runs; returned as a dict (its log lines
  included) instead of printed.

The ``.ort`` keeps the ONNX ``metadata_props`` (:func:`msvit.runtime.ort_format.read_metadata`).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, TargetUnavailableError
from ..runtime.ort_format import check_ort_file, ort_format_version, ort_session

TARGET_PLATFORMS = ("arm", "amd64")


def _require() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise TargetUnavailableError(f"ORT Mobile conversion needs onnx and onnxruntime ({e}): "
                                     "pip install 'msvit[onnx]'") from None


def _first(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:300]


def parse_operator_config(path: str | os.PathLike) -> dict[str, dict[str, list[str]]]:
    """``required_operators.config`` -> {domain: {opset: [ops]}} (type-reduction annotations dropped)."""
    out: dict[str, dict[str, list[str]]] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        domain, opset, ops = line.split(";", 2)
        names = []
        for op in ops.split(","):
            op = op.split("{", 1)[0].strip()  # "Conv{...types...}" with type reduction
            if op:
                names.append(op)
        out.setdefault(domain, {})[opset] = names
    return out


def _partition_dict(info: Any) -> dict[str, Any]:
    n = int(info.num_nodes) or 1
    return {
        "nodes": int(info.num_nodes),
        "supported_nodes": int(info.num_supported_nodes),
        "supported_pct": round(100.0 * info.num_supported_nodes / n, 1),
        "partitions": int(info.num_partitions),
        "partition_sizes": [len(g) for g in info.supported_groups],
        "unsupported_ops": sorted(info.unsupported_ops),
        "unsupported_nodes_op": int(info.nodes_unsupported_due_to_op),
        "unsupported_nodes_dynamic_shape": int(info.nodes_unsupported_due_to_dynamic_input),
        "suitability": info.suitability().name,  # YES / MAYBE / NO (onnxruntime's own thresholds)
        "caveats": info.supported_ops_checker.get_caveats(),
    }


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def mobile_usability(onnx_path: str | os.PathLike, skip_optimize: bool = False) -> dict[str, Any]:
    """onnxruntime's mobile-usability check of an ONNX model, as a dict.

    Same steps as ``check_onnx_model_mobile_usability``: optimize to BASIC level (as the ``.ort``
    conversion will), infer shapes, then estimate NNAPI / Core ML NeuralNetwork / Core ML
    MLProgram partitioning from each EP's supported-op list. ``recommendation`` is its verdict:
    try NNAPI/Core ML (some EP is not NO) or use the CPU EP. ``log`` holds its report lines.
    """
    _require()
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    src = Path(onnx_path)
    if not src.is_file():
        raise ExportError(f"{src}: no such ONNX file")
    logger = logging.getLogger("msvit.ort_mobile_usability")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = _Collect()
    logger.addHandler(handler)
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="msvit-ort-usability-") as tmp:
            model_path = src
            if not skip_optimize:
                model_path = Path(tmp) / src.name
                optimize_model(src, model_path, use_external_initializers=True)
            shaped = ModelProtoWithShapeInfo(model_path).model_with_shape_info
            dynamic_inputs, n_dynamic = uc.check_shapes(shaped.graph, logger)
            eps = {
                "nnapi": uc.check_nnapi_partitions(shaped, True),
                "coreml_neuralnetwork": uc.check_coreml_partitions(shaped, True,
                                                                   "coreml_supported_neuralnetwork_ops.md"),
                "coreml_mlprogram": uc.check_coreml_partitions(shaped, True, "coreml_supported_mlprogram_ops.md"),
            }
            # onnxruntime's own end-to-end verdict and report lines (it re-runs the partitioning, same rules)
            try_eps = bool(uc.checker(model_path.resolve(strict=True), logger))
    except Exception as e:
        raise ExportError(f"onnxruntime mobile-usability check failed on {src.name}: {_first(e)}") from None
    finally:
        logger.removeHandler(handler)
    titles = {"nnapi": "NNAPI", "coreml_neuralnetwork": "CoreML NeuralNetwork", "coreml_mlprogram": "CoreML MLProgram"}
    result = {
        "tool": "onnxruntime.tools.check_onnx_model_mobile_usability",
        "onnxruntime_version": version("onnxruntime"),
        "dynamic_inputs": [i.name for i in dynamic_inputs],
        "dynamic_values": int(n_dynamic),
        **{k: _partition_dict(v) for k, v in eps.items()},
        "try_nnapi_or_coreml": try_eps,
        "recommendation": ("try the NNAPI (Android) / Core ML (iOS) EP and compare with the CPU EP: " + ", ".join(
            f"{titles[k]} {eps[k].suitability().name}" for k in eps)) if try_eps
        else "use the CPU EP (NNAPI / Core ML partitioning would cost more than it gains)",
        "seconds": round(time.perf_counter() - t0, 2),
        "log": handler.lines,
    }
    return result


def to_ort_format(onnx_path: Path, out_dir: Path, *, target_platform: str = "arm", type_reduction: bool = False,
                  check_usability: bool = True, verify_x: np.ndarray | None = None,
                  output_name: str = "logit") -> dict[str, Any]:
    """Convert ``onnx_path`` to ``out_dir/<stem>.ort`` + its reduced-operator config with onnxruntime's
    converter; returns paths, operator list, onnxruntime versions, the mobile-usability dict and,
    given ``verify_x`` (inputs for the ONNX model), parity of the ``.ort`` vs the ONNX in onnxruntime.

    Files appear in ``out_dir`` only once complete (converted in a temp dir, then renamed).
    """
    _require()
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    src = Path(onnx_path)
    if not src.is_file() or src.suffix.lower() != ".onnx":
        raise ExportError(f"{src}: expected an existing .onnx file")
    if target_platform not in TARGET_PLATFORMS:
        raise ExportError(f"target_platform must be one of {', '.join(TARGET_PLATFORMS)}, got {target_platform!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=".msvit-ort-", dir=out_dir))
    printed = io.StringIO()
    try:
        # the converter writes next to its input's relative path: give it a private copy to convert
        staged = work / "in" / src.name
        staged.parent.mkdir()
        try:
            os.link(src, staged)
        except OSError:
            shutil.copy2(src, staged)
        for ext in (".data", ".onnx.data"):  # external weights, if the model has them
            side = src.with_name(src.stem + ext) if ext == ".data" else src.with_name(src.name + ".data")
            if side.exists():
                shutil.copy2(side, staged.parent / side.name)
        conv_out = work / "out"
        tool_log = logging.getLogger("ort_format_model.utils")  # logs "Created config in <temp dir>" at INFO
        old_level = tool_log.level
        tool_log.setLevel(logging.WARNING)
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            try:
                convert_onnx_models_to_ort(staged, output_dir=conv_out, optimization_styles=[OptimizationStyle.Fixed],
                                           target_platform=target_platform, enable_type_reduction=type_reduction)
            except Exception as e:
                raise ExportError(f"onnxruntime .ort conversion failed: {_first(e)}") from None
            finally:
                tool_log.setLevel(old_level)
        orts = sorted(conv_out.glob("*.ort"))
        configs = sorted(conv_out.glob("*.config"))
        if len(orts) != 1 or len(configs) != 1:
            raise ExportError(f"onnxruntime .ort conversion produced {[p.name for p in conv_out.iterdir()]}, "
                              "expected one .ort and one .config")
        check_ort_file(orts[0])
        ort_path, config_path = out_dir / orts[0].name, out_dir / configs[0].name
        os.replace(orts[0], ort_path)
        os.replace(configs[0], config_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info: dict[str, Any] = {
        "ort_path": str(ort_path), "config_path": str(config_path), "source_onnx": str(src),
        "tool": "onnxruntime.tools.convert_onnx_models_to_ort",
        "onnxruntime_version": version("onnxruntime"), "ort_format_version": ort_format_version(ort_path),
        "optimization_level": os.getenv("ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL", "all"),
        "optimization_style": "Fixed", "target_platform": target_platform, "type_reduction": type_reduction,
        "size_bytes": ort_path.stat().st_size, "onnx_size_bytes": src.stat().st_size,
        "operators": parse_operator_config(config_path),
        "convert_seconds": round(time.perf_counter() - t0, 2),
    }
    info["operator_count"] = sum(len(v) for d in info["operators"].values() for v in d.values())
    if verify_x is not None:
        info["parity"] = ort_parity(src, ort_path, verify_x, output_name)
    if check_usability:
        info["mobile_usability"] = mobile_usability(src)
    return info


def ort_parity(onnx_path: str | os.PathLike, ort_path: str | os.PathLike, x: np.ndarray,
               output_name: str = "logit") -> dict[str, Any]:
    """Run the ``.ort`` and its source ONNX in onnxruntime (CPU, one image at a time, batch 1 graphs)
    on ``x`` and compare ``output_name``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    ref_s = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    got_s = ort_session(ort_path)
    name = ref_s.get_inputs()[0].name
    b = ref_s.get_inputs()[0].shape[0]
    b = b if isinstance(b, int) and b > 0 else len(x)
    x = np.ascontiguousarray(x, np.float32)
    ref, got = [], []
    for i in range(0, len(x) - len(x) % b, b):
        ref.append(ref_s.run([output_name], {name: x[i:i + b]})[0])
        got.append(got_s.run([output_name], {name: x[i:i + b]})[0])
    ref_a, got_a = np.concatenate(ref), np.concatenate(got)
    d = np.abs(ref_a.astype(np.float64) - got_a.astype(np.float64))
    return {"n": int(len(ref_a)), "output": output_name, "max_abs": float(d.max()), "mean_abs": float(d.mean())}


__all__ = ["mobile_usability", "ort_parity", "parse_operator_config", "to_ort_format"]


def export(ctx: Any) -> Any:
    """``--target ort``: the verified ONNX (fp32, or the guarded int8 Q/DQ graph) converted to
    ``.ort`` + its reduced-operator config, with onnxruntime's mobile-usability report."""
    from .core import TargetOutput
    from .onnx import export_fp32_onnx, int8_onnx

    src = ctx.work_dir / "src" / f"{ctx.stem}.onnx"
    src.parent.mkdir()
    extra: dict[str, Any] = {}
    res = None
    if ctx.precision == "int8":
        res = int8_onnx(ctx, src)
    else:
        export_fp32_onnx(ctx.model, src, batch=ctx.batch, dynamic_batch=ctx.dynamic_batch, opset=ctx.opset,
                         metadata=ctx.metadata, input_kind=ctx.options.input)
    info = to_ort_format(src, ctx.work_dir)
    ort_path, config = Path(info.pop("ort_path")), Path(info.pop("config_path"))
    info.pop("source_onnx", None)
    extra.update(ort=info)
    mu = info.get("mobile_usability") or {}
    note = ""
    if isinstance(mu, dict) and mu.get("recommendation"):
        note = f"mobile usability: {mu['recommendation']}"[:200]
    if res is not None:
        out = TargetOutput.int8(ort_path, res, extra)
        out.files = [ort_path, config]
        return out
    return TargetOutput(ort_path, [ort_path, config], extra=extra, note=note)
