"""Small networks built for tests whose answers are known."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Paired2D3D:
    """A 2D network and a 3D network that compute the same thing on depth-1 volumes."""

    def __init__(self, *, num_classes: int = 4, size: int = 8, dtype=torch.float64) -> None:
        self.net2d = nn.Sequential(
            nn.Conv2d(2, 5, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(5 * (size // 2) ** 2, num_classes),
        ).to(dtype)
        self.net3d = nn.Sequential(
            nn.Conv3d(2, 5, (1, 3, 3), padding=(0, 1, 1)),
            nn.ReLU(),
            nn.MaxPool3d((1, 2, 2)),
            nn.Flatten(),
            nn.Linear(5 * (size // 2) ** 2, num_classes),
        ).to(dtype)
        with torch.no_grad():
            self.net3d[0].weight.copy_(self.net2d[0].weight[:, :, None])
            self.net3d[0].bias.copy_(self.net2d[0].bias)
            self.net3d[4].weight.copy_(self.net2d[4].weight)
            self.net3d[4].bias.copy_(self.net2d[4].bias)


class SideBranch(nn.Module):
    """``side`` runs but the output does not depend on it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.side = nn.Conv2d(1, 3, 3, padding=1)
        self.unused = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(3 * 64, 2)

    def forward(self, x):
        self.side(x)
        return self.fc(torch.flatten(F.relu(self.conv(x)), 1))


class SharedReLU(nn.Module):
    """One ReLU module used twice in a forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(3 * 64, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.relu(self.conv2(self.relu(self.conv1(x)))), 1))


class Raising(nn.Module):
    """Raises in the forward pass of one of its layers."""

    def __init__(self) -> None:
        super().__init__()
        self.message = "deliberate failure"

    def forward(self, x):
        raise RuntimeError(self.message)


ATTENTION_METHODS = ("attention_rollout", "chefer", "legrad")


class TinyViT(nn.Module):
    """MONAI's ViT (a class token, 2D or 3D) that returns the logits alone, as a classifier does:
    ``(B, in_channels, *[size] * spatial_dims)`` → ``(B, num_classes)`` over a grid of
    ``size // 4`` patches per axis."""

    def __init__(
        self,
        spatial_dims: int,
        *,
        in_channels: int = 1,
        num_classes: int = 4,
        size: int = 8,
        dtype=torch.float64,
    ) -> None:
        from monai.networks.nets import ViT

        super().__init__()
        torch.manual_seed(0)
        self.vit = ViT(
            in_channels=in_channels,
            img_size=(size,) * spatial_dims,
            patch_size=(4,) * spatial_dims,
            hidden_size=8,
            mlp_dim=16,
            num_layers=2,
            num_heads=2,
            classification=True,
            num_classes=num_classes,
            spatial_dims=spatial_dims,
            post_activation=None,
        ).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x)[0]


class Tokens(nn.Module):
    """A transformer-like network camscope knows nothing about: patches, a class token, a
    block, the class token's head."""

    def __init__(self, spatial_dims: int = 2, patch: int = 4) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.embed = conv(1, 8, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.block = nn.Sequential(nn.Linear(8, 8), nn.GELU())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), patches], dim=1)
        tokens = self.block(tokens) + tokens
        return self.head(tokens[:, 0] + tokens[:, 1:].mean(1))
