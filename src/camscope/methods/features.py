"""Feature visualisation (Zeiler & Fergus 2014): what a feature map responds to.

To show feature map ``k`` of layer ``l``, keep only that map's activation (all other maps zero) as
the gradient at ``l`` and propagate it back to the input, through every ReLU with the Deconvnet
rule (or the guided rule, or plain autograd). All requested maps are propagated in one batched
backward pass. The result has input resolution and one map per input channel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from camscope.checks import check_inputs
from camscope.engine import ModelState, batched_vjp, record_layer, run_to_layer
from camscope.errors import LayerError, MethodError
from camscope.layers import resolve_layer
from camscope.layouts import LayoutResolver
from camscope.methods.rules import RULES, ReluRule, relu_rule

__all__ = ["feature_visualization"]


def feature_visualization(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    layer: str | nn.Module,
    channels: int | Sequence[int] | None = None,
    rule: ReluRule = "deconvnet",
    eval_mode: bool = True,
) -> torch.Tensor:
    """Project feature maps of one layer back to the input.

    Args:
        model: the network (unchanged afterwards).
        inputs: ``(B, C_in, *S)``.
        layer: name or module of the layer whose feature maps to show.
        channels: feature-map indices; ``None`` takes the map with the largest activation of each
            sample (then ``K = 1``).
        rule: ``"deconvnet"`` (the paper's), ``"guided"`` or ``"gradient"``.
        eval_mode: run the model in eval mode (restored afterwards).

    Returns:
        ``(B, K, C_in, *S)``: one projection per sample and requested channel, raw and signed.

    Raises:
        LayerError: unknown layer, or one that does not run; MethodError: bad channel or rule.
    """
    if rule not in RULES:
        raise MethodError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
    x = check_inputs(model, inputs).requires_grad_(True)
    name, module = resolve_layer(model, layer)
    with (
        torch.inference_mode(False),
        ModelState(model, eval_mode=eval_mode),
        torch.enable_grad(),
        relu_rule(rule),
        record_layer(module, name, stop=True, layout=LayoutResolver.of(model, x)) as recording,
    ):
        activation = run_to_layer(model, x, recording)
    count = activation.shape[1]
    if channels is None:
        picked = activation.detach().flatten(2).amax(-1).argmax(1)[:, None]  # (B, 1)
    else:
        wanted = [channels] if isinstance(channels, int) else list(channels)
        if not wanted or any(not 0 <= int(c) < count for c in wanted):
            raise MethodError(f"channels must be in 0..{count - 1} for layer {name!r}")
        picked = torch.tensor(wanted, device=x.device).expand(x.shape[0], -1)
    # "Scores": each chosen map's activation, as the gradient seeded at the layer.
    values = activation.detach()
    seeds = torch.zeros(
        (picked.shape[1], *activation.shape), dtype=values.dtype, device=values.device
    )
    batch = torch.arange(x.shape[0], device=x.device)
    for k in range(picked.shape[1]):
        seeds[k, batch, picked[:, k]] = values[batch, picked[:, k]]
    # "Scores" whose gradient seeds are the chosen maps: one batched backward pass for all.
    scores = (activation.flatten(1)[:, None, :] * seeds.movedim(0, 1).flatten(2)).sum(-1)
    grads = batched_vjp(scores, x, retain_graph=False, missing=_independent(name))
    return grads.detach()


def _independent(name: str) -> Callable[[], LayerError]:
    return lambda: LayerError(f"layer {name!r} does not depend on the input")
