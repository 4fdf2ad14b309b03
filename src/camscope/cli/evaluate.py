"""``camscope evaluate``: score explanation methods on benchmarks or on your own data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from camscope.cli.common import (
    ALLOW_OUTSIDE,
    ModelChoice,
    backend_options,
    exit_if_failed,
    friendly,
    input_options,
    model_options,
    output_options,
    run_flags,
    show_input_warnings,
)
from camscope.cli.params import NAME_LIST, SNR, layer_option, methods_option, network_2d

__all__ = ["evaluate"]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_METHODS = "grad-cam,grad-cam-pp,extended-cam,respond-cam"
RESULTS = ["results.json", "results.csv", "report.html"]


@click.group()
def evaluate() -> None:
    """Score explanation methods with faithfulness and localisation metrics."""


def _options(out_default: str) -> Callable[[F], F]:
    """The options every benchmark command shares."""

    def decorate(function: F) -> F:
        options = [
            methods_option(DEFAULT_METHODS),
            click.option(
                "--upsample", "modes", type=NAME_LIST, default="linear,gaussian", show_default=True
            ),
            click.option("--out", "out_dir", default=out_default, show_default=True),
            click.option(
                "--sanity",
                is_flag=True,
                help="Also run the sanity checks (MPRT, random logit, ROAD, data randomisation "
                "where it applies) on 8 inputs, a section of the report (evaluate sanity).",
            ),
        ]
        for option in reversed(options):
            function = option(function)
        return run_flags(function)

    return decorate


def _report(
    folder: Path,
    rows: list[dict[str, Any]],
    *,
    title: str,
    extra: dict[str, Any],
    reference: bool,
    examples: list[Any],
) -> None:
    """Print the table; write results.csv, results.json, plots and the report."""
    from camscope.evaluation import format_rows, write_results
    from camscope.evaluation.sanity import sanity_sections
    from camscope.render.report import write_evaluation_report

    click.echo(format_rows(rows, reference=reference))
    write_results(folder, rows, title=title, extra=extra)
    write_evaluation_report(
        folder,
        rows,
        title=f"camscope evaluate: {title}",
        settings=extra,
        entries=examples,
        sections=sanity_sections(extra),
    )
    click.echo(f"wrote {folder}/results.csv, results.json, report.html and plots/*.png")


def _benchmark(
    build: Callable[..., Any],
    out_dir: str,
    methods: tuple[str, ...],
    modes: tuple[str, ...],
    force: bool,
    quiet: bool,
    sanity: bool = False,
    **settings: Any,
) -> None:
    """Build a benchmark (:mod:`camscope.evaluation.testbeds`), evaluate it, report (with
    ``sanity``, the sanity checks as a section of the report)."""
    import inspect

    from camscope.evaluation import evaluate as run_evaluation
    from camscope.evaluation.examples import example_entries
    from camscope.io import prepare_output_dir

    folder = prepare_output_dir(out_dir, RESULTS, force=force)
    if sanity and "control" in inspect.signature(build).parameters:
        settings["control"] = True  # the data randomisation test's permuted-label network
    benchmark = build(folder, log=click.echo, quiet=quiet, **settings)
    rows = run_evaluation(
        benchmark.model,
        benchmark.inputs,
        benchmark.labels,
        methods=list(methods),
        layer=benchmark.layer,
        upsample_modes=list(modes),
        truth=benchmark.truth,
        batch_size=benchmark.batch_size,
        progress=not quiet,
        out_dir=folder / "partial",
        force=force,
    )
    examples = example_entries(
        benchmark.model, benchmark.inputs, benchmark.labels, methods, layer=benchmark.layer
    )
    extra = dict(benchmark.extra)
    if sanity:
        from camscope.evaluation.sanity import sanity_section

        extra.update(sanity_section(folder, benchmark, methods, log=click.echo, progress=not quiet))
    _report(folder, rows, title=benchmark.title, extra=extra, reference=True, examples=examples)


@evaluate.command("subtomograms")
@click.option(
    "--model",
    "model_path",
    default=None,
    help="Saved model (default: the reproduction's CNN-2 in runs/respond-cam/models).",
)
@click.option("--snr", type=SNR, default="inf", show_default=True, help="SNR of the test data.")
@click.option("--per-class", type=int, default=4, show_default=True, help="Test samples per class.")
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="First sample index (past the training and test samples of every reproduction scale).",
)
@_options("runs/evaluate-subtomograms")
@friendly
def evaluate_subtomograms(
    model_path: str | None,
    snr: float,
    per_class: int,
    offset: int,
    methods: tuple[str, ...],
    modes: tuple[str, ...],
    out_dir: str,
    force: bool,
    quiet: bool,
    sanity: bool,
) -> None:
    """Simulated subtomograms whose particle mask is known from the pose: every metric, every
    method, linear and Gaussian upsampling; a table, results.csv/json and one plot per metric."""
    from camscope.evaluation import testbeds

    _benchmark(
        testbeds.subtomograms,
        out_dir,
        methods,
        modes,
        force,
        quiet,
        sanity,
        model_path=model_path,
        snr=snr,
        per_class=per_class,
        offset=offset,
    )


@evaluate.command("shapes")
@click.option("--train-per-class", type=int, default=400, show_default=True)
@click.option("--test-per-class", type=int, default=25, show_default=True)
@click.option("--epochs", type=int, default=10, show_default=True)
@network_2d
@_options("runs/evaluate-shapes")
@friendly
def evaluate_shapes(
    train_per_class: int,
    test_per_class: int,
    epochs: int,
    network: str,
    methods: tuple[str, ...],
    modes: tuple[str, ...],
    out_dir: str,
    force: bool,
    quiet: bool,
    sanity: bool,
) -> None:
    """2D objects (disk, square, triangle, cross) on textured backgrounds with known boxes: a
    small CNN or ViT (--network) trained here (seeded, cached in OUT/model), then every metric
    for every method."""
    from camscope.evaluation import testbeds

    _benchmark(
        testbeds.shapes,
        out_dir,
        methods,
        modes,
        force,
        quiet,
        sanity,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        epochs=epochs,
        network=network,
    )


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
@_options("runs/evaluate-chest")
@friendly
def evaluate_chest(
    train_count: int,
    test_count: int,
    epochs: int,
    methods: tuple[str, ...],
    modes: tuple[str, ...],
    out_dir: str,
    force: bool,
    quiet: bool,
    sanity: bool,
) -> None:
    """A real chest radiograph (pydicom-data's RG1_UNCR.dcm) with lesions pasted at known places:
    a lesion / no-lesion classifier trained here on crops, scored on the lesion crops."""
    from camscope.evaluation import testbeds

    _benchmark(
        testbeds.chest,
        out_dir,
        methods,
        modes,
        force,
        quiet,
        sanity,
        train_count=train_count,
        test_count=test_count,
        epochs=epochs,
    )


@evaluate.command("faces")
@click.option(
    "--count", type=click.IntRange(min=1), default=24, show_default=True, help="Face crops."
)
@layer_option("Layer (default: onet.prelu4, 3×3).", several=False)
@_options("runs/evaluate-faces")
@friendly
def evaluate_faces(
    count: int,
    layer: str | None,
    methods: tuple[str, ...],
    modes: tuple[str, ...],
    out_dir: str,
    force: bool,
    quiet: bool,
    sanity: bool,
) -> None:
    """A real trained CNN (MTCNN's ONet, facenet-pytorch) on crops of a real photograph
    (scikit-image's astronaut) whose face box is known: every metric for every method."""
    from camscope.evaluation import testbeds

    _benchmark(
        testbeds.faces, out_dir, methods, modes, force, quiet, sanity, count=count, layer=layer
    )


@evaluate.command("dataset")
@click.argument("data")
@click.option(
    "--model",
    "model_spec_text",
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
@layer_option("Layer of the layer methods (default: camscope's).", several=False)
@methods_option(DEFAULT_METHODS)
@click.option("--upsample", "modes", type=NAME_LIST, default="linear,gaussian", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@input_options
@ALLOW_OUTSIDE
@backend_options
@model_options
@output_options
@friendly
def evaluate_dataset(
    data: str,
    model_spec_text: str,
    conditions: tuple[str, ...],
    layer: str | None,
    methods: tuple[str, ...],
    modes: tuple[str, ...],
    batch_size: int,
    intensity: str,
    dicom_window: str,
    nifti_volume: int | str | None,
    allow_outside: bool,
    backend: str,
    ray_address: str | None,
    workers: int,
    weights: ModelChoice,
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
    from camscope.evaluation import evaluate_files
    from camscope.evaluation.examples import file_examples
    from camscope.runs import resolve_dataset

    dataset = resolve_dataset(
        [data], where=conditions, exclude=[out_dir], allow_outside=allow_outside
    )
    model, record = weights.load(model_spec_text)
    if layer is not None:  # a wrong name is one error now, not one per input later
        from camscope.engine import eager_model
        from camscope.layers import resolve_layer

        resolve_layer(eager_model(model), layer)
    read_options = {
        "intensity": intensity,
        "dicom_window": dicom_window,
        "nifti_volume": nifti_volume,
    }
    rows, manifest = evaluate_files(
        model,
        dataset.paths,
        None
        if dataset.labels is None and dataset.label_error is None
        else dataset.require_labels(),
        out_dir,
        methods=list(methods),
        upsample_modes=list(modes),
        layer=layer,
        root=dataset.root,
        batch_size=batch_size,
        truths=dataset.truths(),
        model_record=record,
        force=force,
        progress=not quiet,
        backend=backend,
        model_spec=weights.spec(model_spec_text),
        ray_address=ray_address,
        ray_workers=workers,
        read_options=read_options,
    )
    show_input_warnings(manifest["inputs"])
    _report(
        Path(out_dir),
        rows,
        title=f"{manifest['n_evaluated']} inputs from {Path(dataset.source).name}",
        extra={"data": dataset.source, "n": manifest["n_evaluated"], "where": list(conditions)},
        reference=False,
        examples=file_examples(model, manifest["inputs"], methods, layer, read_options),
    )
    exit_if_failed(manifest["failed"])
