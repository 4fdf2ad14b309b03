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


@cli.command()
def methods() -> None:
    """List the explanation methods (use the kebab-case names on the command line)."""
    for name in camscope.list_methods():
        info = camscope.get_method(name)
        click.echo(f"{name.replace('_', '-'):<26} {info.summary}")


@cli.command()
@click.argument("model_name")
@click.option("--input-size", type=int, default=None, help="Edge length of the probe input.")
@click.option("--in-channels", type=int, default=1, show_default=True)
@_friendly
def layers(model_name: str, input_size: int | None, in_channels: int) -> None:
    """List a built-in model's layers with their output shapes; * marks the default CAM layer."""
    from camscope.models import create_model

    model = create_model(model_name, **_size_option(input_size))
    probe = _probe_input(model, input_size, in_channels)
    infos = camscope.probe_layers(model.eval(), probe)
    chosen = camscope.default_layer(infos)
    for info in infos:
        mark = "*" if info.name == chosen else " "
        shape = "×".join(str(v) for v in info.output_shape) if info.output_shape else "-"
        click.echo(f"{mark} {info.name:<18} {info.kind:<14} {shape}")


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
    from camscope.demo import _format_table, run_demo

    click.echo("camscope demo: training a small 3D CNN on simulated volumes (sphere, rod, ring)…")
    result = run_demo(out_dir, force=force, seed=seed, progress=not quiet)
    click.echo(f"test accuracy: {result.accuracy:.3f}")
    click.echo("sum-to-score over the test set, all classes, layer pool2 (raw maps):")
    click.echo(_format_table(result.rows))
    click.echo(
        "Respond-CAM's totals equal logit − bias here (Flatten → Linear head), so its L1 is the "
        "mean |bias| and its τ is near 1."
    )
    click.echo(f"wrote {result.out_dir}/maps.npz, summary.json, slices.png")


def main() -> None:
    """Entry point of the ``camscope`` script."""
    cli(prog_name="camscope")


if __name__ == "__main__":
    main()
