"""OpenVINO IR (``.xml`` + ``.bin``) on the CPU; metadata in ``rt_info["msvit"]``.

Compiled with the ``INFERENCE_PRECISION_HINT`` of the artifact's recorded ``exec_precision``
(f32 for artifacts that record none): on CPUs with AVX512-BF16/AMX, OpenVINO would otherwise
silently run FP32 IRs in bf16, numerics msvit never verified.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError
from .base import InputSpec, Session, batch_from_shape, first_line
from .ov_core import core
from .precision import OV_HINTS, exec_precision_of, require_execution

RT_KEY = "msvit"


def set_metadata(model: Any, metadata: dict[str, str]) -> None:
    """Embed flat metadata in an ``openvino.Model``'s rt_info (saved with the IR)."""
    for k, v in metadata.items():
        model.set_rt_info(str(v), [RT_KEY, k])


def _read_model(path: str | os.PathLike) -> Any:
    p = Path(path)
    if not p.with_suffix(".bin").is_file():
        raise ArtifactError(f"{p}: its weights file {p.with_suffix('.bin').name} is missing beside it")
    try:
        return core().read_model(str(p))
    except Exception as e:
        raise ArtifactError(f"{p}: OpenVINO cannot read this IR ({first_line(e)})") from None


def _metadata_of(model: Any) -> dict[str, str]:
    info = model.get_rt_info()
    return {k: v.astype(str) for k, v in info[RT_KEY].items()} if RT_KEY in info else {}


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    return _metadata_of(_read_model(path))


def rewrite_metadata(src: str | os.PathLike, dst_dir: str | os.PathLike, metadata: dict[str, str]) -> list[Path]:
    """A copy of the IR ``src`` (``.xml`` + ``.bin``) in ``dst_dir`` whose ``rt_info["msvit"]`` is
    ``metadata`` (added to or replacing the stored keys), saved as read (no fp16 compression, no new transformations). Returns the files."""
    import openvino as ov

    model = _read_model(src)
    set_metadata(model, metadata)  # adds and replaces keys (calibration never drops one)
    dst = Path(dst_dir) / Path(src).name
    ov.save_model(model, str(dst), compress_to_fp16=False)
    return [dst, dst.with_suffix(".bin")]


class OVSession(Session):
    format = "openvino"
    title = "OpenVINO IR"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, device: str = "cpu",
                 exec_precision: str | None = None) -> None:
        """``exec_precision`` overrides the recorded one (fp32 | bf16 | fp16); a precision this
        CPU cannot execute is a :class:`~msvit.errors.TargetUnavailableError`, never a silent f32."""
        model = _read_model(path)
        meta = _metadata_of(model)
        prec = exec_precision or exec_precision_of(meta)
        if prec not in OV_HINTS:
            raise ArtifactError(f"{path}: exec_precision {prec!r} is not one of {', '.join(OV_HINTS)}")
        require_execution("openvino", prec)
        self._exec_override = prec
        cfg: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": OV_HINTS[prec]}
        if threads:
            cfg["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = core().compile_model(model, "CPU", cfg)
        except Exception as e:
            raise ArtifactError(f"{path}: OpenVINO cannot compile it ({first_line(e)})") from None
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output("logit") if any("logit" in o.names for o in self.compiled.outputs) \
            else self.compiled.output(0)
        inp = model.inputs[0]
        ps = inp.get_partial_shape()
        shape = tuple(batch_from_shape(d.get_length()) if d.is_static else None for d in ps)
        u8 = inp.get_element_type().get_type_name() == "u8"
        spec = InputSpec(inp.get_any_name(), shape, "uint8" if u8 else "float32", "NHWC" if u8 else "NCHW",
                         "image" if u8 else "tensor")
        super().__init__(path, meta, spec, device, threads)

    def _run(self, x: np.ndarray) -> np.ndarray:
        res = self.request.infer({0: x})
        return np.asarray(res[self.output]).copy()

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.get_any_name() for o in self.compiled.outputs)

    def _run_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        res = self.request.infer({0: x})
        return {o.get_any_name(): np.asarray(res[o]).copy() for o in self.compiled.outputs}

    def close(self) -> None:
        self.request = self.compiled = None
