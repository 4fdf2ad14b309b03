"""``camscope evaluate sanity``: do the maps depend on the model? (MPRT, random logit, data
randomisation, ROAD), on a built-in benchmark or your own model and data."""

from __future__ import annotations

import contextlib
import shutil
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
from camscope.cli.params import layer_option, methods_option, network_2d
from camscope.errors import CamscopeError

__all__ = ["sanity"]

ALL_METHODS = (
    "grad-cam,grad-cam-pp,respond-cam,pixelwise-cam,score-cam,saliency,deconvnet,"
    "guided-backprop,guided-grad-cam,integrated-gradients,gradient-shap,occlusion"
)


@click.command("sanity")
@click.option(
    "--benchmark",
    type=click.Choice(["shapes", "chest", "faces", "subtomograms"]),  # TESTBEDS' names
    default=None,
    help="A built-in benchmark (its model and test data); else give --model and DATA.",
)
@click.argument("data", required=False)
@click.option(
    "--model",
    "model_spec_text",
    default=None,
    help="With DATA (a folder or list of images or volumes of one size, the files camscope "
    "reads: PNG, TIFF, DICOM, NIfTI, MRC, .npy): your model, a camscope checkpoint, a "
    "TorchScript, torch.export (.pt2) or pickled file, or bare weights (.safetensors, a .pt "
    "state dict) with --architecture; or a built-in model name.",
)
@methods_option(ALL_METHODS)
@layer_option("For layer methods (default: the default layer).", several=False)
@click.option(
    "--count", type=click.IntRange(min=1), default=8, show_default=True, help="Inputs checked."
)
@click.option("--epochs", type=int, default=10, show_default=True, help="shapes: training.")
@network_2d
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--randomize",
    type=click.Choice(["layers", "blocks"]),
    default="layers",
    show_default=True,
    help="MPRT's steps: every layer with parameters, or the model's top-level blocks (fewer "
    "steps: 7 instead of 41 on a ResNet-18, several times faster).",
)
@input_options
@model_options
@output_options
@friendly
def sanity(
    benchmark: str | None,
    data: str | None,
    model_spec_text: str | None,
    methods: tuple[str, ...],
    layer: str | None,
    count: int,
    epochs: int,
    network: str,
    seed: int,
    randomize: str,
    intensity: str,
    dicom_window: str,
    nifti_volume: int | str | None,
    weights: ModelChoice,
    out_dir: str,
    force: bool,
    quiet: bool,
) -> None:
    """Sanity checks for every method: the cascading model parameter randomisation test (the
    Adebayo figure), the random logit test, the data randomisation test (shapes and
    subtomograms: the same network trained on permuted labels, minutes for subtomograms) and
    ROAD; a table, results.json and report.html, and one line
    saying which methods pass on this model."""
    import camscope
    from camscope.engine.relay import said_so_far
    from camscope.engine.state import weights_digest
    from camscope.evaluation.own_data import read_own_data
    from camscope.evaluation.sanity import (
        sanity_check,
        sanity_notes,
        sanity_table,
    )
    from camscope.evaluation.sanity_store import job_key, load_checked, save_checked
    from camscope.evaluation.testbeds import build_for_sanity
    from camscope.io import prepare_output_dir
    from camscope.runs.identity import machine

    if benchmark is not None and (data is not None or model_spec_text is not None):
        raise CamscopeError("give either --benchmark NAME, or DATA with --model MODEL, not both")
    folder = prepare_output_dir(out_dir, ["results.json", "report.html"], force=force)
    given_layer = layer  # a benchmark may set its own default below
    control = None
    fit: dict[str, Any] | None = None  # how well the permuted-label control fits its labels
    accuracy: float | None = None  # the benchmark model's test accuracy
    notes: list[str] = []
    record: dict[str, Any] = {}  # what was checked, for results.json and the report
    if benchmark is not None:
        built = build_for_sanity(
            benchmark,
            folder,
            log=click.echo,
            quiet=quiet,
            epochs=epochs,
            network=network,
            count=count,
            layer=layer,
        )
        model, inputs, labels = built.model, built.inputs[:count], built.labels[:count]
        control, layer = built.control, layer or built.layer
        title = f"{len(inputs)} of {built.title}"
        fit, accuracy = built.extra.get("control"), built.extra.get("accuracy")
        record.update(model=f"{benchmark} benchmark model", targets_from="the true labels")
    elif data is not None and model_spec_text is not None:
        model, _ = weights.load(model_spec_text)
        reading = {
            "intensity": intensity,
            "dicom_window": dicom_window,
            "nifti_volume": nifti_volume,
        }
        own = read_own_data(data, model, count, read_options=reading)
        inputs, labels, title = own.inputs, own.labels, own.title
        notes += own.notes
        record.update(model=model_spec_text, **own.record)
    else:
        raise CamscopeError("give --benchmark NAME, or DATA with --model MODEL")
    if given_layer is not None:  # a wrong or unused --layer: one error now, not a silent default
        _check_layer(model, given_layer, methods)
    names = [m.replace("-", "_") for m in methods]
    checked = folder / "checked"  # each method's results as soon as they are done
    if force:
        shutil.rmtree(checked, ignore_errors=True)
    job = {"seed": seed, "randomize": randomize, "layer": layer, "camscope": camscope.__version__}
    job["control"] = None if control is None else weights_digest(control)
    key = job_key(model, inputs, labels, job)
    done = load_checked(checked, names, key)
    if done:  # said even with --quiet: the only sign that saved checks were taken over
        click.echo(
            f"resuming: {len(done)} of {len(names)} methods were checked by an interrupted run "
            f"of this job ({', '.join(done)}; saved in {checked}); checking the rest"
        )
    saved, mark = list(done), len(said_so_far())

    def save(result: Any) -> None:
        nonlocal mark
        warned = said_so_far()
        save_checked(checked, result, key, warned[mark:])  # said while checking it
        saved.append(result.method)
        mark = len(warned)

    try:
        results = sanity_check(
            model,
            inputs,
            labels,
            names,
            layer=layer,
            control=None if control is None else control.eval(),
            seed=seed,
            randomize="blocks" if randomize == "blocks" else "layers",
            progress=not quiet,
            done=done,
            on_result=save,
        )
    except BaseException as stopped:  # Ctrl-C, or an error of the model (out of memory, ...)
        if saved:
            stopped.add_note(
                f"camscope: the checks of {len(saved)} of {len(names)} methods are saved in "
                f"{checked} ({', '.join(saved)}); the same command goes on from there"
            )
        raise
    table = sanity_table(results)
    click.echo(table)
    notes += sanity_notes(results, inputs=len(inputs), accuracy=accuracy, fit=fit)
    for note in notes:
        click.echo(f"note: {note}")
    rows = [result.row() for result in results]
    if weights.architecture is not None:  # how MODEL was built: needed to load it again
        record.update(architecture=weights.architecture, arch_options=dict(weights.options))
    record.update(
        targets=[int(t) for t in labels],
        methods=[m.replace("-", "_") for m in methods],
        layer=layer or "each layer method's default (the rows say which)",
        randomize=randomize,
        seed=seed,
        camscope=camscope.__version__,
        measured=machine(),
    )
    _write_outputs(folder, title, table, notes, rows, results, record, fit)
    for name in names:  # in results.json now (a rerun needs --force); other jobs' files stay
        (checked / f"{name}.safetensors").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        checked.rmdir()  # when empty
    click.echo(f"wrote {folder}/results.json and report.html")


def _write_outputs(
    folder: Path,
    title: str,
    table: str,
    notes: list[str],
    rows: list[dict[str, Any]],
    results: Any,
    record: dict[str, Any],
    fit: dict[str, Any] | None,
) -> None:
    """results.json (every row, the settings and when and where they were measured) and
    report.html (the table, the settings worth reading and the figures)."""
    from camscope.engine.relay import said_so_far
    from camscope.evaluation.sanity import report_rows, sanity_figures
    from camscope.io import write_json
    from camscope.render.report import write_report

    verdict = table.splitlines()[-1]
    write_json(
        folder / "results.json",
        {
            "title": title,
            "verdict": verdict,
            "notes": notes,
            "rows": rows,
            "does_not_apply": results.skipped,
            "settings": record,
            **({} if fit is None else {"control": fit}),
            "warnings": said_so_far(),  # said while checking, each once
        },
    )
    hidden = ("inputs", "targets", "methods", "measured")
    shown = {k: v for k, v in record.items() if k not in hidden}
    if notes:
        shown = {"notes": " ".join(notes), **shown}
    write_report(
        folder / "report.html",
        [],
        title=f"camscope evaluate sanity: {title}",
        settings={"verdict": verdict, **shown},
        metrics=report_rows(rows),
        figures=sanity_figures(results),
    )


def _check_layer(model: Any, layer: str, methods: tuple[str, ...]) -> None:
    from camscope.engine import eager_model
    from camscope.layers import resolve_layer
    from camscope.methods import get_method

    if not any(get_method(m.replace("-", "_")).needs_layer for m in methods):
        raise CamscopeError(
            f"--layer {layer} is for layer methods (grad-cam, respond-cam, ...), and none of "
            "--methods takes a layer; drop --layer or add such a method"
        )
    resolve_layer(eager_model(model), layer)
