"""Coherency and ARCC (Poppi et al. 2021, with ROAD): does a CAM explain the input it masks?
In 2D and 3D.

* :func:`coherency`: the map of the input masked by its own map should be the same map; the
  Pearson correlation of the two, mapped to [0, 1].
* :func:`arcc`: the harmonic mean of coherency, ``1 − complexity`` (the map's mean value) and
  the ROAD gap: one number that rewards maps that are faithful, simple and self-consistent.

Maps are taken as pytorch-grad-cam shows them: ReLU, upsampled to the input, min-max scaled to
[0, 1] per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from camscope.engine import any_model
from camscope.metrics._stats import PerSample, mean_std
from camscope.metrics.road import road
from camscope.metrics.stability import MethodLike, _maps_of
from camscope.postprocess import normalize

__all__ = ["ARCCResult", "arcc", "coherency"]


def _shown(maps: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``(B, Z)`` maps → ``(B, *S)`` after ReLU and min-max scaling per sample."""
    shaped = torch.relu(maps).view(len(maps), 1, *inputs.shape[2:])
    return normalize(shaped, kind="minmax")[:, 0]


def _coherency(
    model: nn.Module,
    inputs: torch.Tensor,
    method: MethodLike,
    targets: torch.Tensor,
    options: dict[str, Any],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coherency ``(B,)`` and the shown maps ``(B, *S)``."""
    shown = _shown(_maps_of(model, method, inputs, targets, options), inputs)
    masked = inputs * shown[:, None].to(inputs)
    again = _shown(_maps_of(model, method, masked, targets, options), inputs)
    a, b = shown.flatten(1), again.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    count = a.shape[1] - 1
    covariance = (a * b).sum(1) / count
    spread = (a.square().sum(1) / count).sqrt() * (b.square().sum(1) / count).sqrt()
    return ((covariance / (spread + 1e-8)) + 1) / 2, shown


@any_model
def coherency(
    model: nn.Module,
    inputs: torch.Tensor,
    method: MethodLike,
    targets: Any = None,
    *,
    options: dict[str, Any] | None = None,
) -> PerSample:
    """Coherency (Poppi et al. 2021), per sample in [0, 1]: ``(ρ + 1) / 2`` with ``ρ`` the Pearson
    correlation between the shown map ``M`` of ``x`` and the shown map of ``x ⊙ M``. Higher is
    better. Equal to pytorch-grad-cam's ``Coherency``.

    Args:
        model: the classifier.
        inputs: ``(B, C, *S)``.
        method: a registered method's name or a callable ``(inputs, targets) -> maps``.
        targets: ``(B,)`` classes; default the model's predictions.
        options: the method's options, for a named method.
    """
    from camscope.metrics.randomization import _fixed_targets

    targets = _fixed_targets(model, inputs, targets)
    value, _ = _coherency(model, inputs, method, targets, dict(options or {}))
    return PerSample(value, "coherency")


@dataclass(frozen=True)
class ARCCResult:
    """ARCC per sample and its three parts, each ``(B,)``.

    Attributes:
        arcc: ``3 / (1/coherency + 1/(1 − complexity) + 1/road)`` in [0, 1]; higher is better.
        coherency: see :func:`coherency`.
        complexity: the shown map's mean value (its L1 norm per position), in [0, 1].
        road: the ROAD gap (LeRF − MoRF probability areas) clipped to [0, 1].
    """

    arcc: torch.Tensor
    coherency: torch.Tensor
    complexity: torch.Tensor
    road: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Mean ± std of ARCC and of each part."""
        out: dict[str, float] = {}
        for name in ("arcc", "coherency", "complexity", "road"):
            out[name], out[f"{name}_std"] = mean_std(getattr(self, name))
        return out


@any_model
def arcc(
    model: nn.Module,
    inputs: torch.Tensor,
    method: MethodLike,
    targets: Any = None,
    *,
    percentages: Sequence[float] = (20, 40, 60, 80),
    seed: int = 0,
    batch_size: int = 32,
    options: dict[str, Any] | None = None,
) -> ARCCResult:
    """ARCC (Poppi et al. 2021): the harmonic mean of coherency, ``1 − complexity`` and ROAD.

    ROAD is camscope's :func:`~camscope.metrics.road` on the shown map at ``percentages``: the
    gap between the LeRF and MoRF areas of the target's probability, clipped to [0, 1].
    pytorch-grad-cam's ``ARCC`` takes ``2 × (LeRF − MoRF) / 2`` of its own ROAD scores the same
    way; coherency and complexity are equal to its.

    Args:
        model: the classifier.
        inputs: ``(B, C, *S)``.
        method: a registered method's name or a callable ``(inputs, targets) -> maps``.
        targets: ``(B,)`` classes; default the model's predictions.
        percentages: ROAD's shares of positions removed.
        seed: ROAD's imputation seed.
        batch_size: ROAD's inputs per forward pass.
        options: the method's options, for a named method.
    """
    from camscope.metrics.randomization import _fixed_targets

    targets = _fixed_targets(model, inputs, targets)
    value, shown = _coherency(model, inputs, method, targets, dict(options or {}))
    complexity = shown.flatten(1).abs().mean(1)
    gap = road(
        model, inputs, shown, targets, percentages=percentages, seed=seed, batch_size=batch_size
    ).gap.clamp(0, 1)
    harmonic = 3 / (1 / (value + 1e-8) + 1 / ((1 - complexity) + 1e-8) + 1 / (gap + 1e-8))
    return ARCCResult(arcc=harmonic, coherency=value, complexity=complexity, road=gap)
