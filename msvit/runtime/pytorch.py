"""A PyTorch ``nn.Module`` behind the same :class:`~msvit.runtime.base.Session` interface
(the reference every artifact is compared with, and ``--weights`` in predict/bench)."""
from __future__ import annotations

import numpy as np

from ..model.info import model_info
from .base import InputSpec, Session
from .meta import common_metadata


def model_metadata(model) -> dict[str, str]:
    """What an artifact exported from ``model`` would say about itself (the common keys)."""
    info = model_info(model)
    return common_metadata(info, "torch", "fp32", (None, 3, info.img_size, info.img_size))


class TorchSession(Session):
    format = "torch"
    title = "PyTorch"

    def __init__(self, model, threads: int | None = None, device: str = "cpu") -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch_device = torch.device("cuda" if device in ("cuda", "jetson") else "cpu")
        self.module = model.to(self.torch_device).eval()
        info = model_info(model)
        super().__init__(info.weights_path, model_metadata(model), InputSpec("image", (None, 3, info.img_size,
                                                                              info.img_size)),
                         "cuda" if self.torch_device.type == "cuda" else "cpu", threads)

    def describe(self) -> str:
        return f"PyTorch eager {self.metadata['model']} ({self.device})"

    @property
    def output_names(self) -> tuple[str, ...]:
        return ("logit", "low_tokens", "high_tokens") if hasattr(self.module, "forward_cam_tokens") else ("logit",)

    def _run_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The same outputs an ``--explain-outputs`` export gives (the FP32 reference for map drift)."""
        import torch

        if not hasattr(self.module, "forward_cam_tokens"):
            return super()._run_all(x)
        with torch.inference_mode():
            outs = self.module.forward_cam_tokens(torch.from_numpy(x).to(self.torch_device))
        return {n: o.float().cpu().numpy() for n, o in zip(self.output_names, outs)}

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():  # .cpu() synchronises a GPU run
            return self.module(torch.from_numpy(x).to(self.torch_device)).float().cpu().numpy()
