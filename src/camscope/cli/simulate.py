"""``camscope simulate``: a folder of simulated cryo-ET subtomograms."""

from __future__ import annotations

import click

from camscope.cli.common import friendly, run_flags
from camscope.cli.params import SNR

__all__ = ["simulate"]


@click.command()
@click.option("--out", "out_dir", required=True, help="Output folder.")
@click.option("--per-class", type=int, default=10, show_default=True)
@click.option("--classes", "n_classes", type=int, default=23, show_default=True)
@click.option("--snr", "snrs", multiple=True, type=SNR, help="SNR levels (repeat; 'inf').")
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
@run_flags
@friendly
def simulate(
    out_dir: str,
    per_class: int,
    n_classes: int,
    snrs: tuple[float, ...],
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
    from camscope.render.text import text_table
    from camscope.simulate.folder import write_simulated_folder

    written = write_simulated_folder(
        out_dir,
        per_class=per_class,
        n_classes=n_classes,
        snrs=snrs,
        size=size,
        tilt=tilt,
        ctf=ctf,
        similarity=similarity,
        seed=seed,
        offset=offset,
        fmt=fmt,
        masks=masks,
        structure_files=structure_files,
        force=force,
        progress=not quiet,
    )
    click.echo(written.summary)
    if similarity_matrix:
        matrix = written.simulator.class_similarity()
        names = [name[:5] for name in written.class_names[: len(matrix)]]
        click.echo("class similarity (max normalised cross-correlation over rotations):")
        rows = [[a, *(f"{v:.2f}" for v in matrix[i])] for i, a in enumerate(names)]
        click.echo(text_table(["", *names], rows, gap=1))
