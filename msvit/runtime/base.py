"""The one interface every artifact runs behind (Polygraphy-style runners): a
:class:`Session` takes preprocessed float32 NCHW images and returns logits (N, 1)."""
from __future__ import annotations

import io
import json
import os
import warnings
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import DataError
from ..model.info import model_info
from .calibration import OperatingPoint, from_metadata
from .meta import ArtifactMeta


@dataclass(frozen=True)
class InputSpec:
    """What the artifact's graph itself takes (``Session.run`` always takes normalised NCHW)."""

    name: str
    shape: tuple[int | None, ...]  # None = dynamic axis
    dtype: str = "float32"
    layout: str = "NCHW"
    kind: str = "tensor"  # tensor: ImageNet-normalised float32; image: letterboxed uint8 RGB


class Session:
    """An opened artifact. Subclasses implement :meth:`_run` for one exact batch."""

    format = "unknown"
    title = "artifact"

    def __init__(self, path: str | os.PathLike | None, metadata: dict[str, str], input_spec: InputSpec,
                 device: str = "cpu", threads: int | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.metadata = dict(metadata)
        self.input_spec = input_spec
        self.device = device
        self.threads = threads

    # ------------------------------------------------------------ facts from metadata
    @property
    def meta(self) -> ArtifactMeta:
        """The artifact's self-description, typed (``metadata`` holds it as stored)."""
        return ArtifactMeta.from_flat(self.metadata)

    @property
    def batch(self) -> int | None:
        """The artifact's static batch size, or None when it takes any batch."""
        return self.input_spec.shape[0]

    @property
    def input_size(self) -> int:
        s = self.input_spec.shape[-2] if self.input_spec.layout == "NCHW" else self.input_spec.shape[1]
        return int(s) if s else self.meta.image_size

    @property
    def operating_point(self) -> OperatingPoint:
        """Threshold and temperature, and where they came from: the sidecar
        ``<artifact>.calibration.json`` (read by :func:`msvit.runtime.load`) or the metadata."""
        op = getattr(self, "_operating_point", None)
        return op if op is not None else from_metadata(self.metadata, str(self.path or ""))

    @operating_point.setter
    def operating_point(self, op: OperatingPoint) -> None:
        self._operating_point = op

    @property
    def threshold(self) -> float:
        return self.operating_point.threshold

    @property
    def temperature(self) -> float:
        """P(fake) = sigmoid(logit / temperature) (1 unless msvit-calibrate fitted one)."""
        return self.operating_point.temperature

    @property
    def precision(self) -> str:
        return self.meta.precision

    @property
    def exec_precision(self) -> str:
        """The float arithmetic the runtime executes: the recorded ``exec_precision`` (fp32 when
        none is recorded) or what the session was opened with."""
        return getattr(self, "_exec_override", None) or self.meta.exec_precision

    @property
    def model(self) -> str | None:
        return self.meta.model

    def describe(self) -> str:
        b = "N" if self.batch is None else str(self.batch)
        ex = "" if self.exec_precision == "fp32" else f" exec {self.exec_precision}"
        return f"{self.title} {self.precision}{ex} ({self.path.name if self.path else 'in memory'}, batch {b})"

    # ------------------------------------------------------------ running
    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 3, S, S) preprocessed images -> float32 logits (N, 1), for any N
        (static-batch artifacts get chunks of their own size, the last one padded)."""
        x = self._feed(x)
        if len(x) == 0:
            return np.zeros((0, 1), np.float32)
        return self._batched(x, lambda c: {"logit": np.asarray(self._run(c), np.float32).reshape(len(c), -1)[:, :1]}
                             )["logit"]

    def run_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every named output of the artifact for (N, 3, S, S) inputs, ``{name: (N, ...)}`` in graph
        order (:attr:`output_names`): ``logit`` always, plus e.g. ``low_tokens``/``high_tokens`` of an
        ``--explain-outputs`` export. Formats that expose only the logit return just that."""
        x = self._feed(x)
        if len(x) == 0:
            raise DataError(f"{self.describe()}: run_all needs at least one image")
        return self._batched(x, self._run_all)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The names :meth:`run_all` returns (from the artifact's ``output_names`` metadata)."""
        try:
            names = json.loads(self.metadata.get("output_names", "[]"))
        except ValueError:
            names = []
        return tuple(names) or ("logit",)

    def _run_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {"logit": np.asarray(self._run(x), np.float32).reshape(len(x), -1)[:, :1]}

    def _feed(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[None]
        size = self.input_size
        if x.ndim != 4 or x.shape[1:] != (3, size, size):
            raise DataError(f"{self.describe()} takes (N, 3, {size}, {size}) inputs, got shape {x.shape}")
        x = np.ascontiguousarray(x, np.float32)
        if self.input_spec.kind == "image":  # the graph normalises: feed it the letterboxed pixels
            x = to_image_u8(x, self.input_spec.layout)
        return x

    def _batched(self, x: np.ndarray, fn: Any) -> dict[str, np.ndarray]:
        """``fn`` on chunks of the artifact's static batch (the last one padded, the padding dropped)."""
        n, b = len(x), self.batch
        if b is None or b == n:
            return fn(x)
        outs: list[dict[str, np.ndarray]] = []
        for i in range(0, n, b):
            chunk = x[i:i + b]
            pad = b - len(chunk)
            if pad:  # static batch: pad the last chunk, drop the padding afterwards
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            outs.append({k: v[: b - pad] for k, v in fn(chunk).items()})
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    __call__ = run

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the backend's resources; the session cannot run afterwards."""

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def to_image_u8(x: np.ndarray, layout: str = "NHWC") -> np.ndarray:
    """Invert ImageNet normalisation: float32 NCHW -> uint8 RGB (exact for inputs that came
    from uint8 pixels, as every preprocessed image does)."""
    from ..model.variants import IMAGENET_MEAN, IMAGENET_STD

    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    u8 = np.clip(np.rint((x * std + mean) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(u8.transpose(0, 2, 3, 1) if layout == "NHWC" else u8)


def graph_feed(x: np.ndarray, input_kind: str = "tensor") -> np.ndarray:
    """Preprocessed float32 NCHW images -> what a graph of ``input_kind`` takes: the same floats
    (``tensor``), or the letterboxed uint8 NHWC pixels they came from (``image``)."""
    return to_image_u8(x, "NHWC") if input_kind == "image" else np.ascontiguousarray(x, np.float32)


def example_input(model: Any, batch: int = 1, input_kind: str = "tensor") -> Any:
    """A zero batch of what a graph of ``input_kind`` takes (export and calibration trace it)."""
    import torch

    size = model_info(model).img_size
    if input_kind == "image":
        return torch.zeros(batch, size, size, 3, dtype=torch.uint8)
    return torch.zeros(batch, 3, size, size)


def batch_from_shape(dim: Any) -> int | None:
    """A graph's batch dimension -> int, or None for a symbolic / dynamic one."""
    try:
        d = int(dim)
    except (TypeError, ValueError):
        return None
    return d if d > 0 else None


def spec_from_metadata(metadata: dict[str, str], default_name: str = "image") -> InputSpec:
    """For formats whose graph does not expose its input shape cheaply: read ``input_shape``
    (and ``input_kind``: ``image`` = letterboxed uint8 NHWC pixels, normalised in the graph)."""
    meta = ArtifactMeta.from_flat(metadata)
    image = meta.input_kind == "image"
    shape = meta.input_shape or ((1, 224, 224, 3) if image else (1, 3, 224, 224))
    name = metadata.get("input_name", default_name)
    return InputSpec(name, shape, "uint8", "NHWC", "image") if image else InputSpec(name, shape)


def flat_metadata(meta: dict[str, Any]) -> dict[str, str]:
    """Metadata as every format stores it: flat str -> str (JSON for non-strings)."""
    return {str(k): v if isinstance(v, str) else json.dumps(v, default=str) for k, v in meta.items()}


def first_line(e: BaseException, limit: int = 300) -> str:
    """Backends raise long multi-line errors; a user needs the first line."""
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:limit]


@contextmanager
def quiet_output() -> Iterator[None]:
    """torch.export, the ONNX exporter and ExecuTorch print progress and deprecation
    warnings that are not ours; exceptions still propagate."""
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
