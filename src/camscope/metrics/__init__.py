"""Metrics that judge explanations; plain functions over batches, per-sample results."""

from __future__ import annotations

from camscope.metrics.sum_to_score import SumToScore, kendall_tau, sum_to_score

__all__ = ["SumToScore", "kendall_tau", "sum_to_score"]
