"""ExecuTorch ``.pte`` for Android/iOS/embedded, delegated to XNNPACK.

``torch.export`` -> ``to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])``
-> ``to_executorch()``. Metadata travels inside the program as a constant method,
``get_metadata_json`` (written and read by :mod:`msvit.runtime.executorch`).

Shapes are static (``--batch N``); ``--dynamic-batch`` is refused with a clear error
rather than producing a program whose XNNPACK delegate may reject other batch sizes.
INT8 (PT2E + XNNPACKQuantizer, accuracy-guarded) lives in :mod:`msvit.quantize.executorch`.
fp16: the model in half precision behind fp32 I/O, lowered to XNNPACK's fp16 kernels (fp16 on
ARMv8.2 phones; on x86 XNNPACK converts with F16C), judged by the accuracy guard.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import ExportError
from ..model.info import model_info
from ..quantize import run_int8
from ..quantize.executorch import ExecuTorchInt8
from ..runtime.base import example_input, quiet_output
from ..runtime.executorch import METADATA_METHOD, metadata_methods
from .core import ExportContext, TargetOutput
from .graph import graph_module


def lower_to_pte(program: torch.export.ExportedProgram, path: Path, metadata: dict[str, str]) -> Path:
    """Lower an exported program to XNNPACK and write the ``.pte`` with metadata embedded."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        with quiet_output():
            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                               constant_methods=metadata_methods(metadata))
            et = edge.to_executorch()
    except Exception as e:  # the lowering stack raises many types; keep the first line
        raise ExportError(f"ExecuTorch lowering failed: {str(e).splitlines()[0][:300]}") from None
    path.write_bytes(et.buffer)
    return path


def export_program(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    try:
        with quiet_output():
            return torch.export.export(model.eval(), (example,))
    except Exception as e:
        raise ExportError(f"torch.export failed: {str(e).splitlines()[0][:300]}") from None


def export_fp32_pte(model: nn.Module, path: Path, metadata: dict[str, str], batch: int = 1,
                    input_kind: str = "tensor") -> Path:
    return lower_to_pte(export_program(graph_module(model, input_kind), example_input(model, batch, input_kind)),
                        path, metadata)


class HalfPrecision(nn.Module):
    """fp16 weights and arithmetic inside, fp32 in and out (callers feed the same tensors)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).half().eval()
        self.info = model_info(model)  # what wraps or traces it reads the model's facts (model_info)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


def check_static(ctx: ExportContext) -> None:
    if ctx.dynamic_batch:
        raise ExportError("ExecuTorch export uses static shapes: --dynamic-batch is not supported for "
                          "--target executorch; export with --batch N (one .pte per batch size)")


def export(ctx: ExportContext) -> TargetOutput:
    check_static(ctx)
    path = ctx.work_dir / f"{ctx.stem}.pte"
    meta = {**ctx.metadata, "backend": "xnnpack", "metadata_method": METADATA_METHOD}
    if ctx.precision == "int8":
        res = run_int8(ExecuTorchInt8(ctx.int8_job(meta), lower_to_pte, export_fp32_pte), path)
        return TargetOutput.int8(path, res)
    model = HalfPrecision(ctx.model) if ctx.precision == "fp16" else ctx.model
    module = graph_module(model, ctx.options.input, ctx.options.explain_outputs)
    lower_to_pte(export_program(module, ctx.example()), path, meta)
    return TargetOutput(path, [path], extra={"backend": "xnnpack"})


__all__ = ["METADATA_METHOD", "export", "export_fp32_pte", "lower_to_pte"]
