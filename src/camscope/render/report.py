"""A self-contained HTML report of one run: inputs, maps per method and target, a slice slider
for volumes, and the metrics table when there is one.

Everything is inline (PNG data URIs, CSS, a few lines of JavaScript), so the file opens from disk
or an e-mail without a network. Slices are coloured with Matplotlib's colour maps and encoded with
Pillow directly (no figure per slice), so a report of a few volumes takes about a second.
"""

from __future__ import annotations

import html
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camscope.io.atomic import atomic_write
from camscope.render.html import data_uri, html_page, image_tag
from camscope.render.overlays import (
    DIVERGING,
    SEQUENTIAL,
    background,
    colour_limits,
    methods_figure,
)
from camscope.render.volumes import figure_png

__all__ = ["ReportEntry", "ReportMap", "colorize", "write_report"]

#: At most this many slices per volume go into a slider (evenly spaced).
MAX_SLICES = 64


@dataclass
class ReportMap:
    """One map to show: ``heatmap`` at the input's spatial size."""

    method: str
    target: str
    heatmap: np.ndarray
    signed: bool


@dataclass
class ReportEntry:
    """One input and its maps."""

    name: str
    data: np.ndarray  # (C, *S)
    maps: list[ReportMap]
    details: dict[str, Any] = field(default_factory=dict)


def colorize(
    heatmap: np.ndarray,
    *,
    signed: bool,
    limits: tuple[float, float],
    under: np.ndarray | None = None,
    alpha: float = 0.6,
) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)``: the map in its colour map, blended over a grey/RGB background."""
    from matplotlib import colormaps

    low, high = limits
    span = high - low if high > low else 1.0
    colours = colormaps[DIVERGING if signed else SEQUENTIAL]((heatmap - low) / span)[..., :3]
    if under is not None:
        base = under if under.ndim == 3 else np.repeat(under[..., None], 3, axis=-1)
        colours = alpha * colours + (1 - alpha) * base
    return (np.clip(colours, 0, 1) * 255).round().astype(np.uint8)


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


_SLIDER_SCRIPT = """
<script>
const SLICES = JSON.parse(document.getElementById('camscope-slices').textContent);
function showSlice(id, index) {
  const image = document.getElementById(id + '-img');
  const label = document.getElementById(id + '-label');
  const entry = SLICES[id];
  image.src = entry.images[index];
  image.dataset.slice = entry.indices[index];
  label.textContent = 'slice ' + entry.indices[index] + ' / ' + (entry.depth - 1);
}
document.querySelectorAll('input.slice-slider').forEach(function (slider) {
  slider.addEventListener('input', function () {
    showSlice(slider.dataset.target, +slider.value);
  });
});
</script>
"""

_EXTRA_STYLE = """
<style>
.maps { display: flex; flex-wrap: wrap; gap: 1em; }
.map { text-align: center; }
.map img.pixelated { image-rendering: pixelated; width: 256px; }
input.slice-slider { width: 256px; display: block; margin: 0.3em auto; }
</style>
"""


def _volume_block(ident: str, entry: ReportEntry, item: ReportMap, slices: dict) -> str:
    under = background(entry.data)  # (D, H, W) or (D, H, W, 3)
    depth = item.heatmap.shape[0]
    indices = np.unique(np.linspace(0, depth - 1, min(depth, MAX_SLICES)).round().astype(int))
    limits = colour_limits(item.heatmap, item.signed)
    images = [
        data_uri(_png(colorize(item.heatmap[i], signed=item.signed, limits=limits, under=under[i])))
        for i in indices
    ]
    peak = int(np.abs(item.heatmap).reshape(depth, -1).max(axis=1).argmax())
    start = int(np.abs(indices - peak).argmin())
    slices[ident] = {"images": images, "indices": indices.tolist(), "depth": depth}
    caption = html.escape(f"{item.method} · {item.target}")
    return (
        f'<div class="map"><div>{caption}</div>'
        f'<img id="{ident}-img" class="pixelated" alt="{caption}" src="{images[start]}" '
        f'data-slice="{indices[start]}">'
        f'<input type="range" class="slice-slider" id="{ident}-slider" data-target="{ident}" '
        f'min="0" max="{len(indices) - 1}" value="{start}">'
        f'<div id="{ident}-label">slice {indices[start]} / {depth - 1}</div></div>'
    )


def _image_block(entry: ReportEntry, item: ReportMap) -> str:
    under = background(entry.data)
    limits = colour_limits(item.heatmap, item.signed)
    png = _png(colorize(item.heatmap, signed=item.signed, limits=limits, under=under))
    caption = html.escape(f"{item.method} · {item.target}")
    return (
        f'<div class="map"><div>{caption}</div>'
        f'<img class="pixelated" alt="{caption}" src="{data_uri(png)}"></div>'
    )


def _metrics_table(rows: Sequence[dict[str, Any]]) -> str:
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="metrics"><tr>{head}</tr>{"".join(body)}</table>'


def write_report(
    path: str | os.PathLike[str],
    entries: Sequence[ReportEntry],
    *,
    title: str = "camscope report",
    settings: dict[str, Any] | None = None,
    metrics: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """Write the report atomically and return its path.

    Args:
        path: the ``.html`` file.
        entries: inputs with their maps (at input resolution).
        title: page title.
        settings: run settings shown as a list (model, method, layer, ...).
        metrics: rows of a metrics table (dicts with the same keys), if any.
    """
    parts = [_EXTRA_STYLE]
    if settings:
        items = "".join(
            f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>"
            for k, v in settings.items()
        )
        parts.append(f'<ul class="note" id="settings">{items}</ul>')
    if metrics:
        parts.append("<h2>Metrics</h2>" + _metrics_table(metrics))
    slices: dict[str, Any] = {}
    for number, entry in enumerate(entries):
        parts.append(f'<h2 class="input">{html.escape(entry.name)}</h2>')
        if entry.details:
            text = ", ".join(f"{k}: {v}" for k, v in entry.details.items())
            parts.append(f'<p class="note">{html.escape(text)}</p>')
        if entry.maps:
            overview = methods_figure(
                entry.data,
                {f"{m.method} · {m.target}": (m.heatmap, m.signed) for m in entry.maps[:6]},
            )
            parts.append(image_tag(figure_png(overview), f"{entry.name}: methods side by side"))
        blocks = []
        for index, item in enumerate(entry.maps):
            if item.heatmap.ndim == 3:
                blocks.append(_volume_block(f"v{number}-{index}", entry, item, slices))
            else:
                blocks.append(_image_block(entry, item))
        parts.append('<div class="maps">' + "".join(blocks) + "</div>")
    if slices:
        payload = json.dumps(slices).replace("</", "<\\/")
        parts.append(f'<script type="application/json" id="camscope-slices">{payload}</script>')
        parts.append(_SLIDER_SCRIPT)
    final = Path(path)
    with atomic_write(final, mode="w") as handle:
        handle.write(html_page(title, "\n".join(parts)))
    return final
