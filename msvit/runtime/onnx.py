"""ONNX (and ONNX Runtime's ``.ort`` format) in onnxruntime; metadata in ``metadata_props``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, TargetUnavailableError
from .base import InputSpec, Session, batch_from_shape, first_line


def set_metadata(proto: Any, metadata: dict[str, str]) -> None:
    """Replace an ONNX ModelProto's ``metadata_props`` with ``metadata`` (sorted: reproducible bytes)."""
    del proto.metadata_props[:]
    for k, v in sorted(metadata.items()):
        e = proto.metadata_props.add()
        e.key, e.value = k, str(v)


def rewrite_metadata(src: str | os.PathLike, dst_dir: str | os.PathLike, metadata: dict[str, str]) -> list[Path]:
    """A copy of the ONNX model ``src`` in ``dst_dir`` (same name) whose ``metadata_props`` are
    ``metadata``; the graph and weights are untouched. Returns the files written."""
    import onnx

    if str(src).endswith(".ort"):
        raise ArtifactError(f"{src}: msvit cannot rewrite the metadata of an .ort flatbuffer")
    try:
        proto = onnx.load(str(src))
    except Exception as e:
        raise ArtifactError(f"{src}: not a readable ONNX model ({first_line(e)})") from None
    set_metadata(proto, metadata)
    dst = Path(dst_dir) / Path(src).name
    onnx.save_model(proto, str(dst))
    return [dst]


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    if str(path).endswith(".ort"):  # a flatbuffer, not a protobuf: read it without building a session
        from .ort_format import read_metadata as read_ort

        return read_ort(path)
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ArtifactError(f"{path}: not a readable ONNX model ({first_line(e)})") from None
    return {p.key: p.value for p in proto.metadata_props}


class OrtSession(Session):
    """onnxruntime on the CPU (or CUDA with ``device="cuda"``), returning the ``logit`` output."""

    format = "onnx"
    title = "ONNX"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, device: str = "cpu",
                 spinning: bool = True, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        if not spinning:  # an idle pool spinning between runs steals the core of another session being timed
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        if providers is None:
            providers = ["CPUExecutionProvider"]
            if device == "cuda":
                if "CUDAExecutionProvider" not in ort.get_available_providers():
                    raise TargetUnavailableError("onnxruntime has no CUDA provider here (install onnxruntime-gpu)")
                providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf types
            raise ArtifactError(f"{path}: onnxruntime cannot open it ({first_line(e)})") from None
        inp = self.session.get_inputs()[0]
        outs = [o.name for o in self.session.get_outputs()]
        self.output = "logit" if "logit" in outs else outs[0]
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        kind = "image" if inp.type == "tensor(uint8)" else "tensor"
        spec = InputSpec(inp.name, tuple(batch_from_shape(d) for d in inp.shape), inp.type[7:-1],
                         "NHWC" if kind == "image" else "NCHW", kind)
        super().__init__(path, meta, spec, device, threads)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output], {self.input_spec.name: x})[0]

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.session.get_outputs())

    def _run_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        names = self.output_names
        return dict(zip(names, self.session.run(list(names), {self.input_spec.name: x})))

    def close(self) -> None:
        self.session = None
