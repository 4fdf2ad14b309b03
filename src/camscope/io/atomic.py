"""Atomic file output: a result appears whole under its final name, or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from camscope.errors import CamscopeError

__all__ = [
    "OutputError",
    "atomic_path",
    "atomic_write",
    "default_permissions",
    "prepare_output_dir",
    "write_json",
    "write_npz",
]


def default_permissions(path: str | os.PathLike[str]) -> None:
    """Give a temporary file the permissions a newly created file would have (umask applied).

    ``tempfile.mkstemp`` creates files readable by the owner only; results are meant to be shared.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


class OutputError(CamscopeError, OSError):
    """An output cannot be written (exists without --force, or the folder is not writable)."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it only if the block succeeds.

    For writers that want a file name (e.g. ``mrcfile.new``); the temporary file is removed on
    failure, so a partial file never appears under the final name.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        default_permissions(temporary)
        os.replace(temporary, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only if the block succeeds."""
    with atomic_path(path) as temporary, open(temporary, mode) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_write(path, mode="w") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")


def write_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """Write arrays to a compressed ``.npz``, atomically and reproducibly.

    The archive's entries carry a fixed timestamp, so the same arrays always give the same bytes
    (``np.savez_compressed`` stamps the current time).
    """
    import zipfile

    with (
        atomic_write(path, mode="wb") as handle,
        zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def prepare_output_dir(path: str | os.PathLike[str], names: list[str], *, force: bool) -> Path:
    """Create the output folder; refuse to overwrite any of ``names`` unless ``force``.

    Raises:
        OutputError: an output exists and ``force`` is False, or the folder cannot be created.
    """
    folder = Path(path)
    existing = [name for name in names if (folder / name).exists()]
    if existing and not force:
        raise OutputError(
            f"{folder} already holds {', '.join(existing)}; choose another --out or pass --force "
            "to overwrite"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create output folder {folder}: {error.strerror}") from error
    return folder
