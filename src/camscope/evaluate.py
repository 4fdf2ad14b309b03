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
from camscope.metrics._stats import mean_std
from camscope.postprocess import upsample

__all__ = ["SEED_002_AVERAGE_DROP", "EvaluationRow", "evaluate", "score_batch"]

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
            out[name], out[f"{name}_std"] = mean_std(torch.cat(parts))
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
    resume_dir: Any = None,
) -> list[EvaluationRow]:
    """Score methods on a labelled batch of data.

    Args:
        model: the classifier.
        inputs: ``(N, C, *S)``.
        labels: ``(N,)`` true classes (the maps explain these).
        methods: registry names.
        layer: the layer (default: last with spatial extent).
        upsample_modes: ``"linear"``, ``"nearest"``, ``"gaussian"`` (widths from the effective
            receptive field). Input-space methods are evaluated once, at input resolution, with
            their channels reduced by the method's default (upsampling ``"none"``).
        truth: optional ground truth, boolean masks ``(N, *S)`` or boxes ``(N, 2·n)``.
        batch_size: samples per explanation batch.
        deletion_steps: steps of the deletion and insertion curves.
        progress: show a progress bar.
        resume_dir: a folder where each finished (method, upsampling) row is saved at once
            (atomically); a run started again with the same data and settings reuses them, so
            an interrupted evaluation resumes where it stopped.

    Returns:
        One row per (method, upsampling mode): ``method``, ``upsample``, ``n``, and mean/std of
        ``average_drop``, ``increase`` (absolute masking), ``average_drop_relative``,
        ``increase_relative``, ``deletion_auc``, ``insertion_auc``, ``fidelity``,
        ``contrastivity``, ``l1``, ``kendall_tau``, and with ``truth`` ``iou``, ``hit`` and
        ``pointing``.
    """
    rows: list[EvaluationRow] = []
    settings = []
    for m in methods:  # input-space methods already have input resolution: no upsampling
        at_input = camscope.get_method(m).resolution == "input"
        settings += [(m, "none")] if at_input else [(m, u) for u in upsample_modes]
    bar = tqdm(
        total=len(settings) * math.ceil(len(inputs) / batch_size),
        disable=not progress,
        desc="evaluating",
    )
    fingerprint = _fingerprint(inputs, labels, truth, layer, deletion_steps)
    for method, mode in settings:
        totals = _Accumulator({})
        curves: dict[str, list[torch.Tensor]] = {}
        name = camscope.get_method(method).name
        saved = _load_partial(resume_dir, name, mode, fingerprint)
        if saved is not None:
            rows.append(saved)
            bar.update(math.ceil(len(inputs) / batch_size))
            continue
        for start in range(0, len(inputs), batch_size):
            part = None if truth is None else truth[start : start + batch_size]
            values = score_batch(
                model,
                inputs[start : start + batch_size],
                labels[start : start + batch_size],
                method=name,
                mode=mode,
                layer=layer,
                truth=part,
                deletion_steps=deletion_steps,
                batch_size=batch_size,
            )
            for key, tensor in values.items():
                if key.endswith("_curve"):
                    curves.setdefault(key, []).append(tensor)
                else:
                    totals.add(key, tensor)
            bar.update(1)
        row = {"method": name, "upsample": mode, "n": len(inputs), **totals.row()}
        for key, parts in curves.items():  # mean probability at each removed/inserted fraction
            row[key] = [round(float(v), 6) for v in torch.cat(parts).mean(dim=0)]
        _save_partial(resume_dir, row, fingerprint)
        rows.append(row)
    bar.close()
    return rows


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
) -> dict[str, torch.Tensor]:
    """Every metric for one batch and one (method, upsampling mode), per sample.

    Returns:
        ``{metric: (B,)}`` (as in :func:`evaluate`'s rows, before the mean) and the
        ``deletion_curve`` / ``insertion_curve`` ``(B, steps + 1)``.
    """
    name = camscope.get_method(method).name
    needs_layer = camscope.get_method(name).needs_layer
    e = camscope.explain(
        model, x, method=name, layer=layer if needs_layer else None, targets="all"
    ).reduce_channels()
    true_maps = e.maps[torch.arange(len(y)), y][:, None]
    if mode == "none":
        up = true_maps[:, 0]
    else:
        up = upsample(
            true_maps,
            tuple(x.shape[2:]),
            mode=mode,  # type: ignore[arg-type]
            sigma="erf" if mode == "gaussian" else None,
            model=model,
            layer=e.layer,
            input_shape=tuple(x.shape[1:]),
        )[:, 0]
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
    return {key: value.detach().double().cpu() for key, value in values.items()}


def _fingerprint(
    inputs: torch.Tensor,
    labels: torch.Tensor,
    truth: torch.Tensor | None,
    layer: str | None,
    steps: int,
) -> str:
    import hashlib

    digest = hashlib.sha256()
    for tensor in (inputs, labels, truth):
        if tensor is not None:
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(f"{layer}|{steps}".encode())
    return digest.hexdigest()


def _partial_path(folder: Any, method: str, mode: str) -> Any:
    from pathlib import Path

    return Path(folder) / f"{method}__{mode}.json"


def _load_partial(folder: Any, method: str, mode: str, fingerprint: str) -> EvaluationRow | None:
    import json

    if folder is None:
        return None
    path = _partial_path(folder, method, mode)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("fingerprint") != fingerprint:
        return None
    row: EvaluationRow = saved["row"]
    return row


def _save_partial(folder: Any, row: EvaluationRow, fingerprint: str) -> None:
    if folder is None:
        return
    from camscope.io import write_json

    write_json(
        _partial_path(folder, row["method"], row["upsample"]),
        {"fingerprint": fingerprint, "row": row},
    )


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
    "iou",
    "hit",
    "pointing",
    "l1",
    "kendall_tau",
)


def format_rows(rows: list[EvaluationRow]) -> str:
    """The rows as a fixed-width text table (means), then seed 002's Average Drop numbers."""
    keys = [k for k in TABLE_KEYS if k in rows[0]]
    lines = [f"{'method':<14}{'upsample':<10}" + "".join(f"{k[:12]:>13}" for k in keys)]
    for row in rows:
        lines.append(
            f"{row['method']:<14}{row['upsample']:<10}" + "".join(f"{row[k]:>13.3f}" for k in keys)
        )
    lines.append("\nseed 002 (VGG-16, PASCAL VOC), Average Drop % / Increase %:")
    for (method, mode, masking), (drop, increase) in SEED_002_AVERAGE_DROP.items():
        lines.append(f"  {method:<13} {mode:<9} {masking:<9} {drop:6.2f} / {increase:5.2f}")
    return "\n".join(lines)


def write_results(
    folder: Any, rows: list[EvaluationRow], *, title: str, extra: dict[str, Any]
) -> None:
    """``results.csv``, ``results.json`` and ``plots/<metric>.png`` (methods side by side)."""
    import csv
    import io

    from camscope.io import write_json
    from camscope.io.atomic import atomic_write
    from camscope.render import figure_png

    text = io.StringIO()
    columns = [key for key in rows[0] if not key.endswith("_curve")]
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(folder / "results.csv", mode="w") as handle:
        handle.write(text.getvalue())
    write_json(
        folder / "results.json",
        {
            "camscope": camscope.__version__,
            **extra,
            "rows": rows,
            "seed_002": [
                {"method": m, "upsample": u, "masking": k, "average_drop": d, "increase": i}
                for (m, u, k), (d, i) in SEED_002_AVERAGE_DROP.items()
            ],
        },
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "deletion_curve" in rows[0]:
        figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for axis, key in zip(axes, ("deletion_curve", "insertion_curve"), strict=True):
            for row in rows:
                curve = row[key]
                fractions = [i / (len(curve) - 1) for i in range(len(curve))]
                axis.plot(fractions, curve, label=f"{row['method']} ({row['upsample']})")
            axis.set_xlabel(
                "fraction of positions removed"
                if key == "deletion_curve"
                else "fraction of positions inserted"
            )
            axis.set_ylabel("target probability (mean)")
            axis.set_title(key.replace("_", " "), fontsize=9)
        axes[1].legend(fontsize=7)
        figure.suptitle(title, fontsize=9)
        figure.tight_layout()
        with atomic_write(folder / "plots" / "curves.png", mode="wb") as handle:
            handle.write(figure_png(figure))
    names = [f"{r['method']}\n{r['upsample']}" for r in rows]
    for key in (k for k in TABLE_KEYS if k in rows[0]):
        figure, axis = plt.subplots(figsize=(max(6, 1.1 * len(rows)), 3.4))
        axis.bar(
            range(len(rows)),
            [r[key] for r in rows],
            yerr=[r[f"{key}_std"] for r in rows],
            color="#4c72b0",
            capsize=3,
        )
        axis.set_xticks(range(len(rows)), names, fontsize=7)
        axis.set_title(f"{key} (mean ± std), {title}", fontsize=9)
        figure.tight_layout()
        with atomic_write(folder / "plots" / f"{key}.png", mode="wb") as handle:
            handle.write(figure_png(figure))
