"""Removal curves: the target's score as input regions are removed in the order the map ranks
them, in 2D and 3D.

* :func:`pixel_flipping` (Bach et al. 2015): positions, most relevant first.
* :func:`region_perturbation` (Samek et al. 2017): square (cubic in 3D) patches of a grid,
  ranked by the map's sum over each; the score is the area over the perturbation curve (AOPC).
* :func:`selectivity` (Montavon et al. 2018): the same patches, all of them; the area under the
  curve.
* :func:`irof` (Rieger & Hansen 2020): superpixels (supervoxels in 3D) ranked by the map's mean
  over each; the area over the normalised curve.

Every metric removes a region in every input channel, replacing it by ``baseline`` (a number;
``"black"`` / ``"white"`` the sample's minimum / maximum, ``"mean"`` its mean, ``"uniform"``
seeded noise between them). Every curve starts from the unperturbed input. The scores are the
target's outputs (logits) unless ``softmax=True``. All perturbed copies of all samples and steps
go through the model in batches (built as they are needed, so memory stays bounded), with no
autograd. Quantus's conventions, where they differ, are said in each docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from camscope.engine import any_model
from camscope.errors import InputError
from camscope.methods.perturbation import segment_labels
from camscope.metrics._stats import mean_std
from camscope.metrics.faithfulness import _check, _input_maps, target_outputs

__all__ = [
    "RemovalResult",
    "fill_values",
    "grid_labels",
    "irof",
    "pixel_flipping",
    "region_perturbation",
    "selectivity",
]

Baseline = float | Literal["black", "white", "mean", "uniform"]
Order = Literal["morf", "lerf", "random"]


@dataclass(frozen=True)
class RemovalResult:
    """A removal metric's value per sample and the curves it comes from.

    Attributes:
        values: ``(B,)`` the metric (see the function's docstring).
        curves: ``(B, n + 1)`` the target's score after removing ``0 … n`` steps' regions
            (column 0: the unperturbed input; NaN past a sample's last step).
        removed: ``(B, n + 1)`` the share of positions removed at each step.
        name: the metric's name in :meth:`summary`.
    """

    values: torch.Tensor
    curves: torch.Tensor
    removed: torch.Tensor
    name: str

    def summary(self) -> dict[str, float]:
        """Mean ± std of :attr:`values`."""
        mean, std = mean_std(self.values)
        return {self.name: mean, f"{self.name}_std": std}


def fill_values(inputs: torch.Tensor, baseline: Baseline, *, seed: int = 0) -> torch.Tensor:
    """What removed positions become, ``(B, C, *S)``: a number, or per sample its minimum
    (``"black"``), maximum (``"white"``), mean (``"mean"``), or uniform noise between its
    minimum and maximum (``"uniform"``, seeded; the same noise at every step)."""
    if isinstance(baseline, bool) or not isinstance(baseline, int | float | str):
        raise InputError(
            f"baseline must be a number or one of 'black', 'white', 'mean', 'uniform', "
            f"got {baseline!r:.40}"
        )
    if isinstance(baseline, int | float):
        if not math.isfinite(baseline):
            raise InputError(f"baseline must be finite, got {baseline}")
        return torch.full_like(inputs, float(baseline))
    flat = inputs.detach().flatten(1)
    view = (-1,) + (1,) * (inputs.ndim - 1)
    low, high = flat.amin(1).view(view), flat.amax(1).view(view)
    if baseline == "black":
        return low.expand_as(inputs).clone()
    if baseline == "white":
        return high.expand_as(inputs).clone()
    if baseline == "mean":
        return flat.mean(1).view(view).expand_as(inputs).clone()
    if baseline == "uniform":
        generator = torch.Generator().manual_seed(seed)
        noise = torch.rand(inputs.shape, generator=generator, dtype=torch.float64).to(inputs)
        return low + (high - low) * noise
    raise InputError(
        f"baseline must be a number or one of 'black', 'white', 'mean', 'uniform', got {baseline!r}"
    )


def grid_labels(size: Sequence[int], patch: Sequence[int]) -> torch.Tensor:
    """The patch index of every position ``(Z,)`` for a grid of ``patch``-sized blocks from the
    origin (blocks on the far edges are cut, as padding would make them)."""
    index = torch.zeros((), dtype=torch.long)
    for axis, (length, side) in enumerate(zip(size, patch, strict=True)):
        blocks = math.ceil(length / side)
        coordinate = torch.arange(length) // side
        shape = [1] * len(size)
        shape[axis] = length
        index = index * blocks + coordinate.view(shape)
    return index.expand(*size).flatten()


def _patch(patch_size: int | Sequence[int], size: tuple[int, ...]) -> tuple[int, ...]:
    sides = (patch_size,) * len(size) if isinstance(patch_size, int) else tuple(patch_size)
    if len(sides) != len(size) or any(int(s) < 1 for s in sides):
        raise InputError(
            f"patch_size must be a positive int or one per spatial axis ({len(size)}), "
            f"got {patch_size!r}"
        )
    return tuple(int(s) for s in sides)


def _ranks(scores: torch.Tensor, present: torch.Tensor, order: Order, seed: int) -> torch.Tensor:
    """Each region's place ``(B, R)`` in the removal order; absent regions come last."""
    if order == "lerf":
        scores = -scores
    elif order == "random":
        generator = torch.Generator().manual_seed(seed)
        scores = torch.rand(scores.shape, generator=generator, dtype=torch.float64)
    elif order != "morf":
        raise InputError(f"order must be 'morf', 'lerf' or 'random', got {order!r}")
    scores = torch.where(present, scores, -math.inf)
    ordered = scores.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(ordered)
    ranks.scatter_(1, ordered, torch.arange(ordered.shape[1]).expand_as(ordered).contiguous())
    return ranks


Frames = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def perturbed_scores(
    model: nn.Module,
    targets: torch.Tensor,
    frames: Frames,
    steps: int,
    *,
    softmax: bool,
    batch_size: int,
) -> torch.Tensor:
    """The target's score ``(B, steps)`` on ``frames(samples, steps)``, the perturbed inputs of
    the given sample and step indices, built a batch at a time (all samples and steps in one
    sequence, so memory stays bounded)."""
    batch = len(targets)
    total = batch * steps
    scores = torch.empty(total, dtype=torch.float64)
    for start in range(0, total, batch_size):
        index = torch.arange(start, min(start + batch_size, total))
        step, sample = index // batch, index % batch
        values, _ = target_outputs(
            model, frames(sample, step), targets[sample], batch_size=len(index), softmax=softmax
        )
        scores[start : start + len(index)] = values.double()
    return scores.view(steps, batch).T


def removal_curves(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    place: torch.Tensor,
    counts: torch.Tensor,
    fill: torch.Tensor,
    *,
    softmax: bool,
    batch_size: int,
    low: torch.Tensor | None = None,
) -> torch.Tensor:
    """The target's score ``(B, n + 1)`` on inputs with the positions whose ``place`` ``(B, Z)``
    is below ``counts[:, k]`` (``(B, n + 1)``; and at least ``low[:, k]`` when given) replaced
    by ``fill``, for every step ``k``."""
    size = tuple(inputs.shape[2:])

    def frames(sample: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        mask = place[sample] < counts[sample, step][:, None]
        if low is not None:
            mask &= place[sample] >= low[sample, step][:, None]
        mask = mask.view(-1, 1, *size).to(inputs.device)
        return torch.where(mask, fill[sample], inputs[sample])

    return perturbed_scores(
        model, targets, frames, counts.shape[1], softmax=softmax, batch_size=batch_size
    )


def step_counts(positions: int, steps: int, features_in_step: int | None) -> torch.Tensor:
    """Positions removed after each step ``(n + 1,)``, from 0 to all: ``steps`` equal shares,
    or ``features_in_step`` at a time (the last step takes what remains)."""
    if features_in_step is not None:
        if isinstance(features_in_step, bool) or int(features_in_step) < 1:
            raise InputError(f"features_in_step must be at least 1, got {features_in_step}")
        per = int(features_in_step)
        return torch.tensor([min(k * per, positions) for k in range(-(-positions // per) + 1)])
    if not 1 <= int(steps) <= positions:
        raise InputError(f"steps must be in 1..{positions} (the positions), got {steps}")
    return torch.tensor([math.ceil(k * positions / steps) for k in range(int(steps) + 1)])


def ranked_positions(values: torch.Tensor, order: Order, seed: int = 0) -> torch.Tensor:
    """Each position's place ``(B, Z)`` in the order ``"morf"`` (largest value first),
    ``"lerf"`` or ``"random"`` (seeded)."""
    return _ranks(values, torch.ones_like(values, dtype=torch.bool), order, seed)


def _region_scores(
    values: torch.Tensor, labels: torch.Tensor, regions: int, reduce: Literal["sum", "mean"]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The map's sum or mean over each region ``(B, R)`` and which regions exist."""
    sums = torch.zeros((values.shape[0], regions), dtype=torch.float64)
    sums.scatter_add_(1, labels, values)
    sizes = torch.zeros_like(sums).scatter_add_(1, labels, torch.ones_like(values))
    if reduce == "mean":
        sums = sums / sizes.clamp_min(1)
    return sums, sizes > 0


def prepared_maps(
    inputs: torch.Tensor, saliency: Any, targets: Any, absolute: bool
) -> tuple[tuple[int, ...], torch.Tensor, torch.Tensor]:
    size, maps, targets = _check(inputs, saliency, targets)
    values = _input_maps(maps, size).flatten(1)
    return size, (values.abs() if absolute else values), targets


def trapezoid(curves: torch.Tensor) -> torch.Tensor:
    """Area under each row with unit spacing (NaNs at the end ignored)."""
    pairs = curves[:, 1:] + curves[:, :-1]
    return torch.nan_to_num(pairs, nan=0.0).sum(1) / 2


@any_model
def pixel_flipping(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    targets: Any = None,
    *,
    steps: int = 100,
    features_in_step: int | None = None,
    baseline: Baseline = "black",
    order: Order = "morf",
    absolute: bool = False,
    softmax: bool = False,
    seed: int = 0,
    batch_size: int = 64,
) -> RemovalResult:
    """Pixel flipping (Bach et al. 2015): positions removed most relevant first; the curve of the
    target's score and its area. Lower is better (MoRF).

    ``values`` is the area under the curve over the removed share ``[0, 1]`` (trapezoids over
    the ``n + 1`` points, the first being the unperturbed input). Quantus's ``PixelFlipping``
    returns the curve without its first point (``curves[:, 1:]``), its area with unit spacing,
    and the scores after softmax by default.

    Args:
        model: the classifier (eval mode, restored afterwards).
        inputs: ``(B, C, *S)``.
        saliency: ``(B, *s)`` one map per sample (any resolution: upsampled linearly), or an
            Explanation.
        targets: ``(B,)`` classes (``None`` with an Explanation: its targets).
        steps: number of removal steps, each an equal share of the positions.
        features_in_step: positions removed per step instead of ``steps`` (Quantus's
            parameter; the last step takes what remains).
        baseline: what removed positions become (see :func:`fill_values`).
        order: ``"morf"`` (most relevant first), ``"lerf"`` or ``"random"`` (seeded).
        absolute: rank by ``|map|``.
        softmax: score probabilities instead of logits.
        seed: seed of the random order and of ``"uniform"`` fills.
        batch_size: perturbed inputs per forward pass.
    """
    _size, values, targets = prepared_maps(inputs, saliency, targets, absolute)
    batch, positions = values.shape
    counts = step_counts(positions, steps, features_in_step)
    place = ranked_positions(values, order, seed)
    fill = fill_values(inputs, baseline, seed=seed)
    curves = removal_curves(
        model,
        inputs,
        targets,
        place,
        counts.expand(batch, -1),
        fill,
        softmax=softmax,
        batch_size=batch_size,
    )
    area = trapezoid(curves) / (curves.shape[1] - 1)
    removed = (counts.double() / positions).expand(batch, -1)
    return RemovalResult(area, curves, removed, "pixel_flipping")


def _patches(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    targets: Any,
    *,
    patch_size: int | Sequence[int],
    regions: int | Literal["all"] | None,
    baseline: Baseline,
    order: Order,
    absolute: bool,
    softmax: bool,
    seed: int,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Curves and removed shares for grid patches ranked by the map's sum over each."""
    size, values, targets = prepared_maps(inputs, saliency, targets, absolute)
    batch = values.shape[0]
    labels = grid_labels(size, _patch(patch_size, size)).expand(batch, -1)
    count = int(labels.max()) + 1
    if regions == "all":
        steps = count
    else:
        steps = min(count, 100) if regions is None else int(regions)
    if not 1 <= steps <= count:
        raise InputError(f"regions must be in 1..{count} (the patches), got {regions}")
    sums, present = _region_scores(values, labels, count, "sum")
    place = _ranks(sums, present, order, seed).gather(1, labels)
    counts = torch.arange(steps + 1).expand(batch, -1)
    fill = fill_values(inputs, baseline, seed=seed)
    curves = removal_curves(
        model, inputs, targets, place, counts, fill, softmax=softmax, batch_size=batch_size
    )
    removed = (place[:, None, :] < counts[:, :, None]).double().mean(2)
    return curves, removed


@any_model
def region_perturbation(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    targets: Any = None,
    *,
    patch_size: int | Sequence[int] = 8,
    regions: int | None = None,
    baseline: Baseline = "black",
    order: Order = "morf",
    absolute: bool = False,
    softmax: bool = False,
    seed: int = 0,
    batch_size: int = 64,
) -> RemovalResult:
    """Region perturbation (Samek et al. 2017): non-overlapping patches removed one per step in
    the order of the map's sum over each; ``values`` is the AOPC,
    ``mean_{k=0..n} (y_0 − y_k)``. Higher is better (MoRF).

    Quantus's ``RegionPerturbation`` returns the drops ``y_0 − y_k`` for ``k = 1 … n``
    (``curves[:, :1] − curves[:, 1:]``), scores after softmax by default.

    Args:
        model: the classifier.
        inputs: ``(B, C, *S)``.
        saliency: ``(B, *s)`` maps or an Explanation.
        targets: ``(B,)`` classes.
        patch_size: the patches' side (an int, or one per spatial axis); patches on the far
            edges are cut.
        regions: patches removed (steps); ``None``: 100 (Quantus's default) or all patches
            when there are fewer.
        baseline: what removed positions become (see :func:`fill_values`).
        order: ``"morf"``, ``"lerf"`` or ``"random"``.
        absolute: rank by ``|map|``.
        softmax: score probabilities instead of logits.
        seed: seed of the random order and of ``"uniform"`` fills.
        batch_size: perturbed inputs per forward pass.
    """
    curves, removed = _patches(
        model,
        inputs,
        saliency,
        targets,
        patch_size=patch_size,
        regions=regions,
        baseline=baseline,
        order=order,
        absolute=absolute,
        softmax=softmax,
        seed=seed,
        batch_size=batch_size,
    )
    aopc = (curves[:, :1] - curves).mean(1)
    return RemovalResult(aopc, curves, removed, "region_perturbation")


@any_model
def selectivity(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    targets: Any = None,
    *,
    patch_size: int | Sequence[int] = 8,
    baseline: Baseline = "black",
    absolute: bool = False,
    softmax: bool = False,
    batch_size: int = 64,
) -> RemovalResult:
    """Selectivity (Montavon et al. 2018): every patch removed in the order of the map's sum
    over each; ``values`` is the area under the curve of the target's score with unit spacing
    per patch, from the unperturbed input on. Lower is better.

    Quantus's ``Selectivity`` gives the area of the curve without its first point (scores after
    softmax by default).

    Args:
        model: the classifier.
        inputs: ``(B, C, *S)``.
        saliency: ``(B, *s)`` maps or an Explanation.
        targets: ``(B,)`` classes.
        patch_size: the patches' side (an int, or one per spatial axis).
        baseline: what removed positions become (see :func:`fill_values`).
        absolute: rank by ``|map|``.
        softmax: score probabilities instead of logits.
        batch_size: perturbed inputs per forward pass.
    """
    curves, removed = _patches(
        model,
        inputs,
        saliency,
        targets,
        patch_size=patch_size,
        regions="all",
        baseline=baseline,
        order="morf",
        absolute=absolute,
        softmax=softmax,
        seed=0,
        batch_size=batch_size,
    )
    return RemovalResult(trapezoid(curves), curves, removed, "selectivity")


@any_model
def irof(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    targets: Any = None,
    *,
    segments: torch.Tensor | None = None,
    n_segments: int = 100,
    compactness: float = 10.0,
    baseline: Baseline = "mean",
    absolute: bool = False,
    softmax: bool = False,
    batch_size: int = 64,
) -> RemovalResult:
    """Iterative removal of features, IROF (Rieger & Hansen 2020): segments removed one per step
    in the order of the map's mean over each; ``values`` is the area over the curve of
    ``y_k / y_0`` for ``k = 1 … M`` with unit spacing, ``M − Σ_k trapezoid`` (Quantus's
    definition; it grows with the number of segments ``M``). Higher is better.

    Segments are scikit-image's SLIC superpixels (supervoxels in 3D) of each input, or the
    user's labels. With softmax scores (Quantus's default) ``y_k / y_0`` stays in ``[0, 1]``
    when removal lowers the score; with logits it need not.

    Args:
        model: the classifier.
        inputs: ``(B, C, *S)``.
        saliency: ``(B, *s)`` maps or an Explanation.
        targets: ``(B,)`` classes.
        segments: integer labels ``(B, *S)`` or ``(*S)``; default SLIC's.
        n_segments: SLIC's approximate number of segments.
        compactness: SLIC's compactness (each input is scaled to [0, 1] first).
        baseline: what removed positions become (see :func:`fill_values`; Quantus: the mean).
        absolute: rank by ``|map|``.
        softmax: score probabilities instead of logits.
        batch_size: perturbed inputs per forward pass.
    """
    _, values, targets = prepared_maps(inputs, saliency, targets, absolute)
    labels = segment_labels(inputs, segments, n_segments=n_segments, compactness=compactness)
    labels = labels.cpu().flatten(1)
    count = int(labels.max()) + 1
    means, present = _region_scores(values, labels, count, "mean")
    place = _ranks(means, present, "morf", 0).gather(1, labels)
    present_count = present.sum(1)
    counts = torch.minimum(torch.arange(count + 1)[None], present_count[:, None])
    fill = fill_values(inputs, baseline)
    curves = removal_curves(
        model,
        inputs,
        targets,
        place,
        counts,
        fill,
        softmax=softmax,
        batch_size=batch_size,
    )
    beyond = torch.arange(count + 1)[None] > present_count[:, None]
    curves = curves.masked_fill(beyond, math.nan)
    ratio = curves[:, 1:] / curves[:, :1]
    area = present_count.double() - trapezoid(ratio)
    removed = (place[:, None, :] < counts[:, :, None]).double().mean(2)
    return RemovalResult(area, curves, removed, "irof")
