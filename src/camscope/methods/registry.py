"""Name → method registry: each method is declared where its formula is, with :func:`method`.

``list_methods()`` gives the registered names (snake_case; the CLI also accepts kebab-case),
``get_method(name)`` a :class:`MethodInfo`.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from camscope.errors import MethodError, unknown_name

__all__ = ["MethodInfo", "MethodKind", "check_option", "get_method", "list_methods", "method"]

#: ``"cam"``: ``(activations, gradients) -> map`` at a layer (the CAM family);
#: ``"layer"``: drives the model and returns maps at a layer (Score-CAM);
#: ``"input"``: drives the model and returns maps at input resolution, per input channel.
MethodKind = Literal["cam", "layer", "input"]
ChannelReduction = Literal["max_abs", "sum"]
Upsampling = Literal["linear", "nearest", "gaussian"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class MethodInfo:
    """A registered method.

    Attributes:
        name: registry name, snake_case.
        function: for ``kind == "cam"``, ``(activations, gradients, *, spatial_dims) -> cam``;
            otherwise ``(problem, **options) -> MethodResult`` (it runs the model itself).
        kind: see :data:`MethodKind`.
        summary: one line for ``list_methods``/the CLI.
        signed: whether the raw maps can be negative (a diverging colour map; a sequential one
            for non-negative maps).
        needs_layer: whether the method takes ``layer=`` (all but input-space methods, and
            Guided Grad-CAM).
        channel_reduction: how input-space maps become one map per target for display:
            ``"max_abs"`` (gradient magnitudes) or ``"sum"`` (attributions, keeps their total).
        upsampling: the default way layer maps reach input resolution.
        options: keyword options and their defaults (empty for the CAM family).
        gradient_rule: for methods that are one backward pass of the unperturbed batch under a
            ReLU rule (vanilla gradients, Deconvnet, guided backpropagation): the rule.
            ``explain()`` then runs the one forward pass with gradients and under that rule,
            picks the targets from it and hands its graph to the method, instead of a separate
            no-grad pass to fix the targets first (one forward pass instead of two).
        may_be_empty: a map can be all zero while its target's score depends on the input (no
            warning then): Deconvnet and guided backpropagation pass only positive gradients
            back through ReLUs; LIME's Lasso can shrink every coefficient to zero; LRP's z⁺ rule
            hands all relevance to the biases when no positive weight carries it.
        target_blind: the map does not depend on the target or the model's output (attention
            rollout, EigenCAM, KPCA-CAM): an all-zero output does not empty it.
    """

    name: str
    function: Callable[..., Any]
    kind: MethodKind
    summary: str
    signed: bool = True
    needs_layer: bool = True
    channel_reduction: ChannelReduction = "sum"
    upsampling: Upsampling = "linear"
    options: Mapping[str, Any] = field(default_factory=dict)
    gradient_rule: str | None = None
    may_be_empty: bool = False
    target_blind: bool = False

    @property
    def shown_signed(self) -> bool:
        """Whether the map as shown can be negative: input-space maps reduced by ``max_abs``
        (gradients, guided backpropagation) are not, and get a sequential colour map."""
        return self.signed and not (self.kind == "input" and self.channel_reduction == "max_abs")

    def run(self, context: Any, **options: Any) -> Any:
        """Run the method on an ``explain()`` call's context: the one contract every method has.

        ``context`` is a :class:`~camscope.methods.context.MethodContext`; the result a
        :class:`~camscope.methods.context.MethodResult`. A CAM-family formula is run on the
        context's layer path (one forward pass, one batched backward pass at the layer).
        """
        if self.kind == "cam":
            from camscope.methods.context import MethodResult

            return MethodResult(context.layer_maps(self.function))
        return self.function(context, **options)

    @property
    def resolution(self) -> Literal["layer", "input"]:
        """Where the maps live: ``"input"`` (``(B, T, C_in, *S)``) or ``"layer"``
        (``(B, T, *s)``)."""
        return "input" if self.kind == "input" else "layer"


_REGISTRY: dict[str, MethodInfo] = {}


def _accepts(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits a type hint (unions, None, numbers, text, literals, sequences,
    tensors; anything else is accepted)."""
    import torch

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is torch.Tensor:
        return isinstance(value, torch.Tensor)
    if origin in (collections.abc.Sequence, list, tuple):
        args = typing.get_args(hint)
        return isinstance(value, list | tuple) and all(_accepts(item, args[0]) for item in value)
    return True


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return " or ".join(repr(arg) for arg in typing.get_args(hint))
    if origin in (collections.abc.Sequence, list, tuple):
        item = typing.get_args(hint)[0]
        plural = {int: "integers", float: "numbers", str: "texts"}.get(item, _describe(item))
        return f"a list of {plural}"
    names = {int: "an integer", float: "a number", str: "text", bool: "true or false"}
    return names.get(hint, "None" if hint is type(None) else getattr(hint, "__name__", str(hint)))


def check_option(info: MethodInfo, name: str, value: Any) -> None:
    """Refuse an option value of the wrong type with a one-line :class:`MethodError`."""
    hint = typing.get_type_hints(info.function).get(name)
    if hint is not None and not _accepts(value, hint):
        raise MethodError(f"{info.name}: option {name}={value!r} must be {_describe(hint)}")


def _options(function: Callable[..., Any], kind: MethodKind) -> dict[str, Any]:
    if kind == "cam":
        return {}
    parameters = list(inspect.signature(function).parameters.values())[1:]
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def method(
    *,
    kind: MethodKind,
    summary: str,
    signed: bool = True,
    needs_layer: bool | None = None,
    channel_reduction: ChannelReduction = "sum",
    upsampling: Upsampling = "linear",
    name: str | None = None,
    gradient_rule: str | None = None,
    may_be_empty: bool = False,
    target_blind: bool = False,
) -> Callable[[F], F]:
    """Register the decorated function as a method (its name by default).

    Raises:
        MethodError: the name is taken.
    """

    def register(function: F) -> F:
        key = name or function.__name__
        if key in _REGISTRY:
            raise MethodError(f"a method named {key!r} is already registered")
        _REGISTRY[key] = MethodInfo(
            name=key,
            function=function,
            kind=kind,
            summary=summary,
            signed=signed,
            needs_layer=kind != "input" if needs_layer is None else needs_layer,
            channel_reduction=channel_reduction,
            upsampling=upsampling,
            options=_options(function, kind),
            gradient_rule=gradient_rule,
            may_be_empty=may_be_empty,
            target_blind=target_blind,
        )
        return function

    return register


def list_methods() -> list[str]:
    """The registered method names, sorted."""
    return sorted(_REGISTRY)


def get_method(name: str) -> MethodInfo:
    """Look a method up by name (snake_case or kebab-case, any letter case).

    Raises:
        MethodError: unknown name; the message lists the close matches and all names.
    """
    if not isinstance(name, str):
        raise MethodError(f"method must be a name (str), not {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key in _REGISTRY:
        return _REGISTRY[key]
    raise MethodError(unknown_name("method", name, list_methods()))
