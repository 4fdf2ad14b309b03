"""One exception family for every error a user can cause.

Every message says what was wrong and what to do about it. The CLI turns these into a one-line
message and a non-zero exit code.
"""

from __future__ import annotations

__all__ = [
    "CamscopeError",
    "InputError",
    "LayerError",
    "MethodError",
    "ModelError",
    "TargetError",
    "unknown_name",
]


class CamscopeError(Exception):
    """Base class of every error camscope raises for a user's mistake or a model's failure."""


class InputError(CamscopeError, ValueError):
    """The input tensor has the wrong rank, dtype, or contains NaN/Inf."""


class LayerError(CamscopeError, LookupError):
    """The requested layer does not exist, does not run, or has no spatial extent."""


class TargetError(CamscopeError, ValueError):
    """The targets do not fit the batch or the model's output."""


class MethodError(CamscopeError, LookupError):
    """Unknown method name, or a method that does not apply to this model."""


class ModelError(CamscopeError, RuntimeError):
    """The model raised while camscope ran it; the original exception is chained."""


def unknown_name(what: str, name: str, choices: list[str], *, cutoff: float = 0.5) -> str:
    """``unknown <what> 'name'. Did you mean ...? Available: ...``: one message for every lookup
    by name (methods, models, layers), with close matches first and at most 40 names listed."""
    import difflib

    close = difflib.get_close_matches(name, choices, n=3, cutoff=cutoff)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = ", ".join(choices[:40])
    if len(choices) > 40:
        shown += f", ... ({len(choices) - 40} more)"
    return f"unknown {what} {name!r}.{hint} Available: {shown}"
