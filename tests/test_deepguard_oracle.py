"""Bit-parity with DeepGuard 1.1.1 itself, installed as a test-only oracle (--no-deps).

Importing ``deepguard`` silences warnings process-wide, quietens the torch/timm
loggers and re-registers ``ms_eff_vit_*`` in timm's registry; the fixture confines all
three to this module.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import timm
import torch
from timm.models import _registry

import msvit


@pytest.fixture(scope="module")
def deepguard():
    pytest.importorskip("albumentations", reason="deepguard's data module needs albumentations")
    saved_filters = warnings.filters[:]
    saved_levels = {n: logging.getLogger(n).level for n in ("timm", "torch")}
    registry_dicts = [v for v in vars(_registry).values() if isinstance(v, dict)]
    saved_registry = [(d, dict(d)) for d in registry_dicts]
    orig_create = timm.create_model
    # Its FeatExtractor hard-codes pretrained=True (a hub download): force it off.
    timm.create_model = lambda *a, **k: orig_create(*a, **{**k, "pretrained": False})
    try:
        dg = pytest.importorskip("deepguard", reason="install the oracle: pip install --no-deps deepguard==1.1.1")
        import deepguard.layers.featextractor  # noqa: F401  (binds timm inside its module)
        yield dg
    finally:
        timm.create_model = orig_create
        warnings.filters[:] = saved_filters
        for n, lvl in saved_levels.items():
            logging.getLogger(n).setLevel(lvl)
        for d, copy in saved_registry:
            d.clear()
            d.update(copy)
    # what the oracle changed is back: our class in timm's registry, warnings audible
    assert _registry._model_entrypoints["ms_eff_vit_b0"] is msvit.ms_eff_vit_b0
    assert warnings.filters == saved_filters


def _dg_model(dg, applied: bool):
    from deepguard.layers import transformer

    def applied_forward(self, x):  # the textbook block: x + attn(norm1(x))
        x = x + self.drop_path(self.gamma1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x)))

    m = dg.ms_eff_vit_b0(pretrained=False).eval()
    if applied:
        for blk in [*m.l_vit.blocks, *m.h_vit.blocks]:
            blk.forward = applied_forward.__get__(blk, transformer.ViTBlock)
    return m


@pytest.mark.parametrize("mode", ["deepguard", "applied"])
def test_same_state_dict_same_logits(deepguard, eval_inputs, mode):
    torch.manual_seed(123)
    ours = msvit.ms_eff_vit_b0(attn_mode=mode).eval()
    theirs = _dg_model(deepguard, applied=(mode == "applied"))
    # state dicts are interchangeable both ways (names and shapes identical)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.from_numpy(eval_inputs[:16])
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert (a - b).abs().max().item() <= 1e-5


@pytest.mark.slow
def test_demo_weights_oracle(deepguard, demo_weights, reference, eval_inputs):
    theirs = _dg_model(deepguard, applied=False)
    theirs.load_state_dict(torch.load(demo_weights, weights_only=True), strict=True)
    with torch.no_grad():
        out = theirs(torch.from_numpy(eval_inputs)).squeeze(1).numpy()
    assert np.abs(out - np.asarray(reference["logits_deepguard"])).max() <= 1e-5
