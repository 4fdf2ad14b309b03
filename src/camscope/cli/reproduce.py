"""``camscope reproduce`` (the Respond-CAM paper's experiment) and ``camscope demo`` (a tour)."""

from __future__ import annotations

import dataclasses

import click

from camscope.cli.common import friendly, run_flags
from camscope.cli.params import SNR

__all__ = ["demo", "reproduce"]


@click.group()
def reproduce() -> None:
    """Reproduce a Respond-CAM paper's experiment."""


@reproduce.command("respond-cam")
@click.option("--out", "out_dir", default="runs/respond-cam", show_default=True)
@click.option(
    "--scale",
    type=click.Choice(["default", "full", "paper", "transformer", "smoke"]),
    default="default",
    show_default=True,
    help="default: ~13 min on 2 CPU cores (CNN-1 reduced to 8/16 channels); full: both networks "
    "in the paper's form (~35 min on an idle 2-core machine); paper: the paper's sizes (meant "
    "for a GPU); transformer: CNN-2 beside a 3D ViT (vit3d).",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="Where to train and explain: cpu, cuda, cuda:1, ...",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "float32", "bfloat16"]),
    default="auto",
    show_default=True,
    help="Training arithmetic (auto: bfloat16 where the device has it natively). Explanations "
    "are always float32.",
)
@click.option("--per-class", type=int, default=None, help="Training subtomograms per class.")
@click.option("--test-per-class", type=int, default=None)
@click.option("--epochs", type=int, default=None)
@click.option("--size", type=int, default=None, help="Subtomogram edge length (voxels).")
@click.option("--snr", "snrs", multiple=True, type=SNR, help="SNR levels (repeat; 'inf').")
@click.option("--model", "models", multiple=True, type=click.Choice(["cnn1", "cnn2", "vit3d"]))
@click.option("--similarity", type=float, default=None, help="Class similarity knob, 0–1.")
@click.option("--seed", type=int, default=None)
@run_flags  # --force keeps the cached models
@friendly
def reproduce_respond_cam(
    out_dir: str,
    scale: str,
    per_class: int | None,
    test_per_class: int | None,
    epochs: int | None,
    size: int | None,
    snrs: tuple[float, ...],
    models: tuple[str, ...],
    similarity: float | None,
    seed: int | None,
    device: str,
    precision: str,
    force: bool,
    quiet: bool,
) -> None:
    """Table 1 of the Respond-CAM paper on simulated subtomograms, with Figures 3 and 4."""
    from camscope.reproduce import respond_cam

    config = respond_cam.SCALES[scale]
    specs = config.models
    if models:
        specs = tuple(s for s in specs if s.architecture in models) or tuple(
            respond_cam.VIT3D
            if name == "vit3d"
            else respond_cam.ModelSpec(name.upper().replace("CNN", "CNN-"), name)
            for name in models
        )
    changes: dict[str, object] = {}
    if per_class is not None:
        changes["per_class"] = per_class
    if epochs is not None:
        changes["epochs"] = epochs
    specs = tuple(dataclasses.replace(s, **changes) for s in specs)  # type: ignore[arg-type]
    top: dict[str, object] = {"models": specs, "device": _device(device), "precision": precision}
    for key, value in (
        ("test_per_class", test_per_class),
        ("size", size),
        ("similarity", similarity),
        ("seed", seed),
    ):
        if value is not None:
            top[key] = value
    if snrs:
        top["snrs"] = tuple(snrs)
    config = dataclasses.replace(config, **top)  # type: ignore[arg-type]
    respond_cam.reproduce_table(out_dir, config, force=force, progress=not quiet, log=click.echo)


def _device(name: str) -> str:
    """``name`` checked: a device torch knows and this machine has."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise click.BadParameter(
            f"{name!r} is not a device: use cpu or cuda[:N]", param_hint="--device"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter(
            "CUDA is not available on this machine (no GPU, or a CPU-only torch); use cpu",
            param_hint="--device",
        )
    if device.type not in ("cpu", "cuda"):
        raise click.BadParameter(f"{name!r}: use cpu or cuda[:N]", param_hint="--device")
    return str(device)


@click.command()
@click.option("--out", "out_dir", default="runs/demo", show_default=True, help="Output folder.")
@click.option("--seed", type=int, default=0, show_default=True)
@run_flags
@friendly
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
