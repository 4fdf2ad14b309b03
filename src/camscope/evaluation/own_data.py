"""The user's own files for the sanity checks: inputs of one shape, and the classes to explain
(the data's labels when it has them, else the model's predictions)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from camscope.engine import ModelState, call_model
from camscope.errors import CamscopeError

__all__ = ["OwnData", "read_own_data"]


@dataclass
class OwnData:
    """Inputs ``(N, C, *S)``, their targets ``(N,)``, a title and what to record about them."""

    inputs: torch.Tensor
    labels: torch.Tensor
    title: str
    record: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def read_own_data(
    data: str, model: nn.Module, count: int, *, read_options: dict[str, Any] | None = None
) -> OwnData:
    """The first ``count`` inputs of ``data`` (a folder, glob or manifest CSV, as
    ``camscope explain`` takes), which must share one shape.

    Args:
        data: the folder, glob or manifest.
        model: predicts the labels when the data has none.
        count: how many inputs to take.
        read_options: how inputs are read (``intensity``, ``dicom_window``, ``nifti_volume``
            of :func:`camscope.io.read_image`).

    Raises:
        CamscopeError: the inputs have different shapes.
    """
    from camscope.runs import resolve_dataset
    from camscope.runs.sources import FileSource

    dataset = resolve_dataset([data])
    notes = []
    if count > len(dataset.paths):
        notes.append(f"--count {count}, but DATA holds {len(dataset.paths)}: all are checked")
    source = FileSource.from_paths(dataset.paths[:count], root=dataset.root, **(read_options or {}))
    scans = [source.read(i).tensor() for i in range(len(source))]
    shapes = sorted({tuple(scan.shape) for scan in scans})
    if len(shapes) > 1:
        raise CamscopeError(
            f"the inputs have different shapes {shapes}; sanity checks take inputs of one "
            "shape (give a folder of same-sized inputs)"
        )
    inputs = torch.stack(scans)
    if dataset.labels:
        labels = torch.tensor(dataset.labels[:count])
    else:
        with torch.no_grad(), ModelState(model):
            labels = call_model(model, inputs).argmax(1)
    record = {
        "inputs": [
            Path(path).name if dataset.root is None else os.path.relpath(path, dataset.root)
            for path in source.paths
        ],
        "targets_from": "the data's labels" if dataset.labels else "the predicted classes",
        "intensity": (read_options or {}).get("intensity", "auto"),
    }
    title = f"{len(inputs)} input{'s' * (len(inputs) != 1)} from {Path(dataset.source).name}"
    return OwnData(inputs, labels, title, record, notes)
