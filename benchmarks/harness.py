"""Shared timing: every contender in one process, round-robin within each repeat, so machine
noise hits all alike; one warm-up run each first."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def time_round_robin(
    runners: dict[str, Callable[[], object]], repeats: int, *, warmup: bool = True
) -> dict[str, list[float]]:
    """Seconds per run of each contender, ``repeats`` runs each, interleaved.

    ``warmup=False`` skips the untimed first run (for contenders that take minutes, when the
    caller has already run each once, e.g. to check agreement).
    """
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values() if warmup else ():
        run()
    for _ in range(repeats):
        for name, run in runners.items():
            gc.collect()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times
