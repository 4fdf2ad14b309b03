"""The Respond-CAM paper's 3D networks for cryo-electron tomography subtomograms.

Layouts from the Respond-CAM lab's Keras code: 3×3×3 'same' convolutions with ReLU,
2×2×2 max-pools, two 512-wide ReLU fully connected layers and a linear ``fc3`` giving the logits.
Layer names follow the paper, so ``layer="maxpool2"`` is the paper's CAM layer. A convolution
block (``conv1``, ...) outputs *after* its ReLU, as a Keras ``Conv3D(activation="relu")`` does;
so does ``fc1``/``fc2``.
"""

from __future__ import annotations

from collections import OrderedDict

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
    """The shared layout; subclasses set ``prepool`` (CNN-2 average-pools the input first).

    Args:
        num_classes: logits of ``fc3``.
        input_size: edge length of the cubic input (divisible by 4, or 8 with pre-pooling).
        in_channels: input channels.
        widths: channels of conv1–2 and conv3–4 (the paper: 32 and 64).
        hidden: width of fc1 and fc2 (the paper: 512).
    """

    prepool = False

    def __init__(
        self,
        *,
        num_classes: int = 23,
        input_size: int = 40,
        in_channels: int = 1,
        widths: tuple[int, int] = (32, 64),
        hidden: int = 512,
    ) -> None:
        factor = 8 if self.prepool else 4
        if input_size % factor:
            raise ValueError(f"input_size {input_size} must be divisible by {factor}")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if self.prepool:
            layers["prepooling"] = nn.AvgPool3d(2)
        first, second = widths
        layers["conv1"] = _conv_block(in_channels, first)
        layers["conv2"] = _conv_block(first, first)
        layers["maxpool1"] = nn.MaxPool3d(2)
        layers["conv3"] = _conv_block(first, second)
        layers["conv4"] = _conv_block(second, second)
        layers["maxpool2"] = nn.MaxPool3d(2)
        layers["flatten"] = nn.Flatten()
        layers["fc1"] = _dense_block(second * (input_size // factor) ** 3, hidden)
        layers["fc2"] = _dense_block(hidden, hidden)
        layers["fc3"] = nn.Linear(hidden, num_classes)
        super().__init__(layers)
        self.input_size = input_size
        self.num_classes = num_classes
        _glorot(self)


class CNN1(_PaperCNN):
    """CNN-1 (Xu et al. 2017, as used by Respond-CAM): 40³ → maxpool2 10³×64 → 23 logits."""


class CNN2(_PaperCNN):
    """CNN-2 (Respond-CAM paper): average pre-pooling, 40³ → maxpool2 5³×64 → 23 logits."""

    prepool = True


@register_model
def cnn1(**options: int) -> CNN1:
    """CNN-1, the paper's larger 3D network (33.2 M parameters at 40³)."""
    return CNN1(**options)  # type: ignore[arg-type]


@register_model
def cnn2(**options: int) -> CNN2:
    """CNN-2, the paper's 3D network with average pre-pooling (4.57 M parameters at 40³)."""
    return CNN2(**options)  # type: ignore[arg-type]
