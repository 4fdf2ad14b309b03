"""Contrastivity and sensitivity of explanations (Nagy, Nimara & Qian; Yeh et al. 2019); 2D, 3D."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from camscope.engine.relay import said_once
from camscope.errors import InputError
from camscope.metrics._shapes import explanation_maps
from camscope.metrics._stats import mean_std
from camscope.postprocess import normalize

__all__ = [
    "ContrastivityResult",
    "SensitivityResult",
    "contrastivity",
    "max_sensitivity",
    "one_pixel_sensitivity",
]


@dataclass(frozen=True)
class ContrastivityResult:
    """Per-sample contrastivity ``(B,)`` in [0, 1]."""

    values: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation over the samples."""
        mean, std = mean_std(self.values)
        return {"contrastivity": mean, "contrastivity_std": std}


def contrastivity(maps: Any, targets: Any, *, threshold: float = 0.15) -> ContrastivityResult:
    """How different the target class's map is from every other class's map (Nagy, Nimara & Qian).

    Each map is min-max scaled and binarised at ``threshold``; for each other class the Hamming
    distance to the target's binary map is divided by the size of their union; the result is the
    mean over the other classes, in [0, 1] (1: disjoint regions; 0: identical).

    Args:
        maps: ``(B, K, *S)`` one map per class (e.g. ``targets="all"``), any resolution, or
            such an Explanation.
        targets: ``(B,)`` (or ``(B, 1)``) the class of each sample.
        threshold: where the min-max scaled maps are binarised.

    Returns:
        Per-sample contrastivity ``(B,)`` and its summary.
    """
    maps, _ = explanation_maps(maps)
    targets = torch.as_tensor(targets)
    if targets.ndim == 2 and targets.shape[1] == maps.shape[1] and targets.shape[1] > 1:
        raise InputError(
            f"targets {tuple(targets.shape)} name the class of every map; contrastivity needs "
            "the class of each sample (B,), e.g. the labels or e.outputs.argmax(1)"
        )
    if targets.ndim == 2 and targets.shape[1] == 1:
        targets = targets[:, 0]
    if maps.ndim < 3 or maps.shape[1] < 2:
        raise InputError(f"maps must be (B, K, *S) with K ≥ 2 classes, got {tuple(maps.shape)}")
    if targets.shape != (maps.shape[0],):
        raise InputError(f"targets must be (B,) = ({maps.shape[0]},), got {tuple(targets.shape)}")
    binary = normalize(maps.detach().double(), kind="minmax").flatten(2) >= threshold
    batch, classes = binary.shape[:2]
    own = binary[torch.arange(batch), targets.long()][:, None]  # (B, 1, Z)
    differ = (own ^ binary).sum(dim=2).double()
    union = (own | binary).sum(dim=2).double()
    ratio = torch.where(union > 0, differ / union.clamp_min(1), torch.zeros_like(union))
    others = torch.ones(batch, classes, dtype=torch.bool)
    others[torch.arange(batch), targets.long()] = False
    return ContrastivityResult(values=(ratio * others).sum(dim=1) / (classes - 1))


@dataclass(frozen=True)
class SensitivityResult:
    """Per-sample sensitivity and the perturbation radius used."""

    values: torch.Tensor
    radius: float

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation over the samples."""
        mean, std = mean_std(self.values)
        return {"sensitivity": mean, "sensitivity_std": std}


Explainer = Callable[[torch.Tensor], torch.Tensor]


@said_once
def max_sensitivity(
    explainer: Explainer,
    inputs: torch.Tensor,
    *,
    radius: float = 0.02,
    n_samples: int = 10,
    relative: bool = True,
    seed: int = 0,
) -> SensitivityResult:
    """Max-sensitivity (Yeh et al. 2019): the largest change of the explanation under uniform
    input perturbations in an L∞ ball of ``radius``.

    Args:
        explainer: ``inputs (B, C, *S) -> maps (B, *s)`` (e.g. a lambda around
            :func:`camscope.explain` taking ``.maps[:, 0]``); called ``n_samples + 1`` times on
            whole batches.
        inputs: the batch.
        radius: perturbation bound, in input units.
        n_samples: perturbations drawn (seeded).
        relative: divide by the norm of the unperturbed explanation (scale-free).
        seed: for the perturbations.

    Returns:
        ``(B,)`` ``max_δ ‖E(x + δ) − E(x)‖ (/ ‖E(x)‖)``.
    """
    reference = explainer(inputs).detach().double().flatten(1)
    generator = torch.Generator().manual_seed(seed)
    worst = torch.zeros(inputs.shape[0], dtype=torch.float64)
    for _ in range(n_samples):
        noise = (
            torch.rand(inputs.shape, generator=generator, dtype=torch.float64) * 2 - 1
        ) * radius
        perturbed = explainer(inputs + noise.to(inputs)).detach().double().flatten(1)
        worst = torch.maximum(worst, (perturbed - reference).norm(dim=1))
    if relative:
        worst = worst / reference.norm(dim=1).clamp_min(1e-30)
    return SensitivityResult(values=worst, radius=radius)


@said_once
def one_pixel_sensitivity(
    explainer: Explainer, inputs: torch.Tensor, *, delta: float = 1.0
) -> SensitivityResult:
    """The seed's one-pixel variant: change the input at the map's arg-max position by ``delta``
    (every channel) and report ``|E'(p) − E(p)| / max |E|`` at that position ``p``.

    Maps must be at input resolution (upsample inside ``explainer`` if needed).
    """
    reference = explainer(inputs).detach().double()
    if reference.shape[1:] != inputs.shape[2:]:
        raise InputError(
            f"maps {tuple(reference.shape)} must be at the input's resolution "
            f"{tuple(inputs.shape[2:])}; upsample them in the explainer"
        )
    flat = reference.flatten(1)
    peak = flat.argmax(dim=1)
    changed = inputs.clone()
    view = changed.flatten(2)
    view[torch.arange(len(peak)), :, peak] += delta
    after = explainer(view.view_as(inputs)).detach().double().flatten(1)
    batch = torch.arange(len(peak))
    scale = flat.abs().amax(dim=1).clamp_min(1e-30)
    return SensitivityResult(
        values=(after[batch, peak] - flat[batch, peak]).abs() / scale, radius=delta
    )
