"""Runs over many files: explain or evaluate a dataset, resumable, locally or on Ray.

* :mod:`~camscope.runs.dataset`: folder / glob / manifest CSV → inputs in a fixed order.
* :mod:`~camscope.runs.loader`: reading ahead of the computation in threads.
* :mod:`~camscope.runs.explain`: ``camscope explain``'s engine (outputs, records, manifest).
* :mod:`~camscope.runs.evaluate`: ``camscope evaluate dataset``'s engine (per-input metrics).
* :mod:`~camscope.runs.ray_backend`: the same batches on Ray Data actors (``camscope[ray]``).
"""

from __future__ import annotations

from camscope.runs.dataset import Dataset, resolve_dataset
from camscope.runs.evaluate import evaluate_files
from camscope.runs.explain import ExplainSettings, RunSummary, explain_files

__all__ = [
    "Dataset",
    "ExplainSettings",
    "RunSummary",
    "evaluate_files",
    "explain_files",
    "resolve_dataset",
]
