"""The Respond-CAM paper's figures, drawn from a reproduction's maps: Figure 3 (Grad-CAM beside
Respond-CAM on a few subtomograms) and Figure 4 (Respond-CAM at every layer)."""

from __future__ import annotations

import numpy as np
import torch

import camscope
from camscope.render import figure_png, isosurface, slice_image
from camscope.simulate.structures import BENCHMARK_COMPLEXES

__all__ = ["figure3", "figure4", "upsampled"]


def figure3(
    volumes: np.ndarray, labels: np.ndarray, grad: np.ndarray, respond: np.ndarray, title: str
) -> bytes:
    """Per sample: isosurface and central slice of the subtomogram and of both heatmaps."""
    from camscope.render.volumes import new_figure

    count = len(volumes)
    figure = new_figure(figsize=(16, 2.9 * count))
    names = [
        "subtomogram",
        "slice",
        "Grad-CAM",
        "Grad-CAM slice",
        "Respond-CAM",
        "Respond-CAM slice",
    ]
    for row in range(count):
        particle = -volumes[row]  # particles are dark: show the density
        middle = particle.shape[0] // 2
        panels: list[tuple[str, np.ndarray | None]] = [
            ("iso", particle),
            ("slice", None),
            ("iso", grad[row]),
            ("map", grad[row]),
            ("iso", respond[row]),
            ("map", respond[row]),
        ]
        for column, (kind, values) in enumerate(panels):
            index = row * 6 + column + 1
            if kind == "iso":
                axis = figure.add_subplot(count, 6, index, projection="3d")
                assert values is not None
                if column == 0:
                    levels = [(float(values.mean() + 1.0 * values.std()), "#888888")]
                else:
                    # each sign at 60 % of its own extreme, so both show whatever the balance
                    levels = [
                        (0.6 * float(values.max()), "#d62728"),
                        (0.6 * float(values.min()), "#1f77b4"),
                    ]
                isosurface(axis, values, levels)
            else:
                axis = figure.add_subplot(count, 6, index)
                if kind == "slice":
                    slice_image(axis, particle[middle], signed=False)
                else:
                    assert values is not None
                    slice_image(axis, values[middle], signed=True, background=particle[middle])
            if row == 0:
                axis.set_title(names[column], fontsize=9)
        figure.axes[row * 6].text2D(
            0.0,
            0.95,
            BENCHMARK_COMPLEXES[int(labels[row])][0],
            transform=figure.axes[row * 6].transAxes,
        )
    figure.suptitle(title + "\nheatmaps of the true class, raw, upsampled linearly; red +, blue −")
    figure.tight_layout()
    return figure_png(figure, dpi=70)


def figure4(volume: np.ndarray, maps: dict[str, np.ndarray], label: int, title: str) -> bytes:
    """Respond-CAM of the true class at every layer before the fully connected layers."""
    from camscope.render.volumes import subplots

    figure, axes = subplots(1, len(maps) + 1, figsize=(2.6 * (len(maps) + 1), 3.0))
    particle = -volume
    middle = particle.shape[0] // 2
    slice_image(axes[0], particle[middle], signed=False)
    axes[0].set_title(f"{BENCHMARK_COMPLEXES[label][0]} (central slice)", fontsize=8)
    for axis, (name, values) in zip(axes[1:], maps.items(), strict=True):
        slice_image(axis, values[middle], signed=True, background=particle[middle])
        axis.set_title(name, fontsize=9)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure_png(figure, dpi=70)


def upsampled(maps: torch.Tensor, size: int) -> np.ndarray:
    """Maps ``(N, 1, *s)`` linearly upsampled to ``size``³, as ``(N, size, size, size)``."""
    return camscope.upsample(maps.cpu(), (size,) * 3, mode="linear")[:, 0].numpy()
