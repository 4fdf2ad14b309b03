"""Evaluate explanation methods on a model and data: methods × upsampling × metrics → a table.

Both entry points run the evaluation job (:class:`~camscope.evaluation.job.EvaluateJob`) on the
dataset-run engine: :func:`evaluate` on tensors in memory, :func:`evaluate_files` on files. With
a folder, each input's metrics are written as a record once it is done, and a run started again
with the same settings continues where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from camscope.engine.relay import said_once
from camscope.evaluation.job import EvaluateJob
from camscope.evaluation.scoring import EvaluationRow
from camscope.layouts import LayoutSpec, layout_text
from camscope.runs.runner import run_job
from camscope.runs.sources import FileSource, TensorSource

__all__ = ["evaluate", "evaluate_files"]


def _job(
    methods: Sequence[str],
    upsample_modes: Sequence[str],
    layer: str | None,
    layout: LayoutSpec,
    deletion_steps: int,
    batch_size: int,
) -> EvaluateJob:
    return EvaluateJob(
        list(methods),
        list(upsample_modes),
        layer,
        deletion_steps,
        batch_size,
        layout=layout_text(layout),
    )


@said_once
def evaluate(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    methods: Sequence[str],
    layer: str | None = None,
    layout: LayoutSpec = None,
    upsample_modes: Sequence[str] = ("linear",),
    truth: torch.Tensor | None = None,
    batch_size: int = 16,
    deletion_steps: int = 20,
    progress: bool = True,
    out_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> list[EvaluationRow]:
    """Score methods on a labelled batch of data.

    Args:
        model: the classifier.
        inputs: ``(N, C, *S)``.
        labels: ``(N,)`` true classes (the maps explain these).
        methods: registry names.
        layer: the layer (default: :func:`camscope.layers.default_layer`'s choice).
        layout: how the layer lays out its map, as for :func:`camscope.explain` (also the
            text form ``"tokens:14x14:1"``).
        upsample_modes: ``"linear"``, ``"nearest"``, ``"gaussian"`` (widths from the effective
            receptive field). Input-space methods are evaluated once, at input resolution, with
            their channels reduced by the method's default (upsampling ``"none"``).
        truth: optional ground truth, boolean masks ``(N, *S)`` or boxes ``(N, 2·n)``.
        batch_size: samples per explanation batch (and per metric forward pass).
        deletion_steps: steps of the deletion and insertion curves.
        progress: show a progress bar.
        out_dir: a folder for per-sample records (resumable); ``None`` keeps them in memory.
        force: with ``out_dir``, start afresh.

    Returns:
        One row per (method, upsampling mode): ``method``, ``upsample``, ``n``, and mean/std of
        ``average_drop``, ``increase`` (absolute masking), ``average_drop_relative``,
        ``increase_relative``, ``deletion_auc``, ``insertion_auc``, ``fidelity``,
        ``contrastivity``, ``l1``, ``kendall_tau``, and with ``truth`` ``iou``, ``hit`` and
        ``pointing``; the mean ``deletion_curve`` and ``insertion_curve``.
    """
    job = _job(methods, upsample_modes, layer, layout, deletion_steps, batch_size)
    source = TensorSource.from_tensor(inputs, labels=labels, truths=truth)
    rows: list[EvaluationRow] = run_job(
        job,
        source,
        out_dir,
        model=model,
        batch_size=batch_size,
        force=force,
        progress=progress,
        read_workers=0,
    ).manifest["rows"]
    return rows


@said_once
def evaluate_files(
    model: nn.Module | None,
    paths: Sequence[str | os.PathLike[str]],
    labels: Sequence[int] | None,
    out_dir: str | os.PathLike[str],
    *,
    truths: Sequence[torch.Tensor] | None = None,
    methods: Sequence[str],
    upsample_modes: Sequence[str] = ("linear",),
    layer: str | None = None,
    layout: LayoutSpec = None,
    root: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    deletion_steps: int = 20,
    read_options: dict[str, Any] | None = None,
    **run_options: Any,
) -> tuple[list[EvaluationRow], dict[str, Any]]:
    """Score methods on every file; write per-input records and return the table.

    Args:
        model: the network (``None`` with the Ray backend, which loads ``model_spec`` in each
            worker).
        paths: input files, in the dataset's order.
        labels: the class of each input (the maps explain it); ``None``: the predicted class.
        out_dir: where the per-input records go (resumable).
        methods: registry names.
        upsample_modes: how layer maps reach input size (``"linear"``, ``"gaussian"``, ...).
        layer: for layer methods (default: their default layer).
        layout: a transformer's token layout (default: inferred).
        root: name records by their path relative to this folder.
        batch_size: inputs per batch.
        deletion_steps: steps of the deletion and insertion curves.
        truths: per input, a boolean mask ``(*S)`` or a box ``(2·n,)`` (localisation metrics).
        read_options: keyword arguments of :func:`camscope.io.read_image` (``intensity``, ...).
        **run_options: ``model_record``, ``force``, ``progress``, ``read_workers``, ``backend``,
            ``model_spec``, ``ray_address``, ``ray_workers``: see :func:`camscope.runs.run_job`.

    Returns:
        The summary rows (as :func:`evaluate` gives) and the manifest.

    Raises:
        OutputError: the folder holds an evaluation with other settings (without ``force``).
        InputError: labels and paths differ in number, or every input failed.
    """
    job = _job(methods, upsample_modes, layer, layout, deletion_steps, batch_size)
    source = FileSource.from_paths(
        paths, root=root, labels=labels, truths=truths, **dict(read_options or {})
    )
    summary = run_job(
        job,
        source,
        out_dir,
        model=model,
        batch_size=batch_size,
        made=["results.json", "results.csv", "report.html"],
        **run_options,
    )
    return summary.manifest["rows"], summary.manifest
