"""Toy volumes: a sphere, a rod or a ring, randomly posed, blurred and noisy.

Quick, deterministic stand-ins for subtomograms (one particle per cube, dark background), used by
the demo and tests. Sample ``i`` of class ``c`` depends only on ``(seed, c, i)``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial.transform import Rotation
from torch.utils.data import Dataset

__all__ = ["TOY_CLASSES", "ToyVolumes", "toy_volume"]

TOY_CLASSES = ("sphere", "rod", "ring")


def toy_volume(
    class_id: int, index: int, *, size: int = 24, snr: float = 1.0, seed: int = 0
) -> np.ndarray:
    """One ``(size, size, size)`` float32 volume of class ``class_id``, z-scored.

    Args:
        class_id: index into :data:`TOY_CLASSES`.
        index: sample index within the class.
        size: edge length in voxels.
        snr: signal variance over noise variance; ``float("inf")`` for no noise.
        seed: data-set seed.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, class_id, index]))
    grid = (np.arange(size) - (size - 1) / 2.0).astype(np.float64)
    z, y, x = np.meshgrid(grid, grid, grid, indexing="ij")
    points = np.stack([z, y, x], axis=-1) - rng.uniform(-size / 10, size / 10, size=3)
    points = points @ Rotation.random(random_state=rng).as_matrix()
    radius = size / 4.0
    name = TOY_CLASSES[class_id]
    if name == "sphere":
        density = (np.linalg.norm(points, axis=-1) <= radius * 0.8).astype(np.float64)
    elif name == "rod":
        across = np.linalg.norm(points[..., :2], axis=-1)
        density = ((across <= radius * 0.35) & (np.abs(points[..., 2]) <= radius * 1.4)) * 1.0
    elif name == "ring":
        across = np.linalg.norm(points[..., :2], axis=-1)
        tube = np.hypot(across - radius, points[..., 2])
        density = (tube <= radius * 0.3).astype(np.float64)
    else:  # pragma: no cover - guarded by TOY_CLASSES
        raise ValueError(name)
    signal = ndimage.gaussian_filter(density, sigma=1.0)
    if np.isfinite(snr):
        noise = ndimage.gaussian_filter(rng.standard_normal(signal.shape), sigma=0.7)
        noise *= np.sqrt(signal.var() / (snr * noise.var()))
        signal = signal + noise
    signal = (signal - signal.mean()) / (signal.std() + 1e-12)
    return signal.astype(np.float32)


class ToyVolumes(Dataset[tuple[torch.Tensor, int]]):
    """A lazy data set of toy volumes, ``per_class`` of each class, interleaved by class.

    Items are ``(volume (1, S, S, S) float32, label)``.
    """

    def __init__(
        self,
        per_class: int,
        *,
        size: int = 24,
        snr: float = 1.0,
        seed: int = 0,
        offset: int = 0,
    ) -> None:
        self.per_class = per_class
        self.size = size
        self.snr = snr
        self.seed = seed
        self.offset = offset

    def __len__(self) -> int:
        return self.per_class * len(TOY_CLASSES)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        if not 0 <= item < len(self):
            raise IndexError(item)
        class_id, index = item % len(TOY_CLASSES), item // len(TOY_CLASSES) + self.offset
        volume = toy_volume(class_id, index, size=self.size, snr=self.snr, seed=self.seed)
        return torch.from_numpy(volume)[None], class_id
