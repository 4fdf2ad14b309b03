"""The one mean ± std every metric summary uses."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def mean_std(values: torch.Tensor) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), in float64."""
    values = values.detach().double().flatten()
    std = float(values.std()) if values.numel() > 1 else 0.0
    return float(values.mean()), std


@dataclass(frozen=True)
class PerSample:
    """One value per sample ``(B,)`` and its summary (mean ± std over the finite values)."""

    values: torch.Tensor
    name: str = "value"

    def summary(self) -> dict[str, float]:
        finite = self.values[torch.isfinite(self.values)]
        if not len(finite):
            return {self.name: float("nan"), f"{self.name}_std": float("nan")}
        mean, std = mean_std(finite)
        return {self.name: mean, f"{self.name}_std": std}


@dataclass(frozen=True)
class PerStep:
    """A batch metric's value per removal step ``(n,)``, computed across the samples of the batch
    (so it depends on the batch, not on one sample), with the share of positions removed after
    each step ``(n,)``; the summary is mean ± std over the steps."""

    values: torch.Tensor
    removed: torch.Tensor
    name: str = "value"

    def summary(self) -> dict[str, float]:
        return PerSample(self.values, self.name).summary()
