"""Pictures and reports: arrays in, Matplotlib figures / PNG bytes / HTML out.

* :mod:`~camscope.render.overlays`: 2D overlays, orthogonal slices, montages, isosurface views,
  methods side by side, the all-layers grid; :func:`layer_grid` runs a method at every layer.
* :mod:`~camscope.render.report`: the self-contained HTML report with slice sliders.
* :mod:`~camscope.render.html`: pages from the Jinja2 templates in ``render/templates``.
* :mod:`~camscope.render.text`: text tables for the terminal.
* :mod:`~camscope.render.volumes`: the drawing primitives (slices, marching-cubes isosurfaces).
"""

from __future__ import annotations

from camscope.render.html import data_uri, render_page
from camscope.render.layers import layer_grid
from camscope.render.overlays import (
    isosurface_figure,
    layer_grid_figure,
    methods_figure,
    montage_figure,
    overlay_figure,
    slice_figure,
)
from camscope.render.report import (
    ReportEntry,
    ReportMap,
    write_evaluation_report,
    write_report,
)
from camscope.render.volumes import (
    figure_png,
    isosurface,
    new_figure,
    signed_limits,
    slice_image,
    subplots,
)

__all__ = [
    "ReportEntry",
    "ReportMap",
    "data_uri",
    "figure_png",
    "isosurface",
    "isosurface_figure",
    "layer_grid",
    "layer_grid_figure",
    "methods_figure",
    "montage_figure",
    "new_figure",
    "overlay_figure",
    "render_page",
    "signed_limits",
    "slice_figure",
    "slice_image",
    "subplots",
    "write_evaluation_report",
    "write_report",
]
