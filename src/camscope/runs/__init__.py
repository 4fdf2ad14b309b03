"""Runs over many inputs: one runner, with jobs and backends as plug-ins.

* :mod:`~camscope.runs.runner`: :func:`run_job`: a job over a source, in fixed batches, with
  per-input records, resumable, and a manifest built from the records.
* :mod:`~camscope.runs.identity`: digests of data and settings that say whether a run may resume.
* :mod:`~camscope.runs.job`: the :class:`Job` protocol (what a run computes per batch).
* :mod:`~camscope.runs.sources`: inputs from files or from tensors in memory.
* :mod:`~camscope.runs.backends`: ``local`` (this process, reading ahead in threads) and ``ray``.
* :mod:`~camscope.runs.explain`: the explain job (``camscope explain``).
* :mod:`~camscope.runs.dataset`: folder / glob / manifest CSV → inputs in a fixed order.
* :mod:`~camscope.runs.records`, :mod:`~camscope.runs.batch`, :mod:`~camscope.runs.loader`:
  records and output names, one batch on any backend, reading ahead.

The evaluation job lives with the evaluation (:mod:`camscope.evaluation.job`).
"""

from __future__ import annotations

from camscope.runs.dataset import Dataset, resolve_dataset
from camscope.runs.explain import ExplainJob, ExplainSettings, explain_files
from camscope.runs.job import Batch, Job
from camscope.runs.runner import RunSummary, run_job
from camscope.runs.sources import FileSource, Source, TensorSource

__all__ = [
    "Batch",
    "Dataset",
    "ExplainJob",
    "ExplainSettings",
    "FileSource",
    "Job",
    "RunSummary",
    "Source",
    "TensorSource",
    "explain_files",
    "resolve_dataset",
    "run_job",
]
