"""Text tables for the terminal: one formatter for every table camscope prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["summary_table", "text_table"]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, gap: int = 2) -> str:
    """A fixed-width table: the first column left-aligned, the others right-aligned, every
    column as wide as its widest cell or header (headers are never cut).

    Args:
        header: column titles.
        rows: cells, already formatted as text; a row may be shorter (blank cells after).
        gap: spaces between columns.
    """
    columns = len(header)
    cells = [[str(c) for c in row] + [""] * (columns - len(row)) for row in rows]
    widths = [max([len(header[i]), *(len(row[i]) for row in cells)]) for i in range(columns)]
    space = " " * gap

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return space.join([first, *rest]).rstrip()

    rule = "-" * len(line(list(header)))
    return "\n".join([line(list(header)), rule, *(line(row) for row in cells)])


def summary_table(
    summary: Mapping[str, Mapping[str, Any]],
    columns: Sequence[tuple[str, str, str]],
    *,
    first: str = "method",
) -> str:
    """A :func:`text_table` with one row per entry of ``summary``: its name, then its values.

    Args:
        summary: row name → its values by key.
        columns: ``(title, key, format spec)`` per column after the first, e.g.
            ``("mean rank", "mean_rank", ".2f")``; an empty spec prints the value as it is.
        first: the first column's title.
    """
    rows = [
        [name, *(format(values[key], spec) for _, key, spec in columns)]
        for name, values in summary.items()
    ]
    return text_table([first, *(title for title, _, _ in columns)], rows)
