"""Building blocks of MS-Eff-ViT, parameter-name compatible with DeepGuard 1.1.1.

Parameter names and shapes mirror ``deepguard.layers`` exactly so the published
``.bin`` state dicts load with ``strict=True``; the maths is delegated to timm
layers (Mlp, Attention, DropPath, trunc_normal_) wherever names line up.
"""
from __future__ import annotations

from typing import Any, Iterator, Literal, Sequence

import torch
import torch.nn as nn
from timm.layers import Attention, DropPath, Mlp, trunc_normal_
from timm.models import checkpoint

AttnMode = Literal["deepguard", "applied"]
ATTN_MODES: tuple[str, ...] = ("deepguard", "applied")


class SE(nn.Module):
    """Squeeze-excitation with Linear layers (DeepGuard's own; timm's uses 1x1 convs, other names)."""

    def __init__(self, in_chs: int, rd_ratio: float = 0.25) -> None:
        super().__init__()
        rd = int(in_chs * rd_ratio)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(in_chs, rd, bias=False), nn.GELU(), nn.Linear(rd, in_chs, bias=False), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        return x * self.fc(self.pool(x).flatten(1)).view(b, c, 1, 1)


class MBConvBlock(nn.Module):
    """Residual depthwise 3x3 -> GELU -> SE -> pointwise 1x1 (no norm), as in DeepGuard."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mb_conv = nn.Sequential(
            nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=False),
            nn.GELU(),
            SE(dim),
            nn.Conv2d(dim, dim, 1, 1, 0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mb_conv(x)


class PatchEmbed(nn.Module):
    """Feature map -> tokens (cls + patches) with learned position embedding and LayerNorm.

    ``block_idx`` is DeepGuard's backbone block index: 0 downsamples 4x, 1/4 downsample
    2x, 2/6 keep the resolution (1x1 projection).
    """

    def __init__(self, in_chs: int, dim: int, block_idx: int, input_resolution: Sequence[int]) -> None:
        super().__init__()
        h, w = input_resolution
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if block_idx == 0:
            self.proj = nn.Sequential(
                nn.Conv2d(in_chs, dim, 3, 2, 1), MBConvBlock(dim), nn.Conv2d(dim, dim, 3, 2, 1)
            )
            self.stride = 4
        elif block_idx in (1, 4):
            self.proj = nn.Sequential(nn.Conv2d(in_chs, dim, 3, 2, 1), MBConvBlock(dim))
            self.stride = 2
        elif block_idx in (2, 6):
            self.proj = nn.Sequential(nn.Conv2d(in_chs, dim, 1, 1, 0), MBConvBlock(dim))
            self.stride = 1
        else:
            raise ValueError(f"block_idx must be one of 0, 1, 2, 4, 6, got {block_idx}")
        #: token grid (rows, cols): patch tokens are this grid in row-major order, after the cls token
        self.grid_size = [h // self.stride, w // self.stride]
        n = self.grid_size[0] * self.grid_size[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.norm = nn.LayerNorm(dim)
        trunc_normal_(self.cls_token, std=0.02)
        trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)  # (B, N, C)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        return self.norm(x + self.pos_embed)


class ViTBlock(nn.Module):
    """Pre-norm transformer block with two explicit behaviours.

    ``attn_mode="deepguard"``: DeepGuard 1.1.1's block, ``x = x + norm1(x)``; its forward
    computes attention and throws the result away, and every published checkpoint was
    trained that way. We do not compute the dead attention at all, so neither eager runs
    nor exported graphs pay for it. Its weights can never receive a gradient, so they are
    *persistent buffers* here, not parameters: the state dict (names, shapes, ``strict``
    loading) is unchanged, while ``parameters()`` -- what optimizers, DDP and timm's
    gradient checks see -- holds only what can learn. :func:`frozen_weights` lists them.

    ``attn_mode="applied"``: the textbook block, ``x = x + attn(norm1(x))``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        attn_mode: AttnMode = "deepguard",
    ) -> None:
        super().__init__()
        if attn_mode not in ATTN_MODES:
            raise ValueError(f"attn_mode must be one of {ATTN_MODES}, got {attn_mode!r}")
        self.attn_mode = attn_mode
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=True, attn_drop=attn_drop, proj_drop=drop)
        if attn_mode == "deepguard":
            _parameters_to_buffers(self.attn)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.attn_mode == "applied":
            y = self.attn(y)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViTLayer(nn.Module):
    """PatchEmbed -> depth x ViTBlock -> LayerNorm, one branch of the multi-scale model."""

    def __init__(self, in_chs: int, block_idx: int, input_resolution: Sequence[int], dim: int, depth: int,
                 drop_path: float = 0.0, **block_kwargs: Any) -> None:
        """``block_kwargs``: :class:`ViTBlock`'s ``num_heads``, ``mlp_ratio``, ``drop``, ``attn_drop``,
        ``attn_mode``; ``drop_path`` rises linearly from 0 to this over the blocks."""
        super().__init__()
        self.patch_embed = PatchEmbed(in_chs, dim, block_idx, input_resolution)
        self.pos_drop = nn.Dropout(block_kwargs.get("drop", 0.0))
        dpr = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(ViTBlock(dim, drop_path=dpr[i], **block_kwargs) for i in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.grad_checkpointing = False
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_drop(self.patch_embed(x))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            for blk in self.blocks:
                x = checkpoint(blk, x)
        else:
            for blk in self.blocks:
                x = blk(x)
        return self.norm(x)


def _parameters_to_buffers(module: nn.Module) -> None:
    """Re-register every parameter under ``module`` as a persistent buffer of the same name.

    Same state-dict key, shape and value; ``nn.Linear`` and friends read ``self.weight``
    either way. The tensor is detached: it is a constant now, not a leaf to optimise.
    """
    for mod in module.modules():
        for name in [n for n, p in mod._parameters.items() if p is not None]:
            p = mod._parameters.pop(name)
            mod.register_buffer(name, p.detach(), persistent=True)


def frozen_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(state-dict name, tensor)`` of the weights held as buffers rather than parameters:
    the attention of every ``attn_mode="deepguard"`` block (DeepGuard trained them, its
    forward never uses them, so no gradient can reach them).

    State-dict weights = ``parameters()`` + these; that is how :func:`msvit.profile` counts
    both readings (trainable vs in the checkpoint).
    """
    for name, mod in model.named_modules():
        if isinstance(mod, ViTBlock) and mod.attn_mode == "deepguard":
            yield from mod.attn.named_buffers(prefix=f"{name}.attn" if name else "attn")


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
