"""The explanation methods: one table, and the maps each computes.

PyTorch (``--weights``): ``pytorch-grad-cam``'s own CAM classes on DeepGuard's layers (each ViT
branch's last block ``norm1``, tokens reshaped to their grid). An artifact (``--artifact``,
exported with ``--explain-outputs``): the same tokens come out of one forward pass, and
gradient-free methods (EigenCAM) run on them with grad-cam's own projection and scaling.
Maps are ``(N, S, S)`` float32 at the model's input resolution, in [0, 1] as grad-cam scales them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import UsageError
from ..model.info import model_info

BRANCHES = ("low", "high")
#: artifact output name of each branch's CAM tokens (``msvit-export --explain-outputs``)
TOKEN_OUTPUTS = {"low": "low_tokens", "high": "high_tokens"}


@dataclass(frozen=True)
class Method:
    name: str  # CLI and array name: ``<branch>_<name>`` in the .npz
    cam: str  # the pytorch_grad_cam class
    branch: str  # the branch DeepGuard's results page shows it on ("both": either)
    gradients: bool  # needs backpropagation: the PyTorch model (--weights)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("hirescam", "HiResCAM", "low", True),
    Method("gradcamelementwise", "GradCAMElementWise", "low", True),
    Method("layercam", "LayerCAM", "low", True),
    Method("eigengradcam", "EigenGradCAM", "high", True),
    Method("gradcamplusplus", "GradCAMPlusPlus", "high", True),
    Method("xgradcam", "XGradCAM", "high", True),
    Method("eigencam", "EigenCAM", "both", False),
)}
#: DeepGuard's results page: three methods per branch (the default with --weights)
DEEPGUARD_METHODS = ("hirescam", "gradcamelementwise", "layercam", "eigengradcam", "gradcamplusplus", "xgradcam")
#: what an ``--explain-outputs`` artifact serves (from its token outputs, no gradients)
ARTIFACT_METHODS = tuple(n for n, m in METHODS.items() if not m.gradients)


@dataclass(frozen=True)
class MapSpec:
    """One map to draw: a method on a branch; ``key`` names its array and files."""

    branch: str
    method: str

    @property
    def key(self) -> str:
        return f"{self.branch}_{self.method}"


def plan_maps(methods: list[str] | None, branch: str, gradients: bool) -> list[MapSpec]:
    """The maps to draw, checked before any work. ``methods`` None: DeepGuard's six on their own
    branches (``gradients``, i.e. --weights) or EigenCAM (an artifact); ``branch`` low | high | both
    (``both`` with explicit methods: each method on both branches; with the default set: each on its own)."""
    if branch not in (*BRANCHES, "both"):
        raise UsageError(f"--branch must be low, high or both, got {branch!r}")
    served = list(METHODS) if gradients else list(ARTIFACT_METHODS)
    for m in methods or []:
        if m not in METHODS:
            raise UsageError(f"unknown method {m!r}; choose from: {', '.join(served)}")
        if not gradients and METHODS[m].gradients:
            raise UsageError(f"{m} needs gradients, which an artifact cannot give: use --weights W.bin for it; "
                             f"an --explain-outputs artifact serves: {', '.join(ARTIFACT_METHODS)}")
    wanted = BRANCHES if branch == "both" else (branch,)
    if methods:
        return [MapSpec(b, m) for m in dict.fromkeys(methods) for b in wanted]
    if not gradients:
        return [MapSpec(b, m) for m in ARTIFACT_METHODS for b in wanted]
    return [MapSpec(METHODS[m].branch, m) for m in DEEPGUARD_METHODS if METHODS[m].branch in wanted]


def tokens_to_map(tokens: Any, grid: list[int], prefix: int = 1) -> Any:
    """``(N, prefix + rows*cols, C)`` tokens -> ``(N, C, rows, cols)`` (the reshape_transform grad-cam
    gets; works on torch tensors and numpy arrays alike)."""
    t = tokens[:, prefix:]
    t = t.reshape(t.shape[0], grid[0], grid[1], t.shape[-1])
    return t.permute(0, 3, 1, 2) if hasattr(t, "permute") else np.ascontiguousarray(t.transpose(0, 3, 1, 2))


def scale_as_grad_cam(cam: np.ndarray, size: int) -> np.ndarray:
    """What ``BaseCAM.forward`` does with one target layer's raw cam: clip at 0, scale each map to
    [0, 1] and resize (``scale_cam_image``), then the layer aggregation (mean of one, clip, rescale)."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    scaled = scale_cam_image(np.maximum(cam, 0), (size, size))[:, None]
    return scale_cam_image(np.mean(np.maximum(scaled, 0), axis=1))


def eigencam_from_tokens(tokens: np.ndarray, grid: list[int], size: int, prefix: int = 1) -> np.ndarray:
    """EigenCAM from a branch's token output alone: grad-cam's ``get_2d_projection`` (first principal
    component of the centred activations) on the token grid, scaled as grad-cam scales it."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    acts = tokens_to_map(np.asarray(tokens, np.float32), grid, prefix)
    return scale_as_grad_cam(get_2d_projection(acts), size)


class TorchExplainer:
    """grad-cam's CAMs on a PyTorch :class:`~msvit.MultiScaleEffViT` (``target``: fake | real)."""

    def __init__(self, model: Any, target: str = "fake") -> None:
        if target not in ("fake", "real"):
            raise UsageError(f"--target must be fake or real, got {target!r}")
        self.model = model.eval()
        self.layers = model.cam_layers()
        self.target = target
        self.size = model_info(model).img_size

    def maps(self, x: np.ndarray, specs: list[MapSpec]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """``x`` (N, 3, S, S) preprocessed crops -> ``({key: (N, S, S)}, {key: ms per crop})``."""
        import pytorch_grad_cam as gc
        import torch
        from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

        t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        # single-logit model: grad-cam's binary target is +logit for "fake" (class 1), -logit for "real"
        targets = [BinaryClassifierOutputTarget(1 if self.target == "fake" else 0) for _ in range(len(t))]
        out, ms = {}, {}
        for spec in specs:
            layer, grid = self.layers[spec.branch]
            cam = getattr(gc, METHODS[spec.method].cam)(model=self.model, target_layers=[layer],
                                                          reshape_transform=_grid_reshape(grid))
            t0 = time.perf_counter()
            try:  # not ``with cam``: its __exit__ swallows IndexError
                with torch.enable_grad():
                    out[spec.key] = np.asarray(cam(input_tensor=t, targets=targets), np.float32)
            finally:
                cam.activations_and_grads.release()
            ms[spec.key] = 1e3 * (time.perf_counter() - t0) / max(1, len(t))
        return out, ms


def _grid_reshape(grid: list[int]) -> Callable[[Any], Any]:
    return lambda tokens: tokens_to_map(tokens, grid)


class ArtifactExplainer:
    """Gradient-free maps from a session's token outputs (any runtime with ``run_all``)."""

    def __init__(self, session: Any, explain_outputs: dict[str, dict[str, Any]], size: int) -> None:
        self.session = session
        self.info = {v["branch"]: v | {"output": k} for k, v in explain_outputs.items()}
        self.size = size

    def maps(self, x: np.ndarray, specs: list[MapSpec]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        t0 = time.perf_counter()
        outs = self.session.run_all(x)  # one forward pass gives every branch's tokens
        forward_ms = 1e3 * (time.perf_counter() - t0) / max(1, len(x))
        maps, ms = {}, {}
        for spec in specs:
            info = self.info[spec.branch]
            t1 = time.perf_counter()
            maps[spec.key] = eigencam_from_tokens(outs[info["output"]], info["grid"], self.size,
                                                  int(info.get("prefix_tokens", 1)))
            ms[spec.key] = forward_ms + 1e3 * (time.perf_counter() - t1) / max(1, len(x))
        return maps, ms


def map_drift(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps (1 = same map; what reduced precision did to the explanation)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
