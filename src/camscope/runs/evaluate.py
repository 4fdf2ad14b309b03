"""Evaluate methods over a labelled dataset of files, one record per input, resumable.

The inputs go through in fixed batches (as in :mod:`camscope.runs.explain`); for every batch and
every (method, upsampling) setting, :func:`camscope.evaluate.score_batch` gives each input's
metrics, and ``records/<name>.json`` holds them once the input is done. The summary table (mean
and standard deviation per setting, the deletion/insertion curves) is computed from the records,
so it is the same whether the run was interrupted or not, and an unreadable input is listed under
``failed`` and left out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import camscope
from camscope.capture import ModelState, call_model
from camscope.errors import InputError
from camscope.evaluate import EvaluationRow, score_batch
from camscope.io.atomic import write_json
from camscope.io.inputs import read_scan
from camscope.metrics._stats import mean_std
from camscope.runs.loader import read_ahead
from camscope.runs.records import (
    RECORDS,
    fixed_batches,
    group_by_shape,
    load_records,
    output_names,
    prepare_records,
)

__all__ = ["evaluate_files"]


def _settings(methods: Sequence[str], upsample_modes: Sequence[str]) -> list[tuple[str, str]]:
    settings = []
    for method in methods:
        info = camscope.get_method(method)
        if info.resolution == "input":
            settings.append((info.name, "none"))
        else:
            settings += [(info.name, mode) for mode in upsample_modes]
    return settings


def _summary(records: list[dict[str, Any]], settings: list[tuple[str, str]]) -> list[EvaluationRow]:
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


def evaluate_files(
    model: nn.Module,
    paths: Sequence[str | os.PathLike[str]],
    labels: Sequence[int] | None,
    out_dir: str | os.PathLike[str],
    *,
    truths: Sequence[torch.Tensor] | None = None,
    methods: Sequence[str],
    upsample_modes: Sequence[str] = ("linear",),
    layer: str | None = None,
    root: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    deletion_steps: int = 20,
    model_record: dict[str, Any] | None = None,
    force: bool = False,
    progress: bool = True,
    read_workers: int = 2,
) -> tuple[list[EvaluationRow], dict[str, Any]]:
    """Score methods on every input; write per-input records and return the table.

    Args:
        labels: the class of each input (the maps explain it); ``None``: the model's predicted
            class.
        truths: per input, a boolean mask ``(*S)`` or a box ``(2·n,)`` (localisation metrics).

    Returns:
        The summary rows (as :func:`camscope.evaluate.evaluate` gives) and the manifest.

    Raises:
        OutputError: the folder holds an evaluation with other settings (without ``force``).
        InputError: labels and paths differ in number, or every input failed.
    """
    from tqdm.auto import tqdm

    if labels is not None and len(labels) != len(paths):
        raise InputError(f"{len(labels)} labels for {len(paths)} inputs")
    if truths is not None and len(truths) != len(paths):
        raise InputError(f"{len(truths)} ground truths for {len(paths)} inputs")
    folder = Path(out_dir)
    names = output_names(paths, root)
    settings = _settings(methods, upsample_modes)
    description = {
        "settings": settings,
        "layer": layer,
        "batch_size": batch_size,
        "deletion_steps": deletion_steps,
        "labels": "given" if labels is not None else "predicted",
        "model": model_record or {"type": type(model).__name__},
    }
    fingerprint = json.dumps(description, sort_keys=True, default=str)
    done = load_records(folder, names, fingerprint, force=force)
    prepare_records(folder)
    todo = fixed_batches(len(paths), batch_size, lambda i: names[i] in done)
    stream = read_ahead(
        [str(p) for p in paths], [i for b in todo for i in b], read_scan, workers=read_workers
    )
    failed: list[dict[str, str]] = []
    bar = tqdm(
        total=sum(len(b) for b in todo), disable=not progress, desc="evaluating", unit="input"
    )
    for batch in todo:
        groups, errors = group_by_shape([next(stream) for _ in batch])
        for index, error in errors:
            failed.append({"path": str(paths[index]), "error": str(error)})
            if len(paths) > 1:
                tqdm.write(f"camscope: skipped {paths[index]}: {error}")
        for group in groups:
            x = torch.stack([scan.tensor() for _, scan in group])
            if labels is None:
                with torch.no_grad(), ModelState(model):
                    y = call_model(model, x).argmax(1)
            else:
                y = torch.tensor([int(labels[i]) for i, _ in group])
            truth = None if truths is None else torch.stack([truths[i] for i, _ in group])
            metrics: list[dict[str, Any]] = [{} for _ in group]
            for method, mode in settings:
                values = score_batch(
                    model,
                    x,
                    y,
                    method=method,
                    mode=mode,
                    layer=layer,
                    truth=truth,
                    deletion_steps=deletion_steps,
                    batch_size=batch_size,
                )
                for row in range(len(group)):
                    metrics[row][f"{method}|{mode}"] = {
                        key: (value[row].tolist() if value.ndim > 1 else float(value[row]))
                        for key, value in values.items()
                    }
            for row, (index, scan) in enumerate(group):
                record = {
                    "name": names[index],
                    "path": scan.path,
                    "label": int(y[row]),
                    "fingerprint": fingerprint,
                    "metrics": metrics[row],
                }
                write_json(folder / RECORDS / f"{names[index]}.json", record)
                done[names[index]] = record
        bar.update(len(batch))
    bar.close()
    if failed and not done:
        raise InputError(
            failed[0]["error"] if len(failed) == 1 else f"all {len(failed)} inputs failed"
        )
    records = [done[name] for name in names if name in done]
    rows = _summary(records, settings)
    manifest = {
        "camscope": camscope.__version__,
        "torch": torch.__version__,
        **description,
        "n_inputs": len(paths),
        "n_evaluated": len(records),
        "failed": failed,
    }
    return rows, manifest
