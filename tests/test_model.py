"""The model: architecture, registry, DeepGuard parity, accounting."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import msvit
from msvit.model import B0_BUDGET_GMACS, VARIANTS, profile


def test_registered_with_timm():
    m = timm.create_model("ms_eff_vit_b0")
    assert isinstance(m, msvit.MultiScaleEffViT)
    assert m.pretrained_cfg["input_size"] == (3, 224, 224)
    assert "ms_eff_vit_b5" in timm.list_models("ms_eff_vit*")


def test_b0_param_counts_exact():
    p = profile(msvit.ms_eff_vit_b0())
    assert p.params == 5_875_669  # weights in the state dict (DeepGuard's count)
    assert p.params_by_part == {"backbone": 3_595_388, "l_vit": 492_240, "h_vit": 1_748_000, "head": 40_041}
    # trainable: minus the dead attention (2 x 58,080 in the L-ViT, 4 x 103,040 in the H-ViT)
    assert p.trainable_params == 5_347_349 == 5_875_669 - 528_320
    assert p.trainable_by_part == {"backbone": 3_595_388, "l_vit": 376_080, "h_vit": 1_335_840, "head": 40_041}
    a = profile(msvit.ms_eff_vit_b0(attn_mode="applied"))
    assert a.params == a.trainable_params == 5_875_669


def test_dead_attention_is_buffers_with_unchanged_state_dict():
    d = msvit.ms_eff_vit_b0(attn_mode="deepguard")
    a = msvit.ms_eff_vit_b0(attn_mode="applied")
    key = "l_vit.blocks.0.attn.qkv.weight"
    assert key not in dict(d.named_parameters()) and key in dict(d.named_buffers())
    assert key in dict(a.named_parameters())
    assert {k: v.shape for k, v in d.state_dict().items()} == {k: v.shape for k, v in a.state_dict().items()}
    d.load_state_dict(a.state_dict(), strict=True)  # checkpoints move between modes both ways
    a.load_state_dict(d.state_dict(), strict=True)
    assert torch.equal(d.state_dict()[key], a.state_dict()[key])
    assert sorted(n for n, _ in msvit.model.frozen_weights(d)) == sorted(
        k for k in d.state_dict() if ".attn." in k)
    assert list(msvit.model.frozen_weights(a)) == []


def test_model_package_has_no_import_cycle():
    """Every import between msvit.model modules, function-level ones included (as
    import-linter sees them), points one way."""
    pkg = Path(msvit.model.__file__).parent
    mods = {f.stem for f in pkg.glob("*.py") if f.stem != "__init__"}
    graph = {}
    for m in mods:
        deps = set()
        for node in ast.walk(ast.parse((pkg / f"{m}.py").read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:  # from .x import ...
                    deps.add(node.module.split(".")[0])
                elif node.level == 1:  # from . import x
                    deps.update(a.name for a in node.names)
                elif node.level == 2 and node.module and node.module.startswith("model."):
                    deps.add(node.module.split(".")[1])
                elif node.level == 0 and (node.module or "").startswith("msvit.model."):
                    deps.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[2] for a in node.names if a.name.startswith("msvit.model."))
        graph[m] = deps & mods
    state = {}

    def visit(m, path):
        assert state.get(m) != "open", f"import cycle: {' -> '.join(path + [m])}"
        if state.get(m) is None:
            state[m] = "open"
            for d in sorted(graph[m]):
                visit(d, path + [m])
            state[m] = "done"

    for m in sorted(mods):
        visit(m, [])
    assert "ms_eff_vit" not in graph["weights"]


@pytest.mark.parametrize("mode,ref_gmacs", [("deepguard", 0.660), ("applied", 1.070)])
def test_b0_macs_match_fvcore_reference(mode, ref_gmacs):
    p = profile(msvit.ms_eff_vit_b0(attn_mode=mode))
    assert p.gmacs == pytest.approx(ref_gmacs, rel=0.02)
    assert p.flops == 2 * p.macs
    assert sum(p.macs_by_part.values()) == pytest.approx(p.macs, rel=1e-3)


def test_budget_check_separates_block_behaviours():
    assert profile(msvit.ms_eff_vit_b0()).within_budget(B0_BUDGET_GMACS)
    assert not profile(msvit.ms_eff_vit_b0(attn_mode="applied")).within_budget(B0_BUDGET_GMACS)


def test_deepguard_block_never_computes_attention(monkeypatch):
    m = msvit.ms_eff_vit_b0().eval()
    calls = []
    for blk in [*m.l_vit.blocks, *m.h_vit.blocks]:
        monkeypatch.setattr(blk.attn, "forward", lambda x, *a, **k: calls.append(1) or x)
    with torch.no_grad():
        m(torch.zeros(1, 3, 224, 224))
    assert calls == []
    assert "l_vit.blocks.0.attn.qkv.weight" in m.state_dict()  # params kept for strict loading


def test_applied_block_uses_attention():
    torch.manual_seed(0)
    a = msvit.ms_eff_vit_b0(attn_mode="applied").eval()
    d = msvit.ms_eff_vit_b0(attn_mode="deepguard").eval()
    d.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert not torch.allclose(a(x), d(x))


def test_invalid_attn_mode():
    with pytest.raises(ValueError, match="attn_mode"):
        msvit.ms_eff_vit_b0(attn_mode="fused")


def test_b5_builds_with_expected_shape():
    m = msvit.ms_eff_vit_b5()
    assert m.img_size == 384 == VARIANTS["ms_eff_vit_b5"].img_size
    assert m.l_vit.patch_embed.cls_token.shape[-1] == 320
    assert m.h_vit.patch_embed.pos_embed.shape == (1, 12 * 12 + 1, 512)
    assert len(m.h_vit.blocks) == 6


@pytest.mark.slow
@pytest.mark.parametrize("mode,key", [("deepguard", "logits_deepguard"), ("applied", "logits_attention_applied")])
def test_demo_checkpoint_reproduces_deepguard_logits(demo_weights, reference, eval_inputs, mode, key):
    m = msvit.ms_eff_vit_b0(weights=demo_weights, attn_mode=mode)
    with torch.no_grad():
        out = m(torch.from_numpy(eval_inputs)).squeeze(1).numpy()
    assert np.abs(out - np.asarray(reference[key])).max() <= 1e-5


def test_unknown_model_name():
    with pytest.raises(msvit.errors.MsvitError, match="unknown model"):
        msvit.create_model("ms_eff_vit_b7")
