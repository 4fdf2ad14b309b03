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


def test_whole_volume_imaging_keeps_the_missing_wedge_for_signal_and_noise():
    wedge = missing_wedge_mask(SMALL.shape, SMALL.simulation.tilt_degrees)
    for snr in (math.inf, 0.5):
        tomogram = simulate_tomogram(replace(SMALL, imaging="tomogram", snr=snr), progress=False)
        power = np.abs(np.fft.rfftn(tomogram.volume.astype(np.float64))) ** 2
        power[0, 0, 0] = 0.0  # the mean
        assert power[wedge == 0].sum() < 1e-8 * power.sum()
    particle_imaged = simulate_tomogram(SMALL, progress=False)
    power = np.abs(np.fft.rfftn(particle_imaged.volume.astype(np.float64))) ** 2
    power[0, 0, 0] = 0.0
    assert power[wedge == 0].sum() > 1e-6 * power.sum()  # streaks cut at the boxes' edges


def test_a_particle_imaged_in_its_box_is_a_training_subtomogram():
    from camscope.simulate import Pose

    config = replace(SMALL, shape=(56, 60, 64), particles=1, classes=(5,))
    tomogram = simulate_tomogram(config, progress=False)
    particle = tomogram.particles[0]
    simulator = Simulator(config.simulation)
    size = config.simulation.size
    start = np.round(np.asarray(particle.position)).astype(int) - size // 2
    shift = np.asarray(particle.position) - start - size / 2
    pose = Pose(rotation=np.asarray(particle.rotation), shift=shift)
    expected = np.fft.irfftn(
        np.fft.rfftn(simulator.density(5, pose)) * simulator.signal_filter,
        s=(size,) * 3,
        axes=(0, 1, 2),
    )
    raw = -(tomogram.volume.astype(np.float64) * tomogram.scale + tomogram.offset)
    inside, crop = [], []
    for begin, extent in zip(start, config.shape, strict=True):
        low, high = max(begin, 0), min(begin + size, extent)
        inside.append(slice(low, high))
        crop.append(slice(low - begin, high - begin))
    np.testing.assert_allclose(raw[tuple(inside)], expected[tuple(crop)], atol=1e-4)
    wedge = missing_wedge_mask(size, config.simulation.tilt_degrees)
    power = np.abs(np.fft.rfftn(expected)) ** 2
    assert power[wedge == 0].sum() < 1e-20 * power.sum() + 1e-20


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
    with pytest.raises(CamscopeError, match="imaging must be"):
        simulate_tomogram(replace(SMALL, imaging="film"), progress=False)  # type: ignore[arg-type]
    for change, message in (
        ({"shape": (48.0, 96, 96)}, "shape must be 3 integers"),
        ({"particles": 2.5}, "particles must be a positive integer"),
        ({"classes": (1.5,)}, "classes must be integers"),
        ({"gap": -50}, "gap must be 0 or more"),
        ({"level": 2.0}, "level must lie between 0 and 1"),
    ):
        with pytest.raises(CamscopeError, match=message):
            simulate_tomogram(replace(SMALL, **change), progress=False)
    assert math.isinf(TomogramConfig().snr) and TomogramConfig().shape == (200, 400, 400)
