"""The files of a streamed, resumable :func:`camscope.explain_scan` run (``out=``).

Everything is written in a hidden work folder beside ``out`` (``.<name>.partial/``) and moved into
place only once the last row is in, so a final name never holds a partial file:

============  ================================================  ======================
``out``       heatmaps                                          library
============  ================================================  ======================
``.npy``      one array ``(T, *S)``                             NumPy
``.mrc``      ``<stem>.<target>.mrc`` per target, voxel size    mrcfile
              and origin of an MRC scan
``.nii[.gz]`` ``<stem>.<target>.nii[.gz]`` per target, the      nibabel
              scan's affine, codes and units
``.zarr``     an OME-Zarr image ``(T, *S)`` (array ``0``),      zarr (v3 format)
              the scan's spacing and MRC origin; the full
              affine and the targets in ``camscope`` attributes
============  ================================================  ======================

Beside them, ``<stem>.outputs.npy`` holds the blended output of a dense network and
``<stem>.scores.npy`` each window's scores of a classifier. Heatmaps are float32 in every format
(what viewers open); outputs and scores keep the scan's precision.

Rows are written at their place in the file as soon as no later window can reach them (MRC and
NumPy files at their byte offset, not through a memory map whose written pages would stay
resident; Zarr chunk by chunk, each chunk file replaced whole). NIfTI stores its first axis
fastest, so its rows go to a NumPy file first, turned into NIfTI a slice at a time at the end.

After every window batch the work folder keeps the blenders' band of unfinished rows
(``band.npy``, two slots used in turn, so the one the record names is never half-written) and
``progress.json`` records how many windows and rows are done, with the run's identity (the scan's
content, the model's weights, the method and every setting). A run that stops (an error, Ctrl-C,
a killed process) keeps the work folder; the same call again finds the record, checks the
identity, brings the band back and goes on from the first window not yet blended (it redoes at
most the batch that was interrupted), so the files are the same as an uninterrupted run's, byte
for byte. A record of another job
(the scan, the model or a setting differ) is never resumed: the run starts over and says why.
Records are flushed to the operating system after each batch, not synced to the disk: they
survive a killed process, not a power cut.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from camscope.errors import InputError
from camscope.io.atomic import write_json

__all__ = [
    "ScanFiles",
    "check_scan_out",
    "out_kind",
    "out_stem",
    "write_zarr",
]

_ENDINGS = (".npy", ".mrc", ".nii", ".nii.gz", ".zarr")


def out_kind(path: Path) -> str:
    """``npy``, ``mrc``, ``nifti`` or ``zarr``, from the name's ending."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    return {".npy": "npy", ".mrc": "mrc", ".zarr": "zarr"}[Path(name).suffix]


def out_stem(path: Path) -> str:
    """The name without its ending (``maps.nii.gz`` → ``maps``)."""
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem


def check_scan_out(path: Path, spatial_dims: int, source: Any = None) -> None:
    """Refuse, before any work, an output path whose format cannot hold the maps.

    Raises:
        InputError: an unknown ending, a 2D scan into a volume format, MRC maps of a NIfTI scan
            (its axes run x, y, z, MRC's z, y, x: rows streamed in the one order cannot be
            written in the other), a folder named ``.zarr`` that is not camscope's output, or
            Zarr output without the zarr package.
    """
    name = path.name.lower()
    if not name.endswith(_ENDINGS):
        raise InputError(f"out must end in .npy, .mrc, .nii, .nii.gz or .zarr, not {path.name!r}")
    if spatial_dims != 3 and name.endswith((".mrc", ".nii", ".nii.gz")):
        kind = "MRC" if name.endswith(".mrc") else "NIfTI"
        raise InputError(
            f"out={path.name} needs a 3D scan ({kind} heatmaps are volumes); use .npy or .zarr "
            "for 2D"
        )
    if name.endswith(".mrc") and getattr(source, "format", None) == "nifti":
        raise InputError(
            f"out={path.name}: the scan is a NIfTI, whose axes run x, y, z where MRC's run z, y, "
            "x; stream its maps to .nii.gz (the scan's affine) or .npy, or write MRC heatmaps "
            "afterwards with camscope.io.heatmaps.write_heatmap(..., 'mrc')"
        )
    if name.endswith(".zarr") and path.exists() and not _written_by_camscope(path):
        raise InputError(
            f"out={path} exists and is not a Zarr store camscope wrote; camscope replaces only "
            "its own output: choose another name or remove it"
        )
    if not name.endswith(".zarr") and path.is_dir():
        raise InputError(f"out={path} is a folder; give a file name (e.g. {path / 'maps.npy'})")
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"out={path}: {parent} is a file, not a folder")
    if name.endswith(".zarr"):
        try:
            import zarr  # noqa: F401
        except ImportError as error:
            raise InputError(
                "out=*.zarr needs the zarr package: pip install 'zarr>=3,<4'"
            ) from error


def _written_by_camscope(path: Path) -> bool:
    """A Zarr store whose metadata carries camscope's attributes."""
    try:
        metadata = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return "camscope" in metadata.get("attributes", {})


class _RowFile:
    """A raw float array ``(C, N, *rest)`` in a file at ``offset``: rows written in place."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: Any) -> None:
        self.path, self.offset, self.shape, self.dtype = path, offset, shape, np.dtype(dtype)
        self.row_bytes = int(np.prod(shape[2:], dtype=np.int64)) * self.dtype.itemsize
        self.handle = open(path, "r+b")

    def write(self, channel: int, start: int, rows: np.ndarray) -> None:
        self.handle.seek(self.offset + (channel * self.shape[1] + start) * self.row_bytes)
        self.handle.write(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _new_npy(path: Path, shape: tuple[int, ...], dtype: Any) -> int:
    """A ``.npy`` file of ``shape`` zeros (sparse on disk); its data's offset."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    offset = int(array.offset)
    del array
    return offset


def _new_mrc(path: Path, shape: tuple[int, ...], source: Any) -> int:
    """An MRC file of ``shape`` float32 zeros with the scan's geometry (voxel size and origin,
    as :func:`~camscope.io.heatmaps.write_heatmap` writes them); the data's offset."""
    import mrcfile

    from camscope.io.heatmaps import mrc_voxel_size

    with mrcfile.new_mmap(path, shape=shape, mrc_mode=2, overwrite=True) as mrc:
        voxel = mrc_voxel_size(source) if hasattr(source, "spacing") else None
        if voxel is not None:  # else left unset (0): the scan does not say its unit
            mrc.voxel_size = voxel
        origin = getattr(source, "origin", None)
        if origin is not None:
            mrc.header.origin = origin
        mrc.header.label[0] = b"written by camscope"
        mrc.header.nlabl = 1
        return 1024 + int(mrc.header.nsymbt)


class ScanFiles:
    """The files of one ``explain_scan(out=...)`` run: created (or reopened to resume) once the
    first window batch says how many targets, output channels and classes there are; moved into
    place by :meth:`finish`.

    Args:
        out: the path the user gave (checked by :func:`check_scan_out`).
        scan_size: the scan's spatial size ``S``.
        windows: the number of windows.
        source: the :class:`~camscope.io.LoadedImage` whose geometry the files keep, or ``None``.
        identity: what must match for a run to resume; ``None`` never resumes.
    """

    def __init__(
        self,
        out: Path,
        scan_size: tuple[int, ...],
        windows: int,
        source: Any,
        identity: dict[str, Any] | None,
    ) -> None:
        self.out, self.scan_size, self.windows = out, scan_size, windows
        self.source, self.identity = source, identity
        self.kind = out_kind(out)
        self.stem = out_stem(out)
        self.work = out.parent / f".{out.name}.partial"
        self.layout: dict[str, Any] = {}
        self._maps: list[_RowFile] = []
        self._zarr: Any = None
        self._outputs: _RowFile | None = None
        self._scores: _RowFile | None = None
        self._band: _RowFile | None = None
        self._slot = 1  # the slot the last record names (the first save uses slot 0)
        self.files: list[str] = []

    # -- resuming ---------------------------------------------------------------------------

    def previous(self) -> tuple[dict[str, Any] | None, str | None]:
        """The progress record of an interrupted run of this job, or ``None`` and why not (a
        different job's record, or no record)."""
        record_path = self.work / "progress.json"
        if not record_path.exists():
            return None, None
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            return None, f"its progress record {record_path} cannot be read"
        if self.identity is None:
            return None, "a callable target cannot be recognised again"
        theirs = record.get("identity", {})
        differ = sorted(
            key for key in {*theirs, *self.identity} if theirs.get(key) != self.identity.get(key)
        )
        if differ:
            return None, f"that job differs in {', '.join(differ)}"
        if "band_slot" not in record:
            return None, "its record keeps no band of blended windows (an older camscope's)"
        missing = self._damaged(record.get("layout", {}))
        if missing:
            return None, missing
        return record, None

    def _damaged(self, layout: dict[str, Any]) -> str | None:
        """Why the work files cannot be resumed (missing, or not the size they were made at)."""
        sizes: dict[str, int] = layout.get("sizes", {})
        if not sizes:
            return "its record does not list its files"
        for name, size in sizes.items():
            path = self.work / name
            if not path.exists():
                return f"its file {path} is missing"
            if size >= 0 and path.stat().st_size != size:
                return f"its file {path} is {path.stat().st_size} bytes, not {size}"
        return None

    def discard(self) -> None:
        """Remove the work folder (a new run starts from nothing)."""
        shutil.rmtree(self.work, ignore_errors=True)

    # -- writing ----------------------------------------------------------------------------

    def open(self, layout: dict[str, Any], *, resume: bool) -> None:
        """Create the work files for ``layout`` (labels, output channels, score classes and the
        dtype), or reopen them to resume."""
        self.layout = layout
        labels: list[str] = layout["labels"]
        dtype = np.dtype(layout["dtype"])
        shape = (len(labels), *self.scan_size)
        if not resume:
            self.discard()
            self.work.mkdir(parents=True)
            offsets: dict[str, int] = {}
            if self.kind in ("npy", "nifti"):
                offsets["maps"] = _new_npy(self.work / "maps.npy", shape, np.float32)
            elif self.kind == "mrc":
                for label in labels:
                    offsets[label] = _new_mrc(self.work / f"{label}.mrc", shape[1:], self.source)
            else:
                self._new_zarr(shape)
            if layout.get("outputs"):
                size = (layout["outputs"], *self.scan_size)
                offsets["outputs"] = _new_npy(self.work / "outputs.npy", size, dtype)
            if layout.get("scores"):
                size = (self.windows, layout["scores"])
                offsets["scores"] = _new_npy(self.work / "scores.npy", size, dtype)
            offsets["band"] = _new_npy(self.work / "band.npy", self._band_shape(layout), dtype)
            layout["offsets"] = offsets
            layout["sizes"] = {  # checked before a resume: a damaged file is never trusted
                path.name: (path.stat().st_size if path.is_file() else -1)
                for path in sorted(self.work.iterdir())
            }
        offsets = layout["offsets"]
        if self.kind in ("npy", "nifti"):
            self._maps = [_RowFile(self.work / "maps.npy", offsets["maps"], shape, np.float32)]
        elif self.kind == "mrc":
            self._maps = [
                _RowFile(self.work / f"{label}.mrc", offsets[label], (1, *shape[1:]), np.float32)
                for label in labels
            ]
        else:
            import zarr

            self._zarr = zarr.open_group(self.work / "maps.zarr", mode="r+")["0"]
        if layout.get("outputs"):
            size = (layout["outputs"], *self.scan_size)
            self._outputs = _RowFile(self.work / "outputs.npy", offsets["outputs"], size, dtype)
        if layout.get("scores"):  # one "channel" of window rows
            size = (1, self.windows, layout["scores"])
            self._scores = _RowFile(self.work / "scores.npy", offsets["scores"], size, dtype)
        self._band = _RowFile(
            self.work / "band.npy", offsets["band"], self._band_shape(layout), dtype
        )

    @staticmethod
    def _band_shape(layout: dict[str, Any]) -> tuple[int, ...]:
        """Two slots of the blenders' bands: maps, outputs and their weights, stacked."""
        channels = len(layout["labels"]) + int(layout.get("outputs") or 0) + 1
        return (2, channels, *layout["band"])

    def save_band(self, parts: list[np.ndarray]) -> int:
        """Write the blenders' bands (stacked ``parts``) into the slot the last record does not
        name, and return its number for the next record."""
        assert self._band is not None
        self._slot = 1 - self._slot
        handle = self._band.handle
        slot_bytes = int(np.prod(self._band.shape[1:], dtype=np.int64)) * self._band.dtype.itemsize
        handle.seek(self._band.offset + self._slot * slot_bytes)
        for part in parts:
            handle.write(np.ascontiguousarray(part, dtype=self._band.dtype).data.cast("B"))
        return self._slot

    def load_band(self, slot: int) -> np.ndarray:
        """The bands a record names ``(channels, rows, *rest)``; the next save uses the other
        slot."""
        self._slot = slot
        band = np.load(self.work / "band.npy", mmap_mode="r")
        return np.array(band[slot])

    def _new_zarr(self, shape: tuple[int, ...]) -> None:
        _new_zarr_image(self.work / "maps.zarr", shape, self.source, self.layout["labels"])

    def write_maps(self, start: int, rows: np.ndarray) -> None:
        """Rows ``[start, start + n)`` of every target: ``(T, n, *rest)``."""
        if self._zarr is not None:
            self._zarr[:, start : start + rows.shape[1]] = rows.astype(np.float32)
        elif len(self._maps) == 1:
            for target in range(rows.shape[0]):
                self._maps[0].write(target, start, rows[target])
        else:
            for target, handle in enumerate(self._maps):
                handle.write(0, start, rows[target])

    def write_outputs(self, start: int, rows: np.ndarray) -> None:
        """Write blended output rows from row ``start`` on."""
        assert self._outputs is not None
        for channel in range(rows.shape[0]):
            self._outputs.write(channel, start, rows[channel])

    def write_scores(self, first: int, scores: np.ndarray) -> None:
        """Write the scores of the windows from window ``first`` on."""
        assert self._scores is not None
        self._scores.write(0, first, scores)

    def checkpoint(self, progress: dict[str, Any]) -> None:
        """Hand written rows to the operating system, then record how far the run got."""
        for handle in [*self._maps, self._outputs, self._scores, self._band]:
            if handle is not None:
                handle.flush()
        write_json(
            self.work / "progress.json",
            {"identity": self.identity, "layout": self.layout, **progress},
        )

    def close(self) -> None:
        """Close the open files."""
        for handle in [*self._maps, self._outputs, self._scores, self._band]:
            if handle is not None:
                handle.close()
        self._maps, self._outputs, self._scores, self._zarr = [], None, None, None
        self._band = None

    def finish(self) -> list[str]:
        """Move the complete files into place (NIfTI: written from the rows), remove the work
        folder, and list what was written."""
        self.close()
        labels: list[str] = self.layout["labels"]
        folder = self.out.parent
        files: list[Path] = []
        if self.kind == "npy":
            os.replace(self.work / "maps.npy", self.out)
            files.append(self.out)
        elif self.kind == "mrc":
            for label in labels:
                final = folder / f"{self.stem}.{label}.mrc"
                os.replace(self.work / f"{label}.mrc", final)
                files.append(final)
        elif self.kind == "nifti":
            files += self._to_nifti(labels)
        else:
            if self.out.exists():  # an earlier output of camscope's (checked before the run)
                shutil.rmtree(self.out)
            os.replace(self.work / "maps.zarr", self.out)
            files.append(self.out)
        for part in ("outputs", "scores"):
            if (self.work / f"{part}.npy").exists():
                final = folder / f"{self.stem}.{part}.npy"
                os.replace(self.work / f"{part}.npy", final)
                files.append(final)
        self.discard()
        self.files = [str(path) for path in files]
        return self.files

    def _to_nifti(self, labels: list[str]) -> list[Path]:
        from camscope.io.heatmaps import write_nifti
        from camscope.io.inputs import LoadedImage

        geometry = (
            self.source
            if isinstance(
                self.source, LoadedImage
            )  # a bare tensor: voxel axes as given, unit voxels
            else LoadedImage(np.zeros((1, 1, 1, 1), np.float32), "tensor", "npy", affine=np.eye(4))
        )
        ending = ".nii.gz" if self.out.name.lower().endswith(".gz") else ".nii"
        maps = np.load(self.work / "maps.npy", mmap_mode="r")
        written = []
        for target, label in enumerate(labels):
            final = self.out.parent / f"{self.stem}.{label}{ending}"
            write_nifti(final, maps[target], geometry)
            written.append(final)
        del maps
        return written


def _new_zarr_image(path: Path, shape: tuple[int, ...], source: Any, labels: list[str]) -> Any:
    """An empty OME-Zarr image ``(T, *S)`` float32 at ``path`` (array ``0``); the array."""
    import zarr

    rest = tuple(min(size, 256) for size in shape[2:])
    group = zarr.open_group(path, mode="w", zarr_format=3)
    array = group.create_array(
        "0",
        shape=shape,
        chunks=(1, min(shape[1], 32 if len(shape) == 4 else 256), *rest),
        dtype="float32",
        fill_value=0.0,
    )
    group.attrs.update(_ome_attributes(source, len(shape) - 1, {"labels": labels}))
    return array


def write_zarr(path: Path, maps: np.ndarray, source: Any, labels: list[str]) -> Path:
    """Maps ``(T, *S)`` (a memory map is fine: one target is read at a time) as an OME-Zarr image
    with the scan's geometry, written beside ``path`` and moved onto it when complete
    (replacing only a store camscope wrote, as :func:`check_scan_out` checks)."""
    check_scan_out(path, maps.ndim - 1)
    temporary = path.with_name(f".{path.name}.partial")
    shutil.rmtree(temporary, ignore_errors=True)
    array = _new_zarr_image(temporary, tuple(maps.shape), source, labels)
    for target in range(maps.shape[0]):
        array[target] = np.asarray(maps[target], dtype=np.float32)
    if path.exists():
        shutil.rmtree(path)
    os.replace(temporary, path)
    return path


def _ome_attributes(source: Any, spatial_dims: int, layout: dict[str, Any]) -> dict[str, Any]:
    """OME-NGFF 0.5 image metadata (axes, voxel size, MRC origin) and camscope's own."""
    from camscope.io.heatmaps import spacing_unit

    # camscope holds MRC/DICOM/TIFF volumes as (z, y, x); NIfTI as stored, (i, j, k) ≈ (x, y, z)
    nifti = getattr(source, "format", "") == "nifti"
    names = ["x", "y", "z"][:spatial_dims] if nifti else ["z", "y", "x"][-spatial_dims:]
    spacing = list(getattr(source, "spacing", None) or (1.0,) * spatial_dims)
    unit = spacing_unit(source) if source is not None and hasattr(source, "details") else None
    ome_unit = {
        "Å": "angstrom",
        "A": "angstrom",
        "nm": "nanometer",
        "µm": "micrometer",
        "mm": "millimeter",
    }.get(unit or "")
    axes: list[dict[str, Any]] = [{"name": "c", "type": "channel"}]
    for name in names:
        axis: dict[str, Any] = {"name": name, "type": "space"}
        if ome_unit is not None:
            axis["unit"] = ome_unit
        axes.append(axis)
    transforms: list[dict[str, Any]] = [{"type": "scale", "scale": [1.0, *map(float, spacing)]}]
    origin = getattr(source, "origin", None)
    if origin is not None and getattr(source, "format", "") == "mrc":
        transforms.append(
            {"type": "translation", "translation": [0.0, *map(float, reversed(origin))]}
        )
    camscope: dict[str, Any] = {"targets": layout.get("labels", [])}
    affine = getattr(source, "affine", None)
    if affine is not None:
        camscope["affine"] = np.asarray(affine).tolist()
    return {
        "ome": {
            "version": "0.5",
            "multiscales": [
                {
                    "name": "camscope heatmaps",
                    "axes": axes,
                    "datasets": [{"path": "0", "coordinateTransformations": transforms}],
                }
            ],
        },
        "camscope": camscope,
    }
