"""What a dataset run computes: the :class:`Job` protocol that the engine and backends run.

A job turns a group of same-shaped inputs into one JSON record per input (writing any output
files itself, atomically), knows when a record's outputs are complete, and writes what comes at
the end (tables, reports) from the records alone, so a resumed run ends exactly as an
uninterrupted one. Jobs are picklable (the Ray backend sends them to its workers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from camscope.io.inputs import LoadedImage

__all__ = ["Batch", "Finished", "Job"]


@dataclass
class Batch:
    """Inputs of one shape, explained together.

    Attributes:
        indices: their positions in the source.
        scans: the inputs.
        names: their output names.
        labels: their classes, or ``None``.
        truths: their ground truths, or ``None``.
        folder: the output folder (``None``: keep nothing on disk).
    """

    indices: list[int]
    scans: list[LoadedImage]
    names: list[str]
    labels: list[int] | None
    truths: list[torch.Tensor] | None
    folder: Path | None

    def tensor(self) -> torch.Tensor:
        """``(B, C, *S)``."""
        return torch.stack([scan.tensor() for scan in self.scans])


@dataclass
class Finished:
    """What a run ends with: the folder (``None``: in memory), the records of the inputs done, in
    the source's order, and the failures ``{path, error}``."""

    folder: Path | None
    records: list[dict[str, Any]]
    failed: list[dict[str, str]]


class Job(Protocol):
    """What a run computes. ``kind`` names it in the manifest (``"explain"``, ``"evaluate"``)."""

    kind: str

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings: they go into the fingerprint and the manifest."""
        ...

    def run(self, model: nn.Module, batch: Batch) -> list[dict[str, Any]]:
        """One record per input of the batch (outputs written under ``batch.folder``)."""
        ...

    def complete(self, record: dict[str, Any], folder: Path) -> bool:
        """Whether everything the record lists exists (else the input is redone)."""
        ...

    def finish(self, run: Finished) -> dict[str, Any]:
        """Write what is made from the records and failures (a table, a report); return
        manifest entries."""
        ...
