"""Batched vector–Jacobian products: gradients of many scores in one backward pass."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import torch

__all__ = ["DEFAULT_GRADIENT_BUDGET", "auto_chunk_size", "batched_vjp", "chunked_vjp"]

#: Memory the gradient chunks may use by default (bytes).
DEFAULT_GRADIENT_BUDGET = 1 << 30


def auto_chunk_size(
    num_targets: int,
    activations: torch.Tensor,
    *,
    budget_bytes: int = DEFAULT_GRADIENT_BUDGET,
) -> int:
    """How many targets to differentiate at once so the gradients fit in ``budget_bytes``.

    Each target in a chunk costs a gradient the size of the activations plus the backward
    temporaries of the head; the factor 3 leaves room for those.
    """
    per_target = activations.numel() * activations.element_size() * 3
    return int(max(1, min(num_targets, budget_bytes // max(per_target, 1))))


def batched_vjp(
    scores: torch.Tensor,
    wrt: torch.Tensor,
    *,
    retain_graph: bool,
    missing: Callable[[], Exception],
) -> torch.Tensor:
    """Gradients ``(N, T, *wrt.shape[1:])`` of every column of ``scores (N, T)`` w.r.t. ``wrt``.

    Rows must be independent (row ``n`` of ``scores`` depends only on row ``n`` of ``wrt``): then
    ``d(Σ_n scores[n, t]) / d wrt`` holds every row's gradient, and all ``T`` columns come from one
    batched vector–Jacobian product. If an op of the model has no batching rule, a per-column
    loop runs instead, with a :class:`RuntimeWarning`.

    Raises:
        The exception built by ``missing()`` when the scores do not depend on ``wrt``.
    """
    count = scores.shape[1]
    if count == 1:
        (grads,) = torch.autograd.grad(
            scores[:, 0].sum(), wrt, retain_graph=retain_graph, allow_unused=True
        )
        if grads is None:
            raise missing()
        return grads.unsqueeze(1)
    eye = torch.eye(count, dtype=scores.dtype, device=scores.device)
    grad_outputs = eye[:, None, :].expand(count, scores.shape[0], count)
    try:
        with warnings.catch_warnings():
            # vmap falls back to a slow per-target loop with this warning; do it visibly.
            warnings.filterwarnings("error", message=".*performance drop.*")
            (batched,) = torch.autograd.grad(
                scores,
                wrt,
                grad_outputs=grad_outputs,
                is_grads_batched=True,
                retain_graph=True,  # kept for the per-target fallback if this one fails
                allow_unused=True,
            )
    except (RuntimeError, UserWarning) as error:
        warnings.warn(
            f"camscope: batched gradients are not supported by an op of this model "
            f"({str(error).splitlines()[0][:160]}); falling back to one backward pass per "
            "target, which is slower",
            RuntimeWarning,
            stacklevel=4,
        )
        columns = []
        for index in range(count):
            (column,) = torch.autograd.grad(
                scores[:, index].sum(), wrt, retain_graph=True, allow_unused=True
            )
            if column is None:
                raise missing() from error
            columns.append(column)
        batched = torch.stack(columns)
    if batched is None:
        raise missing()
    return batched.movedim(0, 1)


def chunked_vjp(
    scores: torch.Tensor,
    wrt: torch.Tensor,
    *,
    chunk_size: int | None,
    missing: Callable[[], Exception],
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """:func:`batched_vjp` over chunks of ``chunk_size`` targets (``None``: all at once).

    Yields:
        ``(start, stop, gradients)`` with gradients ``(N, stop - start, *wrt.shape[1:])``; the
        graph is kept until the last chunk.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be (B, T), got {tuple(scores.shape)}")
    if not scores.requires_grad:
        raise missing()
    count = scores.shape[1]
    size = max(1, min(int(chunk_size or count), count))
    for start in range(0, count, size):
        stop = min(start + size, count)
        yield (
            start,
            stop,
            batched_vjp(scores[:, start:stop], wrt, retain_graph=stop < count, missing=missing),
        )
