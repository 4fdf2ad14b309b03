"""Read inputs ahead of the computation, in background threads.

Decoding files (gzip, DICOM, PNG) runs in C and releases the GIL, so a few threads keep the next
batches ready while the model works on the current one. Results come back in input order; a file
that cannot be read comes back as its :class:`~camscope.errors.CamscopeError`, so the run can
report it and go on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from camscope.errors import CamscopeError

__all__ = ["read_ahead"]

T = TypeVar("T")


def _guarded(read: Callable[[int], T], index: int) -> T | CamscopeError:
    try:
        return read(index)
    except CamscopeError as error:
        return error


def read_ahead(
    indices: Sequence[int],
    read: Callable[[int], T],
    *,
    workers: int = 2,
    depth: int = 16,
) -> Iterator[tuple[int, T | CamscopeError]]:
    """Yield ``(index, read(index) or its error)`` for ``indices``, in order, reading up to
    ``depth`` inputs ahead with ``workers`` threads (``workers=0``: read in this thread)."""
    if workers <= 0:
        for index in indices:
            yield index, _guarded(read, index)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="camscope-read") as pool:
        pending: deque[tuple[int, Future[T | CamscopeError]]] = deque()
        queue = iter(indices)
        for index in queue:
            pending.append((index, pool.submit(_guarded, read, index)))
            if len(pending) >= depth:
                break
        while pending:
            index, future = pending.popleft()
            result = future.result()
            following = next(queue, None)
            if following is not None:
                pending.append((following, pool.submit(_guarded, read, following)))
            yield index, result
