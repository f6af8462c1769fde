"""ONNX Runtime's ``.ort`` format (ORT Mobile): file checks and metadata without a session.

An ``.ort`` file is a flatbuffer (identifier ``ORTM`` at bytes 4..8) that onnxruntime's
``InferenceSession`` loads directly (full and mobile/minimal builds). onnxruntime verifies the
buffer itself ("ORT model verification failed"); :func:`check_ort_file` says *why* first
(empty, not an ORT file, an ONNX protobuf renamed, truncated: an initializer running past
the end of the file) as :class:`~msvit.errors.ArtifactError`. :func:`ort_session` opens
one with that check and onnxruntime's own error turned into the same type.
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import ArtifactError
from .base import first_line
from .flatbuffer import check_end, check_header, read_file, tables_inside

ORT_IDENTIFIER = b"ORTM"


def _fbs():
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py import fbs

    return fbs


def _read(path: str | os.PathLike) -> bytes:
    return read_file(path, ".ort")


def is_ort_bytes(data: bytes) -> bool:
    return len(data) >= 8 and bytes(data[4:8]) == ORT_IDENTIFIER


def check_ort_bytes(data: bytes, name: str = "model") -> Any:
    """Validate an ORT-format flatbuffer without onnxruntime's C++ loader; returns the parsed
    (lazy) ``InferenceSession`` table. Raises :class:`ArtifactError` naming the problem.

    A fast pre-check: identifier, root table, graph, every initializer's bytes inside the file
    (the bulk of a model, so what a truncated copy loses first). onnxruntime's own flatbuffer
    verifier, run by :func:`ort_session`, covers the remaining tables."""
    size, what, redo = len(data), "ORT format model", "re-convert"
    check_header(data, name, ORT_IDENTIFIER, what,
                 hint=" (this looks like an ONNX protobuf: name it .onnx)" if data[:1] == b"\x08" else "")
    fbs = _fbs()
    with tables_inside(name, what, size, redo):
        sess = fbs.InferenceSession.InferenceSession.GetRootAs(data, 0)
        model = sess.Model()
        if model is None:
            raise ArtifactError(f"{name}: ORT format file holds no model")
        graph = model.Graph()
        if graph is None:
            raise ArtifactError(f"{name}: ORT format model has no graph (corrupt or truncated)")
        for i in range(graph.InitializersLength()):
            t = graph.Initializers(i)
            n = t.RawDataLength()
            if n:  # the raw_data vector
                check_end(name, what, f"initializer {i}", t._tab.Vector(t._tab.Offset(12)) + n, size, redo)
        graph.NodesLength(), graph.InputsLength(), graph.OutputsLength()
        for i in range(model.MetadataPropsLength()):
            e = model.MetadataProps(i)
            e.Key(), e.Value()
    return sess


def check_ort_file(path: str | os.PathLike) -> bytes:
    """Read and validate an ``.ort`` file; returns its bytes (see :func:`check_ort_bytes`)."""
    data = _read(path)
    check_ort_bytes(data, str(path))
    return data


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ONNX ``metadata_props`` carried into the ``.ort`` (the converter keeps them), read from
    the flatbuffer: no session, no graph optimization."""
    data = _read(path)
    model = check_ort_bytes(data, str(path)).Model()
    out = {}
    for i in range(model.MetadataPropsLength()):
        e = model.MetadataProps(i)
        out[(e.Key() or b"").decode("utf-8", "replace")] = (e.Value() or b"").decode("utf-8", "replace")
    return out


def ort_format_version(path: str | os.PathLike) -> str:
    """The ORT flatbuffer format version recorded in the file (``ort_version``; "6" for onnxruntime >= 1.14)."""
    data = _read(path)
    v = check_ort_bytes(data, str(path)).OrtVersion()
    return (v or b"").decode("utf-8", "replace")


def ort_session(path: str | os.PathLike, threads: int | None = None, **session_config: str):
    """An onnxruntime CPU ``InferenceSession`` on an ``.ort`` file, checked first; onnxruntime's
    own load errors become :class:`ArtifactError`. ``session_config`` entries are added as
    session config (e.g. ``{"session.intra_op.allow_spinning": "0"}``)."""
    import onnxruntime as ort

    check_ort_file(path)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.load_model_format", "ORT")
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    for k, v in session_config.items():
        so.add_session_config_entry(k, str(v))
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's Fail / InvalidGraph / NotImplemented
        why = first_line(e)
        hint = "truncated or corrupt ORT model: " if "verification failed" in why else ""
        raise ArtifactError(f"{path}: {hint}onnxruntime cannot load it ({why})") from None


__all__ = ["ORT_IDENTIFIER", "check_ort_bytes", "check_ort_file", "is_ort_bytes", "ort_format_version", "ort_session",
           "read_metadata"]
