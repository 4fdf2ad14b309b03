"""What every showcase writes at the end: its figures as PNG files and one HTML page."""

from __future__ import annotations

from pathlib import Path

import camscope
from camscope.io.atomic import atomic_write
from camscope.render import data_uri, render_page

__all__ = ["write_figures_and_page"]


def write_figures_and_page(
    folder: Path,
    *,
    title: str,
    paragraph: str,
    table: str,
    figures: list[tuple[str, str, bytes]],
    seconds: float,
) -> None:
    """``figures/<name>`` for every ``(title, name, png)`` and ``report.html`` showing them under
    ``paragraph`` and the text ``table``."""
    for _, name, png in figures:
        with atomic_write(folder / "figures" / name, mode="wb") as handle:
            handle.write(png)
    page = render_page(
        "figures.html.j2",
        title=title,
        paragraphs=[paragraph],
        table=table,
        settings={},
        metrics=None,
        note=f"{seconds / 60:.1f} min on this machine; camscope {camscope.__version__}.",
        figures=[{"title": caption, "src": data_uri(png)} for caption, _, png in figures],
    )
    with atomic_write(folder / "report.html", mode="w") as handle:
        handle.write(page)
