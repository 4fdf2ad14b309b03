"""Replaying the unchanged bottom of a network instead of running it again.

A randomisation test re-draws a network's layers from the top down and explains the inputs after
every step. Everything that ran before the first re-drawn module started computes, at every
step, what it computed in the original network: the same inputs through the same weights. A
:class:`PrefixReplay` records each module's output once (under ``no_grad``) and, while
:meth:`PrefixReplay.replaying` is active, lets every such module return a copy of its recorded
output instead of running, whenever

* autograd is off (a layer method's trunk below its layer runs so: the gradients it needs stop
  at the layer; a pass that needs gradients through the bottom runs it as usual),
* the module is called with exactly what it was called with when recorded (checked: by a tag on
  the tensor a replayed module handed on, or else value by value, so a pass on other inputs,
  e.g. masked copies, runs as usual), and
* no module inside it carries a hook (a hook there would not fire).

Only modules called once per pass with tensors in and one tensor out are recorded. A network
whose modules read parameters that another module owns (tied weights) could be replayed where it
should not: the randomisation tests take ``reuse=False`` for those.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from camscope.engine.state import ModelState, call_model

__all__ = ["PrefixReplay"]

#: What one recording may hold (bytes of copied outputs and inputs); beyond it, nothing is
#: replayed (the passes run as usual).
RECORD_BUDGET = 2 * 1024**3

_TAG = "_camscope_replayed"


@dataclass
class _Call:
    """One module's single call in the recorded pass."""

    start: int
    finish: int = -1
    #: per positional argument: the name of the recorded module whose output it was (unchanged
    #: since), or a copy of its value
    inputs: tuple[str | torch.Tensor, ...] = ()
    output: torch.Tensor | None = None
    replayable: bool = True


def _version(tensor: torch.Tensor) -> int | None:
    """The in-place version counter (``None`` for inference tensors, which keep none)."""
    return None if tensor.is_inference() else tensor._version


def _hooks(module: nn.Module) -> bool:
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
    )


def _global_hooks() -> bool:
    hooks = torch.nn.modules.module
    return bool(
        hooks._global_forward_hooks
        or hooks._global_forward_pre_hooks
        or hooks._global_backward_hooks
        or hooks._global_backward_pre_hooks
    )


class PrefixReplay:
    """The recorded pass of ``model`` on ``inputs`` (see the module's docstring).

    Args:
        model: the network to replay (a working copy: its ``forward`` methods are patched while
            :meth:`replaying` is active, and restored afterwards, on an error too).
        inputs: the inputs every later pass will be given.
        budget: the most bytes the recording may hold; ``enabled`` is False beyond it.
    """

    def __init__(self, model: nn.Module, inputs: torch.Tensor, *, budget: int = RECORD_BUDGET):
        self.model = model
        self.calls: dict[str, _Call] = {}
        self.enabled = self._record(inputs, budget)

    def _record(self, inputs: torch.Tensor, budget: int) -> bool:
        modules = {name: module for name, module in self.model.named_modules() if name}
        counts: Counter[str] = Counter()
        clock = itertools.count()
        produced: dict[int, tuple[torch.Tensor, int | None, str]] = {}  # id → tensor, version, name
        held = [0]

        def source(arg: object) -> str | torch.Tensor | None:
            if not isinstance(arg, torch.Tensor):
                return None
            known = produced.get(id(arg))
            if known is not None and known[0] is arg and known[1] == _version(arg):
                return known[2]
            held[0] += arg.numel() * arg.element_size()
            return arg.detach().clone()

        def before(name: str) -> Callable[..., None]:
            def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                counts[name] += 1
                if counts[name] > 1:
                    self.calls[name].replayable = False
                    return
                call = self.calls[name] = _Call(start=next(clock))
                sources = [source(arg) for arg in args]
                call.inputs = tuple(s for s in sources if s is not None)
                call.replayable = not kwargs and len(call.inputs) == len(args) > 0

            return hook

        def after(name: str) -> Callable[..., None]:
            def hook(_module: nn.Module, _args: Any, _kwargs: Any, output: object) -> None:
                call = self.calls[name]
                if counts[name] > 1:
                    return
                call.finish = next(clock)
                if not isinstance(output, torch.Tensor) or not call.replayable:
                    call.replayable = False
                    return
                known = produced.get(id(output))
                if known is not None and known[0] is output and known[1] == _version(output):
                    call.output = self.calls[known[2]].output  # the same tensor, one copy
                else:
                    held[0] += output.numel() * output.element_size()
                    call.output = output.detach().clone()
                produced[id(output)] = (output, _version(output), name)

            return hook

        handles = []
        try:
            for name, module in modules.items():
                handles.append(module.register_forward_pre_hook(before(name), with_kwargs=True))
                handles.append(
                    module.register_forward_hook(after(name), with_kwargs=True, always_call=True)
                )
            with ModelState(self.model), torch.no_grad():
                call_model(self.model, inputs)
        finally:
            for handle in handles:
                handle.remove()
        for call in self.calls.values():  # an input from a module that cannot be replayed
            if any(isinstance(s, str) and not self.calls[s].replayable for s in call.inputs):
                call.replayable = False
        return held[0] <= budget

    def frontier(self, changed: Iterable[str]) -> float:
        """When the first of the ``changed`` modules (or any module inside one) started."""
        starts = [
            call.start
            for name, call in self.calls.items()
            for root in changed
            if name == root or name.startswith(f"{root}.")
        ]
        return min(starts, default=float("inf"))

    @contextlib.contextmanager
    def replaying(self, changed: Iterable[str]) -> Iterator[int]:
        """Within the block, every module that finished before the first of the ``changed``
        modules started may return its recorded output; yields how many modules may."""
        if not self.enabled:
            yield 0
            return
        limit = self.frontier(list(changed))
        modules = dict(self.model.named_modules())
        chosen = [
            name
            for name, call in self.calls.items()
            if call.replayable and call.finish < limit and name in modules
        ]
        saved: list[tuple[nn.Module, Callable[..., Any] | None]] = []
        try:
            for name in chosen:
                module = modules[name]
                saved.append((module, module.__dict__.get("forward")))
                module.forward = self._forward(name, module)
            yield len(chosen)
        finally:
            for module, previous in saved:
                if previous is None:
                    del module.forward
                else:
                    module.forward = previous

    def _forward(self, name: str, module: nn.Module) -> Callable[..., Any]:
        run = module.forward
        call = self.calls[name]
        inside = [m for m in module.modules() if m is not module]

        def forward(*args: Any, **kwargs: Any) -> Any:
            if (
                kwargs
                or torch.is_grad_enabled()
                or _global_hooks()
                or any(_hooks(m) for m in inside)
                or not self._matches(call, args)
            ):
                return run(*args, **kwargs)
            assert call.output is not None
            copy = call.output.clone()
            version = _version(copy)
            if version is not None:
                setattr(copy, _TAG, (name, version))
            return copy

        return forward

    def _matches(self, call: _Call, args: tuple[Any, ...]) -> bool:
        if len(args) != len(call.inputs):
            return False
        for arg, recorded in zip(args, call.inputs, strict=True):
            if not isinstance(arg, torch.Tensor):
                return False
            if isinstance(recorded, str):
                tag = getattr(arg, _TAG, None)
                if tag is not None and tag == (recorded, _version(arg)):
                    continue
                value = self.calls[recorded].output
            else:
                value = recorded
            if (
                value is None
                or arg.shape != value.shape
                or arg.dtype != value.dtype
                or arg.device != value.device
                or not torch.equal(arg, value)
            ):
                return False
        return True
