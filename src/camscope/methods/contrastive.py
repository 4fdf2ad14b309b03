"""Finer-CAM: a gradient CAM of the target's score against the classes it is most easily
confused with.

Any CAM-family formula (``base``) is applied to the gradients of the contrastive objective
``y_c − γ · mean_r(y_r)`` instead of ``y_c``, where the references ``r`` are the classes whose
scores lie nearest the target's. Because gradients are linear, that is the base method on
``G_c − γ · mean_r(G_r)``: the evidence that tells the class from its look-alikes. All targets of
all samples come from one forward pass and one batched backward pass, as for the base method.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from camscope.errors import MethodError, TargetError
from camscope.methods.context import MethodContext, MethodResult
from camscope.methods.registry import get_method, method
from camscope.targets import dense_class_scores

__all__ = ["finer_cam", "nearest_references"]


def nearest_references(logits: torch.Tensor, classes: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` classes whose scores are nearest each target's, the target excluded.

    Args:
        logits: ``(B, K)``.
        classes: ``(B, T)`` target classes.
        count: references per target (at most ``K − 1``).

    Returns:
        ``(B, T, count)`` class indices, nearest first (ties: the lower index first).
    """
    chosen = logits.gather(1, classes)  # (B, T)
    distance = (logits[:, None, :] - chosen[..., None]).abs()  # (B, T, K)
    distance = distance.scatter(2, classes[..., None], math.inf)
    return distance.topk(count, dim=2, largest=False, sorted=True).indices


@method(
    kind="layer",
    summary="Finer-CAM: a gradient CAM of y_c − γ·mean(y of the nearest classes)",
)
def finer_cam(
    context: MethodContext,
    *,
    gamma: float = 0.6,
    num_references: int = 3,
    references: list[int] | None = None,
    base: str = "grad_cam",
) -> MethodResult:
    """Finer-CAM (Zhang et al. 2025): ``base`` on the objective ``y_c − γ · mean_r(y_r)``.

    The references ``r`` are the ``num_references`` classes whose scores on the sample are
    nearest ``y_c`` (the target excluded; torch-cam's rule), or the classes given in
    ``references`` for every target. ``γ = 0`` gives the base method itself. Class targets only;
    on a dense output each class's score is its logits summed over its predicted region (as for
    any dense class target).

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        gamma: weight of the references' mean score (≥ 0).
        num_references: how many nearest classes (capped at ``K − 1``).
        references: fixed reference classes instead of the nearest ones.
        base: any CAM-family method (``grad_cam``, ``grad_cam_pp``, ``layer_cam``,
            ``respond_cam``, ...).

    Extras:
        ``references`` ``(B, T, R)``: the classes each target was contrasted with.

    References:
        Zhang, Wang, Wu, et al., "Finer-CAM: Spotting the Difference Reveals Finer Details for
        Visual Explanation", CVPR 2025.
    """
    info = get_method(base)
    if info.kind != "cam":
        raise MethodError(
            f"finer_cam's base must be a CAM-family method (grad_cam, grad_cam_pp, layer_cam, "
            f"respond_cam, ...), not {base!r}"
        )
    if not math.isfinite(gamma) or gamma < 0:
        raise MethodError(f"finer_cam: gamma must be a finite number ≥ 0, not {gamma!r}")
    if num_references < 1:
        raise MethodError(f"finer_cam: num_references must be at least 1, not {num_references}")
    chosen: dict[str, torch.Tensor] = {}

    def objective(output: Any, scores: torch.Tensor) -> torch.Tensor:
        classes = context.classes
        if classes is None or not isinstance(output, torch.Tensor) or output.ndim < 2:
            raise TargetError(
                "finer_cam contrasts classes: it needs class targets, not a callable target"
            )
        if output.shape[1] < 2:
            raise TargetError("finer_cam needs a model with at least two classes")
        logits = output
        if output.ndim > 2:  # a dense output: each class's score over its predicted region
            every = torch.arange(output.shape[1], device=output.device)
            logits = dense_class_scores(output, every.expand(output.shape[0], -1))
        refs = _references(logits.detach(), classes, num_references, references)
        chosen["references"] = refs
        picked = logits.gather(1, refs.flatten(1)).view(refs.shape)  # (B, T, R)
        return scores - gamma * picked.mean(dim=-1)

    maps = context.layer_maps(info.function, objective)
    return MethodResult(maps, {"references": chosen["references"]})


def _references(
    logits: torch.Tensor, classes: torch.Tensor, count: int, fixed: list[int] | None
) -> torch.Tensor:
    classes_total = logits.shape[1]
    if fixed is None:
        return nearest_references(logits, classes, min(count, classes_total - 1))
    if not fixed or any(not 0 <= int(c) < classes_total for c in fixed):
        raise MethodError(
            f"finer_cam: references must be classes in 0..{classes_total - 1}, got {fixed!r}"
        )
    refs = torch.tensor([int(c) for c in fixed], device=logits.device)
    if bool((classes[..., None] == refs).any()):
        raise MethodError("finer_cam: a target class is among its own references")
    return refs.expand(*classes.shape, len(refs))
