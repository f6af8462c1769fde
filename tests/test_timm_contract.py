"""MS-Eff-ViT is a timm model: the contract timm's own model tests (``tests/test_models.py``
of pytorch-image-models) hold every registered model to, checked here for both variants.

As in timm, whose input-size limits skip b5 (fixed 384 px) for backward, FX and
TorchScript, those run on b0 only (same classes; b5 would cost 30+ s of CPU each); b5 is
held to the config, feature and head contract. Deliberate differences from timm's usual
models, each checked below:

* ``forward_features`` is the H-ViT token grid (``pool_size``) with the L-ViT tokens
  average-pooled onto it; ``forward`` pools the tokens directly (DeepGuard's ops, what
  exports contain), so ``forward_head(forward_features(x))`` equals it to float rounding.
* ``features_only`` is built on ``forward_intermediates`` (``feature_cls="getter"``): the
  branches are not a module sequence that timm's hook/list extractors could walk.
"""
from __future__ import annotations

import math

import pytest
import timm
import torch
from timm.data import resolve_data_config
from timm.models import get_notrace_functions, get_notrace_modules
from timm.optim import create_optimizer_v2
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import msvit  # noqa: F401  (registers the models)

VARIANTS = ["ms_eff_vit_b0", "ms_eff_vit_b5"]
SIZES = {"ms_eff_vit_b0": 224, "ms_eff_vit_b5": 384}


@pytest.fixture(scope="module")
def models():
    """One eval-mode model per variant, shared by the read-only checks (b5 takes seconds to build)."""
    torch.manual_seed(0)
    return {v: timm.create_model(v).eval() for v in VARIANTS}


def _x(variant, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = SIZES[variant]
    return torch.randn(batch, 3, s, s, generator=g)


@pytest.mark.parametrize("variant", VARIANTS)
def test_pretrained_cfg_describes_the_input_and_the_head(variant, models):
    m = models[variant]
    cfg = m.pretrained_cfg
    s = SIZES[variant]
    assert m.default_cfg is cfg
    assert cfg["input_size"] == (3, s, s) and cfg["fixed_input_size"]
    assert cfg["mean"] == (0.485, 0.456, 0.406) and cfg["std"] == (0.229, 0.224, 0.225)
    assert cfg["crop_pct"] == 1.0 and cfg["crop_mode"] == "border"  # letterbox-like: nothing cropped
    assert cfg["pool_size"] == (s // 32, s // 32)
    assert cfg["num_classes"] == 1 == m.num_classes
    sd = m.state_dict()
    assert cfg["classifier"] + ".weight" in sd and m.get_classifier() is m.head[4]
    assert cfg["first_conv"] + ".weight" in sd
    # what timm's data pipeline resolves from the model
    dc = resolve_data_config(model=m)
    assert dc["input_size"] == (3, s, s) and dc["mean"] == cfg["mean"] and dc["crop_mode"] == "border"
    assert timm.models.get_pretrained_cfg_value(variant, "input_size") == (3, s, s)


@pytest.mark.parametrize("variant", VARIANTS)
def test_features_head_and_classifier_reset(variant, models):
    torch.manual_seed(1)
    m = timm.create_model(variant).eval() if variant == "ms_eff_vit_b0" else models[variant]
    x = _x(variant)
    pool = m.pretrained_cfg["pool_size"]
    assert m.num_features == m.l_vit.patch_embed.cls_token.shape[-1] + m.h_vit.patch_embed.cls_token.shape[-1]
    assert m.head_hidden_size == m.num_features // 2
    with torch.no_grad():
        logit = m(x)
        feats = m.forward_features(x)  # unpooled, NCHW
        pre = m.forward_head(feats, pre_logits=True)
        assert logit.shape == (1, 1)  # DeepGuard's single logit stays the default
        assert feats.shape == (1, m.num_features, *pool)
        assert pre.shape == (1, m.head_hidden_size)
        torch.testing.assert_close(m.forward_head(feats), logit, rtol=0, atol=1e-5)
    if variant == "ms_eff_vit_b5":
        return  # the resets below rebuild the head: keep the shared b5 intact (b0 covers them)
    m.reset_classifier(0)
    assert m.num_classes == 0
    with torch.no_grad():
        out = m(x)
    assert out.shape == pre.shape == (1, m.head_hidden_size)
    torch.testing.assert_close(out, pre)  # eval: dropout is identity, so pre-logits exactly
    m.reset_classifier(0, "")  # no classifier, no pooling: the unpooled map
    with torch.no_grad():
        assert torch.equal(m(x), feats)
    m.reset_classifier(3, "avg")
    assert m.num_classes == 3 and m.get_classifier().out_features == 3
    with torch.no_grad():
        assert m(x).shape == (1, 3)


def test_classifier_and_pooling_removed_at_construction():
    m = timm.create_model("ms_eff_vit_b0", num_classes=0, global_pool="").eval()
    with torch.no_grad():
        out = m(_x("ms_eff_vit_b0"))
    assert out.shape == (1, m.num_features, *m.pretrained_cfg["pool_size"])
    assert not any(k.startswith("head.4.") for k in m.state_dict())
    with pytest.raises(ValueError, match="num_classes=0"):
        timm.create_model("ms_eff_vit_b0", global_pool="")  # a logit needs a pooled vector
    assert timm.create_model("ms_eff_vit_b0", num_classes=7)(_x("ms_eff_vit_b0")).shape == (1, 7)


def test_deepguard_pool_names_map_to_timm():
    m = timm.create_model("ms_eff_vit_b0", global_pool="token")
    assert m.global_pool == m.pool == "cls"
    with pytest.raises(ValueError, match="global_pool"):
        timm.create_model("ms_eff_vit_b0", global_pool="max")


@pytest.mark.parametrize("attn_mode", ["deepguard", "applied"])
def test_backward_reaches_every_parameter(attn_mode):
    """timm: every parameter gets a gradient. DeepGuard-mode attention is dead code, so it is
    held as buffers (still in the state dict), not as parameters that could never learn.
    (b0 only, as in timm, whose size limit skips b5: same classes, 30+ s of CPU.)"""
    torch.manual_seed(0)
    m = timm.create_model("ms_eff_vit_b0", num_classes=42, attn_mode=attn_mode).train()
    n_params = sum(p.numel() for p in m.parameters())
    out = m(_x("ms_eff_vit_b0", batch=2))
    assert out.shape[-1] == 42
    out.mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing
    assert sum(p.grad.numel() for p in m.parameters()) == n_params
    assert not torch.isnan(out).any()


@pytest.mark.parametrize("variant", VARIANTS)
def test_features_only_multi_scale_maps(variant):
    m = timm.create_model(variant, features_only=True).eval()
    channels, reductions = m.feature_info.channels(), m.feature_info.reduction()
    assert len(channels) >= 3
    assert reductions == sorted(reductions)
    a = msvit.model.VARIANTS[variant]
    assert channels[1] == a.l_dim and channels[3] == a.h_dim  # the ViT branch outputs
    s = SIZES[variant]
    with torch.no_grad():
        outs = m(_x(variant))
    assert len(outs) == len(channels)
    for c, r, o in zip(channels, reductions, outs):
        assert o.shape[0] == 1 and o.shape[1] == c
        assert o.shape[2] <= math.ceil(s / r) + 1 and o.shape[3] <= math.ceil(s / r) + 1
        assert not torch.isnan(o).any()
    assert not hasattr(m.model.head[4], "weight")  # pruned to what the maps need: no classifier


def test_features_only_subset_prunes_unused_branch_and_loads_weights(demo_weights):
    full = msvit.ms_eff_vit_b0(weights=demo_weights)
    feat = timm.create_model("ms_eff_vit_b0", features_only=True, out_indices=(0, 1),
                             pretrained_cfg_overlay=dict(file=str(demo_weights)))
    assert feat.feature_info.channels() == [24, 120]
    assert isinstance(feat.model.h_vit, torch.nn.Identity)  # no requested map needs the H-ViT
    x = _x("ms_eff_vit_b0")
    with torch.no_grad():
        got = feat(x)
        _, want = full.forward_intermediates(x)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    with pytest.raises(ValueError, match="getter"):
        timm.create_model("ms_eff_vit_b0", features_only=True, feature_cls="hook")


def test_forward_intermediates_matches_feature_info_and_forward_features(models):
    m = models["ms_eff_vit_b0"]
    info = timm.models.FeatureInfo(m.feature_info, len(m.feature_info))
    x = _x("ms_eff_vit_b0")
    with torch.no_grad():
        final, inter = m.forward_intermediates(x)
        assert torch.equal(final, m.forward_features(x))
        last_two = m.forward_intermediates(x, indices=2, intermediates_only=True)
    assert [t.shape[1] for t in inter] == info.channels()
    for r, t in zip(info.reduction(), inter):
        assert t.shape[-1] == 224 // r
    assert all(torch.equal(a, b) for a, b in zip(last_two, inter[2:]))


def test_grad_checkpointing_keeps_outputs():
    torch.manual_seed(0)
    m = timm.create_model("ms_eff_vit_b0").eval()
    x = _x("ms_eff_vit_b0")
    ref = m(x)
    m.set_grad_checkpointing()
    torch.testing.assert_close(m(x), ref, rtol=1e-4, atol=1e-5)
    m.train()
    m(x).mean().backward()  # checkpointed blocks still train
    assert all(p.grad is not None for p in m.parameters())


def _fx_model(model):
    """Symbolic trace with timm's leaf modules / wrapped functions, returning the output node."""
    kw = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(),
              param_shapes_constant=True)
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=kw)
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]],
                                    eval_return_nodes=[eval_nodes[-1]], tracer_kwargs=kw)


def test_fx_trace_is_exact_scriptable_and_trains():
    torch.manual_seed(0)
    with timm.set_scriptable(True):
        m = timm.create_model("ms_eff_vit_b0", num_classes=42).eval()
    n_params = sum(p.numel() for p in m.parameters())
    x = _x("ms_eff_vit_b0")
    fx = _fx_model(m)  # traced once per mode: eval and train graphs
    with torch.inference_mode():
        ref = m(x)
        assert torch.equal(next(iter(fx(x).values())), ref)
        scripted = torch.jit.script(fx)  # the generated code itself must be valid TorchScript
        torch.testing.assert_close(next(iter(scripted(x).values())), ref, rtol=1e-5, atol=1e-6)
    fx.train()
    out = next(iter(fx(_x("ms_eff_vit_b0", batch=2)).values()))
    assert out.shape == (2, 42)
    out.mean().backward()
    assert all(p.grad is not None for p in fx.parameters())
    assert sum(p.grad.numel() for p in fx.parameters()) == n_params


def test_torchscript_forward():
    torch.manual_seed(0)
    with timm.set_scriptable(True):
        m = timm.create_model("ms_eff_vit_b0").eval()
    x = _x("ms_eff_vit_b0")
    scripted = torch.jit.script(m)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), m(x), rtol=1e-5, atol=1e-6)


def test_optimizer_factory_groups():
    """timm's optimizer factory: no weight decay on position embeddings / class tokens,
    and the dead attention (buffers) never reaches the optimizer."""
    m = timm.create_model("ms_eff_vit_b0")
    opt = create_optimizer_v2(m, "adamw", lr=1e-4, weight_decay=0.05)
    no_decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert id(m.l_vit.patch_embed.pos_embed) in no_decay and id(m.h_vit.patch_embed.cls_token) in no_decay
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(m.l_vit.blocks[0].attn.qkv.weight) not in in_opt
    assert len(in_opt) == len(list(m.parameters()))
