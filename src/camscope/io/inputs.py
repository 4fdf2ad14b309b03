"""Read one image or volume file as a :class:`LoadedImage`: the array ``(C, *S)`` and its geometry.

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
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from camscope.errors import InputError
from camscope.io.dicom import dicom_series_files, read_dicom, read_dicom_series
from camscope.io.image import FORMATS, LoadedImage, channels_first, format_of, scaled_by_type

__all__ = [
    "INTENSITY_RULES",
    "SUPPORTED_SUFFIXES",
    "LoadedImage",
    "dicom_series_files",
    "format_of",
    "read_image",
    "read_input",
]

SUPPORTED_SUFFIXES = tuple(FORMATS)

Intensity = Literal["auto", "stored", "window", "minmax", "zscore"]

#: What the model receives, by rule. ``auto``: 8/16-bit images (PNG, JPEG, TIFF) scaled to
#: [0, 1] by their type's range; DICOM through the file's window (VOI LUT) to [0, 1] when it has
#: one, else modality values (e.g. Hounsfield units); NIfTI, MRC, NumPy and float TIFF as
#: stored. ``stored``: the file's values (DICOM: modality values, integers unscaled).
#: ``window``: as ``auto``, but a DICOM file without a window is refused. ``minmax``: each input
#: scaled to [0, 1] by its own minimum and maximum. ``zscore``: each input minus its mean,
#: divided by its standard deviation (DICOM from modality values).
INTENSITY_RULES: dict[str, str] = {
    "auto": "by format: 8/16-bit images to [0, 1]; DICOM window to [0, 1] if the file has one, "
    "else modality values; other formats as stored",
    "stored": "as stored (DICOM: modality values)",
    "window": "DICOM window to [0, 1] (required); other formats as for auto",
    "minmax": "each input scaled to [0, 1] by its minimum and maximum",
    "zscore": "each input minus its mean, divided by its standard deviation",
}


def read_image(
    path: str | os.PathLike[str],
    *,
    intensity: Intensity = "auto",
    dicom_window: Literal["auto", "none"] = "auto",
    nifti_volume: int | str | None = None,
) -> LoadedImage:
    """Read one image or volume file, by its suffix (or DICOM's preamble).

    Args:
        path: the file (or a folder of one DICOM series' slices).
        intensity: what the model receives (see :data:`INTENSITY_RULES`); the scan's
            ``details["intensity"]`` says what was done, and runs record it in the manifest.
        dicom_window: ``"none"`` keeps DICOM modality values even where ``intensity="auto"``
            would apply the file's window (the older spelling of ``intensity="stored"`` for
            DICOM).
        nifti_volume: for a 4D NIfTI: the volume to take, or ``"channels"`` for all as input
            channels (without it a 4D file is refused with this explanation).

    Raises:
        InputError: unsupported suffix, missing, unreadable or truncated file, unexpected rank,
            an unknown intensity rule, a 4D NIfTI without ``nifti_volume``.
    """
    if intensity not in INTENSITY_RULES:
        raise InputError(
            f"intensity {intensity!r} unknown; use one of {', '.join(INTENSITY_RULES)}"
        )
    window = "auto" if intensity in ("auto", "window") and dicom_window == "auto" else "none"
    scan = _read(Path(path), window, nifti_volume, scale=intensity != "stored")
    return _apply_intensity(scan, intensity)


def _read(
    file: Path, dicom_window: str, nifti_volume: int | str | None, *, scale: bool
) -> LoadedImage:
    if file.is_dir():
        try:
            return _finish(read_dicom_series(file, dicom_window), file, "DICOM series")
        except InputError:
            raise
        except Exception as error:
            raise InputError(
                f"cannot read {file} as a DICOM series: {type(error).__name__}: {error}"
            ) from error
    if not file.exists():
        raise InputError(f"{file}: no such file or folder")
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
        "png": lambda f: _read_picture(f, scale),
        "jpeg": lambda f: _read_picture(f, scale),
        "tiff": lambda f: _read_tiff(f, scale),
        "dicom": lambda f: read_dicom(f, dicom_window),
        "nifti": lambda f: _read_nifti(f, nifti_volume),
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


def _apply_intensity(scan: LoadedImage, intensity: str) -> LoadedImage:
    values = scan.data
    if intensity == "window" and scan.format.startswith("dicom"):
        if not str(scan.details.get("window", "")).startswith("file's"):
            raise InputError(
                f"{scan.path}: intensity 'window' asks for the DICOM window, but the file has "
                "none; use 'stored', 'minmax' or 'zscore'"
            )
    if intensity == "minmax":
        low, high = float(values.min()), float(values.max())
        values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    elif intensity == "zscore":
        spread = float(values.std())
        values = (values - float(values.mean())) / (spread if spread > 0 else 1.0)
    scan.data = np.ascontiguousarray(values, dtype=np.float32)
    said = f"{intensity}: {INTENSITY_RULES[intensity]}"
    stored = scan.details.get("stored")
    if intensity == "auto" and stored in ("uint8", "uint16"):  # what happened to this input
        said += f" (this one: {stored} / {255 if stored == 'uint8' else 65535})"
    scan.details["intensity"] = said
    return scan


def _finish(scan: LoadedImage, file: Path, kind: str) -> LoadedImage:
    if not np.isfinite(scan.data).all():
        raise InputError(f"{file}: contains NaN or infinite values")
    scan.data = np.ascontiguousarray(scan.data, dtype=np.float32)
    return scan


def _read_picture(file: Path, scale: bool) -> LoadedImage:
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
    values = scaled_by_type(array) if scale else array.astype(np.float32)
    values = values[None] if values.ndim == 2 else np.moveaxis(values[..., :3], -1, 0)
    kind = "png" if file.suffix.lower() == ".png" else "jpeg"
    return LoadedImage(values, str(file), kind, details={"mode": mode, "stored": str(array.dtype)})


def _tiff_spacing(tiff: Any) -> tuple[tuple[float, float, float | None], str | None]:
    """``((x, y, z), unit)`` from OME-XML PhysicalSize*, else the resolution tags and ImageJ's
    ``spacing``; a missing size is 1 (``z``: ``None``) and a missing unit ``None``."""
    import re

    if tiff.ome_metadata:
        sizes = {}
        for axis in "XYZ":
            found = re.search(rf'PhysicalSize{axis}="([^"]+)"', tiff.ome_metadata)
            sizes[axis] = float(found.group(1)) if found else None
        named = re.search(r'PhysicalSizeXUnit="([^"]+)"', tiff.ome_metadata)
        ome_unit = named.group(1) if named else "µm"
        return (sizes["X"] or 1.0, sizes["Y"] or 1.0, sizes["Z"]), ome_unit
    page = tiff.pages[0]
    per_unit = []
    for tag in ("XResolution", "YResolution"):
        value = page.tags.get(tag)
        numerator, denominator = value.value if value is not None else (1, 1)
        per_unit.append(denominator / numerator if numerator else 1.0)
    imagej = tiff.imagej_metadata or {}
    z = float(imagej["spacing"]) if "spacing" in imagej else None
    unit: str | None = imagej.get("unit")
    if unit is None and page.tags.get("ResolutionUnit") is not None:
        unit = {2: "inch", 3: "cm"}.get(int(page.tags["ResolutionUnit"].value))
    if unit in ("micron", "um", "\\u00B5m", "\u00b5m"):  # ImageJ writes micrometres in ASCII
        unit = "µm"
    return (per_unit[0], per_unit[1], z), unit


def _read_tiff(file: Path, scale: bool) -> LoadedImage:
    import tifffile

    with tifffile.TiffFile(file) as tiff:
        array = tiff.asarray()
        photometric = getattr(tiff.pages[0], "photometric", None)
        rgb = photometric is not None and photometric.name == "RGB"
        (x, y, z), unit = _tiff_spacing(tiff)
    values = scaled_by_type(array) if scale else array.astype(np.float32)
    if rgb and values.shape[-1] in (3, 4):
        values = np.moveaxis(values[..., :3], -1, 0)  # (3, H, W) or (3, D, H, W)
    else:
        values = channels_first(values, file, "TIFF")
    details: dict[str, Any] = {
        "pages": int(values.shape[1]) if values.ndim == 4 else 1,
        "stored": str(array.dtype),
    }
    if unit is not None:
        details["unit"] = unit
    spacing = (z or 1.0, y, x) if values.ndim == 4 else (y, x)
    return LoadedImage(values, str(file), "tiff", spacing=spacing, details=details)


def _read_nifti(file: Path, volume: int | str | None) -> LoadedImage:
    import nibabel

    image = nibabel.load(file)
    array = np.asarray(image.dataobj, dtype=np.float32)  # type: ignore[attr-defined]
    header: Any = image.header
    zooms = tuple(float(v) for v in header.get_zooms()[:3])
    details: dict[str, Any] = {"axes": "as stored (i, j, k)"}
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    elif array.ndim == 4:
        count = array.shape[-1]
        if volume is None:
            raise InputError(
                f"{file} is a 4D NIfTI {array.shape} (x, y, z and {count} volumes); choose one "
                f"volume with --nifti-volume N (0 to {count - 1}; in Python read_image(..., "
                "nifti_volume=N)), or --nifti-volume channels to give the model all of them as "
                "input channels"
            )
        if volume == "channels":
            array = np.moveaxis(array, -1, 0)  # (C, X, Y, Z)
            details["volumes"] = f"all {count}, as channels"
        else:
            index = int(volume)
            if not 0 <= index < count:
                raise InputError(f"{file}: volume {index} out of range 0 to {count - 1}")
            array = array[..., index]
            details["volumes"] = f"volume {index} of {count}"
    values = channels_first(array, file, "NIfTI image")
    affine = np.asarray(image.affine, dtype=np.float64)  # type: ignore[attr-defined]
    qform, qform_code = header.get_qform(coded=True)
    _, sform_code = header.get_sform(coded=True)
    details["nifti_codes"] = {"qform": int(qform_code), "sform": int(sform_code)}
    unit = {"mm": "mm", "micron": "µm", "meter": "m"}.get(header.get_xyzt_units()[0])
    if unit is not None:
        details["unit"] = unit
    if qform is not None:
        details["nifti_qform"] = np.asarray(qform).tolist()
    return LoadedImage(
        values,
        str(file),
        "nifti",
        affine=affine,
        spacing=zooms[: values.ndim - 1],
        details=details,
    )


def _read_mrc(file: Path) -> LoadedImage:
    import mrcfile

    with mrcfile.open(file, permissive=False) as mrc:
        data = np.array(mrc.data, dtype=np.float32)
        voxel = mrc.voxel_size
        origin = mrc.header.origin
        spacing_xyz = (float(voxel.x), float(voxel.y), float(voxel.z))
        origin_xyz = (float(origin.x), float(origin.y), float(origin.z))
        header = mrc.header
        start_xyz = [int(header.nxstart), int(header.nystart), int(header.nzstart)]
    values = channels_first(data, file, "MRC map")
    spacing = spacing_xyz[::-1] if values.ndim == 4 else spacing_xyz[1::-1]  # (z, y, x) order
    return LoadedImage(
        values,
        str(file),
        "mrc",
        spacing=spacing,
        origin=origin_xyz,
        details={
            "voxel_size_A": spacing_xyz[0],
            "voxel_size_A_xyz": list(spacing_xyz),
            "mrc_start_xyz": start_xyz,
            "unit": "Å",
        },
    )


def _read_numpy(file: Path) -> LoadedImage:
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
    return LoadedImage(array.astype(np.float32), str(file), kind)


def read_input(path: str | os.PathLike[str]) -> tuple[torch.Tensor, dict[str, Any]]:
    """One file → ``(C, *S)`` float32 tensor and its manifest record (see :func:`read_image`)."""
    scan = read_image(path)
    return scan.tensor(), scan.record()


#: Names camscope exported before they were renamed; importing one still works, with a warning.
_RENAMED = {"Scan": "LoadedImage", "read_scan": "read_image"}


def __getattr__(name: str) -> object:
    """The renamed names (``Scan``, ``read_scan``), with a ``DeprecationWarning``."""
    if name in _RENAMED:
        import warnings

        new = _RENAMED[name]
        warnings.warn(
            f"camscope.io.{name} is now camscope.io.{new}; the old name will be removed",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
