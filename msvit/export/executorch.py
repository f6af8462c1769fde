"""ExecuTorch ``.pte`` for Android/iOS/embedded, delegated to XNNPACK.

``torch.export`` -> ``to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])``
-> ``to_executorch()``. Metadata travels inside the program as a constant method,
``get_metadata_json`` (a JSON string of the flat metadata dict): apps read it with
``module.execute("get_metadata_json")``, :func:`read_metadata` does the same here.

Shapes are static (``--batch N``); ``--dynamic-batch`` is refused with a clear error
rather than producing a program whose XNNPACK delegate may reject other batch sizes.
INT8 (PT2E + XNNPACKQuantizer, accuracy-guarded) lives in :mod:`msvit.quantize.executorch`.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn

from ..errors import ExportError
from .core import ExportContext, TargetOutput

METADATA_METHOD = "get_metadata_json"


@contextmanager
def _quiet() -> Iterator[None]:
    """torch.export / executorch emit deprecation warnings and prints that are not ours."""
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def lower_to_pte(program: torch.export.ExportedProgram, path: Path, metadata: dict[str, str]) -> Path:
    """Lower an exported program to XNNPACK and write the ``.pte`` with metadata embedded."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        with _quiet():
            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                               constant_methods={METADATA_METHOD: json.dumps(metadata,
                                                                                             sort_keys=True)})
            et = edge.to_executorch()
    except Exception as e:  # the lowering stack raises many types; keep the first line
        raise ExportError(f"ExecuTorch lowering failed: {str(e).splitlines()[0][:300]}") from None
    path.write_bytes(et.buffer)
    return path


def export_program(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    try:
        with _quiet():
            return torch.export.export(model.eval(), (example,))
    except Exception as e:
        raise ExportError(f"torch.export failed: {str(e).splitlines()[0][:300]}") from None


def export_fp32_pte(model: nn.Module, path: Path, metadata: dict[str, str], batch: int = 1) -> Path:
    size = int(getattr(model, "img_size", 224))
    return lower_to_pte(export_program(model, torch.zeros(batch, 3, size, size)), path, metadata)


def _runtime():
    with warnings.catch_warnings():  # "ExperimentalWarning: This API is experimental" on first import
        warnings.simplefilter("ignore")
        from executorch.runtime import Runtime

        return Runtime.get()


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    prog = _runtime().load_program(str(path))
    if METADATA_METHOD not in prog.method_names:
        return {}
    return json.loads(prog.load_method(METADATA_METHOD).execute([])[0])


class ETRunner:
    """``executorch.runtime`` (portable + XNNPACK kernels) running ``forward``."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        runtime = _runtime()
        if threads:
            try:
                from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

                _unsafe_reset_threadpool(int(threads))
            except (ImportError, RuntimeError):
                pass  # older runtimes: default pool size
        self.path = str(path)
        self.program = runtime.load_program(self.path)
        self.method = self.program.load_method("forward")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        return self.method.execute([t])[0].numpy().copy()


def load(path: str | os.PathLike, threads: int | None = None) -> ETRunner:
    return ETRunner(path, threads)


def check_static(ctx: ExportContext) -> None:
    if ctx.dynamic_batch:
        raise ExportError("ExecuTorch export uses static shapes: --dynamic-batch is not supported for "
                          "--target executorch; export with --batch N (one .pte per batch size)")


def export(ctx: ExportContext) -> TargetOutput:
    check_static(ctx)
    path = ctx.work_dir / f"{ctx.stem}.pte"
    meta = {**ctx.metadata, "backend": "xnnpack", "metadata_method": METADATA_METHOD}
    if ctx.precision == "int8":
        from ..quantize.executorch import quantize_executorch
        from .onnx import int8_output

        info = quantize_executorch(ctx, path, meta)
        return int8_output(path, [path], ETRunner(path), info)
    export_fp32_pte(ctx.model, path, meta, ctx.batch)
    return TargetOutput(path, [path], ETRunner(path), extra={"backend": "xnnpack"})


__all__ = ["ETRunner", "METADATA_METHOD", "export", "export_fp32_pte", "load", "lower_to_pte",
                      "read_metadata"]
