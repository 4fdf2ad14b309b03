"""``camscope showcase``: camscope end to end on a whole problem."""

from __future__ import annotations

import click

from camscope.cli.common import friendly, run_flags
from camscope.cli.params import SNR, layer_option, methods_option

__all__ = ["showcase"]


@click.group()
def showcase() -> None:
    """End-to-end uses of camscope on a whole problem."""


@showcase.command("tomogram")
@click.option("--out", "out_dir", default="runs/tomogram", show_default=True)
@click.option(
    "--model",
    "model_path",
    default=None,
    help="A saved subtomogram classifier, or cnn2/cnn1: the one `camscope reproduce respond-cam` "
    "trained at the same SNR (default cnn2; when it is not there, a small CNN-2 is trained into "
    "OUT/model first: a few minutes on 2 cores, and 24³ windows).",
)
@click.option(
    "--shape",
    nargs=3,
    type=click.IntRange(min=8),
    default=(100, 200, 200),
    show_default=True,
    help="Tomogram size z y x (voxels).",
)
@click.option("--particles", type=click.IntRange(min=1), default=40, show_default=True)
@click.option(
    "--gap",
    type=click.FloatRange(min=0),
    default=8.0,
    show_default=True,
    help="Voxels kept free between particles.",
)
@click.option("--snr", type=SNR, default="inf", show_default=True)
@methods_option("respond-cam,grad-cam")
@click.option(
    "--overlap",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.5,
    show_default=True,
    help="Window overlap (MONAI's); the classifier was trained on centred particles, so "
    "denser windows find more of them.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@run_flags
@friendly
def tomogram(
    out_dir: str,
    model_path: str | None,
    shape: tuple[int, int, int],
    particles: int,
    gap: float,
    snr: float,
    methods: tuple[str, ...],
    overlap: float,
    batch_size: int,
    seed: int,
    force: bool,
    quiet: bool,
) -> None:
    """A simulated tomogram explained window by window with a subtomogram classifier: does each
    particle's true-class evidence peak inside it (pointing game), and beat the other classes'
    (detection)? Per method, with figures and a report."""
    from camscope.showcases import tomogram as showcase_tomogram

    showcase_tomogram.run_showcase(
        out_dir,
        model_path=model_path,
        shape=shape,
        particles=particles,
        gap=gap,
        snr=snr,
        methods=tuple(m.replace("-", "_") for m in methods),
        overlap=overlap,
        batch_size=batch_size,
        seed=seed,
        force=force,
        progress=not quiet,
        log=click.echo,
    )


@showcase.command("lesions")
@click.option("--out", "out_dir", default="runs/lesions", show_default=True)
@methods_option(
    "grad-cam,grad-cam-pp,layer-cam,saliency,integrated-gradients",
    "Methods, a comma list or repeated (MONAI's UNet uses PReLU, so guided backpropagation and "
    "Deconvnet do not apply).",
)
@click.option(
    "--network",
    type=click.Choice(["unet", "unetr"]),
    default="unet",
    show_default=True,
    help="MONAI's UNet, or UNETR (a ViT encoder: the attention methods chefer and "
    "attention-rollout apply).",
)
@layer_option("Layer of the CAM methods (default: camscope's).", several=False)
@click.option("--lesions", type=click.IntRange(min=1), default=5, show_default=True)
@click.option(
    "--train-volumes",
    type=click.IntRange(min=1),
    default=6,
    show_default=True,
    help="Lesioned copies of the template to train on (8 lesions each).",
)
@click.option("--steps", type=click.IntRange(min=1), default=600, show_default=True)
@click.option("--roi", type=click.IntRange(min=16), default=32, show_default=True)
@click.option(
    "--overlap", type=click.FloatRange(0, 1, max_open=True), default=0.25, show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@run_flags
@friendly
def lesions(
    out_dir: str,
    methods: tuple[str, ...],
    network: str,
    layer: str | None,
    lesions: int,
    train_volumes: int,
    steps: int,
    roi: int,
    overlap: float,
    seed: int,
    force: bool,
    quiet: bool,
) -> None:
    """A MONAI UNet trained here to segment synthetic lesions in the MNI152 T1 template (shipped
    inside nilearn), explained window by window with one region target per lesion: how much of
    each method's map falls inside the lesion. Figures, NIfTI maps and a report."""
    from camscope.showcases import lesions as showcase_lesions

    showcase_lesions.run_showcase(
        out_dir,
        methods=tuple(m.replace("-", "_") for m in methods),
        layer=layer,
        lesions=lesions,
        train_volumes=train_volumes,
        steps=steps,
        roi=roi,
        overlap=overlap,
        seed=seed,
        force=force,
        progress=not quiet,
        log=click.echo,
        network=network,
    )
