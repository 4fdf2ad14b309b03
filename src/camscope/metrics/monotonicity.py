"""Does the map's ranking follow what the model does when groups of positions change? In 2D
and 3D.

* :func:`faithfulness_estimate` (Alvarez-Melis & Jaakkola 2018): each group of positions
  removed alone; the Pearson correlation between the groups' map totals and the score drops.
* :func:`monotonicity` (Arya et al. 2019): starting from the baseline, groups added back least
  relevant first; 1 when the score never decreases.
* :func:`monotonicity_correlation` (Nguyen & Martínez 2020): each group replaced alone by
  noise; the Spearman correlation between the groups' map totals and the score's variance.
* :func:`sensitivity_n` (Ancona et al. 2018): random subsets of ``n`` positions removed; the
  Pearson correlation between the subsets' map totals and the score drops, for each ``n``.
* :func:`sensitivity_n_by_step`: Quantus's ``SensitivityN``: positions removed cumulatively in
  the map's order; per step, the correlation across the samples of the batch.
* :func:`sufficiency` (Dasgupta et al. 2022): samples whose maps are close share their
  predicted class.

Groups are the map's positions in rank order, ``steps`` equal shares (or ``features_in_step``
positions at a time, Quantus's parameter). Scores are logits unless ``softmax=True``; removed
positions take ``baseline`` (see :func:`~camscope.metrics.flipping.fill_values`). Perturbed
inputs of all samples and groups go through the model in batches, built as they are needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from camscope.engine import any_model
from camscope.errors import InputError
from camscope.metrics._stats import PerSample, PerStep
from camscope.metrics.correlation import _pearson
from camscope.metrics.faithfulness import _check, _input_maps, target_outputs
from camscope.metrics.flipping import (
    Baseline,
    fill_values,
    perturbed_scores,
    prepared_maps,
    ranked_positions,
    removal_curves,
    step_counts,
)

__all__ = [
    "faithfulness_estimate",
    "monotonicity",
    "monotonicity_correlation",
    "sensitivity_n",
    "sensitivity_n_by_step",
    "sufficiency",
]


def _group_totals(values: torch.Tensor, place: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The map's total over each group ``(B, n)``: positions whose place lies in
    ``[counts[k], counts[k + 1])``."""
    ordered = values.gather(1, place.argsort(1))  # values in rank order
    cumulative = torch.nn.functional.pad(ordered.cumsum(1), (1, 0))
    return cumulative[:, counts[1:]] - cumulative[:, counts[:-1]]


def _spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's ρ per row (average ranks for ties, as scipy)."""
    return _pearson(_average_ranks(a), _average_ranks(b))


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    ranks = torch.empty_like(values)
    for row, line in enumerate(values):
        _unique, inverse, counts = torch.unique(line, return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).double()
        ranks[row] = (ends - (counts.double() - 1) / 2)[inverse]
    return ranks


@any_model
def faithfulness_estimate(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    targets: Any = None,
    *,
    steps: int = 100,
    features_in_step: int | None = None,
    baseline: Baseline = "black",
    absolute: bool = False,
    softmax: bool = False,
    batch_size: int = 64,
) -> PerSample:
    """Faithfulness estimate (Alvarez-Melis & Jaakkola 2018), per sample in [−1, 1]: each group
    of positions (in the map's order) is removed alone from the input; the Pearson correlation
    between the groups' map totals and the drops ``y − y_group``. Higher is better. Quantus's
    ``FaithfulnessEstimate`` with ``features_in_step`` gives the same (softmax scores by default).

    Args:
        model: the classifier.
        inputs: ``(B, C, *S)``.
        saliency: ``(B, *s)`` maps or an Explanation.
        targets: ``(B,)`` classes.
        steps: number of groups (equal shares of the positions).
        features_in_step: positions per group instead of ``steps``.
        baseline: what removed positions become.
        absolute: use ``|map|``.
        softmax: score probabilities instead of logits.
        batch_size: perturbed inputs per forward pass.
    """
    _size, values, targets = prepared_maps(inputs, saliency, targets, absolute)
    batch, positions = values.shape
    counts = step_counts(positions, steps, features_in_step)
    place = ranked_positions(values, "morf")
    fill = fill_values(inputs, baseline)
    upper = counts.expand(batch, -1)
    lower = torch.nn.functional.pad(counts[:-1], (1, 0)).expand(batch, -1)
    scores = removal_curves(
        model,
        inputs,
        targets,
        place,
        upper,
        fill,
        softmax=softmax,
        batch_size=batch_size,
        low=lower,
    )  # column 0: nothing removed; column k: group k alone
    drops = scores[:, :1] - scores[:, 1:]
    return PerSample(_pearson(_group_totals(values, place, counts), drops), "faithfulness_estimate")


@any_model
def monotonicity(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    targets: Any = None,
    *,
    steps: int = 100,
    features_in_step: int | None = None,
    baseline: Baseline = "black",
    absolute: bool = True,
    softmax: bool = False,
    batch_size: int = 64,
) -> PerSample:
    """Monotonicity (Arya et al. 2019), per sample 1.0 or 0.0: starting from the baseline
    everywhere, groups of positions are put back least relevant first; 1 when the target's
    score never decreases from one step to the next. Higher is better. Quantus's
    ``Monotonicity`` gives the same (``|map|`` by default, as here).

    Args:
        model: the classifier.
        inputs: ``(B, C, *S)``.
        saliency: ``(B, *s)`` maps or an Explanation.
        targets: ``(B,)`` classes.
        steps: number of groups.
        features_in_step: positions per group instead of ``steps``.
        baseline: what the input starts as.
        absolute: use ``|map|`` (the default, as Quantus).
        softmax: score probabilities instead of logits.
        batch_size: perturbed inputs per forward pass.
    """
    _size, values, targets = prepared_maps(inputs, saliency, targets, absolute)
    batch, positions = values.shape
    counts = step_counts(positions, steps, features_in_step)
    place = ranked_positions(values, "lerf")
    start = fill_values(inputs, baseline)
    curves = removal_curves(
        model,
        start,
        targets,
        place,
        counts[1:].expand(batch, -1),
        inputs,
        softmax=softmax,
        batch_size=batch_size,
    )
    return PerSample((curves.diff(dim=1) >= 0).all(1).double(), "monotonicity")


@any_model
def monotonicity_correlation(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    targets: Any = None,
    *,
    steps: int = 50,
    features_in_step: int | None = None,
    n_samples: int = 10,
    eps: float = 1e-5,
    absolute: bool = True,
    softmax: bool = False,
    seed: int = 0,
    batch_size: int = 64,
) -> PerSample:
    """Monotonicity correlation (Nguyen & Martínez 2020), per sample in [−1, 1]: each group of
    positions is replaced alone by uniform noise (between the sample's minimum and maximum,
    ``n_samples`` draws, seeded); the Spearman correlation between the groups' map totals and
    ``mean((y_noisy − y)²) / y²`` (``/ 1`` where ``|y| < eps``). Higher is better. Quantus's
    ``MonotonicityCorrelation`` draws its noise in [0, 1] (100 draws, unseeded): the two agree
    in expectation.

    Args:
        model: the classifier.
        inputs: ``(B, C, *S)``.
        saliency: ``(B, *s)`` maps or an Explanation.
        targets: ``(B,)`` classes.
        steps: number of groups.
        features_in_step: positions per group instead of ``steps``.
        n_samples: noise draws per group.
        eps: scores smaller than this in magnitude are not divided by.
        absolute: use ``|map|`` (the default, as Quantus).
        softmax: score probabilities instead of logits.
        seed: the noise's seed.
        batch_size: perturbed inputs per forward pass.
    """
    if int(n_samples) < 1:
        raise InputError(f"n_samples must be at least 1, got {n_samples}")
    size, values, targets = prepared_maps(inputs, saliency, targets, absolute)
    batch, positions = values.shape
    counts = step_counts(positions, steps, features_in_step)
    groups = len(counts) - 1
    place = ranked_positions(values, "lerf")
    flat = inputs.detach().flatten(1)
    low, high = flat.amin(1), flat.amax(1)
    generator = torch.Generator().manual_seed(seed)
    view = (-1,) + (1,) * (inputs.ndim - 1)

    def frames(sample: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        group = step % groups
        rank = place[sample]
        mask = (rank >= counts[group][:, None]) & (rank < counts[group + 1][:, None])
        noise = torch.rand(
            (len(sample), *inputs.shape[1:]), generator=generator, dtype=torch.float64
        ).to(inputs)
        noise = low[sample].view(view) + (high - low)[sample].view(view) * noise
        return torch.where(mask.view(-1, 1, *size).to(inputs.device), noise, inputs[sample])

    original, _ = target_outputs(model, inputs, targets, batch_size=batch_size, softmax=softmax)
    original = original.double()
    scores = perturbed_scores(
        model, targets, frames, groups * int(n_samples), softmax=softmax, batch_size=batch_size
    ).view(batch, int(n_samples), groups)
    weight = torch.where(original.abs() >= eps, original.abs().clamp_min(1e-300) ** -2, 1.0)
    variance = (scores - original[:, None, None]).square().mean(1) * weight[:, None]
    totals = _group_totals(values, place, counts)
    return PerSample(_spearman(totals, variance), "monotonicity_correlation")


@any_model
def sensitivity_n(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    targets: Any = None,
    *,
    sizes: Sequence[int] | None = None,
    runs: int = 20,
    baseline: Baseline = "black",
    softmax: bool = False,
    seed: int = 0,
    batch_size: int = 64,
) -> PerSample:
    """Sensitivity-n (Ancona et al. 2018): for each subset size ``n``, ``runs`` random subsets
    of ``n`` positions are removed (seeded); the Pearson correlation, over the subsets, between
    the map's total on the subset and the drop of the target's score. ``values`` is ``(B, N)``,
    one column per size; the summary averages all. 1 for every ``n`` means the map is
    completely faithful to removal (as for a linear model's exact map).

    Quantus's ``SensitivityN`` differs: it removes positions cumulatively in the map's order and
    correlates across the samples of a batch, so its value depends on the batch; that form is
    :func:`sensitivity_n_by_step`.

    Args:
        model: the classifier.
        inputs: ``(B, C, *S)``.
        saliency: ``(B, *s)`` maps or an Explanation.
        targets: ``(B,)`` classes.
        sizes: subset sizes ``n``; default 10 sizes from 1 % to 80 % of the positions,
            evenly spaced on a log scale.
        runs: random subsets per size and sample (≥ 2).
        baseline: what removed positions become.
        softmax: score probabilities instead of logits.
        seed: the subsets' seed.
        batch_size: perturbed inputs per forward pass.
    """
    size, maps, targets = _check(inputs, saliency, targets)
    values = _input_maps(maps, size).flatten(1)
    batch, positions = values.shape
    if sizes is None:
        grid = torch.logspace(-2, torch.log10(torch.tensor(0.8)), 10, dtype=torch.float64)
        sizes = sorted({max(1, round(float(f) * positions)) for f in grid})
    chosen = [int(n) for n in sizes]
    if not chosen or any(not 1 <= n <= positions for n in chosen):
        raise InputError(f"sizes must lie in 1..{positions} (the positions), got {list(sizes)}")
    if int(runs) < 2:
        raise InputError(f"runs must be at least 2 (a correlation needs two points), got {runs}")
    generator = torch.Generator().manual_seed(seed)
    limit = torch.tensor(chosen).repeat_interleave(runs)  # (N·R,)
    # a random order of the positions per (size, run) of each sample: the first n are removed
    draws = torch.rand((batch, len(limit), positions), generator=generator)
    removed = draws.argsort(-1).argsort(-1) < limit[:, None]  # (B, N·R, Z)
    totals = (values[:, None, :] * removed).sum(-1)  # (B, N·R)
    fill = fill_values(inputs, baseline, seed=seed)

    def frames(sample: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        mask = removed[sample, step].view(-1, 1, *size).to(inputs.device)
        return torch.where(mask, fill[sample], inputs[sample])

    original, _ = target_outputs(model, inputs, targets, batch_size=batch_size, softmax=softmax)
    after = perturbed_scores(
        model, targets, frames, len(chosen) * runs, softmax=softmax, batch_size=batch_size
    )
    drops = original.double()[:, None] - after
    shape = (batch * len(chosen), runs)
    correlation = _pearson(totals.reshape(shape), drops.reshape(shape)).view(batch, len(chosen))
    return PerSample(correlation, "sensitivity_n")


@any_model
def sensitivity_n_by_step(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    targets: Any = None,
    *,
    features_in_step: int = 1,
    n_max_percentage: float = 0.8,
    totals: str = "step",
    baseline: Baseline = "black",
    absolute: bool = False,
    softmax: bool = False,
    batch_size: int = 64,
) -> PerStep:
    """Sensitivity-n as Quantus 0.6's ``SensitivityN`` computes it: positions removed
    cumulatively, most relevant first, ``features_in_step`` at a time; after each step ``k``,
    the Pearson correlation *across the samples of the batch* between the score drop
    ``y(x) − y(x after k steps)`` and the map's total. ``values`` is ``(n,)``, one per step up to
    ``n_max_percentage`` of the positions (Quantus's ``int(p·Z // features_in_step)`` steps); the
    summary averages them, as Quantus's default aggregate does. A batch metric: a sample's
    contribution depends on the other samples (use :func:`sensitivity_n` for a value per sample).

    ``totals="step"`` (the default, Quantus's) takes the map's total over the positions removed
    *at* step ``k`` alone, while the drop is that of all positions removed so far;
    ``totals="removed"`` takes the total over all removed positions, the pairing Ancona et
    al.'s definition makes (map total of a set against the drop of removing that set).

    Args:
        model: the classifier.
        inputs: ``(B, C, *S)``, at least two samples.
        saliency: ``(B, *s)`` maps or an Explanation.
        targets: ``(B,)`` classes.
        features_in_step: positions removed per step.
        n_max_percentage: the share of the positions whose steps are correlated.
        totals: ``"step"`` or ``"removed"`` (see above).
        baseline: what removed positions become.
        absolute: rank and sum ``|map|``.
        softmax: score probabilities instead of logits.
        batch_size: perturbed inputs per forward pass.
    """
    if totals not in ("step", "removed"):
        raise InputError(f"totals must be 'step' or 'removed', not {totals!r}")
    if not 0 < float(n_max_percentage) <= 1:
        raise InputError(f"n_max_percentage must lie in (0, 1], got {n_max_percentage}")
    _size, values, targets = prepared_maps(inputs, saliency, targets, absolute)
    batch, positions = values.shape
    if batch < 2:
        raise InputError("sensitivity_n_by_step correlates across samples: give at least two")
    counts = step_counts(positions, 1, features_in_step)
    kept = int(float(n_max_percentage) * positions // int(features_in_step))
    if kept < 1:
        raise InputError(
            f"n_max_percentage={n_max_percentage} of {positions} positions is less than one step "
            f"of {features_in_step}: raise it or lower features_in_step"
        )
    counts = counts[: kept + 1]
    place = ranked_positions(values, "morf")
    curves = removal_curves(
        model,
        inputs,
        targets,
        place,
        counts.expand(batch, -1),
        fill_values(inputs, baseline),
        softmax=softmax,
        batch_size=batch_size,
    )
    drops = curves[:, :1] - curves[:, 1:]  # (B, n)
    sums = _group_totals(values.double(), place, counts)  # (B, n): the map's total of each step
    if totals == "removed":
        sums = sums.cumsum(1)
    removed = counts[1:].double() / positions
    return PerStep(_pearson(drops.T, sums.T), removed, "sensitivity_n_by_step")


@any_model
def sufficiency(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    *,
    threshold: float = 0.6,
    absolute: bool = True,
    batch_size: int = 64,
) -> PerSample:
    """Sufficiency (Dasgupta et al. 2022), per sample in [0, 1]: among the other samples of the
    batch whose maps lie within ``threshold`` of its own, the share the model puts in the same
    class (0 when none is that close). Distances are standardised Euclidean (each position
    scaled by its variance over the batch), divided by the largest distance in the batch, as
    Quantus's ``Sufficiency``. Higher is better.

    Args:
        model: the classifier.
        inputs: ``(B, C, *S)``.
        saliency: ``(B, *s)`` maps or an Explanation (any targets: the prediction is compared).
        threshold: the largest normalised distance counted as close, in [0, 1].
        absolute: use ``|map|`` (the default, as Quantus).
        batch_size: inputs per forward pass.
    """
    zeros = torch.zeros(len(inputs), dtype=torch.long)
    _, values, _ = prepared_maps(inputs, saliency, zeros, absolute)
    variance = values.var(0, correction=1)
    scale = torch.where(variance > 0, variance, 1.0).rsqrt()
    distances = torch.cdist(values * scale, values * scale)
    largest = distances.max()
    if largest > 0:
        distances = distances / largest
    close = (distances <= threshold) & ~torch.eye(len(values), dtype=torch.bool)
    _, predicted = target_outputs(model, inputs, zeros, batch_size=batch_size)
    same = predicted[None, :] == predicted[:, None]
    count = close.sum(1)
    share = (close & same).sum(1).double() / count.clamp_min(1)
    return PerSample(torch.where(count > 0, share, 0.0), "sufficiency")
