"""Simulated 3D data.

* :mod:`~camscope.simulate.subtomogram`: cryo-electron tomography subtomograms (missing wedge,
  SNR, 23 benchmark-sized classes), the data of the Respond-CAM paper.
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
from camscope.simulate.toy import TOY_CLASSES, ToyVolumes, toy_volume

__all__ = [
    "BENCHMARK_COMPLEXES",
    "TOY_CLASSES",
    "Pose",
    "SimulationConfig",
    "Simulator",
    "Structure",
    "SubtomogramDataset",
    "ToyVolumes",
    "missing_wedge_mask",
    "pseudo_structure",
    "pseudo_structures",
    "read_structure",
    "toy_volume",
]
