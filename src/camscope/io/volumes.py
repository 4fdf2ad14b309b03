"""Volume files: MRC (mrcfile) with the voxel size in the header, written atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from camscope.errors import CamscopeError
from camscope.io.atomic import atomic_path

__all__ = ["read_mrc", "write_mrc"]


def write_mrc(
    path: str | os.PathLike[str],
    volume: np.ndarray,
    *,
    voxel_size_angstrom: float | tuple[float, float, float] | None,
    origin: tuple[float, float, float] | None = None,
    start: Sequence[int] | None = None,
) -> None:
    """Write a float32 ``(z, y, x)`` volume as MRC, atomically, with its geometry: voxel size
    (Å, one number or ``(x, y, z)``), origin (Å, ``x y z``) and start indices
    (``nxstart nystart nzstart``, a subvolume's place in its tomogram).

    The file's one label is fixed (mrcfile's default label holds the creation time), so the same
    volume always gives the same bytes: a resumed run writes what an uninterrupted one does.
    """
    import mrcfile

    with atomic_path(path) as temporary, mrcfile.new(temporary, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(volume, dtype=np.float32))
        if voxel_size_angstrom is not None:
            mrc.voxel_size = voxel_size_angstrom
        if origin is not None:
            mrc.header.origin = origin
        if start is not None:
            mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = (int(v) for v in start)
        mrc.header.label[0] = b"written by camscope"
        mrc.header.nlabl = 1


def read_mrc(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """Read an MRC/MAP volume ``(z, y, x)`` and its voxel size along x (Å).

    A shortcut for :func:`camscope.io.read_image`, which also keeps all voxel sizes and the origin.

    Raises:
        CamscopeError: missing, unreadable or not an MRC file.
    """
    from camscope.io.inputs import read_image

    scan = read_image(path)
    if scan.format != "mrc" or scan.data.ndim != 4:
        raise CamscopeError(f"{path} is not an MRC volume")
    return scan.data[0], float(scan.details["voxel_size_A"])
