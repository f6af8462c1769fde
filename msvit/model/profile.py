"""Parameter and compute accounting, on the graph that actually runs.

Compute is counted with :class:`torch.utils.flop_counter.FlopCounterMode` while the
model runs, so the DeepGuard block (attention never computed) is not charged for
attention, and the attention-applied block is. Two conventions, named explicitly:
MACs (multiply-accumulates; what fvcore and the DeepGuard paper call "FLOPs") and
FLOPs = 2 x MACs.

Convention: the count follows fvcore's ``FlopCountAnalysis`` (the tool behind the
published 0.68 G), i.e. conv/linear/matmul/attention multiply-accumulates plus fvcore's
per-element charge for normalisation layers (batch norm in eval: 2 per element; layer
norm: 5 per element). Element-wise activations are free in both.

Parameters, two readings: ``params`` counts every weight the checkpoint holds (state-dict
tensors that are weights, i.e. no batch-norm statistics; DeepGuard's and the docs'
number), ``trainable_params`` what ``parameters()`` can train. They differ by the
attention of ``attn_mode="deepguard"`` blocks, kept as buffers because no gradient reaches
it (:func:`msvit.model.layers.frozen_weights`).
"""
from __future__ import annotations

from math import prod

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .info import model_info
from .layers import frozen_weights

#: DeepGuard's published real-time budget for b0, in fvcore "FLOPs" (= GMACs).
B0_BUDGET_GMACS = 0.68

def _sdpa_cpu(q, k, v, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(q, k, v)


def _bn_eval(x, weight=None, *args, out_shape=None, **kwargs) -> int:
    return 2 * prod(x) * (2 if weight is not None else 1)  # FlopCounterMode counts 2 per MAC


def _layer_norm(x, normalized_shape, weight=None, *args, out_shape=None, **kwargs) -> int:
    return 2 * prod(x) * (5 if weight is not None else 4)


_FVCORE_EXTRAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu,
    torch.ops.aten.native_batch_norm: _bn_eval,
    torch.ops.aten._native_batch_norm_legit_no_training: _bn_eval,
    torch.ops.aten.native_layer_norm: _layer_norm,
}

PARTS = {"backbone": "feat_extractor.", "l_vit": "l_vit.", "h_vit": "h_vit.", "head": "head."}


@dataclass
class Profile:
    model: str
    attn_mode: str
    input_size: tuple[int, int, int, int]
    params: int  # weights in the state dict (what the checkpoint holds)
    params_by_part: dict[str, int]
    macs: int
    macs_by_part: dict[str, int] = field(default_factory=dict)
    trainable_params: int = 0  # what parameters() can train (deepguard: minus the dead attention)
    trainable_by_part: dict[str, int] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def within_budget(self, budget_gmacs: float = B0_BUDGET_GMACS) -> bool:
        return self.gmacs <= budget_gmacs

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(gmacs=self.gmacs, flops=self.flops, gflops=self.gflops)
        return d


def count_params(model: nn.Module, trainable: bool = False) -> tuple[int, dict[str, int]]:
    """``(total, per part)`` of the weights in the state dict, or with ``trainable`` of
    ``parameters()`` that require grad (the two differ by :func:`frozen_weights`)."""
    tensors = [(n, p) for n, p in model.named_parameters() if p.requires_grad or not trainable]
    if not trainable:
        tensors += list(frozen_weights(model))
    total = 0
    parts = dict.fromkeys(PARTS, 0)
    for name, p in tensors:
        total += p.numel()
        for part, prefix in PARTS.items():
            if name.startswith(prefix):
                parts[part] += p.numel()
    return total, parts


@torch.no_grad()
def profile(model: nn.Module, batch: int = 1) -> Profile:
    """Params (total and per part) and MACs of one forward pass at the model's input size."""
    size = model_info(model).img_size
    x = torch.zeros(batch, 3, size, size)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, depth=None, custom_mapping=_FVCORE_EXTRAS)
    with counter:
        model(x)
    model.train(was_training)
    flops_by_module = counter.get_flop_counts()
    total_flops = sum(flops_by_module.get("Global", {}).values())
    by_part = {}
    for part, prefix in PARTS.items():
        key = next((k for k in flops_by_module if k.endswith(prefix.rstrip("."))), None)
        by_part[part] = int(sum(flops_by_module[key].values()) // 2 // batch) if key else 0
    params, params_by_part = count_params(model)
    trainable, trainable_by_part = count_params(model, trainable=True)
    return Profile(
        model=model_info(model).variant,
        attn_mode=(model_info(model).attn_mode or "n/a"),
        input_size=(batch, 3, size, size),
        params=params,
        params_by_part=params_by_part,
        macs=int(total_flops // 2 // batch),
        macs_by_part=by_part,
        trainable_params=trainable,
        trainable_by_part=trainable_by_part,
    )
