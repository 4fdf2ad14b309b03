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
from camscope.cli.params import LAYOUT, NAME_LIST, layer_option, methods_option, targets_option
from camscope.wholescan.outputs import ScanOutputs, heatmap_files, network_maps

__all__ = ["scan"]


@click.command("scan")
@click.argument("model_spec_text", metavar="MODEL")
@click.argument("input_file", metavar="SCAN")
@click.option("--roi", "roi_size", type=int, required=True, help="Window edge (voxels).")
@methods_option("grad-cam", "Methods (a comma list or the option repeated): one set of maps each.")
@layer_option(
    "Layer of the layer methods (default: camscope's); several are explained each and their "
    "maps fused (mean) on the finest grid."
)
@LAYOUT
@targets_option("all", "'all' or class indices (a dense output: each class's predicted region).")
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
    methods: tuple[str, ...],
    layer: str | list[str] | None,
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
    where it stopped when the same command is run again, and writes the same files; a finished
    run asked again is already done (exit 0); --force starts over."""
    from camscope import get_method
    from camscope.io import read_image
    from camscope.io.heatmaps import heatmap_suffix
    from camscope.runs.identity import fingerprint as run_fingerprint

    if targets == "predicted" or targets == "label":
        from camscope.errors import InputError

        raise InputError(
            f"--targets {targets}: a scan explains 'all' or class indices (a dense output: each "
            "class's predicted region)"
        )
    infos = [get_method(name) for name in methods]
    for kind in formats:
        if kind != "zarr":
            heatmap_suffix(kind)
    volume = read_image(
        input_file,
        intensity=intensity,  # type: ignore[arg-type]
        dicom_window=dicom_window,  # type: ignore[arg-type]
        nifti_volume=nifti_volume,
    )
    chosen = _region_targets(regions, voxels, volume.spatial_shape)
    model, record = weights.load(model_spec_text)
    settings = {
        "methods": [info.name for info in infos],
        "layer": layer,
        "layout": layout,
        "roi_size": roi_size,
        "overlap": overlap,
        "blend": blend,
        "targets": targets,
        "regions": list(regions),
        "voxels": list(voxels),
        "batch_size": batch_size,
        "formats": list(formats),
    }
    identity = _identity(volume, model, record, settings)
    fingerprint = run_fingerprint(identity)
    folder = Path(out_dir)
    if not force and _finished(folder, fingerprint, identity):
        click.echo(
            f"already done: {folder} holds this scan's maps for these settings (manifest.json); "
            "--force computes them again"
        )
        return
    outputs = _explain_and_write(
        model, volume, infos, folder, input_file, settings, chosen, force=force, quiet=quiet
    )
    outputs.extra["identity"] = identity  # what a later run in this folder is compared with
    outputs.write_manifest(record, fingerprint)


def _identity(
    volume: Any, model: Any, record: dict[str, Any], settings: dict[str, Any]
) -> dict[str, Any]:
    """What makes a scan run's outputs: the scan's content, the model's weights, the settings
    (kept whole, so a refusal can say which of them changed)."""
    from camscope.engine import weights_digest
    from camscope.runs.identity import content_digest, fingerprint

    return {
        "scan": content_digest(volume.tensor()),
        "model": fingerprint({**record, "weights_sha256": weights_digest(model)}),
        "settings": settings,
    }


def _finished(folder: Path, fingerprint: str, identity: dict[str, Any]) -> bool:
    """Whether ``folder`` holds a finished run of this job; another job's run is refused,
    saying what differs."""
    import json

    from camscope.io.atomic import OutputError
    from camscope.runs.identity import recorded_fingerprint

    manifest = folder / "manifest.json"
    if not manifest.exists():
        return False
    if recorded_fingerprint(manifest) == fingerprint:
        return True
    try:
        earlier = json.loads(manifest.read_text()).get("identity") or {}
    except (OSError, ValueError, AttributeError):
        earlier = {}
    raise OutputError(
        f"{folder} already holds another camscope scan ({_what_differs(earlier, identity)}); "
        "choose another --out or pass --force to overwrite"
    )


def _what_differs(earlier: dict[str, Any], now: dict[str, Any]) -> str:
    """In words: which of scan, model and settings differ from the run recorded in a folder."""
    import json

    if not earlier:
        return "manifest.json: other settings, model or scan"
    said = [f"another {part}" for part in ("scan", "model") if earlier.get(part) != now[part]]
    before = earlier.get("settings") or {}
    after = json.loads(json.dumps(now["settings"]))  # as the manifest holds them (lists)
    changed = [
        f"{key} {before.get(key)!r} → {after.get(key)!r}"
        for key in after
        if before.get(key) != after.get(key)
    ]
    if changed:
        said.append("settings: " + ", ".join(changed))
    return "; ".join(said) or "manifest.json: another camscope version's run"


def _explain_and_write(
    model: Any,
    volume: Any,
    infos: list[Any],
    folder: Path,
    input_file: str,
    settings: dict[str, Any],
    chosen: list[Any],
    *,
    force: bool,
    quiet: bool,
) -> ScanOutputs:
    """Each method over the scan (streamed, resumable), its heatmap files, then the report."""
    import numpy as np

    from camscope.io import prepare_output_dir
    from camscope.layouts import parse_layout
    from camscope.render.report import ReportEntry, write_report
    from camscope.wholescan.explain import explain_scan
    from camscope.wholescan.streaming import out_stem

    new_folder = not folder.exists()
    prepare_output_dir(folder, [], force=force)
    if force and (folder / "manifest.json").exists():
        (folder / "manifest.json").unlink()  # the folder is not complete until the new one
    stem = out_stem(Path(input_file))  # ct.v2.nii.gz → ct.v2
    written = ScanOutputs(folder, volume, settings)
    shown = []
    targets = settings["targets"]
    for info in infos:
        streamed = folder / f"{stem}.{info.name}.npy"  # (T, *S), resumable; formats come from it
        try:
            result = explain_scan(
                model,
                volume,
                method=info.name,
                roi_size=settings["roi_size"],
                overlap=settings["overlap"],
                blend=settings["blend"],
                targets=chosen or (None if targets == "all" else targets),
                layer=settings["layer"],
                layout=parse_layout(settings["layout"]),
                batch_size=settings["batch_size"],
                out=streamed,
                resume=not force,
                progress=not quiet,
            )
        except BaseException:
            if new_folder and not any(folder.iterdir()):  # nothing done: no empty folder left
                folder.rmdir()
            raise
        maps = np.load(streamed, mmap_mode="r")
        written.layers[info.name] = result.layer
        written.labels, written.windows = result.labels, result.windows
        written.files += [Path(name).name for name in result.files]
        shown += heatmap_files(written, info, maps, result.labels, stem, progress=not quiet)
    shown += network_maps(written, result, stem)  # the same for every method: the last one's
    if settings["regions"] or settings["voxels"]:  # which file or voxel, and which class
        written.extra["target_details"] = dict(
            zip(written.labels, [*settings["regions"], *settings["voxels"]], strict=True)
        )
    entry = ReportEntry(
        Path(input_file).name,
        volume.data,
        shown,
        {"windows": len(written.windows), "intensity": volume.details.get("intensity", "")},
    )
    write_report(folder / "report.html", [entry], title=f"camscope scan: {Path(input_file).name}")
    return written


def _region_targets(
    regions: tuple[str, ...], voxels: tuple[str, ...], shape: tuple[int, ...]
) -> list[Any]:
    """``--region`` and ``--voxel`` as region and voxel targets over the scan."""
    from camscope.errors import InputError
    from camscope.io import read_image
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
        stored = read_image(path, intensity="stored").data
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
