"""Volume pictures: central slices and isosurfaces (scikit-image marching cubes) with Matplotlib.

Signed maps (Respond-CAM, Extended-CAM, raw Grad-CAM) use a diverging colour map centred on 0
(red positive, blue negative); non-negative maps a sequential one.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

__all__ = [
    "figure_png",
    "isosurface",
    "new_figure",
    "signed_limits",
    "slice_image",
    "subplots",
]


def new_figure(**options: Any) -> Any:
    """A Matplotlib :class:`~matplotlib.figure.Figure` of its own: no pyplot state, no backend
    switch, nothing to close (a notebook's backend and figures are left alone)."""
    from matplotlib.figure import Figure

    return Figure(**options)


def subplots(
    rows: int = 1,
    columns: int = 1,
    *,
    squeeze: bool = True,
    subplot_kw: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[Any, Any]:
    """``(figure, axes)`` as ``pyplot.subplots`` gives them, on a :func:`new_figure`."""
    figure = new_figure(**options)
    axes = figure.subplots(rows, columns, squeeze=squeeze, subplot_kw=subplot_kw)
    return figure, axes


def signed_limits(values: np.ndarray) -> tuple[float, float]:
    """Symmetric colour limits ``(−m, m)`` with ``m = max |values|`` (1 for an all-zero map)."""
    bound = float(np.abs(values).max()) or 1.0
    return -bound, bound


def slice_image(
    axis: Any, values: np.ndarray, *, signed: bool, background: np.ndarray | None = None
) -> Any:
    """Show a 2D slice; a signed map as a diverging overlay on an optional grey background."""
    if background is not None:
        axis.imshow(background, cmap="gray")
    if signed:
        low, high = signed_limits(values)
        shown = axis.imshow(
            values, cmap="RdBu_r", vmin=low, vmax=high, alpha=0.65 if background is not None else 1
        )
    else:
        shown = axis.imshow(values, cmap="inferno", alpha=0.65 if background is not None else 1)
    axis.set_xticks([])
    axis.set_yticks([])
    return shown


def isosurface(
    axis: Any,
    volume: np.ndarray,
    levels: list[tuple[float, str]],
    *,
    alpha: float = 0.55,
) -> None:
    """Draw isosurfaces of ``volume`` at ``(level, colour)`` pairs on a 3D Matplotlib axis.

    Levels outside the volume's range are skipped.
    """
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    from skimage.measure import marching_cubes

    for level, colour in levels:
        if not volume.min() < level < volume.max():
            continue
        vertices, faces, _, _ = marching_cubes(volume, level=level)
        mesh = Poly3DCollection(vertices[faces], alpha=alpha, facecolor=colour, edgecolor="none")
        axis.add_collection3d(mesh)
    size = volume.shape
    axis.set_xlim(0, size[0])
    axis.set_ylim(0, size[1])
    axis.set_zlim(0, size[2])
    axis.set_box_aspect((1, 1, 1))
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_zticks([])


def figure_png(figure: Any, *, dpi: int = 80) -> bytes:
    """Render a Matplotlib figure to PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
