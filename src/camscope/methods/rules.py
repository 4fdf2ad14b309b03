"""Modified backward rules for ReLU: Deconvnet and guided backpropagation.

``relu_rule("guided")`` / ``relu_rule("deconvnet")`` is a context manager: while it is active,
every ReLU the forward pass meets is computed by an :class:`torch.autograd.Function` whose backward
applies the rule. It catches ``nn.ReLU`` modules (in-place or not), ``F.relu``/``F.relu_``,
``torch.relu``/``torch.relu_`` and ``Tensor.relu``/``Tensor.relu_`` through a
:class:`torch.overrides.TorchFunctionMode`, so models written with functional ReLUs get the same
treatment as models built from modules (module hooks, as some peers use, miss those). No hook is
registered and no module is touched: the model is exactly as it was afterwards.

Rules (Springenberg et al. 2015; Zeiler & Fergus 2014):

=============  =================================================
``gradient``   ``grad_out · 1[x > 0]`` (plain autograd)
``guided``     ``grad_out · 1[x > 0] · 1[grad_out > 0]``
``deconvnet``  ``max(grad_out, 0)``, whatever the forward sign
=============  =================================================

Max-pooling routes gradients through its switches, as autograd does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["CallMode", "ReluRule", "check_rule_applied", "in_place", "relu_rule"]

ReluRule = Literal["gradient", "guided", "deconvnet"]

RULES: tuple[str, ...] = ("gradient", "guided", "deconvnet")


class _GuidedReLU(torch.autograd.Function):
    generate_vmap_rule = True  # usable with batched gradients (is_grads_batched)

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        # The output, not the input: an in-place ReLU overwrites its input afterwards.
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (output,) = ctx.saved_tensors
        return grad.clamp_min(0) * (output > 0)


class _DeconvReLU(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp_min(0)


# the aten operators are what a torch.export program's graph calls
_OUT_OF_PLACE = {F.relu, torch.relu, torch.Tensor.relu, torch.ops.aten.relu.default}
_IN_PLACE = {F.relu_, torch.relu_, torch.Tensor.relu_, torch.ops.aten.relu_.default}


class CallMode(TorchFunctionMode):
    """A :class:`~torch.overrides.TorchFunctionMode` that hands every torch call made while it is
    active to :meth:`handle` (inside which the mode is off, so the calls it makes run as usual)."""

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        return self.handle(func, args, kwargs or {})

    def handle(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run ``func`` (or what replaces it); by default as it is."""
        return func(*args, **kwargs)


def in_place(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether an activation call writes into its input: ``relu_`` and its kin, or a functional
    activation with ``inplace=True`` (``F.relu(x, True)``)."""
    if func in _IN_PLACE:
        return True
    if func is F.relu and len(args) > 1:
        return bool(args[1])
    return bool(kwargs.get("inplace", False))


class _ReluMode(CallMode):
    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.function = function
        self.calls = 0

    def handle(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        writes = in_place(func, args, kwargs)
        if func in _OUT_OF_PLACE or func in _IN_PLACE:
            x = args[0]
            if isinstance(x, torch.Tensor) and x.is_floating_point():
                self.calls += 1
                result = self.function(x)
                if writes and not (x.is_leaf and x.requires_grad):
                    x.copy_(result)  # keep in-place semantics for code that reuses x
                    return x
                return result
        return func(*args, **kwargs)


@contextlib.contextmanager
def relu_rule(rule: ReluRule) -> Iterator[_ReluMode | None]:
    """Apply a backward rule to every ReLU run inside the block.

    Args:
        rule: ``"gradient"`` (no change), ``"guided"`` or ``"deconvnet"``.

    Yields:
        The active mode (its ``calls`` counts the ReLUs it replaced), or ``None`` for
        ``"gradient"``.

    Raises:
        ValueError: unknown rule.
    """
    if rule == "gradient":
        yield None
        return
    functions = {"guided": _GuidedReLU.apply, "deconvnet": _DeconvReLU.apply}
    if rule not in functions:
        raise ValueError(f"unknown ReLU rule {rule!r}; use one of {', '.join(RULES)}")
    with _ReluMode(functions[rule]) as mode:
        yield mode


def check_rule_applied(mode: _ReluMode | None, rule: str, model: torch.nn.Module) -> None:
    """Refuse a guided/deconvnet result from a forward pass that met no ReLU: the rule changes
    nothing there, and the map would silently be the plain gradient.

    Raises:
        MethodError: no ReLU ran (the model's other activations are named).
    """
    if mode is None or mode.calls:
        return
    from camscope.errors import MethodError

    if isinstance(model, torch.jit.ScriptModule):
        raise MethodError(
            f"the {rule} rule changes the backward pass of ReLUs, and TorchScript runs no Python "
            "hooks, so it cannot: the map would be the plain gradient. Load the model as a "
            "module (its weights with --architecture, or the nn.Module) for this method, or use "
            "saliency (or integrated_gradients) on the TorchScript model"
        )

    names = ("PReLU", "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Softplus",
             "Tanh", "Sigmoid", "Hardswish", "ReLU6", "RReLU")  # fmt: skip
    found = sorted({type(m).__name__ for m in model.modules() if type(m).__name__ in names})
    what = f" (its activations: {', '.join(found)})" if found else ""
    raise MethodError(
        f"the {rule} rule changes the backward pass of ReLUs, and this model ran none{what}: "
        "the map would be the plain gradient. Use saliency (or integrated_gradients) for this "
        "model, or build it with ReLU activations"
    )
