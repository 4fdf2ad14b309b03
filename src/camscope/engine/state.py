"""The user's model as camscope runs it: train/eval flags restored, its own errors wrapped.

While camscope runs a model, batch-statistics buffers (BatchNorm's running mean, variance and
batch counter) are kept as they were: a forward pass in train mode updates them in place, which
would change the user's model behind their back.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils._pytree import tree_map

from camscope.engine.relay import said_once
from camscope.errors import CamscopeError, ModelError

__all__ = [
    "ModelState",
    "any_model",
    "call_model",
    "eager_model",
    "is_exported",
    "is_exported_graph",
    "weights_digest",
]


def call_model(model: nn.Module, inputs: torch.Tensor) -> Any:
    """Run the user's model; its own failures become :class:`ModelError` (cause chained).

    camscope's errors raised from inside (e.g. by a hook) pass through unchanged.
    """
    try:
        return model(inputs)
    except CamscopeError:
        raise
    except Exception as error:
        message = str(error).strip()
        lines = [line for line in message.splitlines() if line.strip()]
        text = lines[0] if lines else ""
        if text.startswith("The following operation failed in the TorchScript interpreter"):
            text = lines[-1].strip()  # TorchScript's own error is its last line
        raise ModelError(
            f"the model raised {type(error).__name__} during the forward pass: {text}"
            f"{_hint(message, inputs)}"
        ) from error


def _hint(message: str, inputs: Any) -> str:
    """What to do about the commonest mismatches between the inputs and the model."""
    dims = inputs.ndim - 2 if isinstance(inputs, torch.Tensor) else None
    what = {2: "2D images", 3: "3D volumes"}.get(dims or 0, "inputs")
    if "shape[0]" in message and "to be <=" in message:
        return (
            "; this torch.export program's batch axis has a maximum, and camscope runs larger "
            "batches (Integrated Gradients' steps, perturbed copies): export it with an unbounded "
            "batch axis, torch.export.Dim('batch') without max"
        )
    if "shape[0]" in message and ("dynamic_shapes" in message or "Dim.DYNAMIC" in message):
        return (
            "; this torch.export program was exported for a fixed batch size: camscope runs "
            "batches of other sizes (a layer probe, perturbed copies), so export it with a "
            "dynamic batch axis, from an example batch of 2 or more: torch.export.export("
            "model, (x,), dynamic_shapes=({0: torch.export.Dim('batch')},))"
        )
    fixed = re.search(r"shape\[(\d+)\] to be equal to (\d+)", message)
    if fixed and int(fixed.group(1)) >= 2 and isinstance(inputs, torch.Tensor):
        axis = int(fixed.group(1))
        size = tuple(inputs.shape[2:])
        return (
            f"; this torch.export program was exported for a fixed spatial size ({fixed.group(2)} "
            f"along axis {axis}) and was given {size}: export it with dynamic spatial dimensions "
            f"(dynamic_shapes with torch.export.Dim for axes 2 and up), or give it inputs (a "
            f"scan's windows: --roi / roi_size) of the size it was exported at"
        )
    convolution = re.search(r"input to conv(\d)d", message)
    seen = re.search(r"expected input\[([\d, ]+)\]", message)
    if dims is not None and (
        (convolution and int(convolution.group(1)) != dims)
        or (seen and len(seen.group(1).split(",")) != dims + 2)
    ):
        return (
            f"; the inputs are {what} {tuple(inputs.shape)} and the model's convolutions take "
            "another number of axes: give 2D images to a 2D network and volumes to a 3D one"
        )
    if "mat1 and mat2 shapes cannot be multiplied" in message and isinstance(inputs, torch.Tensor):
        return (
            f"; the inputs' size {tuple(inputs.shape[2:])} does not fit the model's fully "
            "connected layer, which was made for inputs of another size: resize the inputs to "
            "the size the model was made for (for a built-in model, or an architecture given "
            "by name, set input_size: --arch-option input_size=N)"
        )
    channels = re.search(r"to have (\d+) channels, but got", message) or re.search(
        r"shape\[1\] to be equal to (\d+)", message
    )
    if channels and isinstance(inputs, torch.Tensor):
        return (
            f"; the inputs have {inputs.shape[1]} channel(s), the model takes "
            f"{channels.group(1)}: give it images of that many channels (grey or RGB, as it was "
            "trained), or a model made for these"
        )
    return ""


def is_exported_graph(model: nn.Module) -> bool:
    """Whether ``model`` is an exported program's ``.module()``: one graph, its layers inlined
    (not run as modules, unlike ``torch.export.unflatten(program)``)."""
    return is_exported(model) and not hasattr(model, "module_call_graph")


def is_exported(model: nn.Module) -> bool:
    """Whether ``model`` comes from a ``torch.export`` program (frozen in its train/eval mode)."""
    from torch.export.unflatten import UnflattenedModule

    return isinstance(model, UnflattenedModule) or hasattr(model, "_guards_fn")


def eager_model(model: Any) -> Any:
    """The module camscope should run for ``model``.

    * ``torch.compile(model)``: the original module (``_orig_mod``). A compiled graph replays
      without running Python hooks, so layer methods would never see their layer; the original
      module has the same parameters and computes the same function.
    * a ``torch.export`` program (``ExportedProgram``): its unflattened module, whose submodules
      keep their original names (``conv2``) and run as modules, so layers can be recorded.

    Anything else is returned as it is.
    """
    original = getattr(model, "_orig_mod", None)
    if isinstance(model, nn.Module) and isinstance(original, nn.Module):
        return original
    if isinstance(model, torch.export.ExportedProgram):
        return torch.export.unflatten(model)
    return model


Function = TypeVar("Function", bound=Callable[..., Any])


def any_model(function: Function) -> Function:
    """Decorator for public functions whose first argument is ``model``: a compiled
    (``torch.compile``) or exported (``torch.export``) model is converted once by
    :func:`eager_model` before the function sees it, so every metric takes what ``explain()``
    takes; the warnings raised inside are said once, at the caller's line
    (:func:`~camscope.engine.relay.said_once`)."""

    @said_once
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if args:
            args = (eager_model(args[0]), *args[1:])
        elif "model" in kwargs:
            kwargs["model"] = eager_model(kwargs["model"])
        return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


#: Models being explained right now, by id: a second explanation of the same model from another
#: thread would see the first one's hooks (see :class:`ModelState`).
_ACTIVE: dict[int, int] = {}
_ACTIVE_LOCK = threading.Lock()


class ModelState:
    """Context manager: the model as camscope needs it, restored exactly on exit.

    On entry it records every module's train/eval flag and every batch-statistics buffer
    (running mean/variance, batch counters); on exit it puts them back, so a forward pass run in
    train mode (``eval_mode=False``) leaves no trace in the model. Only one camscope call may work
    on a model at a time: a call from a second thread while the first runs raises
    :class:`ModelError` instead of mixing the two calls' hooks.

    Args:
        model: the network.
        eval_mode: put the model in eval mode for the duration (dropout off, batch-norm running
            statistics); ``False`` runs it in whatever mode it is in.
    """

    def __init__(self, model: nn.Module, *, eval_mode: bool = True) -> None:
        self.model = model
        self.eval_mode = eval_mode
        self._flags: list[tuple[nn.Module, bool]] = []
        self._buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._owner = False
        self._eager: Any = None  # torch.compiler.set_stance("force_eager") while it runs

    def __enter__(self) -> ModelState:
        key = id(self.model)
        thread = threading.get_ident()
        with _ACTIVE_LOCK:
            holder = _ACTIVE.get(key)
            if holder is not None and holder != thread:
                raise ModelError(
                    "this model is being explained by another thread right now; camscope "
                    "attaches hooks to the model while it runs, so calls on one model must not "
                    "overlap (wait for the other call, or explain a copy: copy.deepcopy(model))"
                )
            if holder is None:
                _ACTIVE[key] = thread
                self._owner = True
        self._flags = [(module, module.training) for module in self.model.modules()]
        if _has_compiled_parts(self.model):
            # ``model.compile()`` in place, or a submodule replaced by ``torch.compile(...)``:
            # run them eagerly for this call (hooks and batched gradients need the Python code).
            self._eager = torch.compiler.set_stance("force_eager")
            self._eager.__enter__()
        if not self.eval_mode:
            self._buffers = [
                (buffer, buffer.detach().clone())
                for module in self.model.modules()
                if isinstance(module, nn.modules.batchnorm._NormBase)
                for buffer in module.buffers(recurse=False)
            ]
        if self.eval_mode and not is_exported(self.model):
            # An exported program is frozen in the mode it was exported in (its graph holds
            # either the batch-norm statistics or the batch's); it is run as it is.
            self.model.eval()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._eager is not None:
            self._eager.__exit__(None, None, None)
            self._eager = None
        for module, training in self._flags:
            module.training = training
        with torch.no_grad():
            for buffer, saved in self._buffers:
                buffer.copy_(saved)
        self._buffers = []
        if self._owner:
            with _ACTIVE_LOCK:
                _ACTIVE.pop(id(self.model), None)
            self._owner = False


def _has_compiled_parts(model: Any) -> bool:
    """Whether any module of ``model`` was compiled in place (``module.compile()``) or is a
    ``torch.compile`` wrapper set as a submodule."""
    if not isinstance(model, nn.Module):
        return False
    return any(
        getattr(module, "_compiled_call_impl", None) is not None
        or isinstance(getattr(module, "_orig_mod", None), nn.Module)
        for module in model.modules()
    )


def weights_digest(model: Any) -> str:
    """A SHA-256 digest (16 hex digits) of every parameter and buffer, with their names: two
    models with the same digest compute the same function (a resumed run checks it). Takes every
    model camscope explains: modules, TorchScript, ``torch.compile`` and ``torch.export``."""
    import hashlib

    state = (
        model.state_dict  # an ExportedProgram holds its weights as a plain dict
        if isinstance(model, torch.export.ExportedProgram)
        else eager_model(model).state_dict()
    )
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(state.items()):
            if not isinstance(tensor, torch.Tensor):
                continue
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(
                tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
            )
    return digest.hexdigest()[:16]


def detached(output: Any) -> Any:
    """The model's output with every tensor in it detached (tuples, lists and dicts too), so an
    Explanation never holds the head's graph (a backward on it would reach the parameters)."""
    return tree_map(lambda v: v.detach() if isinstance(v, torch.Tensor) else v, output)
