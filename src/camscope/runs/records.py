"""What every dataset run shares: output names, per-input records, fixed batches.

A run writes ``records/<name>.json`` once an input is done; the fingerprint inside says which
settings made it, so a run started again with the same settings reuses it and one with other
settings is refused. Batches are fixed ranges of the dataset's order, so a redone batch computes
the same numbers as the first time.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from camscope.errors import InputError
from camscope.io.atomic import OutputError
from camscope.io.inputs import LoadedImage

__all__ = [
    "RECORDS",
    "clean_temporaries",
    "fixed_batches",
    "group_by_shape",
    "load_records",
    "output_names",
    "prepare_records",
    "remove_previous_run",
]

RECORDS = "records"


def output_names(
    paths: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str] | None = None
) -> list[str]:
    """A unique output name per input: its path relative to ``root`` (folders joined by ``__``),
    without the file type; just the file stem when no root is given.

    Raises:
        InputError: two inputs would get the same name.
    """
    base = Path(root).resolve() if root is not None else None
    names = []
    for path in paths:
        file = Path(path)
        stem = file.name
        for suffix in (".nii.gz", file.suffix):
            if suffix and stem.lower().endswith(suffix.lower()):
                stem = stem[: -len(suffix)]
                break
        parent = file.parent.resolve()
        if base is not None and parent.is_relative_to(base):
            stem = "__".join([*parent.relative_to(base).parts, stem])
        names.append(re.sub(r"[^A-Za-z0-9_.-]+", "_", stem))
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            raise InputError(
                f"inputs {paths[seen[name]]} and {paths[index]} would both write outputs named "
                f"{name!r}; rename one, or run from their common folder"
            )
        seen[name] = index
    return names


def load_records(
    folder: Path,
    names: Sequence[str],
    fingerprint: str,
    *,
    identity: Callable[[int], dict[str, Any]],
    complete: Callable[[dict[str, Any]], bool] = lambda record: True,
) -> dict[str, dict[str, Any]]:
    """The records of a previous run that can be reused.

    A record is reused only when it was made with the same fingerprint (settings and model
    weights), for the same input (its ``identity``: path, size and modification time of a file,
    a digest of a tensor) and all its outputs are ``complete``; an unreadable record, or one for
    an input that changed, means the input is redone.

    Raises:
        OutputError: a record made with another fingerprint (other settings or model).
    """
    done: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(names):
        path = folder / RECORDS / f"{name}.json"
        if not path.exists():
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if record.get("fingerprint") != fingerprint:
            raise OutputError(
                f"{folder} holds results of a run with other settings or another model "
                f"({path.name}); choose another --out, or pass --force to overwrite"
            )
        if record.get("identity") == identity(index) and complete(record):
            done[name] = record
    return done


def remove_previous_run(folder: Path, made: Sequence[str]) -> None:
    """Remove what an earlier camscope run wrote in ``folder`` (``--force``): the files its
    records list, its records, and the run-level files ``made`` (manifest, report, tables).
    Nothing else in the folder is touched."""
    records = folder / RECORDS
    if records.is_dir():
        for path in records.glob("*.json"):
            try:
                listed = json.loads(path.read_text()).get("outputs", [])
            except (OSError, json.JSONDecodeError):
                listed = []
            for output in listed:
                target = (folder / output).resolve()
                if target.is_relative_to(folder.resolve()) and target.is_file():
                    target.unlink()
            path.unlink()
    for name in made:
        target = folder / name
        if target.is_file():
            target.unlink()


def prepare_records(folder: Path) -> None:
    """Create ``folder/records`` and remove temporary files a killed run left behind."""
    try:
        (folder / RECORDS).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create output folder {folder}: {error.strerror}") from error
    clean_temporaries(folder)


def clean_temporaries(folder: Path) -> None:
    """Remove temporary files a killed run left behind (never a final output)."""
    for pattern in (".*.tmp", f"{RECORDS}/.*.tmp"):
        for leftover in folder.glob(pattern):
            leftover.unlink(missing_ok=True)


def fixed_batches(count: int, size: int, done: Callable[[int], bool]) -> list[list[int]]:
    """Index ranges ``[k·size, (k+1)·size)`` that hold at least one input not yet ``done``."""
    batches = [list(range(s, min(s + size, count))) for s in range(0, count, size)]
    return [batch for batch in batches if not all(done(i) for i in batch)]


def group_by_shape(
    items: Sequence[tuple[int, LoadedImage | Exception]],
) -> tuple[list[list[tuple[int, LoadedImage]]], list[tuple[int, Exception]]]:
    """Readable inputs grouped by shape (in order of first appearance), and the failures."""
    groups: dict[tuple[int, ...], list[tuple[int, LoadedImage]]] = {}
    failed: list[tuple[int, Exception]] = []
    for index, scan in items:
        if isinstance(scan, LoadedImage):
            groups.setdefault(tuple(scan.data.shape), []).append((index, scan))
        else:
            failed.append((index, scan))
    return list(groups.values()), failed
