"""The Respond-CAM paper's 3D networks for cryo-electron tomography subtomograms.

Layouts from ``shared/spec/CECT.md`` (the lab's Keras code): 3×3×3 'same' convolutions with ReLU,
2×2×2 max-pools, two 512-wide ReLU fully connected layers and a linear ``fc3`` giving the logits.
Layer names follow the paper, so ``layer="maxpool2"`` is the paper's CAM layer. A convolution
block (``conv1``, ...) outputs *after* its ReLU, as a Keras ``Conv3D(activation="relu")`` does;
so does ``fc1``/``fc2``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from camscope.models.registry import register_model

__all__ = ["CNN1", "CNN2", "cnn1", "cnn2"]


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1),
            relu=nn.ReLU(inplace=True),
        )
    )


def _dense_block(in_features: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(linear=nn.Linear(in_features, out_features), relu=nn.ReLU(inplace=True))
    )


def _glorot(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv3d | nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class _PaperCNN(nn.Sequential):
    def __init__(
        self,
        *,
        prepool: bool,
        num_classes: int,
        input_size: int,
        in_channels: int,
        widths: tuple[int, int],
        hidden: int,
    ) -> None:
        if input_size % (8 if prepool else 4):
            raise ValueError(f"input_size {input_size} must be divisible by {8 if prepool else 4}")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        size = input_size
        if prepool:
            layers["prepooling"] = nn.AvgPool3d(2)
            size //= 2
        first, second = widths
        layers["conv1"] = _conv_block(in_channels, first)
        layers["conv2"] = _conv_block(first, first)
        layers["maxpool1"] = nn.MaxPool3d(2)
        layers["conv3"] = _conv_block(first, second)
        layers["conv4"] = _conv_block(second, second)
        layers["maxpool2"] = nn.MaxPool3d(2)
        size //= 4
        layers["flatten"] = nn.Flatten()
        layers["fc1"] = _dense_block(second * size**3, hidden)
        layers["fc2"] = _dense_block(hidden, hidden)
        layers["fc3"] = nn.Linear(hidden, num_classes)
        super().__init__(layers)
        self.input_size = input_size
        self.num_classes = num_classes
        _glorot(self)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return super().forward(inputs)


class CNN1(_PaperCNN):
    """CNN-1 (Xu et al. 2017, as used by Respond-CAM): 40³ → maxpool2 10³×64 → 23 logits."""

    def __init__(
        self,
        *,
        num_classes: int = 23,
        input_size: int = 40,
        in_channels: int = 1,
        widths: tuple[int, int] = (32, 64),
        hidden: int = 512,
    ) -> None:
        super().__init__(
            prepool=False,
            num_classes=num_classes,
            input_size=input_size,
            in_channels=in_channels,
            widths=widths,
            hidden=hidden,
        )


class CNN2(_PaperCNN):
    """CNN-2 (Respond-CAM paper): average pre-pooling, 40³ → maxpool2 5³×64 → 23 logits."""

    def __init__(
        self,
        *,
        num_classes: int = 23,
        input_size: int = 40,
        in_channels: int = 1,
        widths: tuple[int, int] = (32, 64),
        hidden: int = 512,
    ) -> None:
        super().__init__(
            prepool=True,
            num_classes=num_classes,
            input_size=input_size,
            in_channels=in_channels,
            widths=widths,
            hidden=hidden,
        )


@register_model
def cnn1(**options: int) -> CNN1:
    """CNN-1, the paper's larger 3D network (33.2 M parameters at 40³)."""
    return CNN1(**options)  # type: ignore[arg-type]


@register_model
def cnn2(**options: int) -> CNN2:
    """CNN-2, the paper's 3D network with average pre-pooling (4.57 M parameters at 40³)."""
    return CNN2(**options)  # type: ignore[arg-type]
