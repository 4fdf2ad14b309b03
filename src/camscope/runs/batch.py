"""One batch of a run, the same on every backend: group by shape, run the job, keep failures.

An input that cannot be read, or that the model or the method refuses (wrong shape or channel
count, a label out of range), is a failure with its message; the other inputs of the batch go on
(a group that fails together is retried input by input, so one bad input does not take its
neighbours along). A failure is written as a record too, so a resumed run does not redo an input
that failed unless the input changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from camscope.engine.relay import said_so_far
from camscope.errors import CamscopeError
from camscope.io.atomic import write_json
from camscope.io.inputs import LoadedImage
from camscope.runs.job import Batch, Job
from camscope.runs.records import RECORDS, group_by_shape
from camscope.runs.sources import Source

__all__ = ["process_batch"]


def process_batch(
    job: Job,
    model: nn.Module,
    source: Source,
    items: Sequence[tuple[int, LoadedImage | Exception]],
    folder: Path | None,
    fingerprint: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run ``job`` on the readable inputs of ``items`` (grouped by shape, in order).

    Returns:
        The records written (each with ``name``, ``index``, ``identity`` and ``fingerprint``)
        and the failures ``{index, error}``.
    """
    groups, errors = group_by_shape(items)
    failed: list[dict[str, Any]] = [{"index": i, "error": str(e)} for i, e in errors]
    records: list[dict[str, Any]] = []
    pending = list(groups)
    while pending:
        group = pending.pop(0)
        indices = [i for i, _ in group]
        mark = len(said_so_far())
        try:
            results = job.run(model, _batch(source, group, folder))
        except CamscopeError as error:
            if len(group) > 1:  # find which input it was: each on its own
                pending[:0] = [[item] for item in group]
                continue
            shape = tuple(group[0][1].data.shape)
            failed.append({"index": indices[0], "error": f"(shape {shape}) {error}"})
            continue
        warned = said_so_far()[mark:]  # kept in the records: a resumed run's manifest lists them
        for index, result in zip(indices, results, strict=True):
            records.append(
                _write(source, index, folder, fingerprint, result | {"warnings": warned})
            )
    for failure in failed:
        _write(source, failure["index"], folder, fingerprint, {"failed": failure["error"]})
    return records, failed


def _batch(source: Source, group: list[tuple[int, LoadedImage]], folder: Path | None) -> Batch:
    indices = [i for i, _ in group]
    return Batch(
        indices=indices,
        scans=[scan for _, scan in group],
        names=[source.names[i] for i in indices],
        labels=None if source.labels is None else [source.labels[i] for i in indices],
        truths=None if source.truths is None else [source.truths[i] for i in indices],
        folder=folder,
    )


def _write(
    source: Source, index: int, folder: Path | None, fingerprint: str, result: dict[str, Any]
) -> dict[str, Any]:
    """The input's record (its outputs are written already), atomically: the mark that it is
    done, or that it failed (``result["failed"]``)."""
    record = {
        "name": source.names[index],
        "index": index,
        "identity": source.identity(index),
        "fingerprint": fingerprint,
        **result,
    }
    if folder is not None:
        write_json(folder / RECORDS / f"{record['name']}.json", record)
    return record
