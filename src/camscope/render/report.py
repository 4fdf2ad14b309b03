"""A self-contained HTML report of one run: inputs, maps per method and target, a slice slider
for volumes, and the metrics table when there is one.

Everything is inline (PNG data URIs, CSS, a few lines of JavaScript), so the file opens from disk
or an e-mail without a network. Slices are coloured with Matplotlib's colour maps and encoded with
Pillow directly (no figure per slice), so a report of a few volumes takes about a second.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camscope.engine.relay import said_so_far
from camscope.io.atomic import atomic_write
from camscope.render.html import data_uri, metrics_table, render_page
from camscope.render.overlays import (
    DIVERGING,
    SEQUENTIAL,
    background,
    colour_limits,
    methods_figure,
)
from camscope.render.volumes import figure_png

__all__ = [
    "ReportEntry",
    "ReportMap",
    "colorize",
    "write_evaluation_report",
    "write_report",
]

#: At most this many slices per volume go into a slider (evenly spaced).
MAX_SLICES = 64
#: Slices of all the volumes of a report together: many maps share them (at least
#: :data:`MIN_SLICES` each), so a scan of 23 classes makes a report of a few megabytes; the full
#: maps are the files the report links to.
SLICE_BUDGET = 256
MIN_SLICES = 8


@dataclass
class ReportMap:
    """One map to show: ``heatmap`` at the input's spatial size."""

    method: str
    target: str
    heatmap: np.ndarray
    signed: bool
    file: str | None = None  # the full-resolution map, relative to the report (linked)


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


#: Pictures in the report are at most this many pixels across (larger ones are subsampled, so a
#: 2,000-pixel radiograph does not make a report of megabytes per map).
MAX_SIDE = 384


def _step(shape: Sequence[int]) -> int:
    return max(1, -(-max(shape[-2:]) // MAX_SIDE))


def _jpeg(rgb: np.ndarray) -> bytes:
    """A slider's slice: JPEG (a tenth of a PNG's size for a smooth map over a scan)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def slices_per_volume(volumes: int) -> int:
    """Slices in each slider when a report shows ``volumes`` volume maps."""
    return max(MIN_SLICES, min(MAX_SLICES, SLICE_BUDGET // max(volumes, 1)))


def _volume_block(
    ident: str, entry: ReportEntry, item: ReportMap, slices: dict, count: int
) -> dict:
    under = background(entry.data)  # (D, H, W) or (D, H, W, 3)
    depth = item.heatmap.shape[0]
    indices = np.unique(np.linspace(0, depth - 1, min(depth, count)).round().astype(int))
    limits = colour_limits(item.heatmap, item.signed)
    step = _step(item.heatmap.shape)
    images = [
        data_uri(
            _jpeg(
                colorize(
                    np.asarray(item.heatmap[i, ::step, ::step]),
                    signed=item.signed,
                    limits=limits,
                    under=under[i, ::step, ::step],
                )
            ),
            "image/jpeg",
        )
        for i in indices
    ]
    peak = int(np.abs(item.heatmap).reshape(depth, -1).max(axis=1).argmax())
    start = int(np.abs(indices - peak).argmin())
    slices[ident] = {"images": images, "indices": indices.tolist(), "depth": depth}
    return {
        "volume": True,
        "ident": ident,
        "caption": f"{item.method} · {item.target}",
        "src": images[start],
        "slice": int(indices[start]),
        "start": start,
        "last": len(indices) - 1,
        "depth": depth,
        "file": item.file,
    }


def _image_block(entry: ReportEntry, item: ReportMap) -> dict:
    step = _step(item.heatmap.shape)
    under = background(entry.data)[::step, ::step]
    limits = colour_limits(item.heatmap, item.signed)
    heat = item.heatmap[::step, ::step]
    png = _png(colorize(heat, signed=item.signed, limits=limits, under=under))
    caption = f"{item.method} · {item.target}"
    return {"volume": False, "caption": caption, "src": data_uri(png), "file": item.file}


def write_report(
    path: str | os.PathLike[str],
    entries: Sequence[ReportEntry],
    *,
    title: str = "camscope report",
    settings: dict[str, Any] | None = None,
    metrics: Sequence[dict[str, Any]] | None = None,
    figures: Sequence[tuple[str, bytes]] = (),
    failures: Sequence[dict[str, str]] = (),
    sections: Sequence[tuple[str, str, Sequence[dict[str, Any]]]] = (),
    warned: Sequence[str] | None = None,
) -> Path:
    """Write the report atomically and return its path.

    Args:
        path: the ``.html`` file.
        entries: inputs with their maps (at input resolution).
        title: page title.
        settings: run settings shown as a list (model, method, layer, ...).
        metrics: rows of a metrics table (dicts with the same keys), if any.
        figures: ``(title, PNG bytes)`` pictures shown after the table (plots).
        failures: inputs that failed, ``{path, error}``, listed after the settings.
        sections: more tables after the metrics, ``(title, note, rows)`` (e.g. sanity checks).
        warned: warnings to list after the failures; default: those said so far in the running
            camscope call (:func:`~camscope.engine.relay.said_so_far`).
    """
    slices: dict[str, Any] = {}
    shown = []
    count = slices_per_volume(sum(m.heatmap.ndim == 3 for e in entries for m in e.maps))
    for number, entry in enumerate(entries):
        overview = None
        if entry.maps:
            figure = methods_figure(
                entry.data,
                {f"{m.method} · {m.target}": (m.heatmap, m.signed) for m in entry.maps[:6]},
            )
            overview = data_uri(figure_png(figure))
        blocks = [
            _volume_block(f"v{number}-{index}", entry, item, slices, count)
            if item.heatmap.ndim == 3
            else _image_block(entry, item)
            for index, item in enumerate(entry.maps)
        ]
        details = ", ".join(f"{k}: {v}" for k, v in entry.details.items())
        shown.append(
            {"name": entry.name, "details": details, "overview": overview, "blocks": blocks}
        )
    page = render_page(
        "report.html.j2",
        title=title,
        settings={str(k): str(v) for k, v in (settings or {}).items()},
        metrics=metrics_table(metrics) if metrics else None,
        figures=[{"title": name, "src": data_uri(png)} for name, png in figures],
        entries=shown,
        failures=list(failures),
        warned=said_so_far() if warned is None else list(warned),
        sections=[
            {"title": heading, "note": note, "table": metrics_table(rows)}
            for heading, note, rows in sections
            if rows
        ],
        slices=json.dumps(slices).replace("</", "<\\/") if slices else "",
    )
    final = Path(path)
    with atomic_write(final, mode="w") as handle:
        handle.write(page)
    return final


def write_evaluation_report(
    folder: str | os.PathLike[str],
    rows: Sequence[dict[str, Any]],
    *,
    title: str,
    settings: dict[str, Any],
    entries: Sequence[ReportEntry] = (),
    sections: Sequence[tuple[str, str, Sequence[dict[str, Any]]]] = (),
) -> Path:
    """``report.html`` of an evaluation: its settings, the table, more tables (``sections``:
    title, note, rows; e.g. the sanity checks), every plot in ``folder/plots`` (the curves
    first) and, when given, a few inputs with every method's map."""
    plots = sorted(Path(folder, "plots").glob("*.png"), key=lambda p: (p.stem != "curves", p.stem))
    return write_report(
        Path(folder) / "report.html",
        entries,
        title=title,
        settings={k: v for k, v in settings.items() if not isinstance(v, dict | list)},
        metrics=list(rows),
        figures=[(plot.stem.replace("_", " "), plot.read_bytes()) for plot in plots],
        sections=sections,
    )
