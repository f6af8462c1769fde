"""Core ML ``.mlpackage``: metadata (``user_defined_metadata``) and the spec are read on any
OS; the model itself runs only on macOS/iOS (elsewhere :func:`open_session` raises
:class:`~msvit.errors.TargetUnavailableError`).

The package takes an RGB image (``ImageType``) and returns ``prob_fake`` and ``logit``; the
session converts the uniform normalised NCHW input back to pixels.
"""
from __future__ import annotations

import collections
import io
import logging
import os
import platform
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from typing import Any, Iterator

import numpy as np

from ..errors import ArtifactError, TargetUnavailableError
from .base import InputSpec, Session, first_line, to_image_u8
from .meta import ArtifactMeta

INPUT = "image"
OUTPUT = "prob_fake"
LOGIT = "logit"
OFF_MACOS = "Core ML models run only on macOS/iOS (structure verified instead)"


@contextmanager
def quiet() -> Iterator[None]:
    """coremltools on Linux logs 'Failed to load _MLModelProxy' (no Core ML runtime), warns
    about untested torch versions and draws tqdm bars on stderr: keep that out of our output."""
    lg = logging.getLogger("coremltools")
    old = lg.level
    lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        lg.setLevel(old)


def import_ct():
    with quiet():
        import coremltools as ct
    return ct


def annotate(ml, metadata: dict[str, str], size: int) -> None:
    """Write the package's descriptions and flat metadata (``user_defined_metadata``)."""
    ml.author = "msvit"
    ml.license = metadata.get("license", "see the model card of the weights")
    ml.short_description = (f"{metadata.get('model', 'MS-Eff-ViT')} deepfake detector (MS-Eff-ViT/DeepGuard); "
                            f"{OUTPUT} = P(fake), fake if >= {metadata.get('threshold', '0.5')}")
    ml.version = metadata.get("msvit_version", "")
    ml.input_description[INPUT] = (f"{size}x{size} RGB face crop: longest side resized to {size}, "
                                   "centred on black padding (normalisation happens inside the model)")
    ml.output_description[OUTPUT] = "P(fake) = sigmoid(logit), shape (1, 1)"
    ml.output_description[LOGIT] = "raw logit, shape (1, 1)"
    for k, v in metadata.items():
        ml.user_defined_metadata[k] = str(v)


def _spec(path: str | os.PathLike):
    ct = import_ct()
    try:
        with quiet():
            return ct.utils.load_spec(str(path))
    except Exception as e:
        raise ArtifactError(f"{path}: not a readable Core ML package ({first_line(e)})") from None


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    return dict(_spec(path).description.metadata.userDefined)


def inspect(path: str | os.PathLike) -> dict[str, Any]:
    """What the package holds, from its spec alone (no Core ML runtime needed)."""
    ct = import_ct()
    from coremltools.proto import MIL_pb2

    spec = _spec(path)
    d = spec.description
    info: dict[str, Any] = {
        "spec_version": spec.specificationVersion,
        "inputs": {i.name: i.type.WhichOneof("Type") for i in d.input},
        "outputs": {o.name: list(o.type.multiArrayType.shape) for o in d.output},
        "user_defined_metadata": dict(d.metadata.userDefined),
        "image": None,
    }
    if d.input and d.input[0].type.WhichOneof("Type") == "imageType":
        it = d.input[0].type.imageType
        info["image"] = {"width": it.width, "height": it.height,
                         "color_space": ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(it.colorSpace)}
    if spec.WhichOneof("Type") != "mlProgram":
        info["program"] = spec.WhichOneof("Type")
        return info
    fn = spec.mlProgram.functions["main"]
    ops = fn.block_specializations[fn.opset].operations
    types = collections.Counter(op.type for op in ops)
    dtypes: collections.Counter = collections.Counter()
    for op in ops:
        if op.type == "const" and op.outputs[0].type.tensorType.rank > 0:
            dtypes[MIL_pb2.DataType.Name(op.outputs[0].type.tensorType.dataType)] += 1
    info.update(program="mlProgram", opset=fn.opset, n_ops=sum(v for k, v in types.items() if k != "const"),
                constexpr_ops={k: v for k, v in types.items() if k.startswith("constexpr_")},
                const_tensor_dtypes=dict(dtypes), op_types=dict(types.most_common(10)))
    return info


class CoreMLSession(Session):
    """macOS only: normalised NCHW -> uint8 RGB images -> ``MLModel.predict`` -> logits (N, 1)."""

    format = "coreml"
    title = "Core ML"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, device: str = "cpu",
                 compute_units: str = "CPU_ONLY") -> None:
        if platform.system() != "Darwin":
            raise TargetUnavailableError(OFF_MACOS)
        ct = import_ct()
        meta = read_metadata(path)
        self.model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
        size = ArtifactMeta.from_flat(meta).image_size
        super().__init__(path, meta, InputSpec(INPUT, (1, 3, size, size)), device, threads)

    def _run(self, x: np.ndarray) -> np.ndarray:
        from PIL import Image

        res = self.model.predict({INPUT: Image.fromarray(to_image_u8(x)[0], "RGB")})
        return np.asarray(res[LOGIT], np.float32).reshape(1, 1)
