"""``camscope explain`` and ``camscope features``: maps for files, written with their geometry."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from camscope.cli.common import (
    ALLOW_OUTSIDE,
    ModelChoice,
    backend_options,
    exit_if_failed,
    friendly,
    input_options,
    model_options,
    run_flags,
    show_input_warnings,
)
from camscope.cli.params import (
    INT_LIST,
    KEY_VALUE,
    LAYOUT,
    NAME_LIST,
    SIGMA,
    layer_option,
    methods_option,
    targets_option,
)

__all__ = ["explain_command", "features"]


@click.command("explain")
@click.argument("model_spec_text", metavar="MODEL")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, help="Output folder.")
@methods_option("respond-cam", "Methods: a comma list or the option repeated (camscope methods)")
@layer_option(
    "Layer name (default: camscope layers marks it); several, comma-separated or repeated, "
    "are explained each and their maps fused (mean) on the finest grid."
)
@LAYOUT
@targets_option(
    "predicted",
    "'predicted', 'all', 'label' (a manifest CSV's label column), or class indices (3 or 0,4,7).",
)
@click.option(
    "--upsample",
    "mode",
    type=click.Choice(["auto", "nearest", "linear", "gaussian"]),
    default="auto",
    show_default=True,
    help="How layer maps reach input resolution (auto: the method's own, Gaussian for "
    "Extended-CAM, else linear).",
)
@click.option(
    "--sigma",
    type=SIGMA,
    default="erf",
    show_default=True,
    help="Gaussian widths: 'erf' (from the effective receptive field) or pixels.",
)
@click.option(
    "--format",
    "formats",
    type=NAME_LIST,
    default="png",
    show_default=True,
    help="Heatmap files beside the NPZ, comma-separated: nifti, mrc, tiff, png, npy (or 'none').",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    type=KEY_VALUE,
    help="A method option (repeat), e.g. steps=100 for integrated-gradients; applies to every "
    "chosen method that has it.",
)
@input_options
@ALLOW_OUTSIDE
@click.option("--no-report", is_flag=True, help="Do not write report.html.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Inputs per batch.",
)
@backend_options
@model_options
@run_flags
@friendly
def explain_command(
    model_spec_text: str,
    inputs: tuple[str, ...],
    out_dir: str,
    methods: tuple[str, ...],
    layer: str | list[str] | None,
    layout: str | None,
    targets: str | list[int],
    mode: str,
    sigma: str | float,
    formats: tuple[str, ...],
    options: tuple[tuple[str, object], ...],
    intensity: str,
    dicom_window: str,
    nifti_volume: int | str | None,
    allow_outside: bool,
    no_report: bool,
    batch_size: int,
    backend: str,
    ray_address: str | None,
    workers: int,
    weights: ModelChoice,
    force: bool,
    quiet: bool,
) -> None:
    """Explain MODEL on image or volume INPUT files, a folder, a quoted glob or a manifest CSV.

    MODEL: a camscope saved model (.json), TorchScript (.pt), torch.export (.pt2), weights
    (.safetensors or a .pt state dict, with --architecture), or a built-in name (seeded random
    weights). INPUT: PNG, JPEG, TIFF (stacks are volumes), DICOM (with or without .dcm), NIfTI,
    MRC/MAP, .npy/.npz; a folder (searched recursively; its labels.csv when it has one), a glob,
    or a CSV with a `path` column (and `label`, for --targets label).

    Writes per input and method an NPZ (raw maps, heatmaps at input resolution, scores), heatmap
    files with the input's geometry (--format), records/, manifest.json and report.html. A run
    interrupted and started again with the same command continues where it stopped.
    """
    from camscope.runs import ExplainSettings, explain_files, resolve_dataset
    from camscope.runs.explain import split_options

    settings = ExplainSettings(
        methods=list(methods),
        layer=layer,
        layout=layout,
        targets=targets,
        upsample=mode,
        sigma=sigma,
        formats=[] if list(formats) == ["none"] else list(formats),
        options=split_options(methods, dict(options)),
        intensity=intensity,
        dicom_window=dicom_window,
        nifti_volume=nifti_volume,
        report=not no_report,
        batch_size=batch_size,
    )
    dataset = resolve_dataset(list(inputs), exclude=[out_dir], allow_outside=allow_outside)
    model, model_record = weights.load(model_spec_text)
    if layer is not None:  # a wrong name is one error now, not one per input later
        from camscope.engine import eager_model
        from camscope.layers import resolve_layer

        for name in [layer] if isinstance(layer, str) else layer:
            resolve_layer(eager_model(model), name)
    summary = explain_files(
        model,
        dataset.paths,
        out_dir,
        settings,
        model_record=model_record,
        root=dataset.root,
        labels=dataset.require_labels() if targets == "label" else dataset.labels,
        force=force,
        progress=not quiet,
        backend=backend,
        model_spec=weights.spec(model_spec_text),
        ray_address=ray_address,
        ray_workers=workers,
    )
    show_input_warnings(summary.records)
    refused = {m: e for record in summary.records for m, e in record.get("refused", {}).items()}
    for method, error in refused.items():
        click.echo(f"camscope: {method} was not run: {error}", err=True)
    if summary.resumed:
        click.echo(f"resumed: {len(summary.resumed)} input(s) were already done")
    written = "manifest.json and report.html" if settings.report else "manifest.json"
    click.echo(f"wrote {len(summary.done)} explanation(s), {written} to {summary.folder}")
    exit_if_failed(summary.failed)
    if refused:
        sys.exit(1)


@click.command()
@click.argument("model_spec_text", metavar="MODEL")
@click.argument("input_file", metavar="INPUT")
@click.option("--layer", required=True, help="Layer whose feature maps to project.")
@click.option(
    "--channels",
    type=INT_LIST,
    default=None,
    help="Feature maps, e.g. 0,5,17 (default: the most active one).",
)
@click.option(
    "--rule",
    type=click.Choice(["deconvnet", "guided", "gradient"]),
    default="deconvnet",
    show_default=True,
)
@click.option("--out", "out_file", required=True, help="PNG picture (an .npy of the maps beside).")
@model_options
@click.option("--force", is_flag=True, help="Overwrite --out.")
@friendly
def features(
    model_spec_text: str,
    input_file: str,
    layer: str,
    channels: tuple[int, ...] | None,
    rule: str,
    out_file: str,
    weights: ModelChoice,
    force: bool,
) -> None:
    """Feature visualisation (Zeiler & Fergus): what feature maps of a layer respond to in INPUT,
    projected back to the input with the Deconvnet (or guided) rules."""
    import numpy as np

    from camscope.io.atomic import OutputError, atomic_write
    from camscope.io.inputs import read_image
    from camscope.methods import feature_visualization
    from camscope.render import figure_png, methods_figure

    out = Path(out_file)
    if out.exists() and not force:
        raise OutputError(f"{out} exists; pass --force to overwrite")
    wanted = None if channels is None else list(channels)
    model, _ = weights.load(model_spec_text)
    scan = read_image(input_file)
    maps = feature_visualization(
        model,
        scan.tensor()[None],
        layer=layer,
        channels=wanted,
        rule=rule,  # type: ignore[arg-type]
    )[0]
    shown = maps.abs().amax(dim=1).numpy()  # max |·| over input channels
    labels = wanted if wanted is not None else ["most active"]
    figure = methods_figure(
        scan.data,
        {f"{layer} #{c}": (plane, False) for c, plane in zip(labels, shown, strict=True)},
        title=f"{rule} projections of {layer}",
    )
    with atomic_write(out) as handle:
        handle.write(figure_png(figure))
    with atomic_write(out.with_suffix(".npy")) as handle:
        np.save(handle, maps.numpy())
    click.echo(f"wrote {out} and {out.with_suffix('.npy')}")
