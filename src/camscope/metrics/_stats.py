"""The one mean ± std every metric summary uses."""

from __future__ import annotations

import torch


def mean_std(values: torch.Tensor) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), in float64."""
    values = values.detach().double().flatten()
    std = float(values.std()) if values.numel() > 1 else 0.0
    return float(values.mean()), std
