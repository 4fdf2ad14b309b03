"""Whole tomograms: the ground truth (positions inside, no overlaps, classes as asked, labels
where the particles are) and the imaging (missing wedge, SNR), checked as for subtomograms."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from camscope.errors import CamscopeError
from camscope.simulate import (
    SimulationConfig,
    Simulator,
    TomogramConfig,
    missing_wedge_mask,
    simulate_tomogram,
)

SMALL = TomogramConfig(
    shape=(48, 96, 80),
    particles=10,
    classes=(0, 3, 7, 12, 20),
    simulation=SimulationConfig(size=40, similarity=0.0),
)


@pytest.fixture(scope="module")
def clean():
    return simulate_tomogram(SMALL, progress=False)


@pytest.fixture(scope="module")
def noisy():
    return simulate_tomogram(replace(SMALL, snr=0.5), progress=False)


def test_particles_lie_inside_apart_and_of_the_asked_classes(clean):
    particles = clean.particles
    assert len(particles) == 10
    assert [p.class_id for p in particles] == [0, 3, 7, 12, 20] * 2
    shape = np.asarray(SMALL.shape)
    for p in particles:
        centre = np.asarray(p.position)
        assert np.all(centre - p.radius >= 0) and np.all(centre + p.radius <= shape)
        assert np.allclose(np.asarray(p.rotation) @ np.asarray(p.rotation).T, np.eye(3))
    for i, a in enumerate(particles):
        for b in particles[i + 1 :]:
            distance = np.linalg.norm(np.subtract(a.position, b.position))
            assert distance >= a.radius + b.radius + SMALL.gap
    names = Simulator(SMALL.simulation).structures
    assert [p.name for p in particles[:5]] == [names[c].name for c in (0, 3, 7, 12, 20)]


def test_labels_mark_each_particle_around_its_position(clean):
    labels = clean.labels
    assert set(np.unique(labels)) == set(range(11))
    for p in clean.particles:
        voxels = np.argwhere(labels == p.index + 1)
        centroid = voxels.mean(0)
        assert np.linalg.norm(centroid - np.asarray(p.position)) < p.radius / 2
        assert np.all(np.linalg.norm(voxels - np.asarray(p.position), axis=1) <= p.radius + 1)
    # the particles are where the (dark) density is: the mean inside is far below the outside
    assert clean.volume[labels > 0].mean() < clean.volume[labels == 0].mean() - 0.5


def test_missing_wedge_and_band_limit_hold_for_signal_and_noise(clean, noisy):
    wedge = missing_wedge_mask(SMALL.shape, SMALL.simulation.tilt_degrees)
    for tomogram in (clean, noisy):
        power = np.abs(np.fft.rfftn(tomogram.volume.astype(np.float64))) ** 2
        power[0, 0, 0] = 0.0  # the mean
        assert power[wedge == 0].sum() < 1e-8 * power.sum()


def test_snr_is_signal_variance_in_a_particle_box_over_noise_variance(clean, noisy):
    raw_clean = -(clean.volume.astype(np.float64) * clean.scale + clean.offset)
    raw_noisy = -(noisy.volume.astype(np.float64) * noisy.scale + noisy.offset)
    noise = raw_noisy - raw_clean
    assert noise.std() == pytest.approx(noisy.noise_std, rel=1e-3)
    size = SMALL.simulation.size
    variances = []
    for p in clean.particles:
        box = tuple(
            slice(int(min(max(round(c - size / 2), 0), s - size)), None)
            for c, s in zip(p.position, SMALL.shape, strict=True)
        )
        box = tuple(slice(b.start, b.start + size) for b in box)
        variances.append(raw_clean[box].var())
    assert np.mean(variances) / noisy.noise_std**2 == pytest.approx(0.5, rel=1e-3)
    assert clean.noise_std == 0.0


def test_particle_boxes_look_like_training_subtomograms(clean):
    size = SMALL.simulation.size
    means, spreads = [], []
    for p in clean.particles:
        box = tuple(
            slice(int(min(max(round(c - size / 2), 0), s - size)), None)
            for c, s in zip(p.position, SMALL.shape, strict=True)
        )
        view = clean.volume[tuple(slice(b.start, b.start + size) for b in box)]
        means.append(view.mean())
        spreads.append(view.std())
    assert abs(np.mean(means)) < 1e-4 and np.mean(spreads) == pytest.approx(1.0, rel=1e-4)


def test_seeded_and_refuses_what_cannot_be_made():
    small = replace(SMALL, particles=3)
    first, second = (simulate_tomogram(small, progress=False) for _ in range(2))
    assert np.array_equal(first.volume, second.volume)
    assert np.array_equal(first.labels, second.labels)
    other = simulate_tomogram(replace(small, seed=1), progress=False)
    assert not np.array_equal(first.volume, other.volume)
    with pytest.raises(CamscopeError, match="no room for particle"):
        simulate_tomogram(replace(SMALL, particles=200), progress=False)
    with pytest.raises(CamscopeError, match="out of range"):
        simulate_tomogram(replace(SMALL, classes=(30,)), progress=False)
    with pytest.raises(CamscopeError, match="SNR must be positive"):
        simulate_tomogram(replace(SMALL, snr=0.0), progress=False)
    assert math.isinf(TomogramConfig().snr) and TomogramConfig().shape == (200, 400, 400)
