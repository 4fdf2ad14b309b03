"""Sum-to-score (Zhao et al. 2018, Table 1): do a map's totals follow the class scores?

For each sample and each class ``c``, ``s_c = Σ_s L^c`` over the raw map at layer resolution.
``L1 = (1/K) Σ_c |s_c − y_c|`` and Kendall's ``τ = (P − Q)/(P + Q)`` between the orders of ``y``
and ``s`` over pairs of classes (tied pairs count in neither). Meaningless on normalised maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from camscope.errors import InputError
from camscope.metrics._stats import mean_std

__all__ = ["SumToScore", "kendall_tau", "sum_to_score"]


@dataclass(frozen=True)
class SumToScore:
    """Per-sample sum-to-score values.

    Attributes:
        l1: ``(B,)`` mean absolute difference between map totals and scores.
        kendall_tau: ``(B,)`` rank agreement of totals and scores, in ``[-1, 1]``.
        sums: ``(B, K)`` the map totals ``s``.
    """

    l1: torch.Tensor
    kendall_tau: torch.Tensor
    sums: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Mean and (sample) standard deviation of both values over the batch."""
        l1_mean, l1_std = mean_std(self.l1)
        kt_mean, kt_std = mean_std(self.kendall_tau)
        return {"l1": l1_mean, "l1_std": l1_std, "kendall_tau": kt_mean, "kendall_tau_std": kt_std}


def kendall_tau(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Kendall's τ-a, ``(P − Q)/(P + Q)``, between rows of two ``(B, K)`` tensors.

    Pairs tied in either row count as neither concordant nor discordant; a row with no untied
    pair gives 0.
    """
    if first.shape != second.shape or first.ndim != 2:
        raise InputError(
            f"kendall_tau needs two (B, K) tensors of one shape, got {tuple(first.shape)} and "
            f"{tuple(second.shape)}"
        )
    a = torch.sign(first[:, :, None] - first[:, None, :])
    b = torch.sign(second[:, :, None] - second[:, None, :])
    product = a * b  # each unordered pair counted twice, which cancels in the ratio
    concordant = (product > 0).sum(dim=(1, 2))
    discordant = (product < 0).sum(dim=(1, 2))
    total = concordant + discordant
    tau = (concordant - discordant).to(first.dtype) / total.clamp_min(1).to(first.dtype)
    return torch.where(total > 0, tau, torch.zeros_like(tau))


def sum_to_score(maps: Any, scores: torch.Tensor | None = None) -> SumToScore:
    """Sum-to-score of raw maps against the scores they explain.

    Args:
        maps: raw maps ``(B, K, *s)``, one per class (``targets="all"``), or such an
            Explanation (its maps and scores; input-space maps summed over channels).
        scores: ``(B, K)`` the explained scores (logits); ``None`` with an Explanation.

    Returns:
        Per-sample ``l1`` and ``kendall_tau``, and the totals.

    Raises:
        InputError: shapes that do not match.
    """
    if not isinstance(maps, torch.Tensor) and hasattr(maps, "scores"):
        scores = maps.scores if scores is None else scores
        maps = maps.reduce_channels("sum").maps if maps.per_channel else maps.maps
    if scores is None:
        raise InputError("sum_to_score needs the scores (B, K) the maps explain")
    if maps.ndim < 3 or scores.ndim != 2 or maps.shape[:2] != scores.shape:
        raise InputError(
            f"sum_to_score needs maps (B, K, *s) and scores (B, K), got {tuple(maps.shape)} and "
            f"{tuple(scores.shape)}"
        )
    sums = maps.flatten(start_dim=2).sum(dim=2)
    scores = scores.to(sums.dtype)
    return SumToScore(
        l1=(sums - scores).abs().mean(dim=1),
        kendall_tau=kendall_tau(scores, sums),
        sums=sums,
    )
