"""Which layers can be INT8 without breaking decisions: per-group sensitivity by
simulated quantization in PyTorch, then the largest group set within a simulated |ΔP| budget.

Measured on the demo checkpoint (ONNX Runtime, one group at a time): early,
high-resolution backbone layers (stem, blocks.0-2) move P(fake) by 0.1-0.5 on their
own; blocks.4-6, the ViT MLPs and the head by <= 0.03. The error is activation
quantization (8-bit weights with 16-bit activations stay within 0.03). Rather than
hard-code that list, it is measured per checkpoint and calibration set, fast (one
fake-quantized forward per group) and cached by (weights, data, method, scheme).

Fake quantization mirrors the backends: weights per-output-channel symmetric int8;
activations per-tensor, asymmetric uint8 (onnxruntime/OpenVINO/XNNPACK) or symmetric
int8 (TensorRT).
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

GROUP_RULES = [
    (re.compile(r"^feat_extractor\.backbone\.conv_stem$"), "backbone.stem"),
    (re.compile(r"^feat_extractor\.backbone\.blocks\.(\d+)\."), r"backbone.blocks.\1"),  # one group per stage
    (re.compile(r"^([lh]_vit)\.patch_embed\.proj\.0$"), r"\1.patch_embed.proj"),
    (re.compile(r"^([lh]_vit)\.patch_embed\.proj\.(\d+)\."), r"\1.patch_embed.mbconv\2"),
    (re.compile(r"^([lh]_vit)\.patch_embed\.proj\.(\d+)$"), r"\1.patch_embed.proj\2"),
    (re.compile(r"^([lh]_vit)\.blocks\.\d+\."), r"\1.blocks"),  # ViT MLPs: measured insensitive, one group
    (re.compile(r"^head\."), "head"),
]

#: The real backend kernels' error over the simulation's, on the same images, measured per
#: backend (``research/guard_holdout.py``, demo checkpoint, 3 guard attempts each; max |ΔP|
#: real / simulated on calibration, eval/ and train/ images): OpenVINO convs 0.92-2.74 (2.74:
#: eval/), ExecuTorch/XNNPACK 0.13-1.64; onnxruntime QGemm stays at the 0.002 noise level
#: both ways. The plan's simulated budget defaults to the gate divided by this, so what the
#: plan promises in simulation still fits the gate on the real kernels.
KERNEL_ROOM = 3.0


def group_of(module_name: str) -> str:
    for rx, repl in GROUP_RULES:
        m = rx.search(module_name)
        if m:
            return m.expand(repl)
    return module_name


def quantizable_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


@dataclass
class QuantPlan:
    groups: list[str]  # all groups, most sensitive first
    sensitivity: dict[str, float]  # max |ΔP| with only that group quantized
    quantized: list[str]  # groups chosen for int8
    float_groups: list[str]  # kept in float
    sim_max_dprob: float  # simulated max |ΔP| with `quantized` all in int8 (calibration images)
    sensitivity_dprob: float  # the simulated budget the plan was chosen within
    scheme: str
    method: str
    layers: dict[str, list[str]] = field(default_factory=dict)  # group -> module names
    sim_bound_dprob: float = float("nan")  # what the budget was applied to: the guard's bound on the simulated |ΔP|

    def quantized_modules(self) -> list[str]:
        return [m for g in self.quantized for m in self.layers[g]]

    def float_modules(self) -> list[str]:
        return [m for g in self.float_groups for m in self.layers.get(g, ())]

    def keep_float(self, group: str) -> "QuantPlan":
        q = [g for g in self.quantized if g != group]
        return QuantPlan(self.groups, self.sensitivity, q, [g for g in self.groups if g not in q], float("nan"),
                         self.sensitivity_dprob, self.scheme, self.method, self.layers, float("nan"))

    def restrict(self, modules: set[str]) -> "QuantPlan":
        """The plan over ``modules`` only (what a backend can run faster in int8); groups left
        with none of them count as float."""
        layers = {g: [m for m in ms if m in modules] for g, ms in self.layers.items()}
        layers = {g: ms for g, ms in layers.items() if ms}
        q = [g for g in self.quantized if g in layers]
        return QuantPlan(self.groups, self.sensitivity, q, [g for g in self.groups if g not in q], self.sim_max_dprob,
                         self.sensitivity_dprob, self.scheme, self.method, layers, self.sim_bound_dprob)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def whole(cls, method: str, scheme: str) -> "QuantPlan":
        """One group, the whole network (backends whose quantizer has no per-layer fallback)."""
        return cls(["all"], {"all": float("nan")}, ["all"], [], float("nan"), float("nan"), scheme, method,
                   {"all": []})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "QuantPlan":
        return cls(**d)


def fake_quantize_activation(x: torch.Tensor, lo: float, hi: float, symmetric: bool) -> torch.Tensor:
    if symmetric:
        a = max(abs(lo), abs(hi), 1e-8)
        scale = a / 127.0
        return torch.fake_quantize_per_tensor_affine(x, scale, 0, -128, 127)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-8) / 255.0
    zp = int(round(-lo / scale))
    return torch.fake_quantize_per_tensor_affine(x, scale, zp, 0, 255)


def fake_quantize_weight(w: torch.Tensor) -> torch.Tensor:
    amax = w.detach().abs().flatten(1).amax(1).clamp_min(1e-8)
    scale = (amax / 127.0).float()
    return torch.fake_quantize_per_channel_affine(w, scale, torch.zeros_like(scale, dtype=torch.int32), 0,
                                                  -127, 127)


@torch.no_grad()
def activation_ranges(model: nn.Module, x: np.ndarray, method: str = "minmax", batch: int = 16,
                      percentile: float = 99.99) -> dict[str, tuple[float, float]]:
    """Input range of every Conv/Linear over the calibration images."""
    layers = quantizable_layers(model)
    stats: dict[str, list[tuple[float, float]]] = {n: [] for n in layers}

    def hook(name):
        def fn(mod, inp):
            t = inp[0].detach().float()
            if method == "percentile":
                flat = t.flatten()
                if flat.numel() > 1_000_000:
                    flat = flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
                q = torch.quantile(flat, torch.tensor([1 - percentile / 100, percentile / 100]))
                stats[name].append((q[0].item(), q[1].item()))
            else:
                stats[name].append((t.min().item(), t.max().item()))
        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers.items()]
    try:
        for i in range(0, len(x), batch):
            model(torch.from_numpy(x[i:i + batch]))
    finally:
        for h in handles:
            h.remove()
    stats = {n: v for n, v in stats.items() if v}  # never called (DeepGuard block's dead attention): skip
    if method == "percentile":  # average per-batch percentiles (what ORT's calibrator does too, roughly)
        return {n: (float(np.mean([s[0] for s in v])), float(np.mean([s[1] for s in v]))) for n, v in stats.items()}
    return {n: (min(s[0] for s in v), max(s[1] for s in v)) for n, v in stats.items()}


@contextmanager
def fake_quantized(model: nn.Module, modules: list[str], ranges: dict[str, tuple[float, float]],
                   symmetric_act: bool) -> Iterator[None]:
    """Temporarily quantize-dequantize weights and input activations of ``modules``."""
    layers = quantizable_layers(model)
    saved, handles = {}, []
    try:
        for name in modules:
            mod = layers[name]
            saved[name] = mod.weight.data
            mod.weight.data = fake_quantize_weight(mod.weight.data)
            lo, hi = ranges[name]
            handles.append(mod.register_forward_pre_hook(
                lambda m, inp, lo=lo, hi=hi: (fake_quantize_activation(inp[0], lo, hi, symmetric_act), *inp[1:])))
        yield
    finally:
        for h in handles:
            h.remove()
        for name, w in saved.items():
            layers[name].weight.data = w


@torch.no_grad()
def _probs(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    return torch.sigmoid(model(x)).squeeze(1).numpy()


@torch.no_grad()
def analyse(model: nn.Module, calib_x: np.ndarray, method: str = "minmax", sensitivity_dprob: float = 0.02,
            symmetric_act: bool = False, n_probe: int = 16, progress: bool = False,
            bound: Callable[[np.ndarray], float] | None = None) -> QuantPlan:
    """Per-group sensitivity (max |ΔP| on ``n_probe`` images, which only orders the groups),
    then the largest least-sensitive-first prefix whose simulated |ΔP| over *all* calibration
    images, summarised by ``bound`` (the guard's bound for unseen images; default: the max),
    stays within ``sensitivity_dprob``: the plan is held to the same sample-size rule as the
    real artifact will be, with :data:`KERNEL_ROOM` left for the kernels (see the caller)."""
    from tqdm.auto import tqdm

    model.eval()
    bound = bound or (lambda d: float(np.max(d)))
    ranges = activation_ranges(model, calib_x, "percentile" if method == "percentile" else "minmax")
    layers: dict[str, list[str]] = {}
    for name in ranges:  # only layers that actually run
        layers.setdefault(group_of(name), []).append(name)
    probe = torch.from_numpy(calib_x[:n_probe])
    ref = _probs(model, probe)
    sens = {}
    for g in tqdm(list(layers), desc="INT8 sensitivity", disable=not progress, leave=False):
        with fake_quantized(model, layers[g], ranges, symmetric_act):
            sens[g] = float(np.abs(_probs(model, probe) - ref).max())
    order = sorted(layers, key=lambda g: sens[g])  # least sensitive first
    ref_all = np.concatenate([_probs(model, torch.from_numpy(calib_x[i:i + 16])) for i in range(0, len(calib_x), 16)])

    def err(k: int) -> tuple[float, float]:
        mods = [m for g in order[:k] for m in layers[g]]
        with fake_quantized(model, mods, ranges, symmetric_act):
            p = np.concatenate([_probs(model, torch.from_numpy(calib_x[i:i + 16])) for i in range(0, len(calib_x), 16)])
        d = np.abs(p - ref_all)
        return float(bound(d)), float(d.max())

    # error grows (almost) monotonically with the prefix: binary search the longest prefix within budget
    lo, hi, best = 0, len(order), (0.0, 0.0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        e = err(mid)
        if e[0] <= sensitivity_dprob:
            lo, best = mid, e
        else:
            hi = mid - 1
    quantized = order[:lo]
    groups = sorted(layers, key=lambda g: -sens[g])
    return QuantPlan(groups=groups, sensitivity=sens, quantized=quantized,
                     float_groups=[g for g in groups if g not in quantized], sim_max_dprob=best[1],
                     sensitivity_dprob=sensitivity_dprob,
                     scheme="symmetric-act" if symmetric_act else "asymmetric-act", method=method, layers=layers,
                     sim_bound_dprob=best[0])


@torch.no_grad()
def layer_macs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Multiply-adds of each Conv2d/Linear in one forward of ``x[:1]`` (one image)."""
    macs: dict[str, int] = {}

    def hook(name):
        def fn(mod, inp, out):
            # each output element costs one weight row: in/groups*kh*kw (conv) or in_features (linear)
            macs[name] = macs.get(name, 0) + out.numel() * mod.weight[0].numel()
        return fn

    hs = [m.register_forward_hook(hook(n)) for n, m in quantizable_layers(model).items()]
    try:
        model(x[:1])
    finally:
        for h in hs:
            h.remove()
    return macs
