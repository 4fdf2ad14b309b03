"""ShapleyCAM: channel weights from the gradient and the Hessian–vector product.

ShapleyCAM (Cai 2025) reads a CAM's channel weights as Shapley values of the channels and keeps the
second-order term of their Taylor expansion: ``w_k = mean_s (G − ½ H A)_k(s)``, where ``G`` is the
gradient of the objective at the layer's activations ``A`` and ``H A`` the Hessian (of the
objective with respect to the activations) applied to ``A``. The objective is by default the
paper's ReST, ``y_c + log softmax(y)_c`` (the logit and the log-probability together): on a ReLU
head the logit alone has ``H = 0`` and ShapleyCAM is Grad-CAM.

The head above the layer runs once with a graph; the gradients of all targets come from one batched
backward pass that keeps its graph, and ``H A`` of all targets from one more batched pass through
it (a per-target loop if an op of the model has no batching rule for the second pass).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from camscope.errors import MethodError, TargetError
from camscope.methods.context import MethodContext, MethodResult
from camscope.methods.registry import method
from camscope.targets import dense_class_scores

__all__ = ["shapley_cam"]

OBJECTIVES: tuple[str, ...] = ("rest", "logit")


@method(
    kind="layer",
    summary="ShapleyCAM: weights mean(G − ½·H·A), the gradient and Hessian–vector product",
)
def shapley_cam(context: MethodContext, *, objective: str = "rest") -> MethodResult:
    """ShapleyCAM (Cai 2025), as pytorch-grad-cam's ``ShapleyCAM``.

    ``L = Σ_k w_k A_k`` with ``w_k = mean_s (∂o/∂A − ½ (∂²o/∂A²) A)_k(s)`` for the objective
    ``o`` of each target.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        objective: ``"rest"``: ``y_c + log softmax(y)_c`` (the paper's; pytorch-grad-cam's
            ``ClassifierOutputReST``), class targets only (on a dense output both terms summed
            over the class's predicted region); ``"logit"``: the target's score itself (any
            target).

    Extras:
        ``weights`` ``(B, T, C)``: the channel weights.

    References:
        Cai, "CAMs as Shapley Value-based Explainers", 2025 (arXiv:2501.06261).
    """
    if objective not in OBJECTIVES:
        raise MethodError(f"shapley_cam: objective must be one of {OBJECTIVES}, not {objective!r}")
    activations = context.layer_activations()  # (B, C, *s); sets the layout the head reads
    # PyTorch's fused CPU attention has no second derivative: the head runs the plain kernel.
    with sdpa_kernel([SDPBackend.MATH]):
        leaf, output = context.head_on(context.inputs, activations)
    rows = torch.arange(context.batch_size, device=activations.device)
    with torch.enable_grad():
        scores = context.target_scores(output, rows)
        if objective == "rest":
            scores = scores + _log_probabilities(context, output)
    if not scores.requires_grad:
        raise MethodError("the target scores do not depend on the layer, so there is no gradient")
    gradients, products = _gradient_and_hessian_product(scores, leaf)
    dims = tuple(range(3, gradients.ndim))
    weights = (gradients - 0.5 * products).mean(dim=dims)  # (B, T, C)
    shape = (*weights.shape, *[1] * (gradients.ndim - 3))
    maps = (weights.view(shape) * activations.unsqueeze(1)).sum(dim=2)
    return MethodResult(maps.detach(), {"weights": weights.detach()})


def _log_probabilities(context: MethodContext, output: Any) -> torch.Tensor:
    """``log softmax(y)_c`` of each target; on a dense output summed over the class's predicted
    region, as its score is."""
    classes = context.classes
    if classes is None or not isinstance(output, torch.Tensor) or output.ndim < 2:
        raise TargetError(
            "shapley_cam's 'rest' objective needs class targets of a classifier or a dense "
            "(segmentation) output; use objective='logit' for other targets"
        )
    logp = torch.log_softmax(output, dim=1)
    if output.ndim == 2:
        return logp.gather(1, classes)
    return dense_class_scores(logp, classes)


def _gradient_and_hessian_product(
    scores: torch.Tensor, leaf: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``G = ∂scores/∂leaf`` and ``H·leaf`` for every target: ``(N, T, *leaf.shape[1:])`` each.

    ``H_t A = ∂/∂A (Σ A·G_t)`` with ``A`` held fixed in the product: a second backward pass
    through the first one's graph.
    """
    count = scores.shape[1]
    eye = torch.eye(count, dtype=scores.dtype, device=scores.device)
    fixed = leaf.detach()
    try:  # an op without a batching rule: vmap loops over the targets itself, with its warning
        (gradients,) = torch.autograd.grad(
            scores,
            leaf,
            grad_outputs=eye[:, None, :].expand(count, scores.shape[0], count),
            is_grads_batched=True,
            create_graph=True,
        )  # (T, N, C, *s)
        along = (gradients * fixed).flatten(1).sum(1)  # (T,)
        products = None
        if along.requires_grad:  # otherwise the head is piecewise linear: H = 0
            products = torch.autograd.grad(
                along, leaf, grad_outputs=eye, is_grads_batched=True, allow_unused=True
            )[0]
    except RuntimeError:
        columns, hvps = [], []
        for t in range(count):
            (g,) = torch.autograd.grad(scores[:, t].sum(), leaf, create_graph=True)
            along_t = (g * fixed).sum()
            h = None
            if along_t.requires_grad:
                (h,) = torch.autograd.grad(along_t, leaf, allow_unused=True)
            columns.append(g.detach())
            hvps.append(torch.zeros_like(g) if h is None else h)
        gradients, products = torch.stack(columns), torch.stack(hvps)
    if products is None:
        products = torch.zeros_like(gradients)
    return gradients.detach().movedim(0, 1), products.detach().movedim(0, 1)
