"""``camscope methods``, ``camscope layers`` and ``camscope erf``: what there is to choose from."""

from __future__ import annotations

from pathlib import Path

import click
import torch

import camscope
from camscope.cli.common import ModelChoice, friendly, model_options
from camscope.cli.params import SHAPE, layer_option
from camscope.errors import CamscopeError

__all__ = ["erf", "layers", "methods"]


@click.command()
def methods() -> None:
    """List the explanation methods, where their maps live and their options.

    Use the kebab-case names on the command line; pass options with --option KEY=VALUE.
    [layer]: maps at a layer (--layer); [input]: at input resolution, per input channel;
    [grid]: over a transformer's patch grid, read from its attention (no --layer).
    """
    for name in camscope.list_methods():
        info = camscope.get_method(name)
        where = "grid" if info.resolution == "layer" and not info.needs_layer else info.resolution
        click.echo(f"{name.replace('_', '-'):<24} [{where:<5}] {info.summary}")
        if info.options:
            text = ", ".join(f"{key}={value!r}" for key, value in info.options.items())
            click.echo(f"{'':<33}options: {text}")


def _probe_input(model: torch.nn.Module, input_size: int | None, in_channels: int) -> torch.Tensor:
    spatial_dims: int = model.__dict__.get("spatial_dims", 3)
    size: int = input_size or model.__dict__.get("input_size", 40)
    return torch.zeros(1, in_channels, *([size] * spatial_dims))


@click.command()
@click.argument("model_spec_text", metavar="MODEL")
@click.option(
    "--input",
    "input_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Probe with this input file (its shape).",
)
@click.option("--input-shape", type=SHAPE, default=None, help="Probe shape C,H,W or C,D,H,W.")
@click.option(
    "--input-size", type=int, default=None, help="Built-in models: edge length of the input."
)
@click.option(
    "--in-channels", type=int, default=1, show_default=True, help="Built-in models: input channels."
)
@model_options
@friendly
def layers(
    model_spec_text: str,
    input_file: str | None,
    input_shape: tuple[int, ...] | None,
    input_size: int | None,
    in_channels: int,
    weights: ModelChoice,
) -> None:
    """List a model's layers with their output shapes and layouts; * marks the default layer.

    MODEL is anything `camscope explain` takes. Give --input or --input-shape for your own
    models (camscope needs one forward pass to see the shapes).
    """
    from camscope.engine import ModelState, eager_model
    from camscope.io.inputs import read_image
    from camscope.layers import default_layer, trace_layers
    from camscope.layouts import LayoutResolver
    from camscope.models import list_models

    builtin = model_spec_text.replace("-", "_") in list_models() and weights.architecture is None
    scan = None if input_file is None else read_image(input_file)
    if builtin and input_size is None and scan is not None:
        input_size = max(scan.spatial_shape)  # a built-in network's head is sized for its input
        in_channels = scan.data.shape[0]
    if builtin and input_size is not None:
        weights = weights.with_options(("input_size", input_size))
    if builtin and in_channels != 1 and "in_channels" not in dict(weights.options):
        weights = weights.with_options(("in_channels", in_channels))
    model, _ = weights.load(model_spec_text)
    model = eager_model(model)
    if scan is not None:
        probe = scan.tensor()[None]
    elif input_shape is not None:
        probe = torch.zeros(1, *input_shape)
    elif builtin:
        probe = _probe_input(model, input_size, in_channels)
    else:
        raise CamscopeError(
            "give --input FILE or --input-shape C,H,W (or C,D,H,W) to probe the model"
        )
    with ModelState(model):
        infos, output_shape = trace_layers(model, probe)
    resolver = LayoutResolver.of(model, probe)
    chosen = default_layer(infos, output_shape=output_shape, layout=resolver)
    rows = []
    for info in infos:
        shape_text = "×".join(str(v) for v in info.output_shape) if info.output_shape else "-"
        laid = None
        if info.output_shape is not None and len(info.output_shape) >= 2:
            laid = resolver.fits(info.name, (1, *info.output_shape), info.kind)
        layout_text = str(laid) if laid is not None else "-"
        rows.append(
            ("*" if info.name == chosen else " ", info.name, info.kind, shape_text, layout_text)
        )
    header = (" ", "layer", "kind", "output", "layout")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(1, 4)]
    for mark, name, kind, shape_text, layout_text in [header, *rows]:  # columns kept aligned
        click.echo(
            f"{mark} {name:<{widths[0]}}  {kind:<{widths[1]}}  {shape_text:<{widths[2]}}  "
            f"{layout_text}"
        )
    click.echo("(the layer marked * is the default)")
    click.echo(
        "layout: how camscope reads the layer as a map (- : not a map over the input's axes; "
        "camscope explain --layout reads it another way)"
    )


@click.command()
@click.argument("model_name")
@layer_option("Layer name (default: the default CAM layer).", several=False)
@click.option("--input-size", type=int, default=None, help="Edge length of the inputs.")
@click.option("--in-channels", type=int, default=1, show_default=True)
@click.option("--n-inputs", type=int, default=16, show_default=True, help="Noise inputs averaged.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write a PNG here.")
@click.option("--force", is_flag=True, help="Overwrite --plot if it exists.")
@friendly
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
    from camscope.io.atomic import OutputError
    from camscope.layers import choose_layer
    from camscope.models import create_model

    if plot and Path(plot).exists() and not force:
        raise OutputError(f"{plot} exists; pass --force to overwrite")
    options = {} if input_size is None else {"input_size": input_size}
    model = create_model(model_name, **options).eval()
    probe = _probe_input(model, input_size, in_channels)
    if layer is None:
        layer = choose_layer(model, probe)
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
