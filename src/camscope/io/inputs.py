"""Read one input file as a :class:`Scan`: the array ``(C, *S)`` and the geometry to write back.

================  ===========================  ==============================================
format            library                      what is kept
================  ===========================  ==============================================
PNG, JPEG         Pillow                       values scaled to [0, 1]; grey → 1, colour → 3 ch.
TIFF (page/stack) tifffile                     a multi-page stack is a volume ``(1, D, H, W)``
DICOM             pydicom                      rescale slope/intercept (modality LUT), the file's
                                               window (VOI LUT) unless ``dicom_window="none"``,
                                               MONOCHROME1 inverted; pixel spacing
NIfTI             nibabel                      the affine and voxel sizes; axes kept as stored
MRC/MAP/REC       mrcfile                      voxel size and origin (Å); axes (z, y, x)
NumPy .npy/.npz   NumPy (no pickle)            the array as stored (.npz: the only array or ``x``)
DICOM series      pydicom                      a folder of one series' slice files → a volume,
                                               slices ordered along the normal, RAS affine
================  ===========================  ==============================================

Every reader failure (missing, truncated, corrupted, unexpected rank) is an :class:`InputError`
naming the file and the format, never a raw library exception.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from camscope.errors import InputError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Scan",
    "dicom_series_files",
    "format_of",
    "read_input",
    "read_scan",
]

FORMATS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".mrc": "mrc",
    ".map": "mrc",
    ".rec": "mrc",
    ".npy": "npy",
    ".npz": "npz",
}
SUPPORTED_SUFFIXES = tuple(FORMATS)


@dataclass
class Scan:
    """One input: data and the geometry needed to write heatmaps that align with it.

    Attributes:
        data: ``(C, *S)`` float32; ``S`` is ``(H, W)`` for images and ``(D, H, W)`` for volumes.
        path: where it came from.
        format: ``png``, ``jpeg``, ``tiff``, ``dicom``, ``nifti``, ``mrc``, ``npy`` or ``npz``.
        affine: NIfTI's 4×4 voxel → world (mm) matrix, for the stored axis order.
        spacing: size of a sample along each spatial axis of ``data``, in the file's units
            (Å for MRC, mm for DICOM and NIfTI), when the file says.
        origin: MRC's origin (Å, x y z).
        details: what else to record in a run's manifest (window, photometric, mode, ...).
    """

    data: np.ndarray
    path: str
    format: str
    affine: np.ndarray | None = None
    spacing: tuple[float, ...] | None = None
    origin: tuple[float, float, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    @property
    def is_volume(self) -> bool:
        return self.data.ndim == 4

    def tensor(self) -> torch.Tensor:
        """``(C, *S)`` float32 tensor (shares memory with ``data``)."""
        return torch.from_numpy(self.data)

    def record(self) -> dict[str, Any]:
        """A JSON-ready description for a run's manifest."""
        record: dict[str, Any] = {
            "path": self.path,
            "format": self.format,
            "shape": list(self.data.shape),
        }
        if self.spacing is not None:
            record["spacing"] = list(self.spacing)
        if self.origin is not None:
            record["origin"] = list(self.origin)
        if self.affine is not None:
            record["affine"] = self.affine.tolist()
        return {**record, **self.details}


def format_of(path: str | os.PathLike[str]) -> str | None:
    """The format a file name says, or a DICOM file's ``DICM`` preamble when the name has no
    known extension (scanners and PACS exports name files ``IM0001``); ``None`` if unsupported."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return "nifti"
    known = FORMATS.get(Path(name).suffix)
    if known is not None:
        return known
    return "dicom" if _has_dicom_preamble(Path(path)) else None


def _has_dicom_preamble(path: Path) -> bool:
    """A DICOM Part 10 file: 128 bytes of preamble, then ``DICM``."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _channels_first(array: np.ndarray, path: Path, what: str) -> np.ndarray:
    if array.ndim not in (2, 3, 4):
        raise InputError(
            f"{path}: a {what} with {array.ndim} axes {array.shape}; camscope takes 2D images "
            "and 3D volumes (optionally with a channel axis)"
        )
    return array[None] if array.ndim in (2, 3) else array


def read_scan(
    path: str | os.PathLike[str], *, dicom_window: Literal["auto", "none"] = "auto"
) -> Scan:
    """Read one image or volume file, by its suffix.

    Args:
        path: the file.
        dicom_window: ``"auto"`` applies a DICOM file's own window (VOI LUT) and scales to
            [0, 1]; ``"none"`` keeps modality values (e.g. Hounsfield units).

    Raises:
        InputError: unsupported suffix, missing, unreadable or truncated file, unexpected rank.
    """
    file = Path(path)
    if file.is_dir():
        try:
            return _finish(_read_dicom_series(file, dicom_window), file, "DICOM series")
        except InputError:
            raise
        except Exception as error:
            raise InputError(
                f"cannot read {file} as a DICOM series: {type(error).__name__}: {error}"
            ) from error
    kind = format_of(file)
    if kind is None:
        raise InputError(
            f"{file}: unsupported input type {''.join(file.suffixes) or '(none)'}; give "
            + ", ".join(SUPPORTED_SUFFIXES)
            + " files"
        )
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    reader = {
        "png": _read_picture,
        "jpeg": _read_picture,
        "tiff": _read_tiff,
        "dicom": lambda f: _read_dicom(f, dicom_window),
        "nifti": _read_nifti,
        "mrc": _read_mrc,
        "npy": _read_numpy,
        "npz": _read_numpy,
    }[kind]
    try:
        scan = reader(file)
    except InputError:
        raise
    except Exception as error:  # each library has its own exceptions for broken files
        raise InputError(
            f"cannot read {file} as {kind.upper()}: {type(error).__name__}: {error} (is the "
            "file complete and really of this type?)"
        ) from error
    return _finish(scan, file, kind)


def _finish(scan: Scan, file: Path, kind: str) -> Scan:
    if not np.isfinite(scan.data).all():
        raise InputError(f"{file}: contains NaN or infinite values")
    scan.data = np.ascontiguousarray(scan.data, dtype=np.float32)
    return scan


def _scaled(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == bool:
        return array.astype(np.float32)
    return array.astype(np.float32)


def _read_picture(file: Path) -> Scan:
    from PIL import Image

    with Image.open(file) as opened:
        opened.load()
        mode = opened.mode
        picture: Image.Image = opened
        if mode in ("P", "LA", "RGBA", "CMYK", "YCbCr"):
            picture = opened.convert("RGB")
        elif mode in ("1", "I;16B"):
            picture = opened.convert("L")
        array = np.asarray(picture)
    values = _scaled(array)
    values = values[None] if values.ndim == 2 else np.moveaxis(values[..., :3], -1, 0)
    kind = "png" if file.suffix.lower() == ".png" else "jpeg"
    return Scan(values, str(file), kind, details={"mode": mode})


def _read_tiff(file: Path) -> Scan:
    import tifffile

    with tifffile.TiffFile(file) as tiff:
        array = tiff.asarray()
        photometric = getattr(tiff.pages[0], "photometric", None)
        rgb = photometric is not None and photometric.name == "RGB"
        spacing = None
        if tiff.imagej_metadata and "spacing" in tiff.imagej_metadata:
            spacing = float(tiff.imagej_metadata["spacing"])
    values = _scaled(array)
    if rgb and values.shape[-1] in (3, 4):
        values = np.moveaxis(values[..., :3], -1, 0)  # (3, H, W) or (3, D, H, W)
    else:
        values = _channels_first(values, file, "TIFF")
    details: dict[str, Any] = {"pages": int(values.shape[1]) if values.ndim == 4 else 1}
    scan = Scan(values, str(file), "tiff", details=details)
    if spacing is not None and values.ndim == 4:
        details["z_spacing"] = spacing
    return scan


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


def _read_dicom(file: Path, window: str) -> Scan:
    import pydicom

    dataset = pydicom.dcmread(file)
    if "PixelData" not in dataset:
        raise InputError(f"{file}: a DICOM file without pixel data (not an image)")
    details: dict[str, Any] = {}
    values = _dicom_values(dataset, window, details, _modality(dataset, dataset.pixel_array))
    rgb = details["photometric"] in ("RGB", "YBR_FULL", "YBR_FULL_422") and values.shape[-1] == 3
    values = np.moveaxis(values, -1, 0) if rgb else _channels_first(values, file, "DICOM")
    spacing: tuple[float, ...] | None = None
    if "PixelSpacing" in dataset:
        row, column = (float(v) for v in dataset.PixelSpacing)
        spacing = (row, column)
        if values.ndim == 4:
            thickness = float(dataset.get("SpacingBetweenSlices", dataset.get("SliceThickness", 1)))
            spacing = (thickness, row, column)
    return Scan(values.astype(np.float32), str(file), "dicom", spacing=spacing, details=details)


def dicom_series_files(folder: Path) -> list[Path]:
    """The DICOM files directly in ``folder`` (``.dcm``/``.dicom``, or any file with the
    ``DICM`` preamble), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and format_of(p) == "dicom")


def _read_dicom_series(folder: Path, window: str) -> Scan:
    """A folder of single-slice DICOM files of one series → a volume ``(1, D, H, W)``.

    Slices are ordered along the slice normal (from ImageOrientationPatient and
    ImagePositionPatient, else InstanceNumber); the affine maps (slice, row, column) to RAS mm
    (NIfTI's convention; DICOM's LPS with x and y negated), so NIfTI heatmaps align in viewers.
    The window applied (``window="auto"``) is the first slice's, to all slices alike.
    """
    import pydicom

    files = dicom_series_files(folder)
    if len(files) < 2:
        raise InputError(
            f"{folder}: a DICOM series needs at least 2 .dcm files, found {len(files)}"
        )
    slices = [pydicom.dcmread(f) for f in files]
    series = {str(d.get("SeriesInstanceUID", "")) for d in slices}
    if len(series) > 1:
        raise InputError(f"{folder}: holds {len(series)} DICOM series; give one folder per series")
    first = slices[0]
    orientation = np.asarray(first.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=float)
    along_row, along_column = orientation[:3], orientation[3:]
    normal = np.cross(along_row, along_column)
    if all("ImagePositionPatient" in d for d in slices):
        positions = np.array([np.asarray(d.ImagePositionPatient, dtype=float) for d in slices])
        order = np.argsort(positions @ normal)
    else:
        positions = None
        order = np.argsort([int(d.get("InstanceNumber", i)) for i, d in enumerate(slices)])
    slices = [slices[i] for i in order]
    shapes = {d.pixel_array.shape for d in slices}
    if len(shapes) != 1:
        raise InputError(f"{folder}: slices of different sizes {sorted(shapes)}")
    stack = np.stack([_modality(d, d.pixel_array) for d in slices])  # each slice its own rescale
    details: dict[str, Any] = {"slices": len(slices)}
    values = _dicom_values(first, window, details, stack)
    row_spacing, column_spacing = (float(v) for v in first.get("PixelSpacing", [1.0, 1.0]))
    if positions is not None:
        ordered = positions[order]
        steps = np.diff(ordered, axis=0)
        slice_step = steps.mean(axis=0)
        thickness = float(np.linalg.norm(slice_step))
        if not np.allclose(steps, slice_step, atol=1e-3 * max(thickness, 1e-6)):
            details["warning"] = "uneven slice spacing; the mean is used"
        origin = ordered[0]
    else:
        thickness = float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 1.0)))
        slice_step = normal * thickness
        origin = np.zeros(3)
    affine = np.eye(4)
    affine[:3, 0] = slice_step
    affine[:3, 1] = along_column * row_spacing
    affine[:3, 2] = along_row * column_spacing
    affine[:3, 3] = origin
    affine[:2] *= -1  # LPS → RAS
    return Scan(
        values[None].astype(np.float32),
        str(folder),
        "dicom-series",
        affine=affine,
        spacing=(thickness, row_spacing, column_spacing),
        details=details,
    )


def _read_nifti(file: Path) -> Scan:
    import nibabel

    image = nibabel.load(file)
    array = np.asarray(image.dataobj, dtype=np.float32)  # type: ignore[attr-defined]
    zooms = tuple(float(v) for v in image.header.get_zooms()[:3])  # type: ignore[attr-defined]
    if array.ndim == 4:  # (X, Y, Z, C): channels last in NIfTI
        array = np.moveaxis(array, -1, 0)
    values = _channels_first(array, file, "NIfTI image")
    affine = np.asarray(image.affine, dtype=np.float64)  # type: ignore[attr-defined]
    return Scan(
        values,
        str(file),
        "nifti",
        affine=affine,
        spacing=zooms[: values.ndim - 1],
        details={"axes": "as stored (i, j, k)"},
    )


def _read_mrc(file: Path) -> Scan:
    import mrcfile

    with mrcfile.open(file, permissive=False) as mrc:
        data = np.array(mrc.data, dtype=np.float32)
        voxel = mrc.voxel_size
        origin = mrc.header.origin
        spacing_xyz = (float(voxel.x), float(voxel.y), float(voxel.z))
        origin_xyz = (float(origin.x), float(origin.y), float(origin.z))
        header = mrc.header
        start_xyz = [int(header.nxstart), int(header.nystart), int(header.nzstart)]
    values = _channels_first(data, file, "MRC map")
    spacing = spacing_xyz[::-1] if values.ndim == 4 else spacing_xyz[1::-1]  # (z, y, x) order
    return Scan(
        values,
        str(file),
        "mrc",
        spacing=spacing,
        origin=origin_xyz,
        details={"voxel_size_A": spacing_xyz[0], "mrc_start_xyz": start_xyz},
    )


def _read_numpy(file: Path) -> Scan:
    if file.suffix.lower() == ".npz":
        with open(file, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            names = list(archive.files)
            key = "x" if "x" in names else names[0] if len(names) == 1 else None
            if key is None:
                raise InputError(
                    f"{file}: an .npz with arrays {names}; name the input array 'x' or store one"
                )
            array = archive[key]
        kind = "npz"
    else:
        array = np.load(file, allow_pickle=False)
        kind = "npy"
    if array.dtype.kind not in "biuf":
        raise InputError(f"{file}: array of dtype {array.dtype}, not numbers")
    if array.ndim in (2, 3) and array.shape[0] not in (1, 3):
        array = array[None]
    elif array.ndim not in (3, 4):
        raise InputError(
            f"{file}: array of shape {array.shape}; give (H, W), (C, H, W), (D, H, W) or "
            "(C, D, H, W)"
        )
    return Scan(array.astype(np.float32), str(file), kind)


def read_input(path: str | os.PathLike[str]) -> tuple[torch.Tensor, dict[str, Any]]:
    """One file → ``(C, *S)`` float32 tensor and its manifest record (see :func:`read_scan`)."""
    scan = read_scan(path)
    return scan.tensor(), scan.record()
