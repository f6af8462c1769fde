"""ExecuTorch ``.pte`` in ``executorch.runtime`` (portable + XNNPACK kernels).

Metadata travels inside the program as a constant method, ``get_metadata_json`` (a JSON
string of the flat metadata dict): apps read it with ``module.execute("get_metadata_json")``.
"""
from __future__ import annotations

import json
import os
import warnings

import numpy as np

from ..errors import ArtifactError
from .base import Session, first_line, spec_from_metadata

METADATA_METHOD = "get_metadata_json"


def metadata_methods(metadata: dict[str, str]) -> dict[str, str]:
    """``constant_methods`` for ``to_edge_transform_and_lower``: how the metadata is embedded."""
    return {METADATA_METHOD: json.dumps(metadata, sort_keys=True)}


def _runtime():
    with warnings.catch_warnings():  # "ExperimentalWarning: This API is experimental" on first import
        warnings.simplefilter("ignore")
        from executorch.runtime import Runtime

        return Runtime.get()


def _load_program(path: str | os.PathLike):
    try:
        return _runtime().load_program(str(path))
    except Exception as e:  # the runtime raises RuntimeError with a status code for bad files
        raise ArtifactError(f"{path}: not a loadable ExecuTorch program ({first_line(e)})") from None


def _metadata_of(program) -> dict[str, str]:
    if METADATA_METHOD not in program.method_names:
        return {}
    return json.loads(program.load_method(METADATA_METHOD).execute([])[0])


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    return _metadata_of(_load_program(path))


class ETSession(Session):
    format = "executorch"
    title = "ExecuTorch"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, device: str = "cpu") -> None:
        if threads:
            try:
                from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

                _unsafe_reset_threadpool(int(threads))
            except (ImportError, RuntimeError):
                pass  # older runtimes: default pool size
        self.program = _load_program(path)
        try:
            self.method = self.program.load_method("forward")
        except Exception as e:
            raise ArtifactError(f"{path}: its 'forward' method cannot be loaded ({first_line(e)})") from None
        meta = _metadata_of(self.program)
        super().__init__(path, meta, spec_from_metadata(meta), device, threads)

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        outs = self.method.execute([torch.from_numpy(x)])
        return outs[1 if self.input_spec.kind == "image" else 0].numpy().copy()  # image input: (prob, logit)

    def _run_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        outs = self.method.execute([torch.from_numpy(x)])  # a program's outputs are positional: names from metadata
        names = self.output_names if len(self.output_names) == len(outs) else \
            (("prob", "logit") if self.input_spec.kind == "image" else ("logit",))
        return {n: o.numpy().copy() for n, o in zip(names, outs)}

    def close(self) -> None:
        self.method = self.program = None
