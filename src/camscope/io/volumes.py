"""Volume files: MRC (mrcfile) with the voxel size in the header, written atomically."""

from __future__ import annotations

import os

import numpy as np

from camscope.errors import CamscopeError
from camscope.io.atomic import atomic_path

__all__ = ["read_mrc", "write_mrc"]


def write_mrc(
    path: str | os.PathLike[str], volume: np.ndarray, *, voxel_size_angstrom: float
) -> None:
    """Write a float32 ``(z, y, x)`` volume as MRC with its voxel size (Å), atomically."""
    import mrcfile

    with atomic_path(path) as temporary, mrcfile.new(temporary, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(volume, dtype=np.float32))
        mrc.voxel_size = voxel_size_angstrom


def read_mrc(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """Read an MRC/MAP volume and its voxel size along x (Å).

    Raises:
        CamscopeError: missing, unreadable or not an MRC file.
    """
    import mrcfile

    try:
        with mrcfile.open(path, permissive=False) as mrc:
            return np.array(mrc.data, dtype=np.float32), float(mrc.voxel_size.x)
    except (OSError, ValueError) as error:
        raise CamscopeError(f"cannot read MRC file {path}: {error}") from error
