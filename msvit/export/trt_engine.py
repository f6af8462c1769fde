"""ONNX -> TensorRT engine export for the CNN+ViT classifier (input ``image``, output ``logit`` (B, 1)).

Targets the TensorRT 10 and TensorRT 11 Python APIs. Everything that touches ``tensorrt``, CUDA or
torch is imported lazily, so the planning / header / compatibility logic runs (and is tested) on a
machine without a GPU.

Precision policy (see ``plan_build``):

* TRT 11 removed every precision builder flag (FP16, INT8, BF16, FP8, ...), the INT8 calibrator API
  and trtexec's ``--fp16/--int8/--best``; all networks are strongly typed, so precision must come
  from the ONNX itself: an FP16 ONNX (ModelOpt AutoCast) or a Q/DQ ONNX (explicit quantization).
* TRT 10 still has weak typing. For fp16 we keep the classic ``BuilderFlag.FP16`` on the fp32 ONNX
  (one ONNX artifact, no ModelOpt step; deprecated in 10.12 but functional for all of 10.x).
  int8 is a strongly typed build from a Q/DQ ONNX with no flag: the explicit-quantization guide says
  precision build flags "are not required and should not be specified" with strong typing.

The engine file header, probing and the runner live in :mod:`msvit.runtime.tensorrt`.
"""
from __future__ import annotations

import math
import os
import shlex
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..runtime.tensorrt import (HEADER_FORMAT, _require_runtime, _trt_logger, current_gpu, probe,
                                write_engine_file)

__all__ = ["BuildPlan", "build_engine", "plan_as_dict", "plan_build", "probe", "trtexec_command"]

PRECISIONS = ("fp32", "fp16", "int8")
_DEFAULT_WORKSPACE = 1 << 30

# --------------------------------------------------------------------------------------------------
# Planning (pure)
# --------------------------------------------------------------------------------------------------


@dataclass
class BuildPlan:
    """Every precision/shape decision for one engine build, as plain data."""

    trt_major: int
    precision: str  # 'fp32' | 'fp16' | 'int8'
    strongly_typed: bool
    builder_flags: list[str]  # names of trt.BuilderFlag members, e.g. ['FP16']
    onnx_kind: str  # which ONNX the build needs: 'fp32' | 'fp16' | 'qdq'
    profile: dict[str, Any] | None  # {'input', 'min', 'opt', 'max'} for dynamic batch, else None
    workspace_bytes: int = _DEFAULT_WORKSPACE
    notes: list[str] = field(default_factory=list)  # human-readable reasons, copied into metadata


def _trt_major(trt_version: str) -> int:
    try:
        return int(str(trt_version).strip().split(".", 1)[0])
    except ValueError:
        raise ValueError(f"cannot parse TensorRT version {trt_version!r}") from None


def plan_build(
    trt_version: str,
    precision: str,
    *,
    dynamic_batch: bool,
    max_batch: int,
    batch: int,
    input_name: str = "image",
    input_hw: tuple[int, int] = (224, 224),
    workspace_bytes: int = _DEFAULT_WORKSPACE,
) -> BuildPlan:
    """Decide network typing, builder flags, required ONNX flavour and the optimization profile."""
    major = _trt_major(trt_version)
    if major < 10:
        raise ValueError(f"TensorRT {trt_version} is not supported (need >= 10: name-based I/O, execute_async_v3)")
    precision = str(precision).lower()
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if dynamic_batch and not 1 <= batch <= max_batch:
        raise ValueError(f"need 1 <= batch <= max_batch for a dynamic profile, got batch={batch} max_batch={max_batch}")
    if workspace_bytes < 1:
        raise ValueError("workspace_bytes must be positive")

    h, w = (int(v) for v in input_hw)
    profile = None
    if dynamic_batch:
        # Only the batch axis is dynamic; opt = the batch we expect to serve, so kernels are tuned for it.
        profile = {
            "input": input_name,
            "min": [1, 3, h, w],
            "opt": [int(batch), 3, h, w],
            "max": [int(max_batch), 3, h, w],
        }

    notes: list[str] = []
    if precision == "fp32":
        # Strongly typed fp32 is exactly fp32 semantics, and is what TRT 11 does anyway.
        strongly_typed, flags, onnx_kind = True, [], "fp32"
    elif precision == "fp16" and major == 10:
        # Weak typing: TRT picks fp16 or fp32 per layer from the fp32 ONNX. Flags are incompatible with a
        # strongly typed network, so this build is the only weakly typed one.
        strongly_typed, flags, onnx_kind = False, ["FP16"], "fp32"
        notes.append("TRT 10 fp16 uses BuilderFlag.FP16 (weak typing, deprecated since 10.12) on the fp32 ONNX")
    elif precision == "fp16":
        strongly_typed, flags, onnx_kind = True, [], "fp16"
        notes.append("TRT >= 11 has no FP16 flag: pass an FP16 ONNX (e.g. python -m modelopt.onnx.autocast)")
    else:  # int8: explicit quantization on both majors, no calibrator (removed in TRT 11)
        strongly_typed, flags, onnx_kind = True, [], "qdq"
        notes.append("int8 needs a Q/DQ ONNX (explicit quantization); no INT8 flag, no calibrator")

    return BuildPlan(
        trt_major=major,
        precision=precision,
        strongly_typed=strongly_typed,
        builder_flags=flags,
        onnx_kind=onnx_kind,
        profile=profile,
        workspace_bytes=int(workspace_bytes),
        notes=notes,
    )


def _shape_str(shape: list[int] | tuple[int, ...]) -> str:
    return "x".join(str(int(d)) for d in shape)


def trtexec_command(onnx_path: str | os.PathLike[str], engine_path: str | os.PathLike[str], plan: BuildPlan) -> str:
    """The trtexec line that builds the same engine (a raw plan: no metadata header)."""
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    # --stronglyTyped is opt-in on TRT 10 only; TRT 11 documents it as always on / no longer needed.
    if plan.strongly_typed and plan.trt_major == 10:
        args.append("--stronglyTyped")
    # Precision flags only exist on TRT 10 (TRT 11 removed --fp16/--int8/--best).
    if plan.trt_major == 10:
        args += [f"--{f.lower()}" for f in plan.builder_flags]
    if plan.profile is not None:
        name = plan.profile["input"]
        for key, opt in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
            args.append(f"{opt}={name}:{_shape_str(plan.profile[key])}")
    args.append(f"--memPoolSize=workspace:{max(1, math.ceil(plan.workspace_bytes / (1 << 20)))}M")
    return shlex.join(args)


# --------------------------------------------------------------------------------------------------
# Build / load (need TensorRT + GPU)
# --------------------------------------------------------------------------------------------------


def _network_flags(trt: Any, plan: BuildPlan) -> int:
    # EXPLICIT_BATCH is never passed: ignored since TRT 10. On TRT >= 11 strong typing is always on and
    # the STRONGLY_TYPED flag is deprecated/ignored, so pass nothing there either.
    if plan.trt_major >= 11 or not plan.strongly_typed:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _parser_errors(parser: Any) -> list[str]:
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        try:
            out.append(f"[{err.code()}] node {err.node()}: {err.desc()}")
        except Exception:
            out.append(str(err))
    return out


def _check_network_matches_plan(trt: Any, network: Any, plan: BuildPlan, onnx_path: Path) -> None:
    """Fail early (instead of silently building fp32) when the ONNX flavour does not fit the plan."""
    inputs = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
    if plan.profile is not None:
        if plan.profile["input"] not in inputs:
            raise ValueError(f"{onnx_path}: no input named {plan.profile['input']!r} (inputs: {sorted(inputs)})")
    else:
        dyn = {k: v for k, v in inputs.items() if any(d < 0 for d in v)}
        if dyn:
            raise ValueError(f"{onnx_path}: dynamic inputs {dyn} need plan_build(..., dynamic_batch=True)")
    if plan.onnx_kind == "fp32":
        return
    layer_types, tensor_types = set(), set()
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        layer_types.add(layer.type)
        for j in range(layer.num_outputs):
            tensor_types.add(layer.get_output(j).dtype)
    if plan.onnx_kind == "qdq" and not {trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE} & layer_types:
        raise ValueError(f"{onnx_path}: int8 needs a Q/DQ ONNX (explicit quantization); no Q/DQ nodes found")
    if plan.onnx_kind == "fp16" and trt.DataType.HALF not in tensor_types:
        raise ValueError(f"{onnx_path}: fp16 on TensorRT {plan.trt_major} needs an FP16 ONNX; network has no fp16 tensors")


def build_engine(
    onnx_path: str | os.PathLike[str],
    engine_path: str | os.PathLike[str],
    plan: BuildPlan,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Build ``plan`` from ``onnx_path`` and write header+engine to ``engine_path``; returns the header."""
    trt = _require_runtime()
    onnx_path = Path(onnx_path)
    running_major = _trt_major(trt.__version__)
    if running_major != plan.trt_major:
        raise ValueError(
            f"plan is for TensorRT {plan.trt_major}.x but TensorRT {trt.__version__} is installed; "
            "call plan_build(tensorrt.__version__, ...)"
        )
    logger = _trt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, plan))
    parser = trt.OnnxParser(network, logger)  # keep alive until the build: it owns the weights
    if not parser.parse_from_file(str(onnx_path)):
        errs = _parser_errors(parser) or ["(no parser error recorded; see TensorRT log)"]
        raise RuntimeError(f"TensorRT failed to parse {onnx_path}:\n  " + "\n  ".join(errs))
    _check_network_matches_plan(trt, network, plan, onnx_path)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(plan.workspace_bytes))
    for name in plan.builder_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:
            raise ValueError(f"trt.BuilderFlag.{name} does not exist in TensorRT {trt.__version__}")
        config.set_flag(flag)
    if plan.profile is not None:
        profile = builder.create_optimization_profile()
        p = plan.profile
        profile.set_shape(p["input"], tuple(p["min"]), tuple(p["opt"]), tuple(p["max"]))
        config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT engine build failed for {onnx_path} (see the TensorRT log above)")

    header = dict(metadata)
    header.update(  # ours win over caller keys: the loader trusts these
        {
            "format": HEADER_FORMAT,
            "tensorrt_version": trt.__version__,
            **current_gpu(),
            "precision": plan.precision,
            "strongly_typed": plan.strongly_typed,
            "builder_flags": list(plan.builder_flags),
            "onnx_kind": plan.onnx_kind,
            "profile": plan.profile,
            "workspace_bytes": plan.workspace_bytes,
            "onnx": onnx_path.name,
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    write_engine_file(engine_path, serialized, header)
    return header


def plan_as_dict(plan: BuildPlan) -> dict[str, Any]:
    """JSON-friendly view of a plan (for logs / reports)."""
    return asdict(plan)
