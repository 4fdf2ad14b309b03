"""One batch of a run, the same on every backend: group by shape, run the job, keep failures.

An input that cannot be read, and a group of inputs that the model or the method refuses (wrong
shape or channel count, a target out of range), are reported as failures with the message;
the other inputs of the batch go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from camscope.errors import CamscopeError
from camscope.io.atomic import write_json
from camscope.io.inputs import Scan
from camscope.runs.job import Batch, Job
from camscope.runs.records import RECORDS, group_by_shape
from camscope.runs.sources import Source

__all__ = ["process_batch"]


def process_batch(
    job: Job,
    model: nn.Module,
    source: Source,
    items: Sequence[tuple[int, Scan | Exception]],
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
    for group in groups:
        indices = [i for i, _ in group]
        batch = Batch(
            indices=indices,
            scans=[scan for _, scan in group],
            names=[source.names[i] for i in indices],
            labels=None if source.labels is None else [source.labels[i] for i in indices],
            truths=None if source.truths is None else [source.truths[i] for i in indices],
            folder=folder,
        )
        try:
            results = job.run(model, batch)
        except CamscopeError as error:
            shape = tuple(batch.scans[0].data.shape)
            failed += [{"index": i, "error": f"shape {shape}: {error}"} for i in indices]
            continue
        for index, result in zip(indices, results, strict=True):
            record = {
                "name": source.names[index],
                "index": index,
                "identity": source.identity(index),
                "fingerprint": fingerprint,
                **result,
            }
            if folder is not None:
                write_json(folder / RECORDS / f"{record['name']}.json", record)
            records.append(record)
    return records, failed
