"""Batched vector–Jacobian products: gradients of many scores in one backward pass."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from tqdm.auto import tqdm

from camscope.engine.relay import warn

__all__ = [
    "DEFAULT_GRADIENT_BUDGET",
    "auto_chunk_size",
    "batched_vjp",
    "chunk_for_bytes",
    "chunked_vjp",
]

#: Memory the gradient chunks may use by default (bytes).
DEFAULT_GRADIENT_BUDGET = 1 << 30

#: With progress shown, at most this many targets per chunk when the chunk size is chosen
#: automatically, so that a bar can move. Measured on ResNet-18 (1,000 classes, batch 4, 128²,
#: ``layer3``, 2 threads, AMD EPYC, 2026-12-04): chunks of 16, 64, 256 and all 1,000 targets
#: took the same time within 4 %.
PROGRESS_CHUNK = 64

#: Seconds a chunked backward pass runs before its progress bar appears.
PROGRESS_DELAY = 3.0


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
    return chunk_for_bytes(num_targets, per_target, budget_bytes=budget_bytes)


def chunk_for_bytes(
    num_targets: int, per_target: int, *, budget_bytes: int = DEFAULT_GRADIENT_BUDGET
) -> int:
    """How many targets fit ``budget_bytes`` when each costs ``per_target`` bytes (at least 1)."""
    return int(max(1, min(num_targets, budget_bytes // max(per_target, 1))))


def batched_vjp(
    scores: torch.Tensor,
    wrt: torch.Tensor | tuple[torch.Tensor, ...],
    *,
    retain_graph: bool,
    missing: Callable[[], Exception],
) -> Any:
    """Gradients ``(N, T, *wrt.shape[1:])`` of every column of ``scores (N, T)`` w.r.t. ``wrt``
    (a tuple of such gradients for a tuple of tensors, e.g. the attention of every block).

    Rows must be independent (row ``n`` of ``scores`` depends only on row ``n`` of ``wrt``): then
    ``d(Σ_n scores[n, t]) / d wrt`` holds every row's gradient, and all ``T`` columns come from one
    batched vector–Jacobian product. If an op of the model has no batching rule, a per-column
    loop runs instead, with a :class:`RuntimeWarning`.

    Raises:
        The exception built by ``missing()`` when the scores do not depend on ``wrt``.
    """
    several = isinstance(wrt, tuple)
    tensors = wrt if isinstance(wrt, tuple) else (wrt,)
    count = scores.shape[1]
    if count == 1:
        grads = torch.autograd.grad(
            scores[:, 0].sum(), tensors, retain_graph=retain_graph, allow_unused=True
        )
        if any(g is None for g in grads):
            raise missing()
        result = tuple(g.unsqueeze(1) for g in grads)
        return result if several else result[0]
    eye = torch.eye(count, dtype=scores.dtype, device=scores.device)
    grad_outputs = eye[:, None, :].expand(count, scores.shape[0], count)
    try:  # an op without a batching rule: vmap loops over the targets itself, with its warning
        batched = torch.autograd.grad(
            scores,
            tensors,
            grad_outputs=grad_outputs,
            is_grads_batched=True,
            retain_graph=True,  # kept for the per-target fallback if this one fails
            allow_unused=True,
        )
    except RuntimeError as error:
        warn(
            f"camscope: batched gradients are not supported by an op of this model "
            f"({str(error).splitlines()[0][:160]}); falling back to one backward pass per "
            "target, which is slower",
            key="batched gradients are not supported",
        )
        columns = []
        for index in range(count):
            column = torch.autograd.grad(
                scores[:, index].sum(), tensors, retain_graph=True, allow_unused=True
            )
            if any(c is None for c in column):
                raise missing() from error
            columns.append(column)
        batched = tuple(torch.stack(parts) for parts in zip(*columns, strict=True))
    if any(b is None for b in batched):
        raise missing()
    result = tuple(b.movedim(0, 1) for b in batched)
    return result if several else result[0]


def chunked_vjp(
    scores: torch.Tensor,
    wrt: torch.Tensor | tuple[torch.Tensor, ...],
    *,
    chunk_size: int | None,
    missing: Callable[[], Exception],
    retain_graph: bool = False,
    progress: str | None = None,
    automatic: bool = False,
) -> Iterator[tuple[int, int, Any]]:
    """:func:`batched_vjp` over chunks of ``chunk_size`` targets (``None``: all at once).

    Args:
        scores: ``(N, T)`` target scores (every target's gradient is taken).
        wrt: the tensor(s) the gradients are taken with respect to.
        chunk_size: targets per backward pass.
        missing: the error to raise when ``wrt`` is not reached from the scores.
        retain_graph: keep the graph after the last chunk (a later backward pass needs it).
        progress: a description for a progress bar over the chunks (shown after
            :data:`PROGRESS_DELAY` seconds); ``None``: no bar.
        automatic: the chunk size was not chosen by the user: with ``progress``, chunks of at
            most :data:`PROGRESS_CHUNK` targets, so the bar moves (at no measurable cost).

    Yields:
        ``(start, stop, gradients)`` with gradients ``(N, stop - start, *wrt.shape[1:])``; the
        graph is kept until the last chunk (and after it with ``retain_graph``).
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be (B, T), got {tuple(scores.shape)}")
    if not scores.requires_grad:
        raise missing()
    count = scores.shape[1]
    size = max(1, min(int(chunk_size or count), count))
    if progress is not None and (automatic or chunk_size is None):
        size = min(size, PROGRESS_CHUNK)
    starts = range(0, count, size)
    bar = tqdm(
        starts,
        desc=progress,
        unit="chunk",
        disable=progress is None or len(starts) < 2,
        delay=PROGRESS_DELAY,
        leave=False,
    )
    for start in bar:
        stop = min(start + size, count)
        yield (
            start,
            stop,
            batched_vjp(
                scores[:, start:stop],
                wrt,
                retain_graph=retain_graph or stop < count,
                missing=missing,
            ),
        )
