"""Read one input file as a tensor ``(C, *S)``: NumPy ``.npy``, MRC/MAP volumes, and 2D images
(PNG, JPEG, TIFF via Pillow, scaled to [0, 1]).

(DICOM, NIfTI and multi-page TIFF stacks come with the file-format issue.)
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

SUPPORTED_SUFFIXES = (".npy", ".mrc", ".map", ".rec", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


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
    if suffix in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(file) as picture:
                picture.load()
                mode = picture.mode
                array = np.asarray(picture)
        except (OSError, UnidentifiedImageError) as error:
            raise CamscopeError(f"cannot read image {file}: {error}") from error
        scale = 65535.0 if array.dtype == np.uint16 else 255.0 if array.dtype == np.uint8 else 1.0
        values = array.astype(np.float32) / scale
        values = values[None] if values.ndim == 2 else np.moveaxis(values[..., :3], -1, 0)
        return torch.from_numpy(np.ascontiguousarray(values)), {"path": str(file), "mode": mode}
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
