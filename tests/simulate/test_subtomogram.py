"""The cryo-ET simulator: missing wedge, SNR, determinism, uniform rotations, structures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch.utils.data import DataLoader

from camscope.errors import CamscopeError
from camscope.simulate import (
    BENCHMARK_COMPLEXES,
    SimulationConfig,
    Simulator,
    SubtomogramDataset,
    missing_wedge_mask,
    pseudo_structure,
    read_structure,
)
from camscope.simulate.subtomogram import simulate_arrays, splat

SMALL = SimulationConfig(size=32, n_classes=6)


@pytest.fixture(scope="module")
def simulator() -> Simulator:
    return Simulator(SMALL)


def test_fourier_transform_is_zero_in_the_missing_wedge(simulator):
    for snr in (math.inf, 0.1):
        volume = simulator.sample(2, 5, (snr,))[snr].astype(np.float64)
        spectrum = np.abs(np.fft.rfftn(volume))
        missing = simulator.wedge == 0
        assert missing.sum() > 0.3 * missing.size
        assert spectrum[missing].max() < 1e-5 * spectrum.max()


def test_wedge_geometry_tilt_axis_y_beam_z():
    mask = missing_wedge_mask(40, 60.0)  # rfftn grid: index i ↔ i/40 cycles/voxel
    kz, ky, kx = np.fft.fftfreq(40), np.fft.fftfreq(40), np.fft.rfftfreq(40)
    assert mask[10, 0, 2] == 0.0  # k_z = 0.25, k_x = 0.05: near the k_z axis, missing
    assert mask[2, 0, 10] == 1.0  # k_z = 0.05, k_x = 0.25: near the k_x axis, kept
    assert mask[0, 12, 4] == 1.0  # k_y is the tilt axis: any k_y is kept
    assert mask[6, 0, 4] == 1.0 and mask[7, 0, 4] == 0.0  # the edge: |k_z| ≤ tan 60°·|k_x|
    sphere = (
        np.sqrt(kz[:, None, None] ** 2 + ky[None, :, None] ** 2 + kx[None, None, :] ** 2) <= 0.5
    )
    # ±60° keeps 120° of 180° in the x–z plane: about 2/3 of the Nyquist sphere
    assert mask[sphere].mean() == pytest.approx(2 / 3, abs=0.03)


@pytest.mark.parametrize("snr", [0.1, 1.0])
def test_measured_snr_from_two_noise_draws(simulator, snr):
    # Two noise draws of the same particle correlate with ρ = SNR / (1 + SNR); averaged over
    # samples, since band-limited noise has only a few thousand degrees of freedom per volume.
    correlations = []
    for index in range(24):
        a = simulator.sample(index % 6, index, (snr,), draw=0)[snr].ravel()
        b = simulator.sample(index % 6, index, (snr,), draw=1)[snr].ravel()
        correlations.append(np.corrcoef(a, b)[0, 1])
    assert np.mean(correlations) == pytest.approx(snr / (1 + snr), rel=0.10)


def test_noise_variance_ratio_is_exact_before_scaling(simulator):
    signal, _ = simulator.signal(1, 3)
    noise = simulator.noise(1, 3)
    assert noise.std() == pytest.approx(1.0)
    scaled = noise * math.sqrt(signal.var() / 0.1)
    assert signal.var() / scaled.var() == pytest.approx(0.1)


def test_pairs_share_particle_and_pose(simulator):
    both = simulator.sample(4, 2, (math.inf, 0.1))
    clean = simulator.sample(4, 2, (math.inf,))[math.inf]
    np.testing.assert_array_equal(both[math.inf], clean)
    assert np.corrcoef(both[0.1].ravel(), clean.ravel())[0, 1] > 0.2


def test_same_seed_same_bytes_whatever_the_order_or_workers():
    first = Simulator(SMALL)
    forward = [first.sample(c, i, (0.1,))[0.1].tobytes() for c in range(3) for i in range(3)]
    second = Simulator(SMALL)
    backward = [
        second.sample(c, i, (0.1,))[0.1].tobytes()
        for c in reversed(range(3))
        for i in reversed(range(3))
    ]
    assert forward == list(reversed(backward))
    dataset = SubtomogramDataset(Simulator(SMALL), 2, snr=0.1)
    alone = torch.stack([dataset[i][0] for i in range(len(dataset))])
    loaded = torch.cat([x for x, _ in DataLoader(dataset, batch_size=5, num_workers=2)])
    assert torch.equal(alone, loaded)
    other_seed = Simulator(SimulationConfig(size=32, n_classes=6, seed=1))
    assert other_seed.sample(0, 0)[math.inf].tobytes() != first.sample(0, 0)[math.inf].tobytes()


def test_rotations_are_uniform(simulator):
    rotations = np.stack([simulator.pose(i % 6, i).rotation for i in range(600)])
    # For uniform rotations the rotated z axis is uniform on the sphere (its z component is
    # uniform on [−1, 1]) and the rotation angle θ has CDF (θ − sin θ)/π.
    z = rotations[:, 2, 2]
    assert scipy.stats.kstest(z, scipy.stats.uniform(loc=-1, scale=2).cdf).pvalue > 0.01
    angle = np.arccos(np.clip((np.trace(rotations, axis1=1, axis2=2) - 1) / 2, -1, 1))
    assert scipy.stats.kstest(angle, lambda t: (t - np.sin(t)) / np.pi).pvalue > 0.01
    assert np.allclose(np.einsum("nij,nkj->nik", rotations, rotations), np.eye(3), atol=1e-10)


def test_particle_never_clipped(simulator):
    for class_id in range(6):
        for index in range(5):
            pose = simulator.pose(class_id, index)
            density = simulator.density(class_id, pose)
            total = simulator.structures[class_id].masses.sum()
            assert density.sum() == pytest.approx(total, rel=1e-9)  # every bead landed inside


def test_splat_is_trilinear_and_mass_preserving():
    grid = splat(np.array([[1.25, 2.0, 3.5]]), np.array([8.0]), 6)
    assert grid.sum() == pytest.approx(8.0)
    assert grid[1, 2, 3] == pytest.approx(8 * 0.75 * 0.5)
    assert grid[2, 2, 4] == pytest.approx(8 * 0.25 * 0.5)


def test_pseudo_structures_are_size_matched_and_deterministic():
    for class_id in (0, 5, 12, 22):
        name, radius, mass = BENCHMARK_COMPLEXES[class_id]
        structure = pseudo_structure(class_id, seed=3)
        assert structure.name == name
        assert structure.radius_nm == pytest.approx(radius, rel=1e-9)
        assert structure.mass_kda == pytest.approx(mass, rel=0.01)
        np.testing.assert_allclose(structure.coordinates.mean(0), 0, atol=1e-9)
        again = pseudo_structure(class_id, seed=3)
        np.testing.assert_array_equal(structure.coordinates, again.coordinates)


def test_similarity_knob_makes_family_members_alike():
    # classes 2 and 8 (radius 8.3 and 9.0 nm) are both stacked rings; at similarity 1 they
    # differ only in size and bead count
    config = SimulationConfig(size=32, n_classes=9)
    apart = Simulator(config).with_config(similarity=0.0).class_similarity(rotations=6)
    alike = Simulator(config).with_config(similarity=1.0).class_similarity(rotations=6)
    assert alike.shape == (9, 9) and np.allclose(np.diag(alike), 1.0)
    assert np.allclose(alike, alike.T)
    assert alike[2, 8] > apart[2, 8] + 0.05


def test_dataset_and_arrays_agree(simulator):
    dataset = SubtomogramDataset(simulator, 2, snr=0.1, offset=7)
    volumes, labels = simulate_arrays(simulator, 2, (0.1,), offset=7, progress=False)
    assert volumes[0.1].shape == (12, 1, 32, 32, 32)
    for item in (0, 5, 11):
        x, y = dataset[item]
        assert y == labels[item] == item % 6
        np.testing.assert_array_equal(x.numpy(), volumes[0.1][item])
    volume = volumes[0.1][3, 0]
    assert abs(volume.mean()) < 1e-5 and volume.std() == pytest.approx(1.0, rel=1e-4)


def test_bad_settings():
    with pytest.raises(CamscopeError, match="class_id"):
        Simulator(SMALL).pose(6, 0)
    with pytest.raises(CamscopeError, match="SNR must be positive"):
        Simulator(SMALL).sample(0, 0, (0.0,))
    with pytest.raises(CamscopeError, match="n_classes"):
        Simulator(SimulationConfig(n_classes=24))


def test_read_pdb_and_mmcif(tmp_path):
    pdb = tmp_path / "tiny.pdb"
    pdb.write_text(
        "ATOM      1  CA  ALA A   1      10.000  20.000  30.000  1.00  0.00           C\n"
        "ATOM      2  N   ALA A   1      12.000  20.000  30.000  1.00  0.00           N\n"
        "HETATM    3  O   HOH A   2       0.000   0.000   0.000  1.00  0.00           O\n"
    )
    structure = read_structure(pdb)
    assert structure.coordinates.shape == (2, 3) and structure.family == "atomic"
    assert structure.masses.tolist() == pytest.approx([12.011, 14.007])
    cif = tmp_path / "tiny.cif"
    cif.write_text(
        "data_x\nloop_\n_atom_site.group_PDB\n_atom_site.type_symbol\n_atom_site.label_comp_id\n"
        "_atom_site.Cartn_x\n_atom_site.Cartn_y\n_atom_site.Cartn_z\n"
        "ATOM C ALA 10.0 20.0 30.0\nATOM S CYS 12.0 20.0 30.0\n#\n"
    )
    from_cif = read_structure(cif)
    assert from_cif.masses.tolist() == pytest.approx([12.011, 32.06])
    # centred on the mass-weighted centre; (z, y, x) order in nm
    assert from_cif.coordinates[1, 2] - from_cif.coordinates[0, 2] == pytest.approx(0.2)
    with pytest.raises(CamscopeError, match="no atoms"):
        empty = tmp_path / "empty.pdb"
        empty.write_text("HEADER\n")
        read_structure(empty)
    with pytest.raises(CamscopeError, match="cannot read"):
        read_structure(tmp_path / "missing.pdb")


PDB_LINES = "".join(
    f"ATOM  {i:5d}  CA  ALA A{i:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C\n"
    for i, (x, y, z) in enumerate([(10, 20, 30), (25, 22, 31), (18, 35, 40), (12, 28, 22)], 1)
)


def test_packaged_structures_are_found(tmp_path, monkeypatch):
    from camscope.simulate.structures import find_packaged_structures

    package = tmp_path / "pdbfixer"
    (package / "tests" / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "tests" / "data" / "4JSV.pdb").write_text(PDB_LINES)
    monkeypatch.syspath_prepend(str(tmp_path))
    found = find_packaged_structures()
    assert package / "tests" / "data" / "4JSV.pdb" in found
    structure = read_structure(found[-1])
    simulator = Simulator(SimulationConfig(size=24, n_classes=1, structures=(structure,)))
    assert simulator.sample(0, 0)[math.inf].shape == (24, 24, 24)


def test_simulate_command_with_structure_files(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import camscope.simulate.structures as structures
    from camscope.cli.main import cli

    pdb = tmp_path / "mine.pdb"
    pdb.write_text(PDB_LINES)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--out",
            str(out),
            "--structure",
            str(pdb),
            "--per-class",
            "2",
            "--size",
            "16",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "mine" in (out / "labels.csv").read_text()
    monkeypatch.setattr(structures, "find_packaged_structures", lambda: [])
    none = CliRunner().invoke(
        cli, ["simulate", "--out", str(tmp_path / "none"), "--structure", "packaged", "--quiet"]
    )
    assert none.exit_code == 2 and "no atomic models found" in none.output


def test_snr_parsing_and_labels():
    from camscope.simulate.subtomogram import parse_snr, snr_label

    assert parse_snr("INF") == math.inf and parse_snr(" 0.1 ") == 0.1
    assert snr_label(math.inf) == "inf" and snr_label(0.1) == "0.1" and snr_label(2.0) == "2"
    for bad in ("loud", "0", "-1"):
        with pytest.raises(CamscopeError):
            parse_snr(bad)
