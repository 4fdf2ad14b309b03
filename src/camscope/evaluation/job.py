"""The evaluation job: every metric of every (method, upsampling) setting, per input.

Run by the dataset runner (:mod:`camscope.runs.runner`) like any job: records per input,
resumable, on the local or the Ray backend; the table is computed from the records, so it is the
same whether the run was interrupted or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from camscope.engine import ModelState, call_model
from camscope.evaluation.scoring import score_batch, settings_of, summarise
from camscope.layouts import parse_layout
from camscope.runs.job import Batch, Finished

__all__ = ["EvaluateJob"]


@dataclass
class EvaluateJob:
    """Score methods on each input.

    Attributes:
        methods: registry names.
        upsample_modes: how layer maps reach the input (input-space methods: ``"none"``).
        layer: the layer (``None``: the default layer).
        layout: how it lays out its map (``None``: inferred), in text form.
        deletion_steps: steps of the deletion and insertion curves.
        metric_batch_size: rows per forward pass of the metrics' perturbed inputs.
    """

    methods: list[str]
    upsample_modes: list[str] = field(default_factory=lambda: ["linear"])
    layer: str | None = None
    deletion_steps: int = 20
    metric_batch_size: int = 16
    kind: str = "evaluate"
    #: How the layer lays out its map, as text (:func:`camscope.layouts.parse_layout`).
    layout: str | None = None

    @property
    def settings(self) -> list[tuple[str, str]]:
        """The (method, upsampling) pairs scored."""
        return settings_of(self.methods, self.upsample_modes)

    def describe(self) -> dict[str, Any]:
        """The settings that make the records (part of the run's fingerprint)."""
        return {
            "settings": self.settings,
            "layer": self.layer,
            **({"layout": self.layout} if self.layout is not None else {}),
            "deletion_steps": self.deletion_steps,
            "metric_batch_size": self.metric_batch_size,
        }

    def run(self, model: nn.Module, batch: Batch) -> list[dict[str, Any]]:
        """Score one batch: one record per input."""
        x = batch.tensor()
        if batch.labels is None:
            with torch.no_grad(), ModelState(model):
                y = call_model(model, x).argmax(1)
        else:
            y = torch.tensor(batch.labels)
        truth = None if batch.truths is None else torch.stack(batch.truths)
        metrics: list[dict[str, Any]] = [{} for _ in batch.indices]
        for method, mode in self.settings:
            values = score_batch(
                model,
                x,
                y,
                method=method,
                mode=mode,
                layer=self.layer,
                layout=parse_layout(self.layout),
                truth=truth,
                deletion_steps=self.deletion_steps,
                batch_size=self.metric_batch_size,
            )
            for row in range(len(batch.indices)):
                metrics[row][f"{method}|{mode}"] = {
                    key: (value[row].tolist() if value.ndim > 1 else float(value[row]))
                    for key, value in values.items()
                }
        return [
            {"input": scan.record(), "label": int(y[row]), "metrics": metrics[row]}
            for row, scan in enumerate(batch.scans)
        ]

    def complete(self, record: dict[str, Any], folder: Path) -> bool:
        """Whether a record holds every score (its outputs are in the record itself)."""
        return True

    def finish(self, run: Finished) -> dict[str, Any]:
        """The summary table, built from the records alone."""
        return {"n_evaluated": len(run.records), "rows": summarise(run.records, self.settings)}
