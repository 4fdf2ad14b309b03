"""Name → method registry (``list_methods`` / ``get_method`` / ``register_method``)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from camscope.errors import MethodError

__all__ = ["MethodInfo", "get_method", "list_methods", "register_method"]

MethodFunction = Callable[..., Any]


@dataclass(frozen=True)
class MethodInfo:
    """A registered method.

    Attributes:
        name: registry name, snake_case.
        function: for ``kind == "layer"``, ``(activations, gradients, *, spatial_dims) -> cam``;
            for ``kind == "model"``, ``(problem, **options) -> MethodResult`` (it runs the model
            itself: input gradients, perturbations).
        kind: ``"layer"``: a map from a layer's activations and gradients (the CAM family);
            ``"model"``: a method that drives the model (input-space maps, Score-CAM).
        summary: one line for ``list_methods``/the CLI.
        signed: whether the raw maps can be negative (chooses a diverging colour map).
        resolution: ``"layer"``: maps ``(B, T, *s)`` at the chosen layer; ``"input"``: maps
            ``(B, T, C_in, *S)`` at input resolution, per input channel.
        needs_layer: whether the method uses a layer (``layer=`` argument).
        channel_reduction: how input-space maps become one map per target for display:
            ``"max_abs"`` (gradient magnitudes) or ``"sum"`` (attributions, keeps their total).
    """

    name: str
    function: MethodFunction
    kind: Literal["layer", "model"]
    summary: str
    signed: bool
    resolution: Literal["layer", "input"] = "layer"
    needs_layer: bool = True
    channel_reduction: Literal["max_abs", "sum"] = "sum"


_REGISTRY: dict[str, MethodInfo] = {}


def register_method(info: MethodInfo) -> MethodInfo:
    """Add a method to the registry.

    Raises:
        MethodError: the name is taken.
    """
    if info.name in _REGISTRY:
        raise MethodError(f"a method named {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


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
    close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise MethodError(f"unknown method {name!r}.{hint} Available: {', '.join(list_methods())}")
