"""Shared timing: every contender in one process, round-robin within each repeat, so machine
noise hits all alike; one warm-up run each first."""

from __future__ import annotations

import datetime
import gc
import json
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from camscope.runs.identity import machine

RESULTS = Path(__file__).resolve().parent / "results"


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


def results_path(name: str, quick: bool, out: Path | None = None) -> Path:
    """Where a benchmark writes: ``out`` if given, else ``results/<name>.json`` (``_quick`` for
    the smoke-test sizes, so a smoke test never overwrites a measurement)."""
    return out or RESULTS / (f"{name}_quick.json" if quick else f"{name}.json")


def save_cases(path: Path, cases: dict[str, dict], peers: tuple[str, ...] = ()) -> None:
    """Stamp each case just measured with the date, the machine and the versions of the
    ``peers`` (distribution names) and merge the cases into the results file; cases not run this
    time keep their own earlier stamp."""
    measured = {**machine(), **{peer: version(peer) for peer in peers}}
    earlier = json.loads(path.read_text()).get("cases", {}) if path.exists() else {}
    stamped = {name: {**case, "measured": measured} for name, case in cases.items()}
    write_results(path, {"cases": {**earlier, **stamped}})
