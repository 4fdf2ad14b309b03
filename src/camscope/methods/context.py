"""What a model-driven method (input-space maps, perturbation methods) receives from ``explain()``.

A :class:`MethodContext` holds the checked batch, the model, the fixed targets and helpers that
every such method needs: target scores for any batch of (possibly perturbed) rows, gradients of all
targets w.r.t. the input in one batched backward pass, batched forward passes with a progress bar,
and the layer path of the CAM family (for Guided Grad-CAM and Score-CAM).

Targets are fixed once, on the unperturbed batch: the predicted class of sample ``b`` stays the
class explained for every perturbed copy of ``b``. A callable target is applied to the outputs
of perturbed rows too, so it must score each row on its own (not depend on the row's position).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from camscope.engine import Capture, call_model, chunked_vjp, detached, record_layer, run_to_layer
from camscope.engine.capture import attach_hook
from camscope.errors import LayerError, MethodError, ModelError, TargetError
from camscope.layouts import CHANNELS_FIRST, Layout, LayoutResolver
from camscope.methods.rules import ReluRule, check_rule_applied, relu_rule
from camscope.targets import (
    TargetScores,
    TargetSpec,
    dense_class_scores,
    select_targets,
    targets_per_sample,
)

__all__ = ["MethodContext", "MethodResult"]

#: Memory that one batch of input gradients may use by default (bytes).
INPUT_GRADIENT_BUDGET = 1 << 28

#: Input values per batch of perturbed inputs by default.
PERTURBATION_VALUES = 2_500_000

#: Arithmetic of perturbation forward passes: exact, or bfloat16 autocast (approximate, faster).
PRECISIONS = ("float32", "bfloat16")

#: Seconds a perturbation loop runs before its progress bar appears.
PROGRESS_DELAY = 3.0


@dataclass
class MethodResult:
    """Maps from a model-driven method, plus values worth reporting beside them.

    Attributes:
        maps: ``(B, T, C_in, *S)`` for input-space methods, ``(B, T, *s)`` for layer methods.
        extras: e.g. Integrated Gradients' ``completeness_gap`` ``(B, T)``.
        layer: what the maps are of, for a method that reads the model without a ``layer=``
            (e.g. ``"attention"``); ``None``: the context's layer, or the input.
        layout: how that reading was laid out (e.g. ``"tokens:14x14:1"``); ``None``: the
            context's.
    """

    maps: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)
    layer: str | None = None
    layout: str | None = None


@dataclass
class MethodContext:
    """One ``explain()`` call, as a model-driven method sees it.

    Attributes:
        model: the network (in the mode ``explain`` chose; never modified).
        inputs: ``(B, C_in, *S)``, checked, detached.
        targets: the target spec of ``explain()``; :attr:`output`, :attr:`scores` and
            :attr:`classes` are fixed from it by the first forward pass that needs them (the
            layer path's own pass for the CAM family, so that it runs once).
        layer_name, layer: the chosen layer, for methods that use one (else ``None``).
        chunk_size: targets per batched backward pass (``None``: from a memory budget).
        progress: show progress bars for long loops.
        layout: lays the layer's output out as a map (``None``: channels first, unchecked).
        laid_out: the layout the layer was read in, once a layer path ran.
    """

    model: nn.Module
    inputs: torch.Tensor
    targets: TargetSpec = None
    layer_name: str | None = None
    layer: nn.Module | None = None
    chunk_size: int | None = None
    progress: bool = True
    _channels_last: bool | None = field(default=None, repr=False)
    #: The ReLU backward rule of a method that is one backward pass of the unperturbed batch
    #: (see :class:`~camscope.methods.registry.MethodInfo`): the targets are then fixed by one
    #: forward pass under that rule, whose graph :meth:`input_gradients` uses once.
    gradient_rule: str | None = None
    #: ``(rule, inputs requiring grad, output with its graph)`` of that forward pass.
    graph: tuple[str, torch.Tensor, Any] | None = field(default=None, repr=False)
    layout: LayoutResolver | None = None
    laid_out: Layout = CHANNELS_FIRST
    _output: Any = field(default=None, repr=False)
    _selected: TargetScores | None = field(default=None, repr=False)

    # -- targets, fixed once on the unperturbed batch --------------------------------------------

    @property
    def fixed(self) -> bool:
        """Whether the targets are fixed yet (by the first forward pass that needed them)."""
        return self._selected is not None

    def fix_targets(self, output: Any) -> None:
        """Fix the targets from the model's output on :attr:`inputs` (the output keeps its graph
        when it has one, so the scores can be differentiated)."""
        with torch.enable_grad():
            self._selected = select_targets(self.targets, output, self.batch_size)
        self._output = output

    def _ensure_fixed(self) -> TargetScores:
        if self._selected is None:
            if self.gradient_rule is not None:  # one forward pass, kept for the backward pass
                x = self.inputs.detach().requires_grad_(True)
                rule = self.gradient_rule
                with torch.enable_grad(), relu_rule(rule) as mode:  # type: ignore[arg-type]
                    output = call_model(self.model, x)
                check_rule_applied(mode, rule, self.model)
                with torch.no_grad():
                    self._selected = select_targets(self.targets, detached(output), self.batch_size)
                self._output = output
                self.graph = (rule, x, output)
            else:
                with torch.no_grad():
                    self.fix_targets(call_model(self.model, self.inputs))
        assert self._selected is not None
        return self._selected

    def attached_scores(self) -> torch.Tensor:
        """``(B, T)`` target scores on the graph of the pass that fixed them (after
        :meth:`fix_targets` on an output with a graph)."""
        return self._ensure_fixed().scores

    @property
    def output(self) -> Any:
        """The model's output on :attr:`inputs`."""
        self._ensure_fixed()
        return self._output

    @property
    def scores(self) -> torch.Tensor:
        """``(B, T)`` target scores on :attr:`inputs`, detached."""
        return self._ensure_fixed().scores.detach()

    @property
    def classes(self) -> torch.Tensor | None:
        """``(B, T)`` class indices, or ``None`` for a callable target."""
        return self._ensure_fixed().classes

    @property
    def target_fn(self) -> Callable[[Any], torch.Tensor] | None:
        """The callable target, or ``None`` for class targets."""
        return self.targets if callable(self.targets) else None

    @property
    def batch_size(self) -> int:
        """Samples in the batch."""
        return int(self.inputs.shape[0])

    @property
    def num_targets(self) -> int:
        """Targets per sample (fixes the targets on first use)."""
        return int(self._ensure_fixed().scores.shape[1])

    @property
    def spatial_dims(self) -> int:
        """2 for images, 3 for volumes."""
        return self.inputs.ndim - 2

    # -- scores -------------------------------------------------------------------------------

    def target_scores(self, output: Any, rows: torch.Tensor) -> torch.Tensor:
        """Scores ``(N, T)`` of output rows, row ``n`` belonging to sample ``rows[n]``."""
        if self.classes is not None:
            if isinstance(output, torch.Tensor) and output.ndim >= 3:  # dense outputs
                return dense_class_scores(output, self.classes[rows])
            return output.gather(1, self.classes[rows])
        assert self.target_fn is not None
        if getattr(self.target_fn, "takes_rows", False):  # a target with a mask per sample
            scores = self.target_fn(output, rows)  # type: ignore[call-arg]
        else:
            scores = self.target_fn(output)
        if not isinstance(scores, torch.Tensor):
            raise TargetError("the target callable must return a tensor")
        if scores.ndim == 1:
            scores = scores[:, None]
        if scores.shape != (len(rows), self.num_targets):
            raise TargetError(
                f"the target callable returned shape {tuple(scores.shape)} for a batch of "
                f"{len(rows)} perturbed rows; input-space methods need it to score each row on "
                f"its own, giving ({len(rows)},) or ({len(rows)}, {self.num_targets})"
            )
        return scores

    def scores_of_shared(self, output: Any) -> torch.Tensor:
        """Scores ``(R, B, T)`` of ``R`` inputs shared by all samples (e.g. reference inputs)."""
        if self.classes is not None and isinstance(output, torch.Tensor) and output.ndim >= 3:
            count = output.shape[0]
            every = output[:, None].expand(count, self.batch_size, *output.shape[1:])
            scores = dense_class_scores(every.flatten(0, 1), self.classes.repeat(count, 1))
            return scores.view(count, self.batch_size, -1)
        if self.classes is not None:
            return output[:, self.classes]
        rows = torch.arange(output.shape[0], device=self.inputs.device)
        return self.target_scores(output, rows)[:, None, :].expand(-1, self.batch_size, -1)

    def probabilities(self, output: Any, rows: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities ``(N, T)`` of the target classes (class targets only)."""
        if self.classes is None:
            raise MethodError(
                "class probabilities need class targets; with a callable target use raw scores"
            )
        if isinstance(output, torch.Tensor) and output.ndim >= 3:
            raise MethodError(
                "class probabilities need (B, K) logits; for a dense output use "
                "weighting='score' (the summed region logits)"
            )
        return torch.softmax(output, dim=1).gather(1, self.classes[rows])

    # -- forward passes -------------------------------------------------------------------------

    def batches(self, total: int, batch_size: int, description: str) -> Iterator[slice]:
        """Slices ``0:total`` by ``batch_size``, with a progress bar if it takes a while."""
        if batch_size < 1:
            raise MethodError(f"batch_size must be at least 1, got {batch_size}")
        starts = range(0, total, batch_size)
        bar = tqdm(
            starts,
            desc=description,
            unit="batch",
            disable=not self.progress,
            delay=PROGRESS_DELAY,
            leave=False,
        )
        for start in bar:
            yield slice(start, min(start + batch_size, total))

    def forward(self, inputs: torch.Tensor, precision: str = "float32") -> Any:
        """The model's output on a batch of perturbed inputs, without autograd.

        Float32 images and volumes go in channels-last layout, which oneDNN convolutions run
        about 1.3–1.5× faster on CPU; a model that cannot take that layout (e.g. it calls
        ``.view`` on its input) is noticed on the first batch and gets contiguous inputs after.
        ``precision="bfloat16"`` runs the model under autocast (about 2× faster again on CPUs with
        bfloat16 units; outputs differ from float32 by ~0.5 % relative) and returns the output in
        the inputs' dtype.
        """
        if precision not in PRECISIONS:
            raise MethodError(
                f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}"
            )
        with torch.inference_mode():
            if precision == "bfloat16":
                with torch.autocast(device_type=inputs.device.type, dtype=torch.bfloat16):
                    output = self._forward(inputs)
                return output.to(inputs.dtype) if isinstance(output, torch.Tensor) else output
            return self._forward(inputs)

    def _forward(self, inputs: torch.Tensor) -> Any:
        if self._channels_last is not False and inputs.dtype == torch.float32:
            layout = {4: torch.channels_last, 5: torch.channels_last_3d}.get(inputs.ndim)
            if layout is not None:
                try:
                    output = call_model(self.model, inputs.contiguous(memory_format=layout))
                except ModelError:
                    if self._channels_last:
                        raise
                    self._channels_last = False
                else:
                    self._channels_last = True
                    return output
        return call_model(self.model, inputs)

    def reference_scores(self, precision: str) -> torch.Tensor:
        """Target scores ``(B, T)`` of the unperturbed inputs at the given precision (so that score
        differences compare like with like)."""
        if precision == "float32":
            return self.scores
        rows = torch.arange(self.batch_size, device=self.inputs.device)
        return self.target_scores(self.forward(self.inputs, precision), rows)

    def input_gradients(
        self,
        inputs: torch.Tensor,
        rows: torch.Tensor,
        *,
        rule: ReluRule = "gradient",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Target scores ``(N, T)`` and their gradients ``(N, T, C_in, *S)`` w.r.t. the inputs.

        One forward pass and one batched backward pass for all targets (in chunks of targets
        when ``chunk_size`` says so), under the given ReLU backward rule.
        """
        if inputs is self.inputs:
            self._ensure_fixed()  # under this method's rule, its pass is the one used below
        if self.graph is not None and self.graph[0] == rule and inputs is self.inputs:
            _, x, output = self.graph
            self.graph = None  # its buffers are freed by the backward pass below
            with torch.enable_grad():
                scores = self.target_scores(output, rows)
        else:
            x = inputs.detach().requires_grad_(True)
            with torch.enable_grad(), relu_rule(rule) as mode:
                output = call_model(self.model, x)
            check_rule_applied(mode, rule, self.model)
            with torch.enable_grad():
                scores = self.target_scores(output, rows)
        pieces = [
            grads
            for _, _, grads in chunked_vjp(
                scores,
                x,
                chunk_size=self.chunk_size,
                missing=self._independent,
                progress="input gradients" if self.progress else None,
            )
        ]
        grads = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        return scores.detach(), grads

    def perturbation_rows(self) -> int:
        """Default rows per batch of perturbed inputs: about 2.5 M input values.

        Measured on 2 CPU cores: ResNet-50 runs 16 images of 224² per batch ~15 % faster than 64.
        """
        return int(max(1, min(256, PERTURBATION_VALUES // max(self.inputs[0].numel(), 1))))

    def gradient_rows(self) -> int:
        """Rows per batch of input gradients that fit :data:`INPUT_GRADIENT_BUDGET` (counting
        the targets without a forward pass where the request says how many there are)."""
        known = None if self.fixed else targets_per_sample(self.targets)
        count = self.num_targets if known is None else known
        per_row = self.inputs[0].numel() * self.inputs.element_size() * (count + 3)
        return int(max(1, min(256, INPUT_GRADIENT_BUDGET // max(per_row, 1))))

    # -- the layer path ---------------------------------------------------------------------------

    def require_layer(self, method: str) -> tuple[str, nn.Module]:
        """The layer's name and module; a layer method without one raises ``LayerError``."""
        if self.layer is None or self.layer_name is None:
            raise LayerError(f"{method} needs a layer")
        return self.layer_name, self.layer

    def layer_activations(self) -> torch.Tensor:
        """The chosen layer's activations ``(B, C, *s)`` on the inputs (one forward, no graph)."""
        name, module = self.require_layer("this method")
        with (
            torch.no_grad(),
            record_layer(module, name, stop=True, layout=self.layout) as recording,
        ):
            activations = run_to_layer(self.model, self.inputs, recording)
        self.laid_out = recording.layout
        return activations.detach()

    def layer_maps(
        self,
        function: Callable[..., torch.Tensor],
        objective: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """A CAM-family map ``(B, T, *s)`` at the chosen layer, e.g. Grad-CAM's.

        ``objective(output, scores)`` (optional) turns the target scores ``(B, T)`` into the
        ``(B, T)`` values whose gradients the formula gets (e.g. Finer-CAM's contrast with the
        nearest classes); it is computed on the output's graph.
        """
        name, module = self.require_layer("this method")
        with Capture(self.model, module, name, self.layout) as capture:
            output = capture.run(self.inputs)
            self.laid_out = capture.laid_out
            if self.fixed:
                with torch.enable_grad():
                    scores = self.target_scores(output, torch.arange(self.batch_size))
            else:  # the layer path's pass fixes the targets: one forward pass in all
                self.fix_targets(output)
                assert self._selected is not None
                scores = self._selected.scores
            if objective is not None:
                with torch.enable_grad():
                    scores = objective(output, scores)
            return capture.maps(
                scores, function, chunk_size=self.chunk_size, progress=self.progress
            )

    def layer_gradients(
        self, inputs: torch.Tensor, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The chosen layer's activations ``(N, C, *s)`` on a batch of (possibly changed) inputs
        and the gradients ``(N, T, C, *s)`` of every target score of their samples ``rows`` at
        them: one forward pass (the trunk without autograd) and one batched backward pass."""
        name, module = self.require_layer("this method")
        self._ensure_fixed()
        layout = None if self.layout is None else self.layout.for_batch(len(inputs))
        with Capture(self.model, module, name, layout) as capture:
            output = capture.run(inputs)
            self.laid_out = capture.laid_out
            with torch.enable_grad():
                scores = self.target_scores(output, rows)
            activations = capture.activations
            assert activations is not None
            pieces = [g for _, _, g in capture.gradients(scores, chunk_size=self.chunk_size)]
        grads = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        return activations.detach(), grads

    def replaced_layer_gradients(
        self, inputs: torch.Tensor, rows: torch.Tensor, maps: torch.Tensor
    ) -> torch.Tensor:
        """Gradients ``(N, T, C, *s)`` of every target score of samples ``rows`` when the chosen
        layer's output on ``inputs`` is replaced by ``maps (N, C, *s)`` (in the layout the layer
        was read in by :meth:`layer_activations`): the trunk without autograd, one batched
        backward pass from the head."""
        leaf, output = self.head_on(inputs, maps)
        with torch.enable_grad():
            scores = self.target_scores(output, rows)
        pieces = [
            grads
            for _, _, grads in chunked_vjp(
                scores, leaf, chunk_size=self.chunk_size, missing=self._independent
            )
        ]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)

    def head_on(self, inputs: torch.Tensor, maps: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """The model's output on ``inputs`` with the chosen layer's output replaced by ``maps``
        ``(N, C, *s)`` (in the layout :meth:`layer_activations` read it in), and the leaf that
        stands for ``maps``: the output has a graph from the leaf up (the head), none below."""
        name, module = self.require_layer("this method")
        self._ensure_fixed()
        leaf = maps.detach().requires_grad_(True)
        layout = self.laid_out

        def hook(module: nn.Module, args: object, output: Any) -> torch.Tensor:
            torch.set_grad_enabled(True)  # from here on: only the head above the layer
            return layout.from_maps(leaf.to(output.dtype), output)

        handle = attach_hook(module, name, hook)
        try:
            with torch.no_grad():
                output = call_model(self.model, inputs)
        finally:
            handle.remove()
        return leaf, output

    def _independent(self) -> MethodError:
        return MethodError(
            "the target scores do not depend on the input, so there is no gradient to show"
        )
