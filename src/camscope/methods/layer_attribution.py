"""Layer attribution: how much each channel and position of a layer carries a target, along the
straight path from a baseline to the input.

The methods here return, like the CAM family, a map ``(B, T, *s)`` at the layer (the channels
summed at each position), and in ``extras`` the full attribution ``(B, T, C, *s)`` and its total
per channel ``(B, T, C)``: which channels carry a class. Every point of the path of every sample
is one row of a batched forward pass (the trunk below the layer without autograd) and one batched
backward pass for all targets.
"""

from __future__ import annotations

import torch

from camscope.errors import MethodError
from camscope.methods.context import MethodContext, MethodResult
from camscope.methods.gradients import resolve_baseline
from camscope.methods.registry import method

__all__ = ["internal_influence", "layer_conductance", "layer_integrated_gradients"]


def _checked_steps(steps: int) -> int:
    if int(steps) < 1:
        raise MethodError(f"steps must be at least 1, got {steps}")
    return int(steps)


def _result(attributions: torch.Tensor, extras: dict[str, torch.Tensor]) -> MethodResult:
    """Channel sums as the map; the whole attribution and the per-channel totals as extras."""
    channels = attributions.flatten(3).sum(-1)
    return MethodResult(
        attributions.sum(dim=2), {"attributions": attributions, "channels": channels, **extras}
    )


@method(
    kind="layer",
    summary="internal influence: the layer's gradients integrated along the input path",
)
def internal_influence(
    context: MethodContext,
    *,
    steps: int = 50,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = None,
) -> MethodResult:
    """Internal influence (Leino et al. 2018): ``(1/m) Σ_{i=1..m} ∂y/∂h(x' + (i/m)(x − x'))``.

    The gradient at the layer ``h``, averaged over the path's points (riemann_right, as
    :func:`~camscope.methods.gradients.integrated_gradients` and Captum's ``InternalInfluence``
    with ``method="riemann_right"``). Not multiplied by any difference of activations: an
    influence per unit of activation, not a share of the score.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        steps: ``m``, points on the path.
        baseline: ``x'``: a number, one input or a batch.
        batch_size: path points per pass; default from a memory budget.

    Extras:
        ``attributions`` ``(B, T, C, *s)``; ``channels`` ``(B, T, C)``.

    References:
        Leino, Sen, Datta, Fredrikson, Li, "Influence-Directed Explanations for Deep
        Convolutional Networks", ITC 2018.
    """
    m = _checked_steps(steps)
    x = context.inputs
    reference = resolve_baseline(context, baseline)
    total: torch.Tensor | None = None
    points = context.batch_size * m
    for part in context.batches(points, batch_size or context.gradient_rows(), "influence"):
        index = torch.arange(part.start, part.stop, device=x.device)
        sample, step = index // m, index % m
        alpha = ((step + 1).to(x.dtype) / m).view(-1, *[1] * (x.ndim - 1))
        inputs = reference[sample] + alpha * (x[sample] - reference[sample])
        _, grads = context.layer_gradients(inputs, sample)
        if total is None:
            total = torch.zeros((context.batch_size, *grads.shape[1:]), dtype=grads.dtype)
        total.index_add_(0, sample, grads)
    assert total is not None
    return _result(total / m, {})


@method(
    kind="layer",
    summary="layer conductance: the score's change along the input path, split by the layer",
)
def layer_conductance(
    context: MethodContext,
    *,
    steps: int = 50,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = None,
) -> MethodResult:
    """Layer conductance (Dhamdhere et al. 2018):
    ``Σ_{i=0..m−1} ∂y/∂h(x_i) ⊙ (h(x_{i+1}) − h(x_i))`` with ``x_i = x' + (i/m)(x − x')``.

    The chain rule split of the score's change along the path at the layer ``h``: summed over
    channels and positions it approaches ``y(x) − y(x')`` as ``steps`` grows (the gap is in
    ``completeness_gap``). Captum's ``LayerConductance`` with ``method="riemann_trapezoid"``
    evaluates the same ``m + 1`` points.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        steps: ``m``, intervals on the path.
        baseline: ``x'``: a number, one input or a batch.
        batch_size: path points per pass; default from a memory budget.

    Extras:
        ``attributions`` ``(B, T, C, *s)``; ``channels`` ``(B, T, C)``; ``completeness_gap``
        ``(B, T)``: ``|Σ conductance − (y(x) − y(x'))|``.

    References:
        Dhamdhere, Sundararajan, Yan, "How Important Is a Neuron?", ICLR 2019.
    """
    m = _checked_steps(steps)
    x = context.inputs
    reference = resolve_baseline(context, baseline)
    rows = max(2, batch_size or context.gradient_rows())
    conductance: list[torch.Tensor] = []
    for b in range(context.batch_size):  # points in order, the last one carried over
        total: torch.Tensor | None = None
        previous: tuple[torch.Tensor, torch.Tensor] | None = None
        sample = torch.full((rows,), b, device=x.device)
        for part in context.batches(m + 1, rows, f"conductance {b + 1}/{context.batch_size}"):
            alpha = (torch.arange(part.start, part.stop, device=x.device).to(x.dtype) / m).view(
                -1, *[1] * (x.ndim - 1)
            )
            inputs = reference[b] + alpha * (x[b] - reference[b])
            acts, grads = context.layer_gradients(inputs, sample[: len(inputs)])
            if previous is not None:
                acts = torch.cat([previous[0], acts])
                grads = torch.cat([previous[1], grads])
            step = (grads[:-1] * (acts[1:] - acts[:-1]).unsqueeze(1)).sum(0)
            total = step if total is None else total + step
            previous = (acts[-1:], grads[-1:])
        assert total is not None
        conductance.append(total)
    attributions = torch.stack(conductance)
    rows_all = torch.arange(context.batch_size, device=x.device)
    empty = context.target_scores(context.forward(reference), rows_all)
    gap = (attributions.flatten(2).sum(-1) - (context.scores - empty)).abs()
    return _result(attributions, {"completeness_gap": gap})


@method(
    kind="layer",
    summary="layer Integrated Gradients: IG along the straight path between two layer outputs",
)
def layer_integrated_gradients(
    context: MethodContext,
    *,
    steps: int = 50,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = None,
) -> MethodResult:
    """Layer Integrated Gradients: ``(h(x) − h(x')) ⊙ (1/m) Σ_{i=1..m} ∂y/∂h`` at
    ``h(x') + (i/m)(h(x) − h(x'))``.

    Integrated Gradients with the layer's output ``h`` as the input: the path runs between the
    layer's outputs on the baseline and on the input, and only the network above the layer is
    differentiated (Captum's ``LayerIntegratedGradients`` with ``method="riemann_right"``). It adds
    up to ``y(x) − y(x')`` as ``steps`` grows (``completeness_gap``).

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        steps: ``m``, points on the path.
        baseline: ``x'`` (an input-space baseline): a number, one input or a batch.
        batch_size: path points per pass; default from a memory budget.

    Extras:
        ``attributions`` ``(B, T, C, *s)``; ``channels`` ``(B, T, C)``; ``completeness_gap``
        ``(B, T)``.

    References:
        Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", ICML 2017, applied
        at a layer.
    """
    m = _checked_steps(steps)
    x = context.inputs
    reference = resolve_baseline(context, baseline)
    start = _layer_output(context, reference)
    end = context.layer_activations()
    total = torch.zeros((context.batch_size, context.num_targets, *end.shape[1:]), dtype=end.dtype)
    points = context.batch_size * m
    for part in context.batches(points, batch_size or context.gradient_rows(), "layer IG"):
        index = torch.arange(part.start, part.stop, device=x.device)
        sample, step = index // m, index % m
        alpha = ((step + 1).to(end.dtype) / m).view(-1, *[1] * (end.ndim - 1))
        maps = start[sample] + alpha * (end[sample] - start[sample])
        grads = context.replaced_layer_gradients(x[sample], sample, maps)
        total.index_add_(0, sample, grads)
    attributions = (end - start).unsqueeze(1) * total / m
    rows = torch.arange(context.batch_size, device=x.device)
    empty = context.target_scores(context.forward(reference), rows)
    gap = (attributions.flatten(2).sum(-1) - (context.scores - empty)).abs()
    return _result(attributions, {"completeness_gap": gap})


def _layer_output(context: MethodContext, inputs: torch.Tensor) -> torch.Tensor:
    """The chosen layer's output (as maps) on other inputs of the batch's size."""
    own = context.inputs
    context.inputs = inputs
    try:
        return context.layer_activations()
    finally:
        context.inputs = own
