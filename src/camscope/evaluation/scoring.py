"""Every metric of one batch, per sample, and the table rows made from per-sample values.

For one (method, upsampling) setting, every sample is explained for all classes in one pass; the
true class's map is upsampled to the input and scored with Average Drop / Increase in Confidence
(absolute and relative masking), deletion and insertion, fidelity, its sparseness (Gini) and
complexity (entropy), and, when ground-truth masks or boxes are given, localisation, the pointing
game and the ROC AUC of the map against the mask; all-class maps give contrastivity and
sum-to-score. Rows hold means and standard deviations over the samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

import camscope
from camscope.engine.relay import said_once
from camscope.layouts import LayoutSpec
from camscope.metrics import (
    auc,
    average_drop,
    complexity,
    contrastivity,
    deletion,
    fidelity,
    insertion,
    localization,
    pointing_game,
    sparseness,
    sum_to_score,
)
from camscope.metrics._stats import mean_std

__all__ = [
    "KIM_2020_AVERAGE_DROP",
    "TABLE_KEYS",
    "EvaluationRow",
    "score_batch",
    "settings_of",
    "summarise",
]

#: Kim et al. 2020, VGG-16 on PASCAL VOC 2007: (Average Drop %, Increase %).
KIM_2020_AVERAGE_DROP: dict[tuple[str, str, str], tuple[float, float]] = {
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

#: Columns shown in tables and plotted, in order.
TABLE_KEYS = (
    "average_drop",
    "increase",
    "average_drop_relative",
    "increase_relative",
    "deletion_auc",
    "insertion_auc",
    "fidelity",
    "contrastivity",
    "sparseness",
    "complexity",
    "iou",
    "hit",
    "pointing",
    "auc",
    "l1",
    "kendall_tau",
)


def settings_of(methods: Sequence[str], upsample_modes: Sequence[str]) -> list[tuple[str, str]]:
    """(method, upsampling) pairs: input-space methods once, at input resolution (``"none"``),
    layer methods once per upsampling mode."""
    settings = []
    for method in methods:
        info = camscope.get_method(method)
        if info.resolution == "input":
            settings.append((info.name, "none"))
        else:
            settings += [(info.name, mode) for mode in upsample_modes]
    return settings


def summarise(
    records: list[dict[str, Any]], settings: list[tuple[str, str]]
) -> list[EvaluationRow]:
    """One row per setting from per-input records: mean and standard deviation of each metric
    and the mean deletion/insertion curves."""
    rows: list[EvaluationRow] = []
    for method, mode in settings:
        key = f"{method}|{mode}"
        per_input = [r["metrics"][key] for r in records if key in r["metrics"]]
        row: EvaluationRow = {"method": method, "upsample": mode, "n": len(per_input)}
        if per_input:
            for metric in per_input[0]:
                if metric.endswith("_curve"):
                    row[metric] = [
                        round(float(v), 6) for v in np.mean([p[metric] for p in per_input], axis=0)
                    ]
                else:
                    values = torch.tensor([p[metric] for p in per_input], dtype=torch.float64)
                    row[metric], row[f"{metric}_std"] = mean_std(values)
        rows.append(row)
    return rows


@said_once
def score_batch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: str,
    mode: str,
    layer: str | None = None,
    truth: torch.Tensor | None = None,
    deletion_steps: int = 20,
    batch_size: int = 16,
    layout: LayoutSpec = None,
) -> dict[str, torch.Tensor]:
    """Every metric for one batch and one (method, upsampling mode), per sample.

    Returns:
        ``{metric: (B,)}`` (as in :func:`evaluate`'s rows, before the mean) and the
        ``deletion_curve`` / ``insertion_curve`` ``(B, steps + 1)``.
    """
    info = camscope.get_method(method)
    e = camscope.explain(
        model,
        x,
        method=info.name,
        layer=layer if info.needs_layer else None,
        layout=layout if info.kind != "input" else None,
        targets="all",
    ).reduce_channels()
    true_maps = e.maps[torch.arange(len(y)), y][:, None]
    if mode == "none":
        up = true_maps[:, 0]
    else:
        chosen = dataclasses.replace(e, maps=true_maps)
        up = chosen.upsample(mode=mode, model=model).maps[:, 0]  # type: ignore[arg-type]
    absolute = average_drop(model, x, up, y, batch_size=batch_size)
    relative = average_drop(model, x, up, y, masking="relative", batch_size=batch_size)
    removed = deletion(model, x, up, y, steps=deletion_steps, batch_size=batch_size)
    inserted = insertion(model, x, up, y, steps=deletion_steps, batch_size=batch_size)
    check = sum_to_score(e.maps, e.scores)
    values = {
        "average_drop": absolute.drop,
        "increase": 100.0 * absolute.increase.double(),
        "average_drop_relative": relative.drop,
        "increase_relative": 100.0 * relative.increase.double(),
        "deletion_auc": removed.auc,
        "insertion_auc": inserted.auc,
        "fidelity": fidelity(model, x, up, y, batch_size=batch_size).drop,
        "contrastivity": contrastivity(e.maps, y).values,
        "sparseness": sparseness(up).values,
        "complexity": complexity(up).values,
        "l1": check.l1,
        "kendall_tau": check.kendall_tau,
        "deletion_curve": removed.curves,
        "insertion_curve": inserted.curves,
    }
    if truth is not None:
        located = localization(torch.relu(up), truth)
        values["iou"] = located.iou
        values["hit"] = located.hit.double()
        values["pointing"] = pointing_game(up, truth).hit.double()
        values["auc"] = auc(up, truth).values
    return {key: value.detach().double().cpu() for key, value in values.items()}
