"""One input as camscope holds it: the array ``(C, *S)`` and the geometry to write back."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camscope.errors import InputError

__all__ = ["FORMATS", "LoadedImage", "channels_first", "format_of", "scaled_by_type"]

#: File endings and the format they name.
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


@dataclass
class LoadedImage:
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
        """``S``: ``(H, W)`` or ``(D, H, W)``."""
        return tuple(self.data.shape[1:])

    @property
    def is_volume(self) -> bool:
        """Whether the data is 3D."""
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


def channels_first(array: np.ndarray, path: Path, what: str) -> np.ndarray:
    """``(C, *S)``: a channel axis added to a 2D image or 3D volume without one.

    Raises:
        InputError: the array has fewer than 2 or more than 4 axes.
    """
    if array.ndim not in (2, 3, 4):
        raise InputError(
            f"{path}: a {what} with {array.ndim} axes {array.shape}; camscope takes 2D images "
            "and 3D volumes (optionally with a channel axis)"
        )
    return array[None] if array.ndim in (2, 3) else array


def scaled_by_type(array: np.ndarray) -> np.ndarray:
    """Integers of 8 and 16 bits to [0, 1] by their type's range; anything else as stored."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == bool:
        return array.astype(np.float32)
    return array.astype(np.float32)


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
