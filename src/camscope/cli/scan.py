"""``camscope scan``: explain a whole scan file (NIfTI, MRC, DICOM series, TIFF stack) window by
window, and write heatmaps with the scan's geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from camscope.cli.common import (
    ModelChoice,
    friendly,
    input_options,
    model_options,
    output_options,
)
from camscope.cli.params import LAYOUT, NAME_LIST, TARGETS

__all__ = ["scan"]


@click.command("scan")
@click.argument("model_spec_text", metavar="MODEL")
@click.argument("input_file", metavar="SCAN")
@click.option("--roi", "roi_size", type=int, required=True, help="Window edge (voxels).")
@click.option("--method", default="grad-cam", show_default=True)
@click.option("--layer", default=None)
@LAYOUT
@click.option(
    "--targets",
    type=TARGETS,
    default="all",
    show_default=True,
    help="'all' or class indices (a dense output: each class's predicted region).",
)
@click.option(
    "--region",
    "regions",
    multiple=True,
    metavar="MASK[:CLASS]",
    help="A region target (repeat for more, one map each): the class's logits (default 1) "
    "summed over the non-zero voxels of MASK, a file of the scan's shape (NIfTI, MRC, NumPy, "
    "TIFF), e.g. a lesion's mask. Replaces --targets.",
)
@click.option(
    "--voxel",
    "voxels",
    multiple=True,
    metavar="Z,Y,X[:CLASS]",
    help="A single-voxel target (repeat for more): the class's logit (default 1) at that voxel "
    "(axes as the scan is held). Replaces --targets.",
)
@click.option("--overlap", type=float, default=0.25, show_default=True)
@click.option(
    "--blend", type=click.Choice(["gaussian", "constant"]), default="gaussian", show_default=True
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Windows at once.",
)
@click.option(
    "--format",
    "formats",
    type=NAME_LIST,
    default="nifti",
    show_default=True,
    help="Heatmap files: nifti, mrc, tiff, npy, png (one per target), zarr (one OME-Zarr image "
    "of every target).",
)
@input_options
@model_options
@output_options
@friendly
def scan(
    model_spec_text: str,
    input_file: str,
    roi_size: int,
    method: str,
    layer: str | None,
    layout: str | None,
    targets: str | list[int],
    regions: tuple[str, ...],
    voxels: tuple[str, ...],
    overlap: float,
    blend: str,
    batch_size: int,
    formats: tuple[str, ...],
    intensity: str,
    dicom_window: str,
    nifti_volume: int | str | None,
    weights: ModelChoice,
    out_dir: str,
    force: bool,
    quiet: bool,
) -> None:
    """Explain MODEL over the whole SCAN window by window (windows and blending as MONAI's
    sliding_window_inference): one heatmap per target at scan resolution, with the scan's
    geometry; the blended segmentation for dense networks, each window's scores for
    classifiers; report.html with slices of the scan and the maps.

    Maps are written as the windows covering them complete (<scan>.<method>.npy, all targets),
    so memory does not grow with the scan. An interrupted run (Ctrl-C, a killed job) goes on
    where it stopped when the same command is run again, and writes the same files; --force
    starts over."""
    import numpy as np

    from camscope import get_method
    from camscope.io import prepare_output_dir, read_scan, write_heatmap, write_json
    from camscope.io.heatmaps import heatmap_suffix
    from camscope.io.streamed import out_stem, write_zarr
    from camscope.layouts import parse_layout
    from camscope.render.report import ReportEntry, ReportMap, write_report
    from camscope.scan import explain_scan

    info = get_method(method)
    for kind in formats:
        if kind != "zarr":
            heatmap_suffix(kind)
    volume = read_scan(
        input_file,
        intensity=intensity,  # type: ignore[arg-type]
        dicom_window=dicom_window,  # type: ignore[arg-type]
        nifti_volume=nifti_volume,
    )
    chosen = _region_targets(regions, voxels, volume.spatial_shape)
    model, record = weights.load(model_spec_text)
    new_folder = not Path(out_dir).exists()
    folder = prepare_output_dir(out_dir, ["manifest.json"], force=force)
    stem = out_stem(Path(input_file))  # ct.v2.nii.gz → ct.v2
    streamed = folder / f"{stem}.{info.name}.npy"  # (T, *S), resumable; formats come from it
    try:
        result = explain_scan(
            model,
            volume,
            method=info.name,
            roi_size=roi_size,
            overlap=overlap,
            blend=blend,  # type: ignore[arg-type]
            targets=chosen or (None if targets == "all" else targets),
            layer=layer,
            layout=parse_layout(layout),
            batch_size=batch_size,
            out=streamed,
            resume=not force,
            progress=not quiet,
        )
    except BaseException:
        if new_folder and not any(folder.iterdir()):  # nothing done: no empty folder left
            folder.rmdir()
        raise
    maps = np.load(streamed, mmap_mode="r")
    labels = result.labels
    written = [Path(name).name for name in result.files]
    for kind in formats:
        if kind == "zarr":  # one OME-Zarr image of every target
            name = f"{stem}.{info.name}.zarr"
            write_zarr(folder / name, maps, volume, labels)
            written.append(name)
            continue
        for label, heat in zip(labels, maps, strict=True):  # one target in memory at a time
            name = f"{stem}.{info.name}.{label}{heatmap_suffix(kind)}"
            write_heatmap(
                folder / name,
                heat,
                volume,
                kind,
                signed=info.shown_signed,
                title=f"{info.name} · {label}",
            )
            written.append(name)
    extra: dict[str, object] = {}
    shown = [
        ReportMap(info.name, label, heat, info.shown_signed)
        for label, heat in zip(labels[:6], maps[:6], strict=True)
    ]
    if result.outputs is not None:
        segmentation = result.outputs.max(0).indices.numpy().astype(np.float32)
        for kind in [k for k in formats if k != "zarr"] or ["npy"]:
            name = f"{stem}.segmentation{heatmap_suffix(kind)}"
            write_heatmap(folder / name, segmentation, volume, kind, signed=False)
            written.append(name)
        shown.append(ReportMap("network", "segmentation", segmentation, False))
    if regions or voxels:  # which file or voxel, and which class, each map is about
        extra["target_details"] = dict(zip(labels, [*regions, *voxels], strict=True))
    if result.scores is not None:
        extra["window_scores"] = result.scores.tolist()
        best = int(result.scores.mean(0).argmax())
        coarse = _window_score_map(result.scores[:, best], result.windows, volume.spatial_shape)
        shown.append(ReportMap("window scores", f"class{best}", coarse, True))
    entry = ReportEntry(
        Path(input_file).name,
        volume.data,
        shown,
        {"windows": len(result.windows), "intensity": volume.details.get("intensity", "")},
    )
    write_report(folder / "report.html", [entry], title=f"camscope scan: {Path(input_file).name}")
    # the manifest last: it marks the folder complete (a re-run then needs --force)
    write_json(
        folder / "manifest.json",
        {
            "input": volume.record(),
            "model": record,
            "method": info.name,
            "layer": result.layer,
            "roi_size": roi_size,
            "overlap": overlap,
            "blend": blend,
            "targets": labels,
            "windows": result.windows.tolist(),
            "outputs": written,
            **extra,
        },
    )
    click.echo(
        f"explained {len(result.windows)} windows; wrote {len(written)} file(s), "
        f"manifest.json and report.html to {folder}"
    )


def _region_targets(
    regions: tuple[str, ...], voxels: tuple[str, ...], shape: tuple[int, ...]
) -> list[Any]:
    """``--region`` and ``--voxel`` as region and voxel targets over the scan."""
    from camscope.errors import InputError
    from camscope.io import read_scan
    from camscope.targets import region_target, voxel_target

    def split(text: str, option: str) -> tuple[str, int]:
        head, _, tail = text.rpartition(":")
        if head and tail.strip().lstrip("-").isdigit():
            if int(tail) < 0:
                raise InputError(f"{option} {text}: the class after ':' must be 0 or more")
            return head, int(tail)
        return text, 1

    chosen: list[Any] = []
    for text in regions:
        path, class_index = split(text, "--region")
        if not Path(path).exists():
            raise InputError(f"--region {path}: no such file")
        stored = read_scan(path, intensity="stored").data
        mask = (stored != 0).any(0)
        if tuple(mask.shape) != tuple(shape):
            raise InputError(
                f"--region {path}: mask of shape {tuple(mask.shape)}, the scan is {tuple(shape)}"
            )
        if not mask.any():
            raise InputError(f"--region {path}: the mask has no non-zero voxel")
        chosen.append(region_target(class_index, mask))
    for text in voxels:
        where, class_index = split(text, "--voxel")
        try:
            position = tuple(int(v) for v in where.split(","))
        except ValueError:
            position = ()
        if len(position) != len(shape) or not all(
            0 <= p < s for p, s in zip(position, shape, strict=True)
        ):
            raise InputError(
                f"--voxel {text}: give {len(shape)} comma-separated indices inside the scan "
                f"{tuple(shape)}, then optionally :CLASS"
            )
        chosen.append(voxel_target(class_index, position))
    return chosen


def _window_score_map(scores: Any, boxes: Any, shape: tuple[int, ...]) -> Any:
    """A class's window scores as a coarse map: each voxel the mean score of the windows that
    cover it (the classifier's own reading of the scan, beside the explanations)."""
    import numpy as np

    total = np.zeros(shape, dtype=np.float32)
    count = np.zeros(shape, dtype=np.float32)
    half = len(shape)
    for score, box in zip(scores.tolist(), boxes.tolist(), strict=True):
        region = tuple(slice(a, b) for a, b in zip(box[:half], box[half:], strict=True))
        total[region] += score
        count[region] += 1
    return total / np.maximum(count, 1)
