"""2D synthetic objects on textured backgrounds, with their boxes and masks known exactly.

Four classes (disk, square, triangle, cross), one object per image at a random place and size,
brighter than a background of smoothed noise and random stripes. Sample ``i`` of class ``c``
depends only on ``(seed, c, i)``. The ground truth for localisation metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["SHAPE_CLASSES", "ShapeSample", "shape_arrays", "shape_sample"]

SHAPE_CLASSES = ("disk", "square", "triangle", "cross")


@dataclass(frozen=True)
class ShapeSample:
    """An image ``(1, S, S)`` float32 (z-scored), the object's mask ``(S, S)`` and box
    ``(y0, x0, y1, x1)`` (half-open)."""

    image: np.ndarray
    mask: np.ndarray
    box: np.ndarray


def _object_mask(class_id: int, size: int, rng: np.random.Generator) -> np.ndarray:
    radius = rng.uniform(0.12, 0.22) * size
    cy, cx = rng.uniform(radius + 2, size - radius - 2, 2)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = (y - cy) / radius, (x - cx) / radius
    name = SHAPE_CLASSES[class_id]
    if name == "disk":
        return dy**2 + dx**2 <= 1.0
    if name == "square":
        return (np.abs(dy) <= 0.8) & (np.abs(dx) <= 0.8)
    if name == "triangle":
        return (dy <= 0.8) & (dy >= -0.9 + 2 * np.abs(dx))
    if name == "cross":
        return ((np.abs(dy) <= 0.28) & (np.abs(dx) <= 1.0)) | (
            (np.abs(dx) <= 0.28) & (np.abs(dy) <= 1.0)
        )
    raise ValueError(name)  # pragma: no cover


def shape_sample(class_id: int, index: int, *, size: int = 64, seed: int = 0) -> ShapeSample:
    """One image of class ``class_id`` (deterministic in ``(seed, class_id, index)``)."""
    if not 0 <= class_id < len(SHAPE_CLASSES):
        raise ValueError(f"class_id must be 0–{len(SHAPE_CLASSES) - 1}, got {class_id}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, class_id, index]))
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), rng.uniform(1.0, 3.0))
    texture /= texture.std() + 1e-12
    y, x = np.mgrid[0:size, 0:size]
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 12)
    stripes = np.sin(2 * np.pi * (np.cos(angle) * x + np.sin(angle) * y) / period)
    mask = _object_mask(class_id, size, rng)
    image = 0.5 * texture + 0.3 * stripes + 1.6 * mask
    image = (image - image.mean()) / (image.std() + 1e-12)
    rows, columns = np.nonzero(mask)
    box = np.array([rows.min(), columns.min(), rows.max() + 1, columns.max() + 1])
    return ShapeSample(image=image.astype(np.float32)[None], mask=mask, box=box)


def shape_arrays(
    per_class: int, *, size: int = 64, seed: int = 0, offset: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(images (N, 1, S, S), labels (N,), masks (N, S, S), boxes (N, 4))``, by class in turn."""
    classes = len(SHAPE_CLASSES)
    samples = [
        shape_sample(item % classes, offset + item // classes, size=size, seed=seed)
        for item in range(per_class * classes)
    ]
    labels = np.array([item % classes for item in range(per_class * classes)])
    return (
        np.stack([s.image for s in samples]),
        labels,
        np.stack([s.mask for s in samples]),
        np.stack([s.box for s in samples]),
    )
