"""DICOM with pydicom: single files (2D, multi-frame) and folders of one series' slices.

Values: rescale slope/intercept (modality LUT), then the file's window (VOI LUT) scaled to [0, 1]
with ``window="auto"`` when the file has one, else modality values (e.g. Hounsfield units);
MONOCHROME1 is inverted. Geometry: pixel spacing, and for single slices and series the affine
from ImagePositionPatient and ImageOrientationPatient in RAS (NIfTI's convention: DICOM's LPS with
x and y negated). Missing or degenerate spacing (zero or negative) falls back to 1 mm with a
warning in the scan's details; slices that are not parallel are refused (they are not one volume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from camscope.errors import InputError
from camscope.io.image import LoadedImage, channels_first, format_of

__all__ = ["dicom_series_files", "read_dicom", "read_dicom_series"]


def _modality(dataset: Any, pixels: np.ndarray) -> np.ndarray:
    """Stored pixels → modality values (rescale slope/intercept or the modality LUT)."""
    from pydicom.pixels import apply_modality_lut

    return np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)


def _dicom_values(
    dataset: Any, window: str, details: dict[str, Any], values: np.ndarray
) -> np.ndarray:
    """Modality values → the file's window (``window="auto"``) scaled to [0, 1]; MONOCHROME1
    inverted. Records what was done in ``details``."""
    from pydicom.pixels import apply_voi_lut

    details.update(
        {
            "photometric": str(dataset.get("PhotometricInterpretation", "")),
            "rescale_slope": float(dataset.get("RescaleSlope", 1) or 1),
            "rescale_intercept": float(dataset.get("RescaleIntercept", 0) or 0),
            "modality": str(dataset.get("Modality", "")),
        }
    )
    has_window = "WindowCenter" in dataset or "VOILUTSequence" in dataset
    monochrome1 = details["photometric"] == "MONOCHROME1"
    if window == "auto" and has_window:
        values = np.asarray(apply_voi_lut(values, dataset), dtype=np.float64)
        low, high = values.min(), values.max()
        values = (values - low) / (high - low) if high > low else np.zeros_like(values)
        if monochrome1:
            values = 1.0 - values
        details["window"] = "file's VOI LUT, scaled to [0, 1]"
    else:
        if monochrome1:
            values = values.max() + values.min() - values
        details["window"] = "none (modality values)"
    if monochrome1:
        details["inverted"] = "MONOCHROME1 shown bright = dense"
    return values


def _pixel_spacing(dataset: Any, details: dict[str, Any]) -> tuple[float, float]:
    """(row, column) spacing in mm: PixelSpacing, else ImagerPixelSpacing (radiographs), else 1
    with a warning; zero or negative values count as missing."""
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        if tag in dataset:
            try:
                row, column = (float(v) for v in dataset.get(tag))
            except (TypeError, ValueError):
                continue
            if row > 0 and column > 0:
                if tag != "PixelSpacing":
                    details["spacing_from"] = tag
                return row, column
    given = dataset.get("PixelSpacing", None)
    details["warning"] = (
        f"pixel spacing {'missing' if given is None else 'degenerate (' + str(given) + ')'}; "
        "1 mm is assumed"
    )
    return 1.0, 1.0


def _slice_thickness(dataset: Any) -> float:
    for tag in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = float(dataset.get(tag, 0) or 0)
        except (TypeError, ValueError):
            value = 0.0
        if value > 0:
            return value
    return 1.0


def _orientation(dataset: Any) -> tuple[np.ndarray, np.ndarray] | None:
    if "ImageOrientationPatient" not in dataset:
        return None
    values = np.asarray(dataset.ImageOrientationPatient, dtype=float)
    return values[:3], values[3:]


def _affine(
    along_row: np.ndarray,
    along_column: np.ndarray,
    slice_step: np.ndarray,
    spacing: tuple[float, float],
    origin: np.ndarray,
    *,
    volume: bool,
) -> np.ndarray:
    """Voxel → RAS (mm) for axes (slice, row, column) of a volume or (row, column) of a slice
    (then the third column is the slice normal, so the matrix stays invertible)."""
    row_spacing, column_spacing = spacing
    columns = [along_column * row_spacing, along_row * column_spacing]
    columns = [slice_step, *columns] if volume else [*columns, slice_step]
    affine = np.eye(4)
    for axis, vector in enumerate(columns):
        affine[:3, axis] = vector
    affine[:3, 3] = origin
    affine[:2] *= -1  # LPS → RAS
    return affine


def read_dicom(file: Path, window: str) -> LoadedImage:
    """One DICOM file: a 2D image (its position and orientation as an affine when the file has
    them) or a multi-frame volume."""
    import pydicom

    dataset = pydicom.dcmread(file)
    if "PixelData" not in dataset:
        raise InputError(f"{file}: a DICOM file without pixel data (not an image)")
    details: dict[str, Any] = {}
    values = _dicom_values(dataset, window, details, _modality(dataset, dataset.pixel_array))
    rgb = details["photometric"] in ("RGB", "YBR_FULL", "YBR_FULL_422") and values.shape[-1] == 3
    values = np.moveaxis(values, -1, 0) if rgb else channels_first(values, file, "DICOM")
    row, column = _pixel_spacing(dataset, details)
    spacing: tuple[float, ...] = (row, column)
    affine = None
    if values.ndim == 4:
        spacing = (_slice_thickness(dataset), row, column)
    else:
        orientation = _orientation(dataset)
        if orientation is not None and "ImagePositionPatient" in dataset:
            along_row, along_column = orientation
            normal = np.cross(along_row, along_column) * _slice_thickness(dataset)
            origin = np.asarray(dataset.ImagePositionPatient, dtype=float)
            affine = _affine(along_row, along_column, normal, (row, column), origin, volume=False)
    return LoadedImage(
        values.astype(np.float32),
        str(file),
        "dicom",
        affine=affine,
        spacing=spacing,
        details=details,
    )


def dicom_series_files(folder: Path) -> list[Path]:
    """The DICOM files directly in ``folder`` (``.dcm``/``.dicom``, or any file with the
    ``DICM`` preamble), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and format_of(p) == "dicom")


def read_dicom_series(folder: Path, window: str) -> LoadedImage:
    """A folder of single-slice DICOM files of one series → a volume ``(1, D, H, W)``.

    Slices are ordered along the slice normal (from ImageOrientationPatient and
    ImagePositionPatient, else InstanceNumber); the affine maps (slice, row, column) to RAS mm.
    The window applied (``window="auto"``) is the first slice's, to all slices alike.

    Raises:
        InputError: fewer than 2 slices, several series, slices of different sizes, or slices
            that are not parallel or not stacked along their normal (e.g. a radial MR series).
    """
    import pydicom

    files = dicom_series_files(folder)
    if len(files) < 2:
        raise InputError(
            f"{folder}: a DICOM series needs at least 2 slice files, found {len(files)}"
        )
    slices = [pydicom.dcmread(f) for f in files]
    series = {str(d.get("SeriesInstanceUID", "")) for d in slices}
    if len(series) > 1:
        raise InputError(f"{folder}: holds {len(series)} DICOM series; give one folder per series")
    first = slices[0]
    orientation = _orientation(first)
    along_row, along_column = orientation or (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    normal = np.cross(along_row, along_column)
    orientations = [_orientation(d) for d in slices]
    if orientation is not None and any(
        o is None or not np.allclose(np.concatenate(o), np.concatenate(orientation), atol=1e-4)
        for o in orientations
    ):
        raise InputError(
            f"{folder}: the slices are not parallel (their ImageOrientationPatient differ), so "
            "they are not one volume; explain the files one by one (give the files, not the "
            "folder)"
        )
    details: dict[str, Any] = {"slices": len(slices)}
    if all("ImagePositionPatient" in d for d in slices):
        positions = np.array([np.asarray(d.ImagePositionPatient, dtype=float) for d in slices])
        order = np.argsort(positions @ normal)
        ordered = positions[order]
        steps = np.diff(ordered, axis=0)
        along = steps @ normal
        sideways = np.linalg.norm(steps - along[:, None] * normal, axis=1)
        if np.any(np.abs(along) < 1e-6) or np.any(sideways > 1e-3 + 1e-3 * np.abs(along)):
            raise InputError(
                f"{folder}: the slices are not stacked along their normal (repeated or shifted "
                "positions), so they are not one volume; explain the files one by one"
            )
        slice_step = steps.mean(axis=0)
        thickness = float(np.linalg.norm(slice_step))
        if not np.allclose(steps, slice_step, atol=1e-3 * max(thickness, 1e-6)):
            details["warning"] = "uneven slice spacing; the mean is used"
        origin = ordered[0]
    else:
        order = np.argsort([int(d.get("InstanceNumber", i)) for i, d in enumerate(slices)])
        thickness = _slice_thickness(first)
        slice_step = normal * thickness
        origin = np.zeros(3)
        details["warning"] = "no slice positions; slices ordered by InstanceNumber"
    slices = [slices[i] for i in order]
    shapes = {d.pixel_array.shape for d in slices}
    if len(shapes) != 1:
        raise InputError(f"{folder}: slices of different sizes {sorted(shapes)}")
    stack = np.stack([_modality(d, d.pixel_array) for d in slices])  # each slice its own rescale
    values = _dicom_values(first, window, details, stack)
    spacing = _pixel_spacing(first, details)
    affine = _affine(along_row, along_column, slice_step, spacing, origin, volume=True)
    return LoadedImage(
        values[None].astype(np.float32),
        str(folder),
        "dicom-series",
        affine=affine,
        spacing=(thickness, *spacing),
        details=details,
    )
