"""What every artifact says about itself, typed.

Every format stores the same flat ``str -> str`` mapping (ONNX ``metadata_props``, OpenVINO
``rt_info``, the ExecuTorch metadata method, the LiteRT flatbuffer entry, the TensorRT header,
Core ML ``user_defined_metadata``): :func:`common_metadata` writes its common keys (export and the
PyTorch session alike), and :class:`ArtifactMeta` reads them back as typed fields for the
runtime, the benchmark, predict and the cards. Keys it does not know (tool versions, INT8
facts) stay in :attr:`ArtifactMeta.extra`, as strings.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from typing import Any

from ..model.info import ModelInfo

FAMILY = "MS-Eff-ViT (DeepGuard)"


def encode_shape(shape: tuple[int | None, ...]) -> str:
    """``(None, 3, 224, 224)`` -> ``"Nx3x224x224"`` (N: any batch)."""
    return "x".join("N" if d is None else str(d) for d in shape)


def decode_shape(text: str) -> tuple[int | None, ...]:
    """``"Nx3x224x224"`` -> ``(None, 3, 224, 224)``; ``()`` when it is not such a shape."""
    dims = str(text or "").split("x")
    if not all(d == "N" or d.isdigit() for d in dims):
        return ()
    return tuple(None if d == "N" else int(d) for d in dims)


def common_metadata(info: ModelInfo, target: str, precision: str, input_shape: tuple[int | None, ...]) -> dict[str, str]:
    """The keys every artifact of ``info``'s model carries, in the order artifacts store them."""
    size = info.img_size
    return {
        "model": info.variant,
        "family": FAMILY,
        "attn_mode": info.attn_mode,
        "target": target,
        "precision": precision,
        "input_name": "image",
        "input_shape": encode_shape(input_shape),
        "input_format": "float32 NCHW RGB",
        "preprocess": f"longest side -> {size} (bilinear), centre zero-pad to {size}x{size}, /255, (x-mean)/std",
        "mean": json.dumps(list(info.mean)),
        "std": json.dumps(list(info.std)),
        "output": "logit (N,1); P(fake) = sigmoid(logit)",
        "labels": json.dumps({"0": "real", "1": "fake"}),
        "threshold": "0.5",
        "weights_file": os.path.basename(info.weights_path or "") or "untrained",
        "weights_sha256": info.weights_sha256,
    }


@dataclass
class ArtifactMeta:
    """An artifact's self-description as typed fields (read with :meth:`from_flat`)."""

    model: str | None = None
    attn_mode: str | None = None
    target: str | None = None
    precision: str = "fp32"
    exec_precision: str = "fp32"  # the float arithmetic the runtime must execute (runtime.precision)
    input_name: str = "image"
    input_shape: tuple[int | None, ...] = ()
    input_kind: str = "tensor"  # tensor: normalised float32 NCHW; image: letterboxed uint8 NHWC
    threshold: float = 0.5
    weights_sha256: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # every other key, as stored

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> "ArtifactMeta":
        flat = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (flat or {}).items()}
        known = {f.name for f in fields(cls)} - {"extra"}
        try:
            threshold = float(flat.get("threshold", 0.5))
        except ValueError:
            threshold = 0.5
        return cls(model=flat.get("model") or None, attn_mode=flat.get("attn_mode") or None,
                   target=flat.get("target") or None, precision=flat.get("precision") or "fp32",
                   exec_precision=flat.get("exec_precision") or "fp32",
                   input_name=flat.get("input_name") or "image", input_shape=decode_shape(flat.get("input_shape", "")),
                   input_kind=flat.get("input_kind") or "tensor", threshold=threshold,
                   weights_sha256=flat.get("weights_sha256") or None,
                   extra={k: v for k, v in flat.items() if k not in known})

    @property
    def batch(self) -> int | None:
        """The static batch, None for any batch (also when no shape was recorded: 1)."""
        return self.input_shape[0] if self.input_shape else 1

    @property
    def image_size(self) -> int:
        """The square input's side in pixels (224 when no shape was recorded)."""
        if len(self.input_shape) != 4:
            return 224
        side = self.input_shape[1] if self.input_kind == "image" else self.input_shape[2]
        return int(side or 224)
