"""LiteRT (``.tflite``) in the ``ai-edge-litert`` interpreter (XNNPACK on the CPU).

Metadata lives in the flatbuffer's own ``metadata`` list: an entry named ``msvit`` whose
buffer holds the JSON of the flat str -> str metadata dict (sorted keys). Apps read it with
any flatbuffer reader (``Model.Metadata(i).Name() == b"msvit"`` -> ``Buffers(i).Data``);
:func:`read_metadata` does so here without building an interpreter.

A file is checked before the interpreter sees it (identifier ``TFL3`` at bytes 4..8, every
buffer inside the file): a truncated or foreign file raises :class:`~msvit.errors.ArtifactError`
with the reason instead of reaching the C++ loader.

Signature: ``serving_default``; input ``image`` (float32 NCHW normalised, or uint8 NHWC
letterboxed pixels for ``input_kind="image"`` exports), outputs ``logit`` (and ``prob``).
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..errors import ArtifactError
from .base import InputSpec, Session, first_line
from .flatbuffer import check_end, check_header, read_file, tables_inside

TFLITE_IDENTIFIER = b"TFL3"
METADATA_NAME = "msvit"
SIGNATURE = "serving_default"


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _read_bytes(path: str | os.PathLike) -> bytes:
    return read_file(path, ".tflite")


def check_tflite_bytes(data: bytes, name: str = "model") -> Any:
    """Validate a LiteRT flatbuffer without running it; returns the parsed (lazy) ``Model``.

    Checks the identifier, that the root table lies inside the file, that every table and
    vector can be read (a full object-API unpack) and that every weight buffer (inline or
    offset/size) ends inside the file: what a truncated copy or an interrupted download breaks.
    Raises :class:`ArtifactError` naming the problem.
    """
    size, what, redo = len(data), "LiteRT model", "re-export"
    check_header(data, name, TFLITE_IDENTIFIER, what)
    schema = _schema()
    with tables_inside(name, what, size, redo):
        # a full unpack touches every table and vector (0.2 s for 20 MB): anything past the end raises
        schema.ModelT.InitFromPackedBuf(data, 0)
        model = schema.Model.GetRootAs(data, 0)
        if model.SubgraphsLength() < 1:
            raise ArtifactError(f"{name}: LiteRT model has no subgraph (corrupt or truncated)")
        for i in range(model.BuffersLength()):
            buf = model.Buffers(i)
            off, sz = buf.Offset(), buf.Size()
            if off > 1:  # large models keep weights after the flatbuffer: offset/size into the file
                end = off + sz
            else:
                n = buf.DataLength()
                if not n:
                    continue
                end = buf._tab.Vector(buf._tab.Offset(4)) + n  # the `data` vector field
            check_end(name, what, f"weight buffer {i}", end, size, redo)
        for s in range(model.SubgraphsLength()):
            sg = model.Subgraphs(s)
            sg.TensorsLength(), sg.OperatorsLength(), sg.InputsAsNumpy(), sg.OutputsAsNumpy()
    return model


def check_tflite_file(path: str | os.PathLike) -> bytes:
    """Read and validate a ``.tflite`` file; returns its bytes (see :func:`check_tflite_bytes`)."""
    data = _read_bytes(path)
    check_tflite_bytes(data, str(path))
    return data


def _metadata_from_model(model: Any, data: bytes, name: str) -> dict[str, str]:
    for i in range(model.MetadataLength()):
        md = model.Metadata(i)
        if (md.Name() or b"").decode("utf-8", "replace") != METADATA_NAME:
            continue
        buf = model.Buffers(md.Buffer())
        if buf.Offset() > 1:
            raw = bytes(data[buf.Offset():buf.Offset() + buf.Size()])
        else:
            raw = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
        try:
            meta = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ArtifactError(f"{name}: its '{METADATA_NAME}' metadata is not valid JSON ({e})") from None
        if not isinstance(meta, dict):
            raise ArtifactError(f"{name}: its '{METADATA_NAME}' metadata is not a JSON object")
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    return {}


def metadata_names(path: str | os.PathLike) -> list[str]:
    """Names of every flatbuffer metadata entry (``msvit``, ``min_runtime_version``, ...)."""
    data = _read_bytes(path)
    model = check_tflite_bytes(data, str(path))
    return [(model.Metadata(i).Name() or b"").decode("utf-8", "replace") for i in range(model.MetadataLength())]


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``msvit`` metadata dict embedded in a ``.tflite`` (``{}`` if it has none); no interpreter."""
    data = _read_bytes(path)
    model = check_tflite_bytes(data, str(path))
    return _metadata_from_model(model, data, str(path))


def _interpreter(path: str, threads: int | None):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - the extra is missing
        from ..errors import TargetUnavailableError

        raise TargetUnavailableError("LiteRT artifacts need ai-edge-litert: pip install 'msvit[predict]'") from None
    try:
        return Interpreter(model_path=path, num_threads=int(threads) if threads else None)
    except (ValueError, RuntimeError) as e:
        raise ArtifactError(f"{path}: the LiteRT interpreter cannot load it ({first_line(e)})") from None


class LiteRTSession(Session):
    """A ``.tflite`` in the LiteRT interpreter (XNNPACK delegate, ``threads`` CPU threads).

    ``run``/``__call__`` take float32 NCHW normalised images and return logits (N, 1) for any N
    (static-batch models get chunks of their batch). Image-input models (uint8 NHWC) get the
    normalisation inverted to the exact uint8 pixels; :meth:`run_image` feeds pixels directly.
    Quantized (int8) inputs/outputs, should a model have them, are (de)quantized with the
    tensor's own scale and zero point.
    """

    format = "litert"
    title = "LiteRT"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, device: str = "cpu") -> None:
        if device not in ("cpu", None):
            from ..errors import TargetUnavailableError

            raise TargetUnavailableError(f"LiteRT runs on the CPU here (XNNPACK); device={device!r} is not "
                                         "available (GPU/NPU delegates are app-side)")
        data = _read_bytes(path)
        model = check_tflite_bytes(data, str(path))
        meta = _metadata_from_model(model, data, str(path))
        del data, model
        self.interpreter = _interpreter(str(path), threads)
        sigs = self.interpreter.get_signature_list()
        if not sigs:
            raise ArtifactError(f"{path}: LiteRT model has no signature (export it with msvit or litert-torch)")
        self.signature = SIGNATURE if SIGNATURE in sigs else next(iter(sigs))
        try:
            self.runner = self.interpreter.get_signature_runner(self.signature)
        except ValueError as e:
            raise ArtifactError(f"{path}: cannot prepare signature {self.signature!r} ({first_line(e)})") from None
        ins = self.runner.get_input_details()
        if len(ins) != 1:
            raise ArtifactError(f"{path}: expected one model input, found {sorted(ins)}")
        self.input_name, d = next(iter(ins.items()))
        self._in = d
        self._outs = self.runner.get_output_details()
        self.output = "logit" if "logit" in self._outs else sorted(self._outs)[0]
        shape = tuple(int(s) for s in d["shape"])
        dtype = np.dtype(d["dtype"]).name
        kind = "image" if dtype == "uint8" and len(shape) == 4 and shape[-1] == 3 and not _scale(d) else "tensor"
        layout = "NHWC" if kind == "image" or (len(shape) == 4 and shape[-1] == 3 and shape[1] != 3) else "NCHW"
        spec = InputSpec(self.input_name, shape, dtype, layout, kind)
        super().__init__(path, meta, spec, device, threads)

    @property
    def output_names(self) -> list[str]:
        return sorted(self._outs)

    def _as_input(self, x: np.ndarray) -> np.ndarray:
        # not Session._feed (shape check + pixels for image graphs): the interpreter's layout/dtype
        d = self._in
        if self.input_spec.kind == "tensor" and self.input_spec.layout == "NHWC" and x.ndim == 4 and x.shape[1] == 3:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        want = np.dtype(d["dtype"])
        if want != x.dtype:
            scale, zp = _scale(d), _zero_point(d)
            if scale and want.kind in "iu":  # a quantized input: float -> int with its own parameters
                info = np.iinfo(want)
                x = np.clip(np.rint(x / scale) + zp, info.min, info.max).astype(want)
            else:
                x = x.astype(want)
        return x

    def _outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        out = self.runner(**{self.input_name: self._as_input(x)})
        res = {}
        for k, v in out.items():
            d = self._outs[k]
            scale = _scale(d)
            if scale and np.dtype(d["dtype"]).kind in "iu":
                v = (v.astype(np.float32) - _zero_point(d)) * scale
            res[k] = np.asarray(v, np.float32)
        return res

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self._outputs(x)[self.output]

    def run_image(self, u8: np.ndarray) -> dict[str, np.ndarray]:
        """Image-input models: letterboxed uint8 RGB (N, S, S, 3) -> {"prob": (N, 1), "logit": (N, 1)}
        (one exact batch of the model's size)."""
        if self.input_spec.kind != "image":
            raise ArtifactError(f"{self.path}: takes normalised float32 NCHW tensors, not uint8 images "
                                "(export with input_kind='image' for that)")
        u8 = np.ascontiguousarray(u8, np.uint8)
        if u8.ndim == 3:
            u8 = u8[None]
        return self._outputs(u8)

    def close(self) -> None:
        self.runner = self.interpreter = None


LiteRTRunner = LiteRTSession  # the name the export code and benchmarks use


def load(path: str | os.PathLike, threads: int | None = None) -> LiteRTSession:
    return LiteRTSession(path, threads)


def _scale(d: dict) -> float:
    q = d.get("quantization") or (0.0, 0)
    return float(q[0]) if q else 0.0


def _zero_point(d: dict) -> int:
    q = d.get("quantization") or (0.0, 0)
    return int(q[1]) if q else 0


__all__ = ["LiteRTRunner", "LiteRTSession", "METADATA_NAME", "SIGNATURE", "TFLITE_IDENTIFIER",
           "check_tflite_bytes", "check_tflite_file", "load", "metadata_names", "read_metadata"]
