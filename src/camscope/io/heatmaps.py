"""Write heatmaps in the formats imaging viewers open, aligned with the scan they explain.

=========  ==========================================================================  =========
format     geometry                                                                    library
=========  ==========================================================================  =========
``nifti``  the input's affine (NIfTI input) or its spacing (MRC/DICOM/TIFF) as a        nibabel
           diagonal affine; ``.nii.gz``
``mrc``    the input's voxel size and origin (MRC input), else its spacing             mrcfile
``tiff``   a float32 stack (volumes) or page (images), ImageJ-style, with z spacing    tifffile
``png``    an overlay of the map on the input (volumes: three orthogonal slices)       matplotlib
``npy``    the raw array                                                               NumPy
=========  ==========================================================================  =========

A heatmap must have the input's spatial shape (upsample first). Every file is written atomically:
it appears whole under its final name or not at all.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np

from camscope.errors import InputError
from camscope.io.atomic import atomic_write
from camscope.io.inputs import LoadedImage
from camscope.io.volumes import write_mrc

__all__ = ["HEATMAP_FORMATS", "heatmap_suffix", "nifti_units_note", "write_heatmap", "write_nifti"]

HEATMAP_FORMATS = ("nifti", "mrc", "tiff", "png", "npy")
_SUFFIX = {"nifti": ".nii.gz", "mrc": ".mrc", "tiff": ".tif", "png": ".png", "npy": ".npy"}


def heatmap_suffix(kind: str) -> str:
    """File-name ending of a heatmap format."""
    if kind not in _SUFFIX:
        raise InputError(f"unknown heatmap format {kind!r}; use {', '.join(HEATMAP_FORMATS)}")
    return _SUFFIX[kind]


#: Length units of spacings by input format (TIFF says its own, in ``details["unit"]``).
_UNITS = {"mrc": "Å", "dicom": "mm", "dicom-series": "mm"}

#: Ångström per unit, to write other inputs' spacing into MRC headers (which are in Å).
_ANGSTROM = {"Å": 1.0, "A": 1.0, "nm": 10.0, "µm": 1e4, "mm": 1e7, "cm": 1e8, "m": 1e10}


def mrc_voxel_size(scan: LoadedImage) -> tuple[float, float, float] | None:
    """The scan's voxel size for an MRC header: Å, ``(x, y, z)``; ``None`` (left unset, 0 in
    the header) when the scan has no spacing or does not say its unit."""
    factor = _ANGSTROM.get(spacing_unit(scan) or "")
    if scan.spacing is None or factor is None:
        return None
    spacing = tuple(v * factor for v in scan.spacing)
    xyz = spacing if scan.format == "nifti" else spacing[::-1]
    return (*xyz, 1.0)[:3] if len(xyz) == 2 else xyz  # type: ignore[return-value]


def spacing_unit(scan: LoadedImage) -> str | None:
    """The length unit of the scan's spacing, or ``None`` when the file does not say."""
    unit = scan.details.get("unit", _UNITS.get(scan.format))
    return None if unit is None else str(unit)


#: NIfTI's length units, and the units it lacks turned into one it has: (unit, factor).
_NIFTI_UNITS = {
    "µm": ("micron", 1.0),
    "mm": ("mm", 1.0),
    "m": ("meter", 1.0),
    "Å": ("micron", 1e-4),
    "A": ("micron", 1e-4),
    "nm": ("micron", 1e-3),
    "cm": ("mm", 10.0),
}


def _nifti_unit(scan: LoadedImage) -> tuple[str, float]:
    return _NIFTI_UNITS.get(spacing_unit(scan) or "", ("unknown", 1.0))


def nifti_units_note(scan: LoadedImage) -> str | None:
    """What a NIfTI heatmap of ``scan`` does with its spacing unit when NIfTI has no such unit
    (MRC's Å become µm, the affine scaled to match), for manifests; ``None`` when kept as is."""
    unit = spacing_unit(scan)
    name, factor = _nifti_unit(scan)
    if factor == 1.0:
        return None
    shown = {"micron": "µm", "mm": "mm"}[name]
    return f"NIfTI has no {unit}: spacing and origin written in {shown} (× {factor:g})"


def _nifti_affine(scan: LoadedImage) -> tuple[np.ndarray, bool]:
    """Affine for the heatmap and whether the array must go from (z, y, x) to (x, y, z)."""
    if scan.affine is not None:
        return scan.affine, False
    spacing = scan.spacing or (1.0,) * (scan.data.ndim - 1)
    xyz = tuple(reversed(spacing))  # camscope's volumes from MRC/DICOM/TIFF are (z, y, x)
    affine = np.eye(4)
    affine[: len(xyz), : len(xyz)] = np.diag(xyz)
    if scan.origin is not None:
        affine[:3, 3] = scan.origin
    return affine, True


def write_nifti(path: str | os.PathLike[str], values: np.ndarray, scan: LoadedImage) -> Path:
    """One heatmap ``(*S)`` as NIfTI (gzipped when the name ends in ``.gz``) with the scan's
    geometry: its own affine, qform/sform codes and units for a NIfTI input, else its spacing and
    origin (axes reversed: camscope's volumes from MRC/DICOM/TIFF are ``(z, y, x)``).

    ``values`` may be a memory map: nibabel writes it a slice at a time, so a map larger than
    memory can be written (:func:`camscope.explain_scan` with ``out=*.nii.gz``). The bytes are
    the same on every run (no time or name in the gzip header).
    """
    import nibabel

    affine, transpose = _nifti_affine(scan)
    unit, factor = _nifti_unit(scan)
    if factor != 1.0:  # a unit NIfTI lacks (MRC's Å): the affine in one it has
        affine = affine.copy()
        affine[:3, :] *= factor
    image = nibabel.Nifti1Image(values.T if transpose else values, affine)
    codes = scan.details.get("nifti_codes")
    if codes is not None:  # the input's own: a scanner (1) or aligned (2+) space, kept
        qform = np.asarray(scan.details.get("nifti_qform", affine), dtype=np.float64)
        image.set_sform(affine, code=int(codes["sform"]))
        image.set_qform(qform, code=int(codes["qform"]))
    image.header.set_xyzt_units(unit)
    note = nifti_units_note(scan)
    if note is not None:
        image.header["descrip"] = note.encode("utf-8")[:80]
    final = Path(path)
    with atomic_write(final) as handle:
        if final.name.endswith(".gz"):
            with gzip.GzipFile(filename="", fileobj=handle, mode="wb", mtime=0) as zipped:
                image.to_stream(zipped)
        else:
            image.to_stream(handle)  # type: ignore[arg-type]
    return final


def write_heatmap(
    path: str | os.PathLike[str],
    heatmap: np.ndarray,
    scan: LoadedImage,
    kind: str,
    *,
    signed: bool = True,
    title: str = "",
) -> Path:
    """Write one heatmap ``(*S)`` (the scan's spatial shape) as ``kind``.

    Args:
        path: output file (its ending should match :func:`heatmap_suffix`).
        heatmap: the map at input resolution.
        scan: the input it explains (geometry, and the background of PNG overlays).
        kind: one of :data:`HEATMAP_FORMATS`.
        signed: PNG only: diverging colour map centred on 0 (else sequential).
        title: PNG only: a caption.

    Raises:
        InputError: wrong shape or unknown format.
    """
    values = np.ascontiguousarray(heatmap, dtype=np.float32)
    if values.shape != scan.spatial_shape:
        raise InputError(
            f"heatmap shape {values.shape} differs from the input's {scan.spatial_shape}; "
            "upsample it to input resolution first"
        )
    heatmap_suffix(kind)
    final = Path(path)
    if kind == "npy":
        with atomic_write(final) as handle:
            np.save(handle, values)
    elif kind == "nifti":
        write_nifti(final, values, scan)
    elif kind == "mrc":
        volume = values if values.ndim == 3 else values[None]
        if scan.format == "nifti":  # stored (i, j, k) ↔ MRC's (z, y, x)
            volume = volume.T
        write_mrc(
            final,
            volume,
            voxel_size_angstrom=mrc_voxel_size(scan),
            origin=scan.origin,
            start=scan.details.get("mrc_start_xyz"),
        )
    elif kind == "tiff":
        import tifffile

        metadata: dict[str, object] = {"axes": "ZYX" if values.ndim == 3 else "YX"}
        options: dict[str, Any] = {}
        if scan.spacing is not None:  # in the data's axis order, as the TIFF stores it
            spacing = tuple(scan.spacing)
            options["resolution"] = (1.0 / spacing[-1], 1.0 / spacing[-2])
            if values.ndim == 3:
                metadata["spacing"] = float(spacing[0])
            unit = spacing_unit(scan) or "pixel"
            # ImageJ's metadata is ASCII: micrometres as "micron", ångström as "A"
            metadata["unit"] = {"µm": "micron", "Å": "A"}.get(unit, unit)
        with atomic_write(final) as handle:
            tifffile.imwrite(handle, values, imagej=True, metadata=metadata, **options)
    else:  # png
        from camscope.render.overlays import overlay_figure

        figure = overlay_figure(scan.data, values, signed=signed, title=title)
        with atomic_write(final) as handle:
            figure.savefig(handle, format="png", dpi=90)
    return final
