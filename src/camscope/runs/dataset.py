"""Which inputs a run covers: explicit files, a folder, a glob, or a manifest CSV.

A manifest CSV has a ``path`` column and optionally ``label`` (or ``class_id``): the class to
explain and evaluate for that input. Paths are relative to the CSV's folder; a path that leads
outside that folder (``../``, or an absolute path elsewhere) is refused unless
``allow_outside=True`` (``--allow-outside`` on the command line), so a manifest cannot make a run
read files its author did not mean to share. A folder holding a ``labels.csv`` is read as that
manifest; other folders are searched recursively for the formats :func:`camscope.io.read_image`
reads (DICOM files are recognised by their ``DICM`` preamble too, without an extension), a
folder holding the slice files of one DICOM series being one input (a volume), and the run's own
output folder, or any folder holding a camscope run's results, is never an input. Every listing
is sorted, so a dataset always has the same order (and a resumed run the same batches).
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camscope.errors import InputError
from camscope.io.inputs import format_of

__all__ = ["Dataset", "resolve_dataset"]


@dataclass
class Dataset:
    """Inputs in a fixed order, with optional labels, and the folder their output names are
    taken relative to. ``rows`` are the manifest CSV's rows, one per input, when there is one."""

    paths: list[str]
    labels: list[int] | None
    root: str | None
    source: str
    rows: list[dict[str, str]] | None = None
    label_error: str | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def require_labels(self) -> list[int]:
        """The labels, for runs that need them (``--targets label``, evaluation).

        Raises:
            InputError: the manifest has no label column, or a row without a valid label.
        """
        if self.label_error is not None:
            raise InputError(self.label_error)
        if self.labels is None:
            raise InputError(f"{self.source}: no labels; give a manifest CSV with a 'label' column")
        return self.labels

    def truths(self) -> list[Any] | None:
        """Per-input ground truth from the CSV: ``mask`` (a boolean ``.npy``, relative to the CSV)
        or box columns ``y0,x0,y1,x1`` / ``z0,y0,x0,z1,y1,x1`` (half-open); ``None`` if absent."""
        import numpy as np
        import torch

        rows = self.rows
        if not rows:
            return None
        root = Path(self.root or ".")
        if "mask" in rows[0] and all(row["mask"] for row in rows):
            return [
                torch.from_numpy(np.load(root / row["mask"], allow_pickle=False)).bool()
                for row in rows
            ]
        names = (
            ["z0", "y0", "x0", "z1", "y1", "x1"] if "z0" in rows[0] else ["y0", "x0", "y1", "x1"]
        )
        if all(name in rows[0] for name in names):
            return [torch.tensor([int(row[name]) for name in names]) for row in rows]
        return None


def _csv(path: Path, where: Sequence[str], allow_outside: bool = False) -> Dataset:
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}") from error
    for condition in where:
        column, _, value = condition.partition("=")
        if rows and column not in rows[0]:
            raise InputError(f"--where {condition}: {path.name} has no column {column!r}")
        rows = [row for row in rows if row[column] == value]
    if not rows:
        raise InputError(f"{path}: no row left (a manifest CSV needs at least one)")
    if "path" not in rows[0]:
        raise InputError(f"{path}: a manifest CSV needs a 'path' column")
    label_column = next((c for c in ("label", "class_id") if c in rows[0]), None)
    base = path.parent.resolve()
    paths = []
    for number, row in enumerate(rows, start=2):
        given = (row.get("path") or "").strip()
        if not given:
            raise InputError(f"{path}, line {number}: the path is empty")
        resolved = (base / given).resolve()
        if not allow_outside and not resolved.is_relative_to(base):
            raise InputError(
                f"{path}, line {number}: {given} is outside the manifest's folder {base}; move "
                "the file inside it, or pass --allow-outside if the manifest is yours"
            )
        paths.append(str(resolved))
    labels: list[int] | None = None
    problem = None
    if label_column is not None:
        labels = []
        for number, row in enumerate(rows, start=2):
            value = (row.get(label_column) or "").strip()
            try:
                labels.append(int(value))
            except ValueError:
                # Only an error for runs that use the labels (explaining the predicted class
                # does not need them).
                problem = (
                    f"{path}, line {number}: column {label_column!r} must hold a class index "
                    f"(0, 1, ...), got {value!r}"
                )
                labels = None
                break
    return Dataset(paths, labels, str(path.parent.resolve()), str(path), rows, problem)


def _series_uid(files: list[Path]) -> str | None:
    """The series UID shared by these DICOM slice files, or ``None`` (not one 2D series)."""
    import pydicom

    uids = set()
    for file in files:
        try:
            header = pydicom.dcmread(file, stop_before_pixels=True)
        except Exception:  # unreadable: left to be reported as an input of its own
            return None
        if int(header.get("NumberOfFrames", 1) or 1) > 1 or "Rows" not in header:
            return None
        uids.add(str(header.get("SeriesInstanceUID", "")))
    return uids.pop() if len(uids) == 1 else None


def _folder_inputs(folder: Path, exclude: Sequence[Path] = ()) -> list[str]:
    """Every readable file below ``folder`` (none below ``exclude``); a directory holding the
    slice files of one DICOM series counts as one input (a volume) instead of its files."""
    from camscope.io.inputs import dicom_series_files

    # A camscope run's output folder (a manifest.json beside records/) holds heatmaps, not inputs.
    runs = [
        p.parent.resolve()
        for p in folder.rglob("manifest.json")
        if (p.parent / "records").is_dir() and p.parent != folder
    ]

    def excluded(directory: Path) -> bool:
        resolved = directory.resolve()
        return any(resolved.is_relative_to(e) for e in [*exclude, *runs])

    inputs: list[str] = []
    directories = {folder, *(p for p in folder.rglob("*") if p.is_dir())}
    for directory in sorted(d for d in directories if not excluded(d)):
        series = dicom_series_files(directory)
        grouped = len(series) >= 2 and _series_uid(series) is not None
        if grouped:
            inputs.append(str(directory))
        for file in sorted(p for p in directory.iterdir() if p.is_file()):
            if format_of(file) is not None and not (grouped and file in series):
                inputs.append(str(file))
    return sorted(inputs)


def resolve_dataset(
    specs: list[str] | tuple[str, ...],
    *,
    where: Sequence[str] = (),
    exclude: Sequence[str | os.PathLike[str]] = (),
    allow_outside: bool = False,
) -> Dataset:
    """Turn command-line inputs into a dataset.

    Args:
        specs: one folder, one glob pattern (quoted, so the shell leaves it), one ``.csv``
            manifest, or any number of files.
        where: ``COLUMN=VALUE`` filters on a manifest CSV's rows.
        exclude: folders whose files are never inputs (the run's output folder).
        allow_outside: let a manifest CSV name files outside its folder.

    Raises:
        InputError: nothing matched, a missing file, or a malformed manifest.
    """
    skip = [Path(e).resolve() for e in exclude]
    if len(specs) == 1 and Path(specs[0]).is_dir() and (Path(specs[0]) / "labels.csv").is_file():
        specs = [str(Path(specs[0]) / "labels.csv")]
    if where and not (len(specs) == 1 and specs[0].lower().endswith(".csv")):
        raise InputError("--where needs a manifest CSV (or a folder with labels.csv)")
    if len(specs) == 1:
        spec = specs[0]
        path = Path(spec)
        if path.suffix.lower() == ".csv":
            return _csv(path, where, allow_outside)
        if path.is_dir():
            found = _folder_inputs(path, skip)
            if not found:
                raise InputError(f"{path}: no readable image or volume files in this folder")
            return Dataset(found, None, str(path.resolve()), spec)
        if glob.has_magic(spec):
            found = sorted(p for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not found:
                raise InputError(f"no file matches {spec!r}")
            common = os.path.commonpath([str(Path(p).resolve().parent) for p in found])
            return Dataset(found, None, common, spec)
    return Dataset([str(s) for s in specs], None, None, "files")
