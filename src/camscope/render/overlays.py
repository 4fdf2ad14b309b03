"""Pictures of explanations: overlays, orthogonal slices, montages, isosurfaces, grids.

Colour maps follow the sign of the map: a diverging map centred on 0 for signed maps
(Respond-CAM, Extended-CAM, raw gradients; red positive, blue negative) and a sequential one for
non-negative maps. Every function returns a Matplotlib figure of its own (no pyplot state, no
backend switch); :func:`camscope.render.figure_png` turns it into PNG bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from camscope.render.volumes import isosurface, new_figure, signed_limits, subplots

__all__ = [
    "background",
    "colour_limits",
    "isosurface_figure",
    "layer_grid_figure",
    "methods_figure",
    "montage_figure",
    "overlay_figure",
    "peak_position",
    "show_map",
    "slice_figure",
]

SEQUENTIAL = "inferno"
DIVERGING = "RdBu_r"


def background(data: np.ndarray) -> np.ndarray:
    """Displayable input ``(C, *S)``: grey ``(*S)`` or RGB ``(*S, 3)``, in [0, 1]."""
    values = np.asarray(data, dtype=np.float64)
    low, high = np.percentile(values, [0.5, 99.5])
    scaled = np.clip((values - low) / (high - low), 0, 1) if high > low else np.zeros_like(values)
    if scaled.shape[0] == 3:
        return np.moveaxis(scaled, 0, -1)
    return scaled.mean(axis=0)


def show_map(
    axis: Any,
    heatmap: np.ndarray,
    *,
    signed: bool,
    under: np.ndarray | None = None,
    limits: tuple[float, float] | None = None,
    alpha: float = 0.6,
) -> Any:
    """Draw a 2D map on ``axis``, over an optional background; returns the image artist."""
    if under is not None:
        axis.imshow(under, cmap="gray", vmin=0, vmax=1)
    opacity = alpha if under is not None else 1.0
    low, high = limits or colour_limits(heatmap, signed)
    colours = DIVERGING if signed else SEQUENTIAL
    shown = axis.imshow(heatmap, cmap=colours, vmin=low, vmax=high, alpha=opacity)
    axis.set_xticks([])
    axis.set_yticks([])
    return shown


def peak_position(heatmap: np.ndarray) -> tuple[int, ...]:
    """Index of the largest ``|value|``: where orthogonal slices should cross."""
    return tuple(int(v) for v in np.unravel_index(int(np.abs(heatmap).argmax()), heatmap.shape))


def colour_limits(heatmap: np.ndarray, signed: bool) -> tuple[float, float]:
    """Colour-map limits: symmetric ``(−m, m)`` for signed maps, ``(min, max)`` otherwise."""
    if signed:
        return signed_limits(heatmap)
    return float(heatmap.min()), float(heatmap.max()) or 1.0


def overlay_figure(data: np.ndarray, heatmap: np.ndarray, *, signed: bool, title: str = "") -> Any:
    """The map over its input: one panel for an image, three orthogonal slices for a volume.

    Args:
        data: the input ``(C, *S)``.
        heatmap: ``(*S)`` at input resolution.
        signed: diverging colour map centred on 0 (else sequential).
        title: the figure's title.
    """
    under = background(data)
    limits = colour_limits(heatmap, signed)
    if heatmap.ndim == 2:
        figure, axis = subplots(1, 1, figsize=(4.2, 3.8), constrained_layout=True)
        shown = show_map(axis, heatmap, signed=signed, under=under, limits=limits)
        figure.colorbar(shown, ax=axis, shrink=0.8)
        axis.set_title(title, fontsize=9)
        return figure
    return slice_figure(data, heatmap, signed=signed, title=title)


def slice_figure(
    data: np.ndarray,
    heatmap: np.ndarray,
    *,
    signed: bool,
    position: Sequence[int] | None = None,
    title: str = "",
) -> Any:
    """Three orthogonal slices of a volume with the map over them, crossing at ``position``
    (default: the map's peak)."""
    under = background(data)
    where = tuple(position) if position is not None else peak_position(heatmap)
    limits = colour_limits(heatmap, signed)
    figure, axes = subplots(1, 3, figsize=(10, 3.6), constrained_layout=True)
    shown = None
    for axis_index, axis in enumerate(axes):
        cut = [slice(None)] * 3
        cut[axis_index] = slice(where[axis_index], where[axis_index] + 1)
        plane = heatmap[tuple(cut)].squeeze(axis_index)
        base = under[tuple(cut)].squeeze(axis_index)
        shown = show_map(axis, plane, signed=signed, under=base, limits=limits)
        axis.set_title(f"axis {axis_index} = {where[axis_index]}", fontsize=9)
    figure.colorbar(shown, ax=list(axes), shrink=0.8)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def _panel_grid(count: int, inches: float) -> tuple[Any, Any]:
    """A figure with ``count`` panels, at most 6 per row; the unused ones hidden."""
    columns = min(6, count)
    rows = int(np.ceil(count / columns))
    figure, axes = subplots(
        rows,
        columns,
        figsize=(inches * columns, inches * rows + 0.4),
        squeeze=False,
        constrained_layout=True,
    )
    for panel in list(axes.flat)[count:]:
        panel.axis("off")
    return figure, axes


def montage_figure(
    data: np.ndarray,
    heatmap: np.ndarray,
    *,
    signed: bool,
    axis: int = 0,
    count: int = 12,
    title: str = "",
) -> Any:
    """Evenly spaced slices of a volume along ``axis``, the map over each, one colour scale."""
    under = background(data)
    limits = colour_limits(heatmap, signed)
    indices = np.unique(
        np.linspace(0, heatmap.shape[axis] - 1, min(count, heatmap.shape[axis])).round().astype(int)
    )
    figure, axes = _panel_grid(len(indices), 1.9)
    shown = None
    for panel, index in zip(axes.flat, indices, strict=False):
        plane = np.take(heatmap, index, axis=axis)
        base = np.take(under, index, axis=axis)
        shown = show_map(panel, plane, signed=signed, under=base, limits=limits)
        panel.set_title(f"{index}", fontsize=8)
    figure.colorbar(shown, ax=list(axes.flat), shrink=0.6)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def isosurface_figure(
    volume: np.ndarray, heatmap: np.ndarray, *, title: str = "", sigmas: float = 1.0
) -> Any:
    """Respond-CAM's Figure 3 style: the volume's isosurface (grey) beside the map's positive
    (red) and negative (blue) isosurfaces, each at mean ± ``sigmas`` standard deviations."""
    figure = new_figure(figsize=(7, 3.6), constrained_layout=True)
    left = figure.add_subplot(1, 2, 1, projection="3d")
    level = float(volume.mean() + sigmas * volume.std())
    isosurface(left, volume, [(level, "0.6")])
    left.set_title("volume", fontsize=9)
    right = figure.add_subplot(1, 2, 2, projection="3d")
    spread = float(heatmap.std()) or 1.0
    isosurface(
        right,
        heatmap,
        [
            (float(heatmap.mean() + sigmas * spread), "tab:red"),
            (float(heatmap.mean() - sigmas * spread), "tab:blue"),
        ],
    )
    right.set_title("map: positive (red) / negative (blue)", fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def _central(values: np.ndarray, where: Sequence[int] | None) -> np.ndarray:
    if values.ndim == 2:
        return values
    index = where[0] if where is not None else values.shape[0] // 2
    return values[int(index)]


def methods_figure(
    data: np.ndarray,
    maps: Mapping[str, tuple[np.ndarray, bool]],
    *,
    title: str = "",
) -> Any:
    """Methods side by side on the same input: ``{name: (heatmap at input size, signed)}``.

    Volumes show the slice through the first map's peak.
    """
    under = background(data)
    first = next(iter(maps.values()))[0]
    where = peak_position(first) if first.ndim == 3 else None
    figure, axes = subplots(
        1,
        len(maps) + 1,
        figsize=(2.6 * (len(maps) + 1), 2.9),
        squeeze=False,
        constrained_layout=True,
    )
    base = _central(under, where)
    axes[0, 0].imshow(base, cmap="gray" if base.ndim == 2 else None)
    axes[0, 0].set_title("input" + (f" (slice {where[0]})" if where else ""), fontsize=9)
    axes[0, 0].set_xticks([])
    axes[0, 0].set_yticks([])
    for panel, (name, (heatmap, signed)) in zip(axes[0, 1:], maps.items(), strict=True):
        show_map(panel, _central(heatmap, where), signed=signed, under=base)
        panel.set_title(name, fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def layer_grid_figure(maps: Mapping[str, np.ndarray], *, signed: bool, title: str = "") -> Any:
    """Respond-CAM paper's Figure 4 style: one map per layer (each at its own resolution, central
    slice for volumes), in network order, each with its own symmetric colour scale."""
    figure, axes = _panel_grid(len(maps), 2.2)
    for panel, (name, heatmap) in zip(axes.flat, maps.items(), strict=False):
        plane = _central(heatmap, None)
        show_map(panel, plane, signed=signed)
        panel.set_title(f"{name} {'×'.join(map(str, heatmap.shape))}", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure
