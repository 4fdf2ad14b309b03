"""Read one input file as a tensor ``(C, *S)``: NumPy ``.npy`` and MRC/MAP volumes.

(Images, DICOM, NIfTI and TIFF come with the file-format issue.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camscope.errors import CamscopeError
from camscope.io.volumes import read_mrc

__all__ = ["SUPPORTED_SUFFIXES", "read_input"]

SUPPORTED_SUFFIXES = (".npy", ".mrc", ".map", ".rec")


def read_input(path: str | os.PathLike[str]) -> tuple[torch.Tensor, dict[str, Any]]:
    """One file → ``(C, *S)`` float32 and what to record about it (path, voxel size).

    A 2D or 3D array whose first axis is not 1 or 3 is taken as a single channel.

    Raises:
        CamscopeError: unsupported type, unreadable or truncated file.
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix in (".mrc", ".map", ".rec"):
        volume, voxel = read_mrc(file)
        return torch.from_numpy(volume)[None], {"path": str(file), "voxel_size_A": voxel}
    if suffix == ".npy":
        try:
            array = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise CamscopeError(f"cannot read {file} as a NumPy array: {error}") from error
        if array.ndim in (2, 3) and array.shape[0] not in (1, 3):
            array = array[None]
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), {"path": str(file)}
    raise CamscopeError(
        f"{file}: unsupported input type {suffix or '(none)'}; give "
        + ", ".join(SUPPORTED_SUFFIXES)
        + " files"
    )
