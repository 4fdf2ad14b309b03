"""Evaluation: methods × upsampling × metrics over data, as tables, plots and reports.

* :mod:`~camscope.evaluation.api`: :func:`evaluate` (tensors) and :func:`evaluate_files`.
* :mod:`~camscope.evaluation.job`: the evaluation job the dataset runner runs.
* :mod:`~camscope.evaluation.scoring`: every metric of one batch, per sample; rows from records.
* :mod:`~camscope.evaluation.results`: the table as text, CSV, JSON and plots.
X

The metrics themselves are plain functions in :mod:`camscope.metrics`.
"""

from __future__ import annotations

from camscope.evaluation.api import evaluate, evaluate_files
from camscope.evaluation.job import EvaluateJob
from camscope.evaluation.results import format_rows, write_results
from camscope.evaluation.scoring import KIM_2020_AVERAGE_DROP, EvaluationRow, score_batch

__all__ = [
    "KIM_2020_AVERAGE_DROP",
    "EvaluateJob",
    "EvaluationRow",
    "evaluate",
    "evaluate_files",
    "format_rows",
    "score_batch",
    "write_results",
]
