"""Complexity of a map: how concentrated its attribution is (Quantus's complexity family).

Each function takes maps ``(B, *S)`` (``(B, C, *S)`` or an Explanation with one map per sample
are flattened the same way: every element of a sample counts) and returns a
:class:`~camscope.metrics._stats.PerSample`. As in Quantus 0.6 by default, each map is first
divided by its largest absolute value and then taken in absolute value (``normalise=True``,
``abs=True``); the formulas are written once over whole batches, 2D and 3D alike.

One difference: Quantus 0.6 divides the whole batch by the batch's largest value (its
``normalise_by_max`` reduces over every axis, the batch's too), so a sample's effective complexity
depends on the samples beside it. camscope divides each sample by its own largest value; the two
agree on a batch of one (Sparseness and Complexity do not change with the scale at all).
"""

from __future__ import annotations

from typing import Any

import torch

from camscope.errors import InputError
from camscope.metrics._shapes import one_map_per_sample
from camscope.metrics._stats import PerSample

__all__ = ["complexity", "effective_complexity", "sparseness"]


def _prepared(saliency: Any, normalise: bool, absolute: bool) -> torch.Tensor:
    """``(B, N)`` float64 values: each sample's map divided by its largest ``|value|`` (when
    ``normalise``), then in absolute value (when ``absolute``): Quantus's order."""
    if isinstance(saliency, torch.Tensor):
        maps = saliency
    else:  # an Explanation: one map per sample, channels reduced as shown
        maps, _ = one_map_per_sample(saliency, None)
    if not isinstance(maps, torch.Tensor) or maps.ndim < 2:
        raise InputError("saliency must be a tensor (B, *S) or an Explanation")
    values = maps.detach().double().flatten(1)
    if not bool(torch.isfinite(values).all()):
        raise InputError("saliency contains NaN or infinite values")
    if normalise:
        values = values / values.abs().amax(1, keepdim=True)
    return values.abs() if absolute else values


def sparseness(saliency: Any, *, normalise: bool = True, absolute: bool = True) -> PerSample:
    """Sparseness (Chalasani et al. 2020): the Gini index of the attribution.

    With the ``N`` values sorted ascending, ``a_(i) + 10⁻⁷``:
    ``G = Σ_i (2i − N − 1) a_(i) / (N Σ_i a_(i))``; 0 for a uniform map, near 1 when one element
    holds everything. Higher is sparser.

    Args:
        saliency: ``(B, *S)`` maps (or an Explanation with one map per sample).
        normalise: divide each map by its largest absolute value first (Quantus's default).
        absolute: take absolute values (Quantus's default).
    """
    values = _prepared(saliency, normalise, absolute) + 1e-7
    ordered = values.sort(dim=1).values
    count = ordered.shape[1]
    ranks = torch.arange(1, count + 1, dtype=ordered.dtype)
    gini = ((2 * ranks - count - 1) * ordered).sum(1) / (count * ordered.sum(1))
    return PerSample(gini, "sparseness")


def complexity(saliency: Any, *, normalise: bool = True, absolute: bool = True) -> PerSample:
    """Complexity (Bhatt et al. 2020): the entropy of the attribution's shares.

    ``p_i = |a_i| / Σ_j |a_j|``, ``H = −Σ_i p_i ln(p_i + 10⁻¹²)``: 0 when one element holds
    everything, ``ln N`` for a uniform map. Lower is simpler.

    Args:
        saliency: as for :func:`sparseness`.
        normalise: as for :func:`sparseness`.
        absolute: as for :func:`sparseness`.
    """
    values = _prepared(saliency, normalise, absolute)
    shares = values / values.abs().sum(1, keepdim=True)
    return PerSample(-(shares * torch.log(shares + 1e-12)).sum(1), "complexity")


def effective_complexity(
    saliency: Any, *, eps: float = 1e-5, normalise: bool = True, absolute: bool = True
) -> PerSample:
    """Effective complexity (Nguyen & Martínez 2020): how many elements exceed ``eps``.

    With the default normalisation the threshold is relative to each map's largest absolute
    value. Lower is simpler.

    Args:
        eps: the threshold.
        saliency: as for :func:`sparseness`.
        normalise: as for :func:`sparseness`.
        absolute: as for :func:`sparseness`.
    """
    values = _prepared(saliency, normalise, absolute)
    return PerSample((values > eps).sum(1).double(), "effective_complexity")
