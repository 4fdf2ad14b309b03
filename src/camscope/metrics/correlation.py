"""Faithfulness by correlation: does the map predict what removing or perturbing the input does?

* :func:`faithfulness_correlation` (Bhatt et al. 2020): random subsets of positions are set to a
  baseline; the correlation, over the subsets, between the map's total on the subset and the drop
  of the target's output.
* :func:`infidelity` (Yeh et al. 2019): the expected squared difference between the map's
  prediction of a random perturbation's effect (``Σ I ⊙ map``) and the actual change of the
  output (``f(x) − f(x − I)``); lower is better.
* :func:`occlusion_agreement`: the rank correlation between a method's map and the occlusion map
  of the same target (the Grad-CAM paper's faithfulness test).

Maps are one per sample ``(B, *s)`` (upsampled linearly to the input when coarser; or an
Explanation); every input channel of a position is treated alike. All perturbed inputs go
through the model in batches, and every draw is seeded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from camscope.engine import any_model
from camscope.errors import InputError
from camscope.metrics._stats import PerSample
from camscope.metrics.faithfulness import _check, _input_maps, target_outputs
from camscope.metrics.randomization import Similarity, map_similarity

__all__ = ["faithfulness_correlation", "infidelity", "occlusion_agreement"]


def _scores(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int,
    softmax: bool,
) -> torch.Tensor:
    """Target outputs (logits, or probabilities) of ``inputs``; row ``i`` ↔ ``targets[i]``."""
    values, _ = target_outputs(model, inputs, targets, batch_size=batch_size, softmax=softmax)
    return values.double()


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    norm = (a.square().sum(1) * b.square().sum(1)).sqrt()
    return torch.where(norm > 0, (a * b).sum(1) / norm.clamp_min(1e-300), torch.zeros_like(norm))


@any_model
def faithfulness_correlation(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: Any,
    targets: Any = None,
    *,
    subset_size: int | None = None,
    runs: int = 100,
    baseline: float = 0.0,
    seed: int = 0,
    batch_size: int = 64,
    softmax: bool = False,
) -> PerSample:
    """Faithfulness correlation (Bhatt et al. 2020), per sample ``(B,)`` in [−1, 1] (``.values``).

    Args:
        model: the network (never modified).
        inputs: ``(B, C, *S)``.
        maps: one map per sample ``(B, *S)``, ``(B, 1, *s)`` or an Explanation (layer maps are
            upsampled to the input).
        targets: the class of each sample (default: the predicted class).
        subset_size: positions set to ``baseline`` per run; default 10 % of the positions.
        runs: random subsets per sample.
        baseline: the value removed positions take.
        seed: for the random subsets.
        batch_size: perturbed copies per forward pass.
        softmax: correlate with the drop of the target's probability instead of its logit.
    """
    size, maps, targets = _check(inputs, maps, targets)
    values = _input_maps(maps, size).flatten(1)
    batch, positions = values.shape
    count = max(1, positions // 10) if subset_size is None else int(subset_size)
    if not 0 < count <= positions:
        raise InputError(f"subset_size must be in 1..{positions}, got {count}")
    if int(runs) < 2:
        raise InputError(f"runs must be at least 2 (a correlation needs two points), got {runs}")
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.rand((batch, runs, positions), generator=generator).argsort(-1)[..., :count]
    masks = torch.zeros((batch, runs, positions), dtype=torch.bool)
    masks.scatter_(2, chosen, True)
    totals = (values[:, None, :] * masks).sum(-1)  # (B, R)
    spatial = masks.view(batch * runs, 1, *size).to(inputs.device)
    repeated = inputs.repeat_interleave(runs, dim=0)
    perturbed = torch.where(spatial, torch.full_like(repeated, baseline), repeated)
    rows = targets.repeat_interleave(runs)
    original = _scores(model, inputs, targets, batch_size=batch_size, softmax=softmax)
    after = _scores(model, perturbed, rows, batch_size=batch_size, softmax=softmax)
    drops = original[:, None] - after.view(batch, runs)
    return PerSample(_pearson(totals, drops), "faithfulness_correlation")


@any_model
def infidelity(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: Any,
    targets: Any = None,
    *,
    noise_std: float = 0.1,
    samples: int = 50,
    normalize: bool = False,
    seed: int = 0,
    batch_size: int = 64,
) -> PerSample:
    """Infidelity (Yeh et al. 2019; Captum's definition), per sample ``(B,)`` (``.values``);
    lower is better.

    ``E_I[(Σ I ⊙ map − (f(x) − f(x − I)))²]`` with ``I ~ N(0, noise_std²)`` drawn per input
    value (seeded); ``f`` is the target's logit. With ``normalize`` the map is first scaled by
    the least-squares factor ``β = E[Σ I⊙map · Δf] / E[(Σ I⊙map)²]`` (infidelity up to scale).
    """
    if int(samples) < 1 or noise_std < 0:
        raise InputError(f"samples must be ≥ 1 and noise_std ≥ 0, got {samples} and {noise_std}")
    size, maps, targets = _check(inputs, maps, targets)
    values = _input_maps(maps, size)
    batch = len(targets)
    generator = torch.Generator().manual_seed(seed)
    noise = (
        torch.randn((batch, samples, *inputs.shape[1:]), generator=generator, dtype=torch.float64)
        * noise_std
    )
    predicted = (noise * values[:, None, None]).flatten(2).sum(-1)  # (B, N)
    perturbed = (inputs[:, None].double() - noise).to(inputs.dtype).flatten(0, 1)
    original = _scores(model, inputs, targets, batch_size=batch_size, softmax=False)
    after = _scores(
        model, perturbed, targets.repeat_interleave(samples), batch_size=batch_size, softmax=False
    )
    actual = original[:, None] - after.view(batch, samples)
    if normalize:
        beta = (predicted * actual).mean(1) / predicted.square().mean(1).clamp_min(1e-300)
        predicted = predicted * beta[:, None]
    return PerSample((predicted - actual).square().mean(1), "infidelity")


@any_model
def occlusion_agreement(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: Any,
    targets: Any = None,
    *,
    similarity: Similarity = "spearman",
    **occlusion_options: Any,
) -> PerSample:
    """Rank correlation ``(B,)`` between each map (at input resolution) and the occlusion map of
    the same target (``occlusion_options``: ``window``, ``stride``, ``baseline``, ...)."""
    from camscope.explain import explain

    size, maps, targets = _check(inputs, maps, targets)
    occluded = explain(
        model, inputs, method="occlusion", targets=targets, progress=False, **occlusion_options
    )
    reference = occluded.reduce_channels().maps[:, 0]
    return PerSample(
        map_similarity(_input_maps(maps, size), reference, similarity), "occlusion_agreement"
    )
