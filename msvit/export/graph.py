"""What goes into an exported graph besides the model: ``--input image`` puts the app-side
preprocessing (cast, NHWC -> NCHW, ImageNet normalisation) inside it, so the artifact takes the
letterboxed uint8 pixels an app has (the letterbox itself stays on the app side: resize kernels
differ between runtimes) and returns P(fake) and the logit."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..model.info import model_info
from ..model.variants import IMAGENET_MEAN, IMAGENET_STD

INPUT_KINDS = ("tensor", "image")
#: ``--explain-outputs``: each branch's class-activation tokens (``MultiScaleEffViT.cam_layers``),
#: appended after the usual outputs; an artifact's metadata ``explain_outputs`` describes them
EXPLAIN_OUTPUTS = ("low_tokens", "high_tokens")


class ImageInput(nn.Module):
    """uint8 letterboxed RGB NHWC (N, S, S, 3) -> (prob (N, 1), logit (N, 1))."""

    def __init__(self, model: nn.Module, explain: bool = False) -> None:
        super().__init__()
        self.model = model
        self.explain = explain
        self.info = model_info(model)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 1, 1, 3), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 1, 1, 3), False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = (image.to(torch.float32) / 255.0 - self.mean) / self.std
        if self.explain:
            logit, low, high = self.model.forward_cam_tokens(x.permute(0, 3, 1, 2))
            return torch.sigmoid(logit), logit, low, high
        logit = self.model(x.permute(0, 3, 1, 2))
        return torch.sigmoid(logit), logit


class ExplainOutputs(nn.Module):
    """float32 NCHW -> ``(logit, low_tokens, high_tokens)`` (``--explain-outputs``); with ``with_prob``
    ``(logit, prob, low_tokens, high_tokens)``. The logit is ``forward``'s, by the same ops."""

    def __init__(self, model: nn.Module, with_prob: bool = False) -> None:
        super().__init__()
        self.model = model
        self.with_prob = with_prob
        self.info = model_info(model)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logit, low, high = self.model.forward_cam_tokens(x)
        return (logit, torch.sigmoid(logit), low, high) if self.with_prob else (logit, low, high)


def graph_module(model: nn.Module, input_kind: str = "tensor", explain: bool = False) -> nn.Module:
    if input_kind == "image":
        return ImageInput(model, explain).eval()
    return ExplainOutputs(model).eval() if explain else model.eval()


def output_names(input_kind: str = "tensor", with_prob: bool = False, explain: bool = False) -> list[str]:
    """The graph's output names, in order (what :func:`graph_module` returns)."""
    names = ["prob", "logit"] if input_kind == "image" else (["logit", "prob"] if with_prob else ["logit"])
    return names + list(EXPLAIN_OUTPUTS) if explain else names


def explain_metadata(model: nn.Module, outputs: list[str]) -> dict[str, str]:
    """How an ``--explain-outputs`` artifact describes its extra outputs (``msvit.explain`` reads it)."""
    import json

    names = {m: n for n, m in model.named_modules()}
    info = {f"{branch}_tokens": {"branch": branch, "layer": names.get(mod, "?"), "grid": grid, "prefix_tokens": 1,
                                 "layout": "(N, prefix_tokens + rows*cols, C), row-major patch tokens"}
            for branch, (mod, grid) in model.cam_layers().items()}
    return {"explain_outputs": json.dumps(info, sort_keys=True),
            "output_names": json.dumps(outputs)}


def image_metadata(size: int, batch_dim: str) -> dict[str, str]:
    """How an ``--input image`` artifact describes its interface."""
    return {"input_kind": "image", "input_shape": f"{batch_dim}x{size}x{size}x3",
            "input_format": "uint8 NHWC RGB, letterboxed (cast and normalisation are in the graph)",
            "output": "prob (N,1) = P(fake); logit (N,1)"}
