"""Name → model constructor registry (``list_models`` / ``create_model``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from camscope.errors import CamscopeError, unknown_name

__all__ = ["create_model", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(function: F) -> F:
    """Register a constructor under its function name (decorator)."""
    _MODELS[function.__name__] = function
    return function


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_MODELS)


def create_model(name: str, **options: Any) -> nn.Module:
    """Build a registered model.

    Raises:
        CamscopeError: unknown name (the message lists the registered ones).
    """
    key = name.strip().lower().replace("-", "_")
    if key not in _MODELS:
        raise CamscopeError(unknown_name("model", name, list_models()))
    return _MODELS[key](**options)
