"""Warnings said once per public call, at the line that called camscope.

A public function runs the methods many times (an MPRT step per layer, a SmoothGrad sample, a
scan's batches, a sanity check's methods), and a warning raised inside would repeat at every
step, its counts changed, pointing inside camscope. While the outermost public call runs, each
warning is said once: as soon as it is first raised, and again only if its text differs in more
than its numbers. One raised in camscope's own code is said as raised from the line that called
camscope; one from other code (torch, the model's own) keeps its place. The caller's warning
filters apply as always: under ``-W error`` the first warning still stops the call. What was said
is kept for the call's records (:func:`said_so_far`: manifests, results.json, reports).
"""

from __future__ import annotations

import functools
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar, cast

__all__ = ["said_once", "said_so_far"]

#: camscope's own source folder: warnings raised from files under it are moved to the caller.
PACKAGE = str(Path(__file__).resolve().parents[1])

#: A number standing alone (``3 of 64``, ``0.47``, ``×25``), not one inside a name (``conv2``,
#: ``layer4.1``): two warnings that differ only in such numbers are the same warning.
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")

Function = TypeVar("Function", bound=Callable[..., Any])

# Warning filters are global to the interpreter: one relay at a time (the outermost call's);
# a call from another thread while it runs is said through it.
_LOCK = threading.Lock()
_ACTIVE = False
_SAID: list[str] = []  # the outermost call's warnings, in order


class _Relay:
    def __init__(self, caller: FrameType) -> None:
        self.filename = caller.f_code.co_filename
        self.lineno = caller.f_lineno
        self.module_globals = caller.f_globals
        self.seen: set[tuple[type[Warning], str]] = set()
        self.guard = warnings.catch_warnings()

    def __enter__(self) -> None:
        self.filters = list(warnings.filters)
        self.show = warnings.showwarning
        self.guard.__enter__()
        warnings.simplefilter("always")
        warnings.showwarning = self.said

    def __exit__(self, *exc: Any) -> None:
        self.guard.__exit__(*exc)

    def said(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        key = (category, _NUMBER.sub("#", str(message)))
        if key in self.seen:
            return
        self.seen.add(key)

        def shown(*args: Any, **kwargs: Any) -> None:  # kept only if the filters show it
            _SAID.append(str(message))
            self.show(*args, **kwargs)

        with warnings.catch_warnings():  # the caller's filters and display, for this one
            warnings.resetwarnings()
            cast(list[Any], warnings.filters).extend(self.filters)
            warnings.showwarning = shown
            if str(Path(filename).resolve()).startswith(PACKAGE + os.sep):
                registry = self.module_globals.setdefault("__warningregistry__", {})
                warnings.warn_explicit(
                    message,
                    category,
                    self.filename,
                    self.lineno,
                    module=self.module_globals.get("__name__"),
                    registry=registry,
                    module_globals=self.module_globals,
                )
            else:
                warnings.warn_explicit(message, category, filename, lineno)


def said_once(function: Function) -> Function:
    """Decorator for public functions: the warnings raised while the outermost one runs are
    said once each, at its caller's line (see the module docstring)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _ACTIVE
        with _LOCK:
            outermost, _ACTIVE = not _ACTIVE, True
        if not outermost:
            return function(*args, **kwargs)
        _SAID.clear()
        try:
            with _Relay(sys._getframe(1)):
                return function(*args, **kwargs)
        finally:
            with _LOCK:
                _ACTIVE = False

    return wrapper  # type: ignore[return-value]


def said_so_far() -> list[str]:
    """The warnings said so far in the running camscope call (each once, in order); empty
    outside one."""
    return list(_SAID) if _ACTIVE else []
