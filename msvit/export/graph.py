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


class ImageInput(nn.Module):
    """uint8 letterboxed RGB NHWC (N, S, S, 3) -> (prob (N, 1), logit (N, 1))."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.img_size = model_info(model).img_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 1, 1, 3), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 1, 1, 3), False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (image.to(torch.float32) / 255.0 - self.mean) / self.std
        logit = self.model(x.permute(0, 3, 1, 2))
        return torch.sigmoid(logit), logit


def graph_module(model: nn.Module, input_kind: str = "tensor") -> nn.Module:
    return ImageInput(model).eval() if input_kind == "image" else model.eval()


def image_metadata(size: int, batch_dim: str) -> dict[str, str]:
    """How an ``--input image`` artifact describes its interface."""
    return {"input_kind": "image", "input_shape": f"{batch_dim}x{size}x{size}x3",
            "input_format": "uint8 NHWC RGB, letterboxed (cast and normalisation are in the graph)",
            "output": "prob (N,1) = P(fake); logit (N,1)"}
