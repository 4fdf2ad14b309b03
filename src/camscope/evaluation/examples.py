"""A few inputs with every method's map, for an evaluation's report: what the numbers are about."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

import camscope
from camscope.render.report import ReportEntry, ReportMap

__all__ = ["EXAMPLES", "example_entries", "file_examples"]

#: Inputs shown in an evaluation's report.
EXAMPLES = 4


def example_entries(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    methods: Sequence[str],
    *,
    layer: str | None = None,
    names: Sequence[str] | None = None,
    count: int = EXAMPLES,
) -> list[ReportEntry]:
    """The first ``count`` inputs, each with every method's map of its label at input
    resolution (layer maps upsampled the method's own way, input-space maps reduced over
    channels the method's own way)."""
    x, y = inputs[:count], labels[:count].long()
    maps: list[list[ReportMap]] = [[] for _ in range(len(x))]
    for method in methods:
        info = camscope.get_method(method)
        e = camscope.explain(
            model,
            x,
            method=info.name,
            layer=layer if info.needs_layer else None,
            targets=y,
            progress=False,
        )
        shown = e.reduce_channels() if e.per_channel else e.upsample()
        for row in range(len(x)):
            heat = shown.maps[row, 0].detach().cpu().numpy()
            maps[row].append(ReportMap(info.name, f"class {int(y[row])}", heat, info.shown_signed))
    return [
        ReportEntry(
            names[row] if names is not None else f"input {row}",
            x[row].detach().cpu().numpy(),
            maps[row],
        )
        for row in range(len(x))
    ]


def file_examples(
    model: nn.Module,
    records: list[dict[str, Any]],
    methods: tuple[str, ...],
    layer: str | None,
    read_options: dict[str, Any],
) -> list[Any]:
    """:func:`example_entries` for the first inputs of a file run's records (those of the first
    input's shape), read as the run read them."""
    from camscope.io import read_image

    chosen: list[tuple[dict[str, Any], Any]] = []
    for record in records:
        scan = read_image(record["input"]["path"], **read_options)
        if chosen and scan.data.shape != chosen[0][1].data.shape:
            continue
        chosen.append((record, scan))
        if len(chosen) == EXAMPLES:
            break
    if not chosen:
        return []
    inputs = torch.stack([scan.tensor() for _, scan in chosen])
    labels = torch.tensor([record["label"] for record, _ in chosen])
    names = [record["name"] for record, _ in chosen]
    return example_entries(model, inputs, labels, methods, layer=layer, names=names)
