"""MS-Eff-ViT: EfficientNet features at two scales, each refined by a small ViT, fused by an MLP head.

A rebuild of DeepGuard 1.1.1's ``MultiScaleEffViT`` with the same state-dict layout,
registered with timm (``timm.create_model("ms_eff_vit_b0")`` after ``import msvit``) and
speaking timm's model interface: ``num_features`` / ``head_hidden_size``,
``get_classifier`` / ``reset_classifier``, ``forward_features`` / ``forward_head``,
``forward_intermediates`` and ``features_only``, ``set_grad_checkpointing``, FX-traceable
and scriptable ``forward``.
"""
# No ``from __future__ import annotations`` here: torch.fx copies the root ``forward``'s
# annotations into the code it generates, and a string annotation ("torch.Tensor") comes
# out as a type name TorchScript cannot resolve when that code is scripted.
from typing import List, Optional, Tuple, Union

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models._features import feature_take_indices

from .info import ModelInfo
from .layers import ATTN_MODES, AttnMode, ViTLayer
from .weights import load_checkpoint

__all__ = ["FeatExtractor", "MultiScaleEffViT"]

# DeepGuard's block index -> timm features_only index (5 stages at strides 2..32).
_FEATURE_IDX = {0: 0, 1: 1, 2: 2, 4: 3, 6: 4}

# ``global_pool`` spellings: DeepGuard's ``pool`` ("avg" | "cls"), timm's ("avg", "token", "" = none).
_POOLS = {"avg": "avg", "cls": "cls", "token": "cls", "": ""}


class FeatExtractor(nn.Module):
    """timm EfficientNet with ``features_only``; kept as its own module for DeepGuard's key prefix."""

    def __init__(self, backbone: str, pretrained_backbone: bool = False) -> None:
        super().__init__()
        self.backbone = timm.create_model(backbone, pretrained=pretrained_backbone, features_only=True)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.backbone(x)


class MultiScaleEffViT(nn.Module):
    """Multi-scale EfficientNet + ViT binary classifier; one logit, sigmoid = P(fake).

    The backbone's stride-4 map feeds the L-ViT, its stride-32 map the H-ViT; each branch's
    patch tokens are average-pooled, concatenated (``num_features``) and classified by
    DeepGuard's MLP head ``LayerNorm -> Linear -> GELU -> Dropout -> Linear``
    (``head_hidden_size`` is the hidden width; ``head.4`` is the classifier).

    timm views of the same computation:

    * ``forward_features(x)``: the unpooled ``(B, num_features, H/32, W/32)`` map, L-ViT
      tokens (average-pooled to the H-ViT grid) stacked on H-ViT tokens. Its global mean is
      the pooled feature ``forward`` uses, to float rounding (``forward`` pools the tokens
      directly: DeepGuard's exact op sequence, and what exports contain).
    * ``forward_head(x, pre_logits=True)``: pooled map through the head up to the hidden
      layer. ``reset_classifier(n)`` swaps ``head.4`` for an ``n``-class layer (``0`` removes it).
    * ``forward_intermediates`` / ``features_only=True``: four NCHW maps in stride order --
      L-ViT input (backbone, stride 4), L-ViT output (stride 8), H-ViT input (backbone,
      stride 32), H-ViT output (stride 32); see ``feature_info``.

    Args:
        attn_mode: ``"deepguard"`` (default) reproduces DeepGuard 1.1.1's ViTBlock, which
            discards its attention output, and which every published checkpoint was
            trained with; its attention weights are then non-trainable buffers (see
            :class:`~msvit.model.layers.ViTBlock`). ``"applied"`` uses the standard
            ``x + attn(norm1(x))`` block.
        pool / global_pool: ``"avg"`` (default: mean of patch tokens), ``"cls"`` (timm:
            ``"token"``; class tokens), ``""`` (timm: no pooling; needs ``num_classes=0``,
            ``forward`` then returns the ``forward_features`` map).
        drop_rate: dropout before the classifier (DeepGuard: 0.1); timm's ``drop_rate``.
        drop_path_rate: stochastic depth of both ViT branches; timm's ``drop_path_rate``
            (default: the variant's ``l_drop_path`` / ``h_drop_path``).
        pretrained_backbone: load timm's ImageNet backbone weights (needs the network);
            off by default, checkpoints carry the backbone anyway.
    """

    __jit_unused_properties__ = ["info"]  # Python-side provenance, not part of the scripted graph

    def __init__(
        self,
        backbone: str = "tf_efficientnet_b0",
        img_size: int = 224,
        l_block_idx: int = 1,
        h_block_idx: int = 6,
        l_dim: int = 120,
        h_dim: int = 160,
        l_depth: int = 2,
        h_depth: int = 4,
        l_heads: int = 4,
        h_heads: int = 4,
        l_ratio: float = 4.0,
        h_ratio: float = 6.0,
        l_drop: float = 0.0,
        h_drop: float = 0.0,
        l_attn_drop: float = 0.0,
        h_attn_drop: float = 0.0,
        l_drop_path: float = 0.0,
        h_drop_path: float = 0.0,
        num_classes: int = 1,
        pool: str = "avg",
        attn_mode: AttnMode = "deepguard",
        pretrained_backbone: bool = False,
        global_pool: Optional[str] = None,
        drop_rate: float = 0.1,
        drop_path_rate: Optional[float] = None,
    ) -> None:
        super().__init__()
        if attn_mode not in ATTN_MODES:
            raise ValueError(f"attn_mode must be one of {ATTN_MODES}, got {attn_mode!r}")
        self.global_pool = self._check_pool(global_pool if global_pool is not None else pool, num_classes)
        if drop_path_rate is not None:
            l_drop_path = h_drop_path = drop_path_rate
        self.attn_mode = attn_mode
        self.img_size = img_size
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.feat_extractor = FeatExtractor(backbone, pretrained_backbone)
        info = self.feat_extractor.backbone.feature_info
        self.l_idx, self.h_idx = _FEATURE_IDX[l_block_idx], _FEATURE_IDX[h_block_idx]

        def branch(block_idx: int, fidx: int, dim: int, depth: int, heads: int, ratio: float,
                   drop: float, attn_drop: float, drop_path: float) -> ViTLayer:
            red = info[fidx]["reduction"]
            return ViTLayer(info[fidx]["num_chs"], block_idx, (img_size // red, img_size // red), dim, depth,
                            drop_path, num_heads=heads, mlp_ratio=ratio, drop=drop, attn_drop=attn_drop,
                            attn_mode=attn_mode)

        self.l_vit = branch(l_block_idx, self.l_idx, l_dim, l_depth, l_heads, l_ratio, l_drop, l_attn_drop, l_drop_path)
        self.h_vit = branch(h_block_idx, self.h_idx, h_dim, h_depth, h_heads, h_ratio, h_drop, h_attn_drop, h_drop_path)
        self.l_grid: List[int] = self.l_vit.patch_embed.grid_size
        self.h_grid: List[int] = self.h_vit.patch_embed.grid_size
        self.num_features = l_dim + h_dim
        self.head_hidden_size = self.num_features // 2
        self.head = self._make_head(num_classes)

        # timm feature metadata: the multi-scale maps, ordered by stride (FeatureInfo needs that).
        fi = self.feat_extractor.backbone.feature_info
        maps = [
            ("l_in", fi[self.l_idx]["num_chs"], fi[self.l_idx]["reduction"],
             f"feat_extractor.backbone.{fi[self.l_idx]['module']}"),
            ("l_out", l_dim, fi[self.l_idx]["reduction"] * self.l_vit.patch_embed.stride, "l_vit"),
            ("h_in", fi[self.h_idx]["num_chs"], fi[self.h_idx]["reduction"],
             f"feat_extractor.backbone.{fi[self.h_idx]['module']}"),
            ("h_out", h_dim, fi[self.h_idx]["reduction"] * self.h_vit.patch_embed.stride, "h_vit"),
        ]
        maps.sort(key=lambda m: m[2])
        self._feature_names = [m[0] for m in maps]
        self.feature_info = [dict(num_chs=c, reduction=r, module=mod) for _, c, r, mod in maps]

    # --- timm classifier interface -------------------------------------------------------

    @staticmethod
    def _check_pool(pool: str, num_classes: int) -> str:
        if pool not in _POOLS:
            raise ValueError(f"global_pool must be one of {sorted(_POOLS)}, got {pool!r}")
        if _POOLS[pool] == "" and num_classes > 0:
            raise ValueError("global_pool='' (no pooling) needs num_classes=0: the head classifies a pooled vector")
        return _POOLS[pool]

    def _make_head(self, num_classes: int) -> nn.Sequential:
        fusion, hidden = self.num_features, self.head_hidden_size
        head = nn.Sequential(
            nn.LayerNorm(fusion), nn.Linear(fusion, hidden), nn.GELU(), nn.Dropout(self.drop_rate),
            nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity(),
        )
        for m in head.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        return head

    @property
    def pool(self) -> str:
        """DeepGuard's name for :attr:`global_pool`."""
        return self.global_pool

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head[4]

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the classifier (``head.4``) by a fresh ``num_classes``-way layer; 0 removes it
        (``forward`` then returns the ``head_hidden_size`` pre-logits). ``global_pool`` as in
        ``__init__``."""
        pool = self._check_pool(global_pool if global_pool is not None else self.global_pool, num_classes)
        if len(self.head) != 5 or isinstance(self.head[0], nn.Identity):  # pruned to features
            self.head = self._make_head(num_classes)
        else:
            fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()
            if isinstance(fc, nn.Linear):
                trunc_normal_(fc.weight, std=0.02)
                nn.init.zeros_(fc.bias)
            self.head[4] = fc.to(self.head[1].weight.device, self.head[1].weight.dtype)
        self.num_classes = num_classes
        self.global_pool = pool

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.feat_extractor.backbone.set_grad_checkpointing(enable)
        self.l_vit.grad_checkpointing = enable
        self.h_vit.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        """Parameter names timm's optimizer factory keeps out of weight decay (1-d ones are automatic)."""
        return {f"{b}.patch_embed.{n}" for b in ("l_vit", "h_vit") for n in ("pos_embed", "cls_token")}

    @torch.jit.ignore
    def no_weight_decay_keywords(self) -> set[str]:
        return {"pos_embed", "cls_token", "bn", "norm"}

    @property
    def info(self) -> ModelInfo:
        """The model's facts (variant, input size, block mode, weights) as one typed record:
        what export writes into artifacts and runtime, bench and predict read."""
        return ModelInfo(getattr(self, "variant", None) or type(self).__name__, self.img_size, self.attn_mode,
                         getattr(self, "weights_path", None), getattr(self, "weights_sha256", "") or "")

    @torch.jit.ignore
    def load_pretrained(self, checkpoint_path: str) -> None:
        """timm's ``custom_load`` hook: msvit's checks (variant, keys, shapes; typed errors)."""
        if getattr(self, "variant", None) is None:
            self.variant = getattr(self, "pretrained_cfg", {}).get("architecture")
        load_checkpoint(self, checkpoint_path)

    # --- forward ---------------------------------------------------------------------

    def _branches(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feats = self.feat_extractor(x)
        return self.l_vit(feats[self.l_idx]), self.h_vit(feats[self.h_idx])

    def _tokens_to_map(self, t: torch.Tensor, grid: List[int]) -> torch.Tensor:
        """(B, 1 + H*W, C) tokens -> (B, C, H, W) map of the patch tokens (cls dropped)."""
        return t[:, 1:].transpose(1, 2).unflatten(2, grid)

    def _fused_map(self, l_tok: torch.Tensor, h_tok: torch.Tensor) -> torch.Tensor:
        l_map = F.adaptive_avg_pool2d(self._tokens_to_map(l_tok, self.l_grid), self.h_grid)
        return torch.cat([l_map, self._tokens_to_map(h_tok, self.h_grid)], dim=1)

    def _pool_tokens(self, l_out: torch.Tensor, h_out: torch.Tensor) -> torch.Tensor:
        if self.global_pool == "cls":
            return torch.cat([l_out[:, 0], h_out[:, 0]], dim=-1)
        return torch.cat([l_out[:, 1:].mean(dim=1), h_out[:, 1:].mean(dim=1)], dim=-1)

    def _head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head[0](x)
        x = self.head[1](x)
        x = self.head[2](x)
        if pre_logits:
            return x
        return self.head[4](self.head[3](x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled features, ``(B, num_features, H/32, W/32)``."""
        l_out, h_out = self._branches(x)
        return self._fused_map(l_out, h_out)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool a :meth:`forward_features` map and run the head (``pre_logits``: up to its hidden layer)."""
        if self.global_pool == "":
            return x
        if self.global_pool == "cls":
            raise ValueError("global_pool='cls' pools the class tokens, which the forward_features map does not "
                             "hold; use forward() (or global_pool='avg')")
        return self._head(x.flatten(2).mean(dim=2), pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        l_out, h_out = self._branches(x)
        if self.global_pool == "":
            return self._fused_map(l_out, h_out)
        return self._head(self._pool_tokens(l_out, h_out))

    # --- explanations (msvit.explain; ``msvit-export --explain-outputs``) ---------------------

    @torch.jit.ignore
    def cam_layers(self) -> dict:
        """``{"low": (module, grid), "high": (module, grid)}``: the layer whose tokens class-activation
        maps read in each branch, DeepGuard's choice: the last ViT block's ``norm1`` (its output is
        what the block adds to the residual stream), with the branch's token grid (rows, cols)."""
        return {"low": (self.l_vit.blocks[-1].norm1, list(self.l_grid)),
                "high": (self.h_vit.blocks[-1].norm1, list(self.h_grid))}

    @staticmethod
    def _branch_with_cam(vit: nn.Module, feat: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = vit.pos_drop(vit.patch_embed(feat))
        for blk in vit.blocks[:-1]:
            x = blk(x)
        cam = vit.blocks[-1].norm1(x)  # the cam_layers() tensor, (B, 1 + H*W, C) with the cls token
        return vit.norm(vit.blocks[-1](x)), cam

    def forward_cam_tokens(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logit, low_tokens, high_tokens)``: ``forward``'s output (same ops) plus each branch's
        :meth:`cam_layers` tokens, ``(B, 1 + H*W, C)``. What ``--explain-outputs`` artifacts return."""
        feats = self.feat_extractor(x)
        l_out, l_cam = self._branch_with_cam(self.l_vit, feats[self.l_idx])
        h_out, h_cam = self._branch_with_cam(self.h_vit, feats[self.h_idx])
        return self._head(self._pool_tokens(l_out, h_out)), l_cam, h_cam

    # --- timm intermediate features ----------------------------------------------------

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """The ``feature_info`` maps (NCHW), as timm's ``forward_intermediates``.

        ``indices``: None = all four, int n = last n, list = those. ``norm`` has nothing to
        do: the ViT outputs always carry their branch's final LayerNorm, and there is no
        model-level norm. With ``intermediates_only`` a branch no requested map needs is not
        run (that is all ``stop_early`` could save, so it adds nothing); otherwise returns
        ``(forward_features map, maps)``.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, _ = feature_take_indices(len(self.feature_info), indices)
        wanted = [self._feature_names[i] for i in take_indices]
        feats = self.feat_extractor(x)
        maps = {"l_in": feats[self.l_idx], "h_in": feats[self.h_idx]}
        l_out = self.l_vit(maps["l_in"]) if "l_out" in wanted or not intermediates_only else None
        h_out = self.h_vit(maps["h_in"]) if "h_out" in wanted or not intermediates_only else None
        if l_out is not None:
            maps["l_out"] = self._tokens_to_map(l_out, self.l_grid)
        if h_out is not None:
            maps["h_out"] = self._tokens_to_map(h_out, self.h_grid)
        intermediates = [maps[k] for k in wanted]
        if intermediates_only or l_out is None or h_out is None:  # (both run unless intermediates_only)
            return intermediates
        return self._fused_map(l_out, h_out), intermediates

    def prune_intermediate_layers(
        self,
        indices: Union[int, List[int]] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> List[int]:
        """Drop what the requested ``feature_info`` maps do not need (timm's features_only pruning):
        the head, and a ViT branch none of them uses. ``prune_norm`` is a no-op (no model-level norm)."""
        take_indices, _ = feature_take_indices(len(self.feature_info), indices)
        wanted = {self._feature_names[i] for i in take_indices}
        if prune_head:
            self.head = nn.Sequential(*[nn.Identity() for _ in range(5)])
            self.num_classes = 0
            self.global_pool = ""
        if "l_out" not in wanted:
            self.l_vit = nn.Identity()
        if "h_out" not in wanted:
            self.h_vit = nn.Identity()
        return take_indices
