"""Simulated 3D data.

* :mod:`~camscope.simulate.subtomogram`: cryo-electron tomography subtomograms (missing wedge,
  SNR, 23 benchmark-sized classes), the data of the Respond-CAM paper.
* :mod:`~camscope.simulate.tomogram`: whole tomograms with many particles at known positions
  and poses, imaged the same way, with a ground-truth table and label volume.
* :mod:`~camscope.simulate.structures`: pseudo-structures and a PDB/mmCIF reader.
* :mod:`~camscope.simulate.toy`: quick shape volumes for the small demo and tests.
"""

from __future__ import annotations

from camscope.simulate.structures import (
    BENCHMARK_COMPLEXES,
    Structure,
    pseudo_structure,
    pseudo_structures,
    read_structure,
)
from camscope.simulate.subtomogram import (
    Pose,
    SimulationConfig,
    Simulator,
    SubtomogramDataset,
    missing_wedge_mask,
)
from camscope.simulate.tomogram import Particle, Tomogram, TomogramConfig, simulate_tomogram
from camscope.simulate.toy import TOY_CLASSES, ToyVolumes, toy_volume

__all__ = [
    "BENCHMARK_COMPLEXES",
    "TOY_CLASSES",
    "Particle",
    "Pose",
    "SimulationConfig",
    "Simulator",
    "Structure",
    "SubtomogramDataset",
    "Tomogram",
    "TomogramConfig",
    "ToyVolumes",
    "missing_wedge_mask",
    "pseudo_structure",
    "pseudo_structures",
    "read_structure",
    "simulate_tomogram",
    "toy_volume",
]
