"""A small vision transformer for 2D images and 3D volumes, trained here for the showcases.

The layout follows timm's ViT (``patch_embed``, ``cls_token``, ``blocks``, ``norm``,
``forward_head``; ``patch_size`` and ``num_prefix_tokens`` state the token geometry), with
torchvision-style pre-norm blocks around ``nn.MultiheadAttention``:

    tokens = [cls; conv_patch(x)ᵀ] + pos
    for each block: t = t + attn(norm1(t)); t = t + mlp(norm2(t))
    logits = head(norm(t)[:, 0])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from camscope.errors import CamscopeError
from camscope.models.registry import register_model

__all__ = ["Block", "VisionTransformer", "vit2d", "vit3d"]


class Block(nn.Module):
    """Pre-norm transformer block: attention then MLP, each with a residual."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, N, D)`` through attention and the MLP, each with a residual."""
        normed = self.norm1(tokens)
        mixed, _ = self.attn(normed, normed, normed, need_weights=False)
        tokens = tokens + mixed
        return tokens + self.mlp(self.norm2(tokens))


class VisionTransformer(nn.Module):
    """A class-token ViT over ``spatial_dims``-D inputs of a fixed size.

    Args:
        spatial_dims: 2 (images) or 3 (volumes).
        input_size: the inputs' side length (a multiple of ``patch``).
        patch: the patch side length.
        in_channels, num_classes, width, depth, heads: the usual sizes.
        stem: a convolutional stem (hybrid ViT): two 3×3 convolutions of stride 2 with ReLU
            before a patch embedding of ``patch // 4``; the patch grid is the same. Learns
            the small shape images in a few epochs, where the plain patch embedding needs many.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        *,
        input_size: int = 64,
        patch: int = 8,
        in_channels: int = 1,
        num_classes: int = 4,
        width: int = 64,
        depth: int = 4,
        heads: int = 4,
        stem: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise CamscopeError(f"spatial_dims must be 2 or 3, not {spatial_dims}")
        if input_size % patch:
            raise CamscopeError(f"input_size {input_size} is not a multiple of patch {patch}")
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.patch_size = (patch,) * spatial_dims
        self.num_prefix_tokens = 1
        if stem:
            if patch % 4:
                raise CamscopeError(f"a stem needs a patch that is a multiple of 4, not {patch}")
            half = width // 2
            self.patch_embed: nn.Module = nn.Sequential(
                conv(in_channels, half, 3, stride=2, padding=1),
                nn.ReLU(),
                conv(half, half, 3, stride=2, padding=1),
                nn.ReLU(),
                conv(half, width, patch // 4, stride=patch // 4),
            )
        else:
            self.patch_embed = conv(in_channels, width, patch, stride=patch)
        count = (input_size // patch) ** spatial_dims
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.randn(1, count + 1, width) * 0.02)
        self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised tokens ``(B, N, D)``, class token first."""
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        tokens = torch.cat([cls, patches], dim=1) + self.pos_embed
        return self.norm(self.blocks(tokens))

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Class logits from normalised tokens: the class token through the head."""
        return self.head(tokens[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` from the class token."""
        return self.forward_head(self.forward_features(x))


@register_model
def vit2d(**options: Any) -> VisionTransformer:
    """A 2D ViT (64² inputs, 8² patches, width 64, 4 blocks of 4 heads by default)."""
    return VisionTransformer(2, **options)


@register_model
def vit3d(**options: Any) -> VisionTransformer:
    """A 3D ViT (default 40³ inputs with patch 8: 5³ patches, width 64, 4 blocks)."""
    return VisionTransformer(3, **{"input_size": 40, **options})
