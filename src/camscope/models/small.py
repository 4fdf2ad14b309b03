"""Small 2D/3D networks for tests, examples and the demo.

``conv1 → relu1 → pool1 → conv2 → relu2 (in-place) → pool2 → head``; the head is either
``flatten → fc`` (a single Linear right after the layer: Respond-CAM's maps then sum exactly to
``logit − bias``) or ``gap → flatten → fc`` (global average pooling: CAM's setting).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from torch import nn

from camscope.models.registry import register_model

__all__ = ["SmallCNN", "tiny2d", "tiny2d_gap", "tiny3d", "tiny3d_gap"]


class SmallCNN(nn.Sequential):
    """A two-block CNN in 1, 2 or 3 spatial dimensions.

    Args:
        spatial_dims: 2 for images, 3 for volumes.
        in_channels: input channels.
        num_classes: number of logits.
        input_size: edge length of the (square/cubic) input; needed by the flatten head.
        widths: channels of the two convolutions.
        head: ``"flatten"`` (Flatten → Linear) or ``"gap"`` (global average pool → Linear).
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 3,
        input_size: int = 16,
        widths: tuple[int, int] = (8, 16),
        head: Literal["flatten", "gap"] = "flatten",
    ) -> None:
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]
        pool = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[spatial_dims]
        gap = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
        if input_size % 4:
            raise ValueError(f"input_size must be divisible by 4, got {input_size}")
        first, second = widths
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=conv(in_channels, first, kernel_size=3, padding=1),
            relu1=nn.ReLU(),
            pool1=pool(2),
            conv2=conv(first, second, kernel_size=3, padding=1),
            relu2=nn.ReLU(inplace=True),
            pool2=pool(2),
        )
        if head == "gap":
            layers["gap"] = gap[spatial_dims](1)
            layers["flatten"] = nn.Flatten()
            layers["fc"] = nn.Linear(second, num_classes)
        elif head == "flatten":
            layers["flatten"] = nn.Flatten()
            layers["fc"] = nn.Linear(second * (input_size // 4) ** spatial_dims, num_classes)
        else:
            raise ValueError(f"head must be 'flatten' or 'gap', got {head!r}")
        super().__init__(layers)
        self.spatial_dims = spatial_dims
        self.input_size = input_size


@register_model
def tiny2d(**options: int) -> SmallCNN:
    """2D two-block CNN with a Flatten → Linear head (16² inputs by default)."""
    return SmallCNN(spatial_dims=2, **options)  # type: ignore[arg-type]


@register_model
def tiny3d(**options: int) -> SmallCNN:
    """3D two-block CNN with a Flatten → Linear head (16³ inputs by default)."""
    return SmallCNN(spatial_dims=3, **options)  # type: ignore[arg-type]


@register_model
def tiny2d_gap(**options: int) -> SmallCNN:
    """2D two-block CNN with a global-average-pooling head (CAM's setting)."""
    return SmallCNN(spatial_dims=2, head="gap", **options)  # type: ignore[arg-type]


@register_model
def tiny3d_gap(**options: int) -> SmallCNN:
    """3D two-block CNN with a global-average-pooling head (CAM's setting)."""
    return SmallCNN(spatial_dims=3, head="gap", **options)  # type: ignore[arg-type]
