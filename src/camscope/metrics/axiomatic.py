"""Axioms a map should satisfy, checked on the model, in 2D and 3D.

* :func:`non_sensitivity` (Nguyen & Martínez 2020): a position the model ignores should get no
  relevance, and a position with no relevance should not matter to the model.
* :func:`input_invariance` (Kindermans et al. 2019): a constant shift of the input that the
  model undoes exactly must not change the map.

(Completeness, the sum of the map equal to the score's change, is :func:`~camscope.metrics.
sum_to_score`.)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from camscope.engine import any_model
from camscope.errors import InputError, LayerError
from camscope.metrics._stats import PerSample
from camscope.metrics.flipping import (
    Baseline,
    fill_values,
    prepared_maps,
    removal_curves,
    step_counts,
)
from camscope.metrics.stability import MethodLike, _maps_of

__all__ = ["input_invariance", "non_sensitivity"]


@any_model
def non_sensitivity(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    targets: Any = None,
    *,
    eps: float = 1e-5,
    features_in_step: int = 1,
    baseline: Baseline = "black",
    absolute: bool = True,
    softmax: bool = False,
    batch_size: int = 64,
) -> PerSample:
    """Non-sensitivity (Nguyen & Martínez 2020), per sample: the number of groups of
    ``features_in_step`` positions (in memory order) that break the axiom: removed alone they
    leave the target's score unchanged (``|Δy| < eps``) while the map gives them relevance
    (some ``map ≥ eps``), or they change the score while the map gives them none. 0 is best.
    Equal to Quantus's ``NonSensitivity`` (``|map|`` by default, as here) where Quantus runs
    (``features_in_step=1``). One forward pass per group: use ``features_in_step`` (e.g. a
    row) on large inputs.

    Args:
        model: the classifier.
        inputs: ``(B, C, *S)``.
        saliency: ``(B, *s)`` maps or an Explanation.
        targets: ``(B,)`` classes.
        eps: below this, a score change or a relevance counts as none.
        features_in_step: positions removed together.
        baseline: what removed positions become.
        absolute: use ``|map|``.
        softmax: score probabilities instead of logits.
        batch_size: perturbed inputs per forward pass.
    """
    _size, values, targets = prepared_maps(inputs, saliency, targets, absolute)
    batch, positions = values.shape
    counts = step_counts(positions, 1, features_in_step)
    place = torch.arange(positions).expand(batch, -1)
    lower = torch.nn.functional.pad(counts[:-1], (1, 0)).expand(batch, -1)
    scores = removal_curves(
        model,
        inputs,
        targets,
        place,
        counts.expand(batch, -1),
        fill_values(inputs, baseline),
        softmax=softmax,
        batch_size=batch_size,
        low=lower,
    )
    unchanged = (scores[:, 1:] - scores[:, :1]).abs() < eps  # (B, n)
    group = torch.arange(positions) // int(features_in_step)
    relevant = _any_per_group(values >= eps, group, unchanged.shape[1])
    return PerSample((unchanged == relevant).sum(1).double(), "non_sensitivity")


def _any_per_group(flags: torch.Tensor, group: torch.Tensor, count: int) -> torch.Tensor:
    totals = torch.zeros((flags.shape[0], count), dtype=torch.long)
    totals.index_add_(1, group, flags.long())
    return totals > 0


@any_model
def input_invariance(
    model: nn.Module,
    inputs: torch.Tensor,
    method: MethodLike,
    targets: Any = None,
    *,
    shift: float = -1.0,
    atol: float = 1e-4,
    options: dict[str, Any] | None = None,
) -> PerSample:
    """Input invariance (Kindermans et al. 2019), per sample 1.0 or 0.0: the input is shifted by
    the constant ``shift`` and the model undoes the shift before its first operation (the ideal
    form of Quantus's bias-compensated first layer, exact at padded borders too), so every
    output and every gradient is the same; 1 when the map stays the same within ``atol``.
    Gradients, Grad-CAM and occlusion pass; input × gradient and integrated gradients with a
    zero baseline do not.

    Args:
        model: the classifier (not changed: the undoing is a temporary hook).
        inputs: ``(B, C, *S)``.
        method: a registered method's name or a callable ``(inputs, targets) -> maps``.
        targets: ``(B,)`` classes; default the model's predictions.
        shift: the constant added to the input.
        atol: the largest difference counted as the same.
        options: the method's options, for a named method.
    """
    from camscope.metrics.randomization import _fixed_targets

    if isinstance(model, torch.jit.ScriptModule):
        raise LayerError(
            "input_invariance undoes the shift with a hook, which TorchScript does not run; "
            "pass the eager model"
        )
    if not isinstance(shift, int | float):
        raise InputError(f"shift must be a number, got {shift!r}")
    options = dict(options or {})
    targets = _fixed_targets(model, inputs, targets)
    original = _maps_of(model, method, inputs, targets, options)
    handle = model.register_forward_pre_hook(
        lambda _m, args: (args[0] - shift, *args[1:]) if args else None
    )
    try:
        shifted = _maps_of(model, method, inputs + shift, targets, options)
    finally:
        handle.remove()
    same = torch.isclose(original, shifted, atol=atol, rtol=1e-5).all(1)
    return PerSample(same.double(), "input_invariance")
