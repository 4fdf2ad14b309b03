"""Capture: record a layer's activations in one forward pass and get batched gradients at it.

How it stays cheap and safe:

* The forward pass starts without autograd. When the chosen layer finishes, its output is
  detached into a leaf that requires grad, autograd is switched on, and a *copy* of the leaf is
  handed on to the rest of the network. The trunk below the layer therefore keeps no graph (peak
  memory stays at inference level), and an in-place op right after the layer
  (``ReLU(inplace=True)``) changes the copy, never the recorded activations.
* Gradients of all ``T`` target scores of every sample come from one batched vector–Jacobian
  product (``torch.autograd.grad(..., is_grads_batched=True)``), in chunks of targets when memory
  requires; never a Python loop of backward passes.
* Parameters' ``.grad`` are never written (``autograd.grad``, not ``backward``), and the hook is
  removed on exit, also when the model raises half-way.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import torch
from torch import nn

from camscope.errors import CamscopeError, LayerError, ModelError

__all__ = [
    "Capture",
    "ModelState",
    "StopForward",
    "auto_chunk_size",
    "batched_vjp",
    "call_model",
]


class StopForward(BaseException):
    """Raised by a hook to end a forward pass once a layer has run (nothing above it is needed).

    A ``BaseException`` so that it passes through :func:`call_model` untouched.
    """


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


def call_model(model: nn.Module, inputs: torch.Tensor) -> Any:
    """Run the user's model; its own failures become :class:`ModelError` (cause chained).

    camscope's errors raised from inside (e.g. by a hook) pass through unchanged.
    """
    try:
        return model(inputs)
    except CamscopeError:
        raise
    except Exception as error:
        raise ModelError(
            f"the model raised {type(error).__name__} during the forward pass: {error}"
        ) from error


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


class Capture:
    """Context manager that records one layer's output during ``run`` and differentiates at it.

    Args:
        model: the network (its state is not changed).
        layer: the module to record.
        name: the layer's name, for messages.

    Example:
        >>> with Capture(model, model.layer4, "layer4") as capture:  # doctest: +SKIP
        ...     output = capture.run(x)
        ...     for start, stop, grads in capture.gradients(scores):
        ...         ...
    """

    def __init__(self, model: nn.Module, layer: nn.Module, name: str) -> None:
        self.model = model
        self.layer = layer
        self.name = name
        self.activations: torch.Tensor | None = None
        self.calls = 0
        self._handle: Any = None

    def __enter__(self) -> Capture:
        self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: nn.Module, args: object, output: object) -> torch.Tensor:
        self.calls += 1
        if self.calls > 1:
            raise LayerError(
                f"layer {self.name!r} runs more than once in one forward pass (a shared module); "
                "choose a layer that runs once, e.g. the block that contains it"
            )
        if not isinstance(output, torch.Tensor):
            raise LayerError(
                f"layer {self.name!r} returns {type(output).__name__}, not a tensor; choose a "
                "layer whose output is one tensor (B, C, *s)"
            )
        if output.ndim < 3:
            raise LayerError(
                f"layer {self.name!r} outputs shape {tuple(output.shape)}, which has no spatial "
                "axes; choose a layer before the network flattens or pools globally "
                "(camscope.probe_layers lists every layer's output shape)"
            )
        if not output.is_floating_point():
            raise LayerError(f"layer {self.name!r} outputs {output.dtype}, not a float tensor")
        leaf = output.detach().requires_grad_(True)
        self.activations = leaf
        # From here on the forward pass is recorded: only the head above the layer has a graph.
        torch.set_grad_enabled(True)
        return leaf.clone()

    def run(self, inputs: torch.Tensor) -> Any:
        """Run the model once, the trunk without autograd, and return its output.

        Raises:
            LayerError: the layer did not run, ran twice, or has an unusable output.
            ModelError: the model itself raised (original exception chained).
        """
        self.calls = 0
        self.activations = None
        with torch.no_grad():
            output = call_model(self.model, inputs)
        if self.activations is None:
            raise LayerError(
                f"layer {self.name!r} did not run in the forward pass; choose a layer the model "
                "uses (camscope.probe_layers lists the layers that run)"
            )
        return output

    def gradients(
        self, scores: torch.Tensor, *, chunk_size: int | None = None
    ) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Gradients of every target score w.r.t. the recorded activations, chunk by chunk.

        Args:
            scores: ``(B, T)``, computed from the output of :meth:`run`.
            chunk_size: targets per batched backward; ``None`` chooses from a memory budget.

        Yields:
            ``(start, stop, gradients)`` with gradients ``(B, stop - start, C, *s)`` for targets
            ``start:stop``.

        Raises:
            LayerError: the scores do not depend on the layer.
        """
        activations = self.activations
        if activations is None:
            raise LayerError("no activations recorded; call run() first")
        if scores.ndim != 2:
            raise ValueError(f"scores must be (B, T), got {tuple(scores.shape)}")
        num_targets = scores.shape[1]
        if not scores.requires_grad:
            raise self._independent()
        if chunk_size is None:
            chunk_size = auto_chunk_size(num_targets, activations)
        chunk_size = max(1, min(int(chunk_size), num_targets))
        for start in range(0, num_targets, chunk_size):
            stop = min(start + chunk_size, num_targets)
            retain = stop < num_targets
            grads = self._vjp(scores[:, start:stop], activations, retain)
            yield start, stop, grads

    def maps(
        self,
        scores: torch.Tensor,
        function: Callable[..., torch.Tensor],
        *,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        """A CAM-family ``function(activations, gradients)`` for every target: ``(B, T, *s)``.

        The activations are shared by all targets of a sample (passed as ``(B, 1, C, *s)``);
        gradients come chunk by chunk from :meth:`gradients`.
        """
        activations = self.activations
        if activations is None:
            raise LayerError("no activations recorded; call run() first")
        shared = activations.detach().unsqueeze(1)
        pieces = []
        for _, _, gradients in self.gradients(scores, chunk_size=chunk_size):
            with torch.no_grad():
                pieces.append(function(shared, gradients, spatial_dims=activations.ndim - 2))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)

    def _vjp(self, scores: torch.Tensor, activations: torch.Tensor, retain: bool) -> torch.Tensor:
        return batched_vjp(scores, activations, retain_graph=retain, missing=self._independent)

    def _independent(self) -> LayerError:
        return LayerError(
            f"the target scores do not depend on layer {self.name!r}, so it has no gradient; "
            "choose a layer on the path from the input to the scores"
        )


class ModelState:
    """Context manager that restores every module's train/eval flag on exit.

    Args:
        model: the network.
        eval_mode: put the model in eval mode for the duration (dropout off, batch-norm running
            statistics); ``False`` runs it in whatever mode it is in.
    """

    def __init__(self, model: nn.Module, *, eval_mode: bool = True) -> None:
        self.model = model
        self.eval_mode = eval_mode
        self._flags: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> ModelState:
        self._flags = [(module, module.training) for module in self.model.modules()]
        if self.eval_mode:
            self.model.eval()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for module, training in self._flags:
            module.training = training
