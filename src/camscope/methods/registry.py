"""Name → method registry (``list_methods`` / ``get_method`` / ``register_method``)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from camscope.errors import MethodError

__all__ = ["MethodInfo", "get_method", "list_methods", "register_method"]

LayerFunction = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class MethodInfo:
    """A registered method.

    Attributes:
        name: registry name, snake_case.
        function: for ``kind == "layer"``, ``(activations, gradients, *, spatial_dims) -> cam``.
        kind: ``"layer"``: a map at the resolution of a chosen layer from its activations and
            gradients.
        summary: one line for ``list_methods``/the CLI.
        signed: whether the raw maps can be negative (chooses a diverging colour map).
    """

    name: str
    function: LayerFunction
    kind: Literal["layer"]
    summary: str
    signed: bool


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
