"""The Respond-CAM paper's question asked of a whole tomogram.

A simulated tomogram (:func:`camscope.simulate.simulate_tomogram`: particles of the 23 classes at
known positions and poses, the subtomograms' imaging) is explained window by window
(:func:`camscope.explain_scan`, MONAI's window layout) with the reproduction's trained CNN-2 as a
window classifier, for every class, with each method. Then, per particle:

* **pointing game**: does the evidence map of the particle's true class, within the
  subtomogram-sized box around the particle, peak inside the particle? (Chance: the particle's
  share of the box.)
* **detection**: over the particle's voxels, does its true class have more evidence (mean map
  value) than every other class? (Chance: one in the number of classes.)
* **window classification**: does the window nearest the particle (by centre) predict its
  class? (The same for every method: the network's own reading.)

Maps are streamed to ``OUT/maps/<method>.npy`` (``(classes, z, y, x)`` float32) so memory does
not grow with the tomogram; the tomogram and its labels are written as MRC files with their
voxel size, the particle table as CSV, the figures as PNG and one HTML page.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import camscope
from camscope.io import prepare_output_dir, write_json
from camscope.io.atomic import atomic_write
from camscope.io.checkpoints import load_model
from camscope.io.volumes import write_mrc
from camscope.methods import get_method
from camscope.render import figure_png, slice_image, subplots
from camscope.render.text import summary_table
from camscope.reproduce import showcase_classifier
from camscope.showcases.pages import write_figures_and_page
from camscope.simulate import (
    SimulationConfig,
    Simulator,
    Tomogram,
    TomogramConfig,
    simulate_tomogram,
)
from camscope.simulate.subtomogram import snr_label
from camscope.simulate.tomogram import particle_box

__all__ = ["particle_scores", "run_showcase"]


def particle_scores(maps: np.ndarray, tomogram: Tomogram, *, box: int) -> list[dict[str, Any]]:
    """Per particle: pointing-game hit, detection hit, the true class's rank by mean evidence
    inside the particle, and the chance level of the pointing game.

    Args:
        maps: ``(K, z, y, x)`` evidence of every class (a memory map is fine: only each
            particle's box is read).
        tomogram: the ground truth.
        box: edge of the box around each particle that the pointing game searches.
    """
    rows = []
    for particle in tomogram.particles:
        region = particle_box(particle.position, box, tomogram.volume.shape)
        inside = tomogram.labels[region] == particle.index + 1
        block = np.asarray(maps[(slice(None), *region)], dtype=np.float64)  # (K, *box)
        own = block[particle.class_id]
        peak = np.unravel_index(int(np.argmax(own)), own.shape)
        evidence = block[:, inside].mean(axis=1)
        rank = int((evidence > evidence[particle.class_id]).sum()) + 1
        rows.append(
            {
                "particle": particle.index,
                "class_id": particle.class_id,
                "pointing": bool(inside[peak]),
                "pointing_chance": float(inside.mean()),
                "detected": rank == 1,
                "rank": rank,
            }
        )
    return rows


def _nearest_window_hits(
    scores: torch.Tensor, windows: torch.Tensor, tomogram: Tomogram
) -> list[bool]:
    spatial = windows.shape[1] // 2
    centres = (windows[:, :spatial] + windows[:, spatial:]).double() / 2 - 0.5
    hits = []
    for particle in tomogram.particles:
        distance = (centres - torch.tensor(particle.position, dtype=torch.float64)).norm(dim=1)
        nearest = int(distance.argmin())
        hits.append(int(scores[nearest].argmax()) == particle.class_id)
    return hits


def _figure_slices(
    tomogram: Tomogram, maps: dict[str, np.ndarray], names: list[str], picks: list[int]
) -> bytes:
    """Rows: particles; columns: the tomogram slice through the particle's centre with every
    particle's outline, then each method's evidence of that particle's class."""
    figure, axes = subplots(
        len(picks), 1 + len(maps), figsize=(3.2 * (1 + len(maps)), 3.0 * len(picks))
    )
    axes = np.asarray(axes).reshape(len(picks), 1 + len(maps))
    half = 48
    for row, index in enumerate(picks):
        particle = tomogram.particles[index]
        z, y, x = (round(v) for v in particle.position)
        rows = slice(max(y - half, 0), y + half)
        columns = slice(max(x - half, 0), x + half)
        background = tomogram.volume[z, rows, columns]
        labels = tomogram.labels[z, rows, columns]
        panels: list[tuple[str, np.ndarray | None]] = [("tomogram", None)]
        panels += [(method, values) for method, values in maps.items()]
        for column, (title, values) in enumerate(panels):
            axis = axes[row, column]
            if values is None:
                slice_image(axis, -background, signed=False)
            else:
                own = np.asarray(values[particle.class_id, z, rows, columns], dtype=np.float64)
                slice_image(axis, own, signed=True, background=-background)
            axis.contour(labels == index + 1, levels=[0.5], colors="lime", linewidths=1.2)
            others = (labels > 0) & (labels != index + 1)
            if others.any():
                axis.contour(others, levels=[0.5], colors="white", linewidths=0.6)
            if row == 0:
                axis.set_title(title, fontsize=9)
        axes[row, 0].set_ylabel(f"{names[particle.class_id]} (z={z})", fontsize=8)
    figure.suptitle(
        "slices through particles (density shown bright); outlines: green = this particle, "
        "white = others\nmaps: the evidence of this particle's class (red +, blue −)",
        fontsize=9,
    )
    figure.tight_layout()
    return figure_png(figure, dpi=70)


def _figure_bars(summary: dict[str, dict[str, float]]) -> bytes:
    figure, axis = subplots(1, 1, figsize=(6.0, 3.2))
    methods = list(summary)
    positions = np.arange(len(methods))
    for offset, (key, label) in enumerate(
        (("pointing", "pointing game"), ("detection", "detection (top-1)"))
    ):
        axis.bar(positions + 0.38 * offset, [summary[m][key] for m in methods], 0.36, label=label)
        axis.hlines(
            [summary[m][f"{key}_chance"] for m in methods],
            positions + 0.38 * offset - 0.18,
            positions + 0.38 * offset + 0.18,
            colors="black",
            linestyles="dotted",
        )
    axis.set_xticks(positions + 0.19, methods)
    axis.set_ylim(0, 1)
    axis.set_ylabel("share of particles")
    axis.legend(fontsize=8)
    axis.set_title("per particle (dotted: chance)", fontsize=9)
    figure.tight_layout()
    return figure_png(figure, dpi=80)


def _simulation_of(saved: Any) -> tuple[SimulationConfig, int]:
    """The simulation the classifier was trained on (from its record) and its window size."""
    identity = saved.metadata.get("identity") or {}
    simulation = (
        SimulationConfig.from_record(identity["simulation"])
        if "simulation" in identity
        else SimulationConfig(size=int(saved.options.get("input_size", 40)), similarity=0.0)
    )
    return simulation, int(saved.options.get("input_size", simulation.size))


def _write_tomogram(folder: Path, tomogram: Tomogram, simulation: SimulationConfig) -> None:
    """The tomogram and its labels as MRC (with the voxel size), the particles as CSV."""
    voxel_angstrom = simulation.voxel * 10
    write_mrc(folder / "tomogram.mrc", tomogram.volume, voxel_size_angstrom=voxel_angstrom)
    write_mrc(
        folder / "labels.mrc",
        tomogram.labels.astype(np.float32),
        voxel_size_angstrom=voxel_angstrom,
    )
    with atomic_write(folder / "particles.csv", mode="w") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["index", "class_id", "name", "z", "y", "x", "radius", "rotation"]
        )
        writer.writeheader()
        for particle in tomogram.particles:
            writer.writerow(particle.row())


def _explain_windows(
    model: torch.nn.Module,
    tomogram: Tomogram,
    methods: tuple[str, ...],
    folder: Path,
    *,
    roi: int,
    overlap: float,
    batch_size: int,
    classes: int,
    progress: bool,
    log: Any,
) -> tuple[dict[str, np.ndarray], dict[str, list[dict[str, Any]]], list[bool], dict[str, float]]:
    """Each method over the whole tomogram for all classes, streamed to ``maps/<method>.npy``.

    Returns the maps (memory-mapped), the particles' scores, whether the window nearest each
    particle predicts its class, and each method's time.
    """
    maps: dict[str, np.ndarray] = {}
    per_method: dict[str, list[dict[str, Any]]] = {}
    window_hits: list[bool] = []
    seconds: dict[str, float] = {}
    for method in methods:
        log(f"explaining every window for all {classes} classes with {method}")
        begin = time.perf_counter()
        result = camscope.explain_scan(
            model,
            torch.from_numpy(tomogram.volume)[None],
            method=method,
            roi_size=roi,
            overlap=overlap,
            targets=None,
            batch_size=batch_size,
            out=folder / "maps" / f"{method}.npy",
            progress=progress,
        )
        seconds[method] = time.perf_counter() - begin
        maps[method] = np.load(folder / "maps" / f"{method}.npy", mmap_mode="r")
        per_method[method] = particle_scores(maps[method], tomogram, box=roi)
        if not window_hits and result.scores is not None:
            window_hits = _nearest_window_hits(result.scores, result.windows, tomogram)
    return maps, per_method, window_hits, seconds


def _summarise(
    per_method: dict[str, list[dict[str, Any]]], seconds: dict[str, float], classes: int
) -> dict[str, dict[str, float]]:
    """Per method: pointing and detection averaged over the particles, with their chance."""
    return {
        method: {
            "pointing": float(np.mean([r["pointing"] for r in rows])),
            "pointing_chance": float(np.mean([r["pointing_chance"] for r in rows])),
            "detection": float(np.mean([r["detected"] for r in rows])),
            "detection_chance": 1.0 / classes,
            "mean_rank": float(np.mean([r["rank"] for r in rows])),
            "seconds": seconds[method],
        }
        for method, rows in per_method.items()
    }


#: The summary table's columns: (title, key, format).
_COLUMNS = [
    ("pointing", "pointing", ".3f"),
    ("chance", "pointing_chance", ".3f"),
    ("detection", "detection", ".3f"),
    ("chance", "detection_chance", ".3f"),
    ("mean rank", "mean_rank", ".2f"),
    ("seconds", "seconds", ".0f"),
]


def run_showcase(
    out_dir: str | Path,
    *,
    model_path: str | Path | None = None,
    shape: tuple[int, int, int] = (100, 200, 200),
    particles: int = 40,
    snr: float = math.inf,
    methods: tuple[str, ...] = ("respond_cam", "grad_cam"),
    overlap: float = 0.5,
    gap: float = 8.0,
    batch_size: int = 16,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """Simulate, explain and score a tomogram; see the module docstring. Returns the summary.

    Raises:
        CamscopeError: no trained model at ``model_path`` (a path or a built-in name; see
            :func:`camscope.reproduce.showcase_classifier`: without one a small CNN-2 is
            trained into ``out_dir/model``).
    """
    for method in methods:  # a misspelt method is refused before any work
        get_method(method)
    folder = prepare_output_dir(out_dir, ["results.json", "report.html"], force=force)
    started = time.perf_counter()  # the whole run, training a classifier included
    stem = showcase_classifier(model_path, snr, folder, progress=progress, log=log)
    model, saved = load_model(stem)
    simulation, roi = _simulation_of(saved)
    config = TomogramConfig(
        shape=shape, particles=particles, snr=snr, seed=seed, gap=gap, simulation=simulation
    )
    log(f"simulating a {'×'.join(map(str, shape))} tomogram with {particles} particles, "
        f"SNR {snr_label(snr)}")  # fmt: skip
    tomogram = simulate_tomogram(config, progress=progress)
    _write_tomogram(folder, tomogram, simulation)
    names = [s.name for s in Simulator(simulation).structures]
    maps, per_method, window_hits, seconds = _explain_windows(
        model, tomogram, methods, folder, roi=roi, overlap=overlap, batch_size=batch_size,
        classes=len(names), progress=progress, log=log,
    )  # fmt: skip
    summary = _summarise(per_method, seconds, len(names))
    window_accuracy = float(np.mean(window_hits)) if window_hits else float("nan")
    table = summary_table(summary, _COLUMNS)
    picks = sorted(
        range(len(tomogram.particles)),
        key=lambda i: -tomogram.particles[i].radius,
    )[:3]
    slices = _figure_slices(tomogram, maps, names, picks)
    figures = [
        ("Slices through three particles", "slices.png", slices),
        ("Pointing game and detection per method", "scores.png", _figure_bars(summary)),
    ]
    elapsed = time.perf_counter() - started
    results = {
        "camscope": camscope.__version__,
        "model": str(stem),
        "tomogram": {
            "shape": list(shape),
            "particles": particles,
            "snr": snr_label(snr),
            "seed": seed,
            "voxel_nm": simulation.voxel,
        },
        "window_accuracy": window_accuracy,
        "summary": summary,
        "particles": {method: rows for method, rows in per_method.items()},
        "seconds": elapsed,
    }
    write_json(folder / "results.json", results)
    write_figures_and_page(
        folder,
        title="Explaining a whole tomogram window by window",
        paragraph=(
            f"{particles} particles of {len(names)} classes in a "
            f"{'×'.join(map(str, shape))} tomogram (SNR {snr_label(snr)}), explained window by "
            f"window ({roi}³ windows, overlap {overlap}) with {stem.name}. Pointing: the true "
            "class's map peaks inside the particle within its box; detection: the true class "
            "has the most evidence over the particle's voxels. The window nearest each "
            f"particle predicts its class for {window_accuracy:.1%} of the particles."
        ),
        table=table,
        figures=figures,
        seconds=elapsed,
    )
    log(table)
    log(f"window classification (nearest window): {window_accuracy:.3f}")
    log(
        f"wrote {folder}: results.json, report.html, tomogram.mrc, labels.mrc, particles.csv, "
        f"maps/, figures/ ({elapsed / 60:.1f} min)"
    )
    return results
