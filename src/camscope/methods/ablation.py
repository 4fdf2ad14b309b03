"""Ablation-CAM: channel weights from the score's relative drop when the channel is zeroed.

Gradient-free. Each channel of the layer is zeroed in turn and the model's head (the part above
the layer) scores the result; all targets come from the same passes. The head runs on the changed
copies of the layer's output only (:class:`~camscope.engine.head.LayerHead`): the trunk below the
layer runs once per chunk of ablations instead of once per ablation.
"""

from __future__ import annotations

import torch

from camscope.engine.head import LayerHead
from camscope.errors import MethodError
from camscope.methods.context import MethodContext, MethodResult
from camscope.methods.registry import method

__all__ = ["ablation_cam"]

#: Layer values (rows × channels × positions) per chunk of ablations by default (256 MB in
#: float32): each chunk runs the trunk below the layer once, so fewer chunks cost less.
ABLATION_VALUES = 1 << 26


@method(
    kind="layer",
    summary="Ablation-CAM: channel weight = relative score drop when the channel is zeroed",
)
def ablation_cam(context: MethodContext, *, batch_size: int | None = None) -> MethodResult:
    """Ablation-CAM (Desai & Ramaswamy 2020): ``w_k = (y − y_k) / y``, ``L = Σ_k w_k A^k``.

    ``y`` is the target's score and ``y_k`` its score when channel ``k`` of the layer is set to
    zero everywhere. Where ``y = 0`` the relative drop is undefined and ``w_k = 0`` for that
    target. Raw: no ReLU (the paper's display applies one).

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        batch_size: ablated copies per pass of the head; default: about 64 M layer values per
            chunk (e.g. 650 copies of ResNet-50's ``layer4`` at 224²).

    Extras:
        ``weights`` ``(B, T, C)``; ``head_only``: whether the trunk below the layer ran once per
        chunk (``False``: the model could not take that, and ran whole on every copy).

    References:
        Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
        Gradient-free Localization", WACV 2020.
    """
    if batch_size is not None and batch_size < 1:
        raise MethodError(f"batch_size must be at least 1, got {batch_size}")
    name, layer = context.require_layer("ablation_cam")
    activations = context.layer_activations()  # (B, C, *s)
    batch, channels = activations.shape[:2]
    scores = context.scores  # (B, T)
    output = context.output
    head = LayerHead(context.model, layer, name, context.forward, context.laid_out)
    per_row = max(1, activations[0].numel())
    rows = batch_size or int(max(1, min(1024, ABLATION_VALUES // per_row)))
    ablated = torch.empty(
        (batch, channels, context.num_targets), dtype=scores.dtype, device=scores.device
    )
    for b in range(batch):
        own = activations[b : b + 1]
        sample = torch.tensor([b], device=scores.device)
        for part in context.batches(channels, rows, f"Ablation-CAM {b + 1}/{batch}"):
            index = torch.arange(part.start, part.stop, device=scores.device)
            copies = own.expand(len(index), *own.shape[1:]).clone()
            copies[torch.arange(len(index), device=scores.device), index] = 0
            out = head.outputs(context.inputs[b : b + 1], copies, own, _row(output, b))
            ablated[b, part] = context.target_scores(out, sample.expand(len(index))).to(
                scores.dtype
            )
    drop = scores[:, None, :] - ablated  # (B, C, T)
    nonzero = scores[:, None, :] != 0
    weights = torch.where(nonzero, drop / torch.where(nonzero, scores[:, None, :], 1.0), 0.0)
    weights = weights.transpose(1, 2)  # (B, T, C)
    cam = torch.einsum("btc,bc...->bt...", weights.to(activations.dtype), activations)
    return MethodResult(cam, {"weights": weights, "head_only": bool(head.head_only)})


def _row(output: object, b: int) -> object:
    """Sample ``b``'s row of the model's output (``None`` when the output is no tensor)."""
    return output[b : b + 1] if isinstance(output, torch.Tensor) else None
