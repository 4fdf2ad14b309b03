"""Shared timing: every contender in one process, round-robin within each repeat, so machine
noise hits all alike; one warm-up run each first."""

from __future__ import annotations

import datetime
import gc
import json
import time
from collections.abc import Callable
from pathlib import Path

from camscope.runs.identity import machine


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


def results_header() -> dict[str, object]:
    """What every results JSON records first: the date and the machine it was measured on."""
    return {
        "date": datetime.date.today().isoformat(),
        "machine": {key: value for key, value in machine().items() if key != "date"},
        "cases": {},
    }


def write_results(path: Path, results: dict[str, object]) -> None:
    """Write the results JSON whole or not at all (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(results, indent=2) + "\n")
    temporary.replace(path)
