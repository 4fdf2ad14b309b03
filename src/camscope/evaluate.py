"""Evaluate explanation methods on a model and data: methods × upsampling × metrics → a table.

For every method and upsampling mode, every sample is explained for all classes in one pass; the
true class's map is upsampled to the input and scored with Average Drop / Increase in Confidence
(absolute and relative masking), deletion and insertion, fidelity, and, when ground-truth masks
or boxes are given, localisation and the pointing game; all-class maps give contrastivity and
sum-to-score. Rows hold means and standard deviations over the samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

import camscope
from camscope.metrics import (
    average_drop,
    contrastivity,
    deletion,
    fidelity,
    insertion,
    localization,
    pointing_game,
    sum_to_score,
)
from camscope.postprocess import upsample

__all__ = ["SEED_002_AVERAGE_DROP", "EvaluationRow", "evaluate"]

#: Kim et al. 2020 (seed 002), VGG-16 on PASCAL VOC 2007: (Average Drop %, Increase %).
SEED_002_AVERAGE_DROP: dict[tuple[str, str, str], tuple[float, float]] = {
    ("grad_cam", "linear", "absolute"): (46.56, 13.42),
    ("grad_cam_pp", "linear", "absolute"): (36.84, 17.05),
    ("extended_cam", "gaussian", "absolute"): (21.89, 28.72),
    ("grad_cam", "linear", "relative"): (47.94, 16.39),
    ("grad_cam_pp", "linear", "relative"): (45.60, 15.10),
    ("extended_cam", "gaussian", "relative"): (39.86, 20.72),
    ("grad_cam", "gaussian", "relative"): (43.64, 17.46),
    ("grad_cam_pp", "gaussian", "relative"): (47.79, 13.99),
    ("extended_cam", "linear", "relative"): (79.23, 4.02),
}

EvaluationRow = dict[str, Any]


@dataclass
class _Accumulator:
    values: dict[str, list[torch.Tensor]]

    def add(self, name: str, tensor: torch.Tensor) -> None:
        self.values.setdefault(name, []).append(tensor.detach().double().flatten())

    def row(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, parts in self.values.items():
            joined = torch.cat(parts)
            out[name] = float(joined.mean())
            out[f"{name}_std"] = float(joined.std()) if joined.numel() > 1 else 0.0
        return out


def evaluate(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    methods: Sequence[str],
    layer: str | None = None,
    upsample_modes: Sequence[str] = ("linear",),
    truth: torch.Tensor | None = None,
    batch_size: int = 16,
    deletion_steps: int = 20,
    progress: bool = True,
) -> list[EvaluationRow]:
    """Score methods on a labelled batch of data.

    Args:
        model: the classifier.
        inputs: ``(N, C, *S)``.
        labels: ``(N,)`` true classes (the maps explain these).
        methods: registry names.
        layer: the layer (default: last with spatial extent).
        upsample_modes: ``"linear"``, ``"nearest"``, ``"gaussian"`` (widths from the effective
            receptive field).
        truth: optional ground truth, boolean masks ``(N, *S)`` or boxes ``(N, 2·n)``.
        batch_size: samples per explanation batch.
        deletion_steps: steps of the deletion and insertion curves.
        progress: show a progress bar.

    Returns:
        One row per (method, upsampling mode): ``method``, ``upsample``, ``n``, and mean/std of
        ``average_drop``, ``increase`` (absolute masking), ``average_drop_relative``,
        ``increase_relative``, ``deletion_auc``, ``insertion_auc``, ``fidelity``,
        ``contrastivity``, ``l1``, ``kendall_tau``, and with ``truth`` ``iou``, ``hit`` and
        ``pointing``.
    """
    size = tuple(inputs.shape[2:])
    rows: list[EvaluationRow] = []
    settings = [(m, u) for m in methods for u in upsample_modes]
    bar = tqdm(
        total=len(settings) * math.ceil(len(inputs) / batch_size),
        disable=not progress,
        desc="evaluating",
    )
    for method, mode in settings:
        totals = _Accumulator({})
        name = camscope.get_method(method).name
        for start in range(0, len(inputs), batch_size):
            x = inputs[start : start + batch_size]
            y = labels[start : start + batch_size]
            e = camscope.explain(model, x, method=name, layer=layer, targets="all")
            true_maps = e.maps[torch.arange(len(y)), y][:, None]
            up = upsample(
                true_maps,
                size,
                mode=mode,  # type: ignore[arg-type]
                sigma="erf" if mode == "gaussian" else None,
                model=model,
                layer=e.layer,
                input_shape=tuple(inputs.shape[1:]),
            )[:, 0]
            absolute = average_drop(model, x, up, y, batch_size=batch_size)
            relative = average_drop(model, x, up, y, masking="relative", batch_size=batch_size)
            totals.add("average_drop", absolute.drop)
            totals.add("increase", 100.0 * absolute.increase.double())
            totals.add("average_drop_relative", relative.drop)
            totals.add("increase_relative", 100.0 * relative.increase.double())
            totals.add(
                "deletion_auc",
                deletion(model, x, up, y, steps=deletion_steps, batch_size=batch_size).auc,
            )
            totals.add(
                "insertion_auc",
                insertion(model, x, up, y, steps=deletion_steps, batch_size=batch_size).auc,
            )
            totals.add("fidelity", fidelity(model, x, up, y, batch_size=batch_size).drop)
            totals.add("contrastivity", contrastivity(e.maps, y))
            check = sum_to_score(e.maps, e.scores)
            totals.add("l1", check.l1)
            totals.add("kendall_tau", check.kendall_tau)
            if truth is not None:
                part = truth[start : start + batch_size]
                located = localization(torch.relu(up), part)
                totals.add("iou", located.iou)
                totals.add("hit", located.hit.double())
                totals.add("pointing", pointing_game(up, part).hit.double())
            bar.update(1)
        rows.append({"method": name, "upsample": mode, "n": len(inputs), **totals.row()})
    bar.close()
    return rows
