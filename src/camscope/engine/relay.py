"""camscope's warnings: said once per public call, at the line that called camscope.

A public function runs the methods many times (an MPRT step per layer, a SmoothGrad sample, a
scan's batches, a sanity check's methods), and a warning raised inside would repeat at every step,
its counts changed, pointing inside camscope. Every camscope warning goes through :func:`warn`:

* it is raised at the line that called camscope (the frame above the outermost camscope frame on
  the stack), whatever the depth it comes from;
* while a public call decorated with :func:`said_once` runs, a warning with the same ``key`` as
  one already said in that call is not said again (the key leaves out what changes from step to
  step: counts, percentages), and what was said is kept for the call's records
  (:func:`said_so_far`: manifests, results.json, reports).

Nothing global is changed: the state of a call lives in a context variable (its own in every
thread), warnings of other code (torch, the model's own) are left alone, and the caller's
warning filters apply as always (``-W error`` stops at the first warning; Python's own
once-per-line display still holds across calls).
"""

from __future__ import annotations

import contextvars
import functools
import os
import re
import sys
import warnings
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["add_said", "said_once", "said_so_far", "warn"]

#: camscope's own source folder: frames of files under it are camscope's.
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Function = TypeVar("Function", bound=Callable[..., Any])


@dataclass
class _Call:
    keys: set[Hashable] = field(default_factory=set)
    said: list[str] = field(default_factory=list)


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("camscope_call", default=None)


def said_once(function: Function) -> Function:
    """Decorator for public functions: while the outermost one runs, each warning (by its key)
    is said once and kept for the records (see the module docstring)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _CALL.get() is not None:
            return function(*args, **kwargs)
        token = _CALL.set(_Call())
        try:
            return function(*args, **kwargs)
        finally:
            _CALL.reset(token)

    return wrapper  # type: ignore[return-value]


def warn(message: str, *, key: Hashable = None, category: type[Warning] = RuntimeWarning) -> None:
    """Say ``message`` at the line that called camscope, unless the running call said a warning
    of the same ``key`` already (default: the message itself; give one without the counts of a
    message that has some)."""
    call = _CALL.get()
    if call is not None:
        seen = (category, message if key is None else key)
        if seen in call.keys:
            return
        call.keys.add(seen)
    level = _caller_level()
    if call is not None and _shown(message, category, level):
        call.said.append(message)
    warnings.warn(message, category, stacklevel=level)


def said_so_far() -> list[str]:
    """The warnings said so far in the running camscope call, in order; empty outside one."""
    call = _CALL.get()
    return [] if call is None else list(call.said)


def add_said(messages: Iterable[str]) -> None:
    """Count ``messages`` as said in the running call (an interrupted run's, taken over)."""
    call = _CALL.get()
    if call is not None:
        call.said.extend(m for m in messages if m not in call.said)


def _ours(filename: str) -> bool:
    return filename.startswith(PACKAGE + os.sep) or filename == __file__


def _caller_level() -> int:
    """``stacklevel`` for :func:`warnings.warn` called in :func:`warn`: the frame above the
    outermost camscope frame."""
    frame = sys._getframe(2)  # warn()'s caller, stacklevel 2
    level = outermost = 2
    while frame is not None:
        if _ours(frame.f_code.co_filename):
            outermost = level
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return outermost + 1


def _shown(message: str, category: type[Warning], level: int) -> bool:
    """Whether the first of the caller's filters that matches would show the warning (so that
    the records keep what the filters let through; the display itself is Python's)."""
    frame: Any = sys._getframe(1)
    for _ in range(level - 1):
        if frame is None:
            return True
        frame = frame.f_back
    module = "sys" if frame is None else str(frame.f_globals.get("__name__", ""))
    lineno = 0 if frame is None else frame.f_lineno
    for action, text, kind, where, line in warnings.filters:
        if (
            (text is None or _match(text, message))
            and issubclass(category, kind)
            and (where is None or _match(where, module))
            and (line == 0 or line == lineno)
        ):
            return action != "ignore"
    return True


def _match(pattern: Any, value: str) -> bool:
    return bool(pattern.match(value)) if isinstance(pattern, re.Pattern) else pattern == value
