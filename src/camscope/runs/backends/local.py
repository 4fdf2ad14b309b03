"""The local backend: batches in this process, files read ahead in threads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from camscope.io.inputs import LoadedImage
from camscope.runs.batch import process_batch
from camscope.runs.job import Job
from camscope.runs.loader import read_ahead
from camscope.runs.sources import Source

__all__ = ["run_local"]


def run_local(
    job: Job,
    model: nn.Module,
    source: Source,
    batches: list[list[int]],
    folder: Path | None,
    fingerprint: str,
    *,
    collect: Callable[[list[dict[str, Any]], list[dict[str, Any]]], None],
    read_workers: int = 2,
) -> None:
    """Run ``batches`` here and hand each batch's records and failures to ``collect``."""
    stream = read_ahead([i for batch in batches for i in batch], source.read, workers=read_workers)
    for batch in batches:
        items: list[tuple[int, LoadedImage | Exception]] = [next(stream) for _ in batch]
        collect(*process_batch(job, model, source, items, folder, fingerprint))
