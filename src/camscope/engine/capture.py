"""Record a layer during a forward pass, the one place where camscope hooks into a model.

* :func:`record_layer`: a context in which one layer's output is recorded when the model runs;
  optionally the forward pass stops right there (nothing above the layer is needed) and/or the
  output becomes a leaf that the rest of the network receives a *copy* of.
* :class:`Capture`: the CAM family's use of it: one forward pass, the trunk without autograd,
  then gradients of every target at the layer from one batched backward pass.
* :func:`trace_modules`: what every submodule outputs in one forward pass (layer listings).

How it stays cheap and safe: the trunk below the layer runs without autograd; when the layer
finishes, its output is detached into a leaf that requires grad, autograd is switched on, and a
copy is handed on, so an in-place op right after the layer (``ReLU(inplace=True)``) changes the
copy, never the recorded activations. Parameters' ``.grad`` are never written
(``autograd.grad``, not ``backward``), and hooks are removed on exit, also when the model raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from camscope.engine.relay import warn
from camscope.engine.state import ModelState, call_model
from camscope.engine.vjp import auto_chunk_size, chunked_vjp
from camscope.errors import LayerError
from camscope.layouts import CHANNELS_FIRST, Layout, LayoutResolver

__all__ = ["Capture", "Recording", "StopForward", "record_layer", "run_to_layer", "trace_modules"]


class StopForward(BaseException):
    """Raised by a hook to end a forward pass once a layer has run (nothing above it is needed).

    A ``BaseException`` so that it passes through :func:`call_model` untouched.
    """


def attach_hook(module: nn.Module, name: str, hook: Callable[..., Any]) -> Any:
    """``module.register_forward_hook(hook)``, with a clear error where hooks cannot work.

    Raises:
        LayerError: the module is TorchScript (compiled code runs no Python hooks).
    """
    if isinstance(module, torch.jit.ScriptModule):
        raise torchscript_error()
    return module.register_forward_hook(hook)


def torchscript_error() -> LayerError:
    """Why layer methods cannot run on TorchScript, and what works instead."""
    return LayerError(
        "the model is TorchScript, which runs no Python hooks, so layer methods cannot record "
        "its layers; input-space methods (saliency, integrated-gradients, occlusion, ...) work "
        "on TorchScript; for layer methods export the model with torch.export (.pt2) or give "
        "its state dict with --architecture"
    )


@dataclass
class Recording:
    """What :func:`record_layer` saw: the layer's output (``None`` until it runs)."""

    name: str
    value: torch.Tensor | None = None
    calls: int = 0
    #: how the layer's output was laid out into ``value`` ``(B, C, *s)``.
    layout: Layout = CHANNELS_FIRST

    def require(self) -> torch.Tensor:
        """The recorded output.

        Raises:
            LayerError: the layer did not run.
        """
        if self.value is None:
            raise LayerError(
                f"layer {self.name!r} did not run in the forward pass; choose a layer the model "
                "uses (camscope.probe_layers lists the layers that run)"
            )
        return self.value


def _check_output(name: str, output: object) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise LayerError(
            f"layer {name!r} returns {type(output).__name__}, not a tensor; choose a layer whose "
            "output is one tensor (B, C, *s)"
        )
    if output.ndim < 3:
        raise LayerError(
            f"layer {name!r} outputs shape {tuple(output.shape)}, which has no spatial axes; "
            "choose a layer before the network flattens or pools globally "
            "(camscope.probe_layers lists every layer's output shape)"
        )
    if not output.is_floating_point():
        raise LayerError(f"layer {name!r} outputs {output.dtype}, not a float tensor")
    return output


@contextlib.contextmanager
def record_layer(
    layer: nn.Module,
    name: str,
    *,
    leaf: bool = False,
    stop: bool = False,
    layout: LayoutResolver | None = None,
) -> Iterator[Recording]:
    """Record ``layer``'s output as a map ``(B, C, *s)`` whenever the model runs inside the block.

    Args:
        layer: the module.
        name: its name, for messages.
        layout: lays the output out as ``(B, C, *s)`` (tokens, channels last) and refuses
            outputs that are no map over the inputs' axes; ``None`` takes the output as
            channels first, unchecked (callers that know the inputs pass a resolver).
        leaf: record a detached leaf that requires grad, switch autograd on and hand a copy on:
            gradients at the layer come from ``autograd.grad(scores, recording.value)`` while the
            trunk below kept no graph.
        stop: end the forward pass once the layer ran (:func:`run_to_layer` expects this).

    Raises:
        LayerError: the layer runs twice in one pass, outputs no float tensor, or one that its
            layout cannot make a map of.
    """
    recording = Recording(name)

    def hook(module: nn.Module, args: object, output: object) -> torch.Tensor | None:
        recording.calls += 1
        if recording.calls > 1:
            raise LayerError(
                f"layer {name!r} runs more than once in one forward pass (a shared module); "
                "choose a layer that runs once, e.g. the block that contains it"
            )
        tensor = _check_output(name, output)
        shape = tensor.shape
        if layout is not None:
            layout.check_batch(name, shape)
        chosen = (
            CHANNELS_FIRST if layout is None else layout.resolve(name, shape, type(module).__name__)
        )
        recording.layout = chosen
        handed: torch.Tensor | None = None
        if leaf:
            # The map (B, C, *s) is the leaf; the model gets the same values in its own layout.
            value = chosen.to_maps(tensor).detach().requires_grad_(True)
            recording.value = value
            # From here on the forward pass is recorded: only the head above the layer.
            torch.set_grad_enabled(True)
            handed = chosen.from_maps(value, tensor)
        else:
            recording.value = chosen.to_maps(tensor)
        if stop:
            raise StopForward
        return handed

    handle = attach_hook(layer, name, hook)
    try:
        yield recording
    finally:
        handle.remove()


def run_to_layer(model: nn.Module, inputs: torch.Tensor, recording: Recording) -> torch.Tensor:
    """Run the model until the recorded layer (inside ``record_layer(..., stop=True)``).

    Returns:
        The layer's output.
    """
    recording.calls = 0
    recording.value = None
    with contextlib.suppress(StopForward):
        call_model(model, inputs)
    return recording.require()


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

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module,
        name: str,
        layout: LayoutResolver | None = None,
    ) -> None:
        self.model = model
        self.layer = layer
        self.name = name
        self.layout = layout
        self._stack: contextlib.ExitStack | None = None
        self._recording: Recording | None = None

    @property
    def laid_out(self) -> Layout:
        """The layout the recorded output was read in, after :meth:`run`."""
        return CHANNELS_FIRST if self._recording is None else self._recording.layout

    @property
    def activations(self) -> torch.Tensor | None:
        """The recorded activations (a leaf that requires grad), after :meth:`run`."""
        return None if self._recording is None else self._recording.value

    def __enter__(self) -> Capture:
        self._stack = contextlib.ExitStack()
        self._recording = self._stack.enter_context(
            record_layer(self.layer, self.name, leaf=True, layout=self.layout)
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def run(self, inputs: torch.Tensor) -> Any:
        """Run the model once, the trunk without autograd, and return its output.

        Raises:
            LayerError: the layer did not run, ran twice, or has an unusable output.
            ModelError: the model itself raised (original exception chained).
        """
        if self._recording is None:
            raise LayerError("use Capture as a context manager (with Capture(...) as capture)")
        self._recording.calls = 0
        self._recording.value = None
        with torch.no_grad():
            output = call_model(self.model, inputs)
        self._recording.require()
        return output

    def gradients(
        self, scores: torch.Tensor, *, chunk_size: int | None = None, progress: bool = False
    ) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Gradients of every target score w.r.t. the recorded activations, chunk by chunk.

        Args:
            scores: ``(B, T)``, computed from the output of :meth:`run`.
            chunk_size: targets per batched backward; ``None`` chooses from a memory budget.
            progress: show a progress bar over the chunks when they take a while.

        Yields:
            ``(start, stop, gradients)`` with gradients ``(B, stop - start, C, *s)``.

        Raises:
            LayerError: the scores do not depend on the layer.
        """
        activations = self.activations
        if activations is None:
            raise LayerError("no activations recorded; call run() first")
        automatic = chunk_size is None
        if chunk_size is None and scores.ndim == 2:
            chunk_size = auto_chunk_size(scores.shape[1], activations)
        yield from chunked_vjp(
            scores,
            activations,
            chunk_size=chunk_size,
            missing=self._independent,
            progress=f"gradients at {self.name}" if progress else None,
            automatic=automatic,
        )

    def maps(
        self,
        scores: torch.Tensor,
        function: Callable[..., torch.Tensor],
        *,
        chunk_size: int | None = None,
        progress: bool = False,
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
        silent = 0
        for start, stop, gradients in self.gradients(
            scores, chunk_size=chunk_size, progress=progress
        ):
            with torch.no_grad():
                pieces.append(function(shared, gradients, spatial_dims=activations.ndim - 2))
                zero = gradients.flatten(2).abs().amax(-1) == 0
                silent += int((zero & (scores[:, start:stop].detach().abs() > 0)).sum())
        if silent:
            self._warn_silent(silent, scores.numel())
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)

    def _warn_silent(self, silent: int, total: int) -> None:
        """A target that scores something but whose gradient is zero at every position of the
        layer (e.g. a layer after a ViT's class-token readout: only the class token carries
        gradient) gets an empty map: say so. A target that scores exactly 0 (a class absent
        from a dense output, a region outside a scan window) has an empty map by right."""
        warn(
            f"camscope: {silent} of {total} targets score but have zero gradient at every "
            f"position of layer {self.name!r}, so their maps are empty: its output does not "
            "reach these scores (a layer after a class-token readout: choose an earlier layer; a "
            "residual branch scaled by zero, as in an untrained network whose last norms start "
            "at zero, e.g. timm's zero_init_last: load trained weights)",
            key=("zero gradient at the layer", self.name),
        )

    def _independent(self) -> LayerError:
        return LayerError(
            f"the target scores do not depend on layer {self.name!r}, so it has no gradient; "
            "choose a layer on the path from the input to the scores"
        )


@dataclass
class ModuleTrace:
    """What one submodule did in a forward pass (see :func:`trace_modules`)."""

    name: str
    kind: str
    output_shape: tuple[int, ...] | None
    calls: int
    order: int
    #: the module that finished earlier with this very output tensor (a container's last
    #: child, e.g. torchvision ViT's ``encoder`` and its ``encoder.ln``), or ``None``.
    same_as: str | None = None


def module_kind(module: nn.Module, name: str) -> str:
    """The module's class name; for a ``torch.export`` program's unflattened submodule (an
    ``InterpreterModule``), the class it was exported from (from the graph's module stack), so
    layer listings and the default-layer rule see ``Conv2d`` and ``ReLU`` as in the eager model."""
    kind = type(module).__name__
    graph = getattr(module, "graph", None)
    if kind == "InterpreterModule" and graph is not None:
        for node in graph.nodes:
            for entry in node.meta.get("nn_module_stack", {}).values():
                fqn, type_name = entry[0], entry[1]
                if fqn == name:
                    return str(type_name).rpartition(".")[2]
    return kind


def trace_modules(model: nn.Module, inputs: torch.Tensor) -> list[ModuleTrace]:
    """Run one gradient-free forward pass and report what every submodule output, in the order
    the modules finished.

    Raises:
        LayerError: the model is TorchScript; ModelError: the model raised.
    """
    traces: dict[str, ModuleTrace] = {}
    counter = [0]
    handles = []
    # Outputs kept alive for the pass, so that an identical object means the same output.
    outputs: dict[int, tuple[str, object]] = {}

    def make_hook(name: str, kind: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: object, output: object) -> None:
            shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else None
            trace = traces.get(name)
            calls = 1 if trace is None else trace.calls + 1
            earlier = outputs.get(id(output))
            same_as = earlier[0] if earlier is not None and earlier[1] is output else None
            outputs.setdefault(id(output), (name, output))
            traces[name] = ModuleTrace(name, kind, shape, calls, counter[0], same_as)
            counter[0] += 1

        return hook

    try:
        for name, module in model.named_modules():  # the model itself too (name ""): its output
            hook = make_hook(name, module_kind(module, name))
            handles.append(attach_hook(module, name or "the model", hook))
        with ModelState(model), torch.no_grad():  # eval mode: batch statistics untouched
            call_model(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return sorted(traces.values(), key=lambda trace: trace.order)
