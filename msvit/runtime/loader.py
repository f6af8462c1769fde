"""Open any artifact behind one :class:`~msvit.runtime.base.Session` interface, or read its metadata
without running it: the format's module is imported only when a file of that format is opened."""
from __future__ import annotations

import importlib
import importlib.util
import os

from ..errors import TargetUnavailableError
from .base import Session
from .calibration import from_metadata, read_sidecar
from .formats import Format, detect_format


def _module(fmt: Format):
    missing = [m for m in fmt.packages if importlib.util.find_spec(m) is None]
    if missing:
        raise TargetUnavailableError(f"{fmt.title} artifacts need {', '.join(missing)}: "
                                     f"pip install 'msvit[{fmt.extra}]'")
    return importlib.import_module(f"msvit.runtime.{fmt.module}")


def load(path: str | os.PathLike, threads: int | None = None, device: str = "cpu", **options) -> Session:
    """Open an artifact: ``.onnx``/``.ort``, ``.xml`` (OpenVINO), ``.pte``, ``.ptl``, ``.tflite``,
    ``.engine`` or ``.mlpackage``. ``threads`` sets the backend's intra-op threads; ``options``
    go to the format's session (e.g. ``spinning=False`` for onnxruntime)."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    fmt = detect_format(path)
    side = read_sidecar(path)  # a calibration sidecar beside it wins over its metadata (checked against its sha256)
    session = getattr(_module(fmt), fmt.session)(path, threads=threads, device=device, **options)
    session.format, session.title = fmt.name, fmt.title  # one session class may open several formats
    session.operating_point = side or from_metadata(session.metadata, str(path))
    return session


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata an artifact carries, without running it (works for Core ML off macOS)."""
    fmt = detect_format(path)
    if fmt.name == "trt":  # the header is plain JSON: no TensorRT needed to read it
        from .tensorrt import read_metadata as read

        return read(path)
    return _module(fmt).read_metadata(path)


def from_model(model, threads: int | None = None, device: str = "cpu") -> Session:
    """A PyTorch model behind the same interface (the FP32 reference, or ``--weights``)."""
    from .pytorch import TorchSession

    return TorchSession(model, threads=threads, device=device)
