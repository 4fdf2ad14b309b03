"""Whole cryo-electron tomograms: many particles of the benchmark classes at known positions and
poses, imaged with the subtomogram simulator's model (:mod:`camscope.simulate.subtomogram`).

Recipe, per tomogram of shape ``(z, y, x)``:

1. **Placement**: particle ``i`` is class ``classes[i % len(classes)]`` (so every class appears
   about equally often), at a uniform random position whose bounding sphere (the class's radius
   plus two blur widths) lies inside the volume and keeps ``gap`` voxels from every other
   particle's, with a uniform random rotation. Drawn from ``SeedSequence([seed, 7000001])``
   (the noise from ``[seed, 7000002]``).
2. **Imaging**: the resolution blur, the band limit, the ±``tilt`` missing wedge (tilt axis y,
   beam z) and, optionally, the CTF, the subtomograms' filters, applied in one of two ways:

   * ``imaging="particle"`` (default): each particle is splatted and filtered in its own
     subtomogram-sized box, exactly as :meth:`Simulator.signal` makes a subtomogram, and the box
     is added into the tomogram at the particle's place. A box around an isolated particle is
     then the very signal the subtomogram classifiers were trained on; the wedge's streaks
     stop at the box's edge (the subtomogram simulator's periodic model).
   * ``imaging="tomogram"``: every particle's beads splatted into the whole volume, filtered in
     one Fourier transform of it: the streaks run on through the volume as in a real
     tomogram, which the subtomogram classifiers never saw (a trained CNN-2 recognises an
     isolated particle's box far less often this way).
3. **Noise**: white noise through the same wedge and band limit, scaled so that the signal
   variance in a subtomogram-sized box around a particle (averaged over the particles) over the
   noise variance is the SNR; ``inf``: none.
4. **Contrast**: particles dark (negated), then shifted and scaled so that a subtomogram-sized
   box around a particle has, on average, zero mean and unit variance: what the subtomogram
   classifiers were trained on (they z-score each subtomogram).

The ground truth: a table of particles (class, position, rotation, radius) and a label volume
(``0`` background, ``i + 1`` where particle ``i``'s density at the set resolution exceeds
``level`` × its maximum, as :meth:`Simulator.particle_mask` defines a subtomogram's particle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.spatial.transform import Rotation
from tqdm.auto import tqdm

from camscope.errors import CamscopeError
from camscope.simulate.subtomogram import (
    SimulationConfig,
    Simulator,
    band_limit,
    ctf,
    fourier_frequencies,
    missing_wedge_mask,
    splat,
)

__all__ = ["Particle", "Tomogram", "TomogramConfig", "particle_box", "simulate_tomogram"]


@dataclass(frozen=True)
class TomogramConfig:
    """What a tomogram holds and how it is imaged.

    Attributes:
        shape: ``(z, y, x)`` voxels (beam along z).
        particles: how many particles to place.
        classes: the classes to place (indices into the simulation's classes); ``None``: all.
        snr: signal-to-noise ratio (see the module docstring); ``math.inf``: no noise.
        seed: placement, poses and noise.
        gap: voxels kept free between particles' bounding spheres.
        level: the ground-truth mask's threshold, relative to each particle's maximum.
        imaging: ``"particle"`` or ``"tomogram"`` (see the module docstring).
        simulation: voxel size, resolution, wedge, band limit, CTF and the classes' structures,
            shared with the subtomograms (``simulation.size`` is the box used for the SNR and
            the contrast, the classifiers' input size).
    """

    shape: tuple[int, int, int] = (200, 400, 400)
    particles: int = 150
    classes: tuple[int, ...] | None = None
    snr: float = math.inf
    seed: int = 0
    gap: float = 2.0
    level: float = 0.1
    imaging: Literal["particle", "tomogram"] = "particle"
    simulation: SimulationConfig = field(default_factory=lambda: SimulationConfig(similarity=0.0))


@dataclass(frozen=True)
class Particle:
    """One particle of the ground truth: ``position`` in voxels ``(z, y, x)``; ``rotation``
    acts on ``(z, y, x)`` coordinates; ``radius`` (voxels) bounds its blurred density."""

    index: int
    class_id: int
    name: str
    position: tuple[float, float, float]
    rotation: tuple[tuple[float, ...], ...]
    radius: float

    def row(self) -> dict[str, Any]:
        """As a table row (positions rounded to 1/1000 voxel)."""
        z, y, x = (round(v, 3) for v in self.position)
        return {
            "index": self.index,
            "class_id": self.class_id,
            "name": self.name,
            "z": z,
            "y": y,
            "x": x,
            "radius": round(self.radius, 3),
            "rotation": [list(r) for r in self.rotation],
        }


@dataclass
class Tomogram:
    """A simulated tomogram and its ground truth.

    Attributes:
        volume: ``(z, y, x)`` float32.
        labels: ``(z, y, x)`` int32: ``i + 1`` inside particle ``i``, else 0.
        particles: the ground-truth table.
        config: how it was made.
        noise_std: the noise's standard deviation before the contrast step (0 at SNR ∞).
        offset, scale: the contrast step: ``volume = (±(signal + noise) − offset) / scale``.
    """

    volume: np.ndarray
    labels: np.ndarray
    particles: list[Particle]
    config: TomogramConfig
    noise_std: float = 0.0
    offset: float = 0.0
    scale: float = 1.0

    @property
    def voxel_nm(self) -> float:
        """Voxel size in nm."""
        return self.config.simulation.voxel


def _place(
    config: TomogramConfig, simulator: Simulator, rng: np.random.Generator
) -> list[Particle]:
    classes = (
        list(config.classes)
        if config.classes is not None
        else list(range(simulator.config.n_classes))
    )
    if not classes:
        raise CamscopeError("classes must name at least one class")
    for class_id in classes:
        if not 0 <= class_id < simulator.config.n_classes:
            raise CamscopeError(f"class {class_id} out of range 0–{simulator.config.n_classes - 1}")
    extent = np.asarray(config.shape, dtype=np.float64)
    placed: list[Particle] = []
    centres = np.zeros((0, 3))
    radii = np.zeros(0)
    attempts_per_particle = 2000
    for index in range(config.particles):
        class_id = classes[index % len(classes)]
        radius = simulator._radius_voxels(class_id)
        if np.any(extent < 2 * radius + 2):
            raise CamscopeError(
                f"class {class_id} (radius {radius:.1f} voxels) does not fit a tomogram of "
                f"{config.shape}"
            )
        for _ in range(attempts_per_particle):
            centre = rng.uniform(radius + 1, extent - radius - 1)
            if len(centres) == 0 or np.all(
                np.linalg.norm(centres - centre, axis=1) >= radii + radius + config.gap
            ):
                break
        else:
            raise CamscopeError(
                f"placed {index} particles; no room for particle {index + 1} of "
                f"{config.particles} in {config.shape} with gap {config.gap}: ask for fewer "
                "particles or a larger tomogram"
            )
        rotation = Rotation.random(random_state=rng).as_matrix()
        placed.append(
            Particle(
                index=index,
                class_id=class_id,
                name=simulator.structures[class_id].name,
                position=(float(centre[0]), float(centre[1]), float(centre[2])),
                rotation=tuple(tuple(float(v) for v in row) for row in rotation),
                radius=float(radius),
            )
        )
        centres = np.vstack([centres, centre])
        radii = np.append(radii, radius)
    return placed


def particle_box(
    position: tuple[float, ...], size: int, shape: tuple[int, ...]
) -> tuple[slice, ...]:
    """A ``size``-voxel box around ``position``, moved inside the volume where it would leave it
    (clipped where the volume is smaller than the box)."""
    starts = [
        int(min(max(round(p - size / 2), 0), max(s - size, 0)))
        for p, s in zip(position, shape, strict=True)
    ]
    return tuple(slice(b, b + size) for b in starts)


def _masks(
    particles: list[Particle], simulator: Simulator, shape: tuple[int, int, int], level: float
) -> np.ndarray:
    """The label volume: each particle's density at the set resolution above ``level`` × max."""
    config = simulator.config
    size = config.size + 8  # room for the blur's tails
    sigma = config.resolution_nm / (2 * math.sqrt(3)) / config.voxel
    blur = np.exp(-2 * math.pi**2 * sigma**2 * sum(k**2 for k in fourier_frequencies(size)))
    labels = np.zeros(shape, dtype=np.int32)
    for particle in particles:
        region = particle_box(particle.position, size, shape)
        corner = np.array([r.start for r in region], dtype=np.float64)
        structure = simulator.structures[particle.class_id]
        points = (
            structure.coordinates / config.voxel @ np.asarray(particle.rotation).T
            + np.asarray(particle.position)
            - corner
        )
        view = labels[region]  # a view, clipped where the volume is smaller than the box
        density = splat(points, structure.masses, (size, size, size))
        density = np.fft.irfftn(np.fft.rfftn(density) * blur, s=(size,) * 3, axes=(0, 1, 2))
        depth, height, width = view.shape
        inside = density[:depth, :height, :width] > level * density.max()
        view[inside & (view == 0)] = particle.index + 1
    return labels


def _add_particle(signal: np.ndarray, particle: Particle, simulator: Simulator) -> None:
    """Image ``particle`` in its own subtomogram box (as :meth:`Simulator.signal` does) and add
    the box into ``signal`` at the particle's place (clipped at the volume's edges)."""
    size = simulator.config.size
    structure = simulator.structures[particle.class_id]
    start = np.round(np.asarray(particle.position)).astype(np.int64) - size // 2
    points = (
        structure.coordinates / simulator.config.voxel @ np.asarray(particle.rotation).T
        + np.asarray(particle.position)
        - start
    )
    density = splat(points, structure.masses, size)
    box = np.fft.irfftn(
        np.fft.rfftn(density) * simulator.signal_filter, s=(size,) * 3, axes=(0, 1, 2)
    )
    target, source = [], []
    for begin, extent in zip(start, signal.shape, strict=True):
        low, high = max(int(begin), 0), min(int(begin) + size, extent)
        target.append(slice(low, high))
        source.append(slice(low - int(begin), high - int(begin)))
    signal[tuple(target)] += box[tuple(source)]


def _check(config: TomogramConfig) -> None:
    """Refuse settings that cannot make a tomogram, before any work."""
    shape = config.shape
    if len(shape) != 3 or not all(isinstance(v, int) and v >= 8 for v in shape):
        raise CamscopeError(f"shape must be 3 integers (z, y, x) of at least 8, not {shape}")
    if not isinstance(config.particles, int) or config.particles < 1:
        raise CamscopeError(f"particles must be a positive integer, got {config.particles!r}")
    if config.classes is not None and not all(isinstance(c, int) for c in config.classes):
        raise CamscopeError(f"classes must be integers, got {config.classes!r}")
    if not config.gap >= 0:
        raise CamscopeError(f"gap must be 0 or more voxels, got {config.gap}")
    if not 0 < config.level < 1:
        raise CamscopeError(
            f"level must lie between 0 and 1 (of each particle's maximum), got {config.level}"
        )
    if config.imaging not in ("particle", "tomogram"):
        raise CamscopeError(f"imaging must be 'particle' or 'tomogram', not {config.imaging!r}")
    if not config.snr > 0:
        raise CamscopeError(f"SNR must be positive (or inf), got {config.snr}")


def simulate_tomogram(config: TomogramConfig | None = None, *, progress: bool = True) -> Tomogram:
    """Simulate one tomogram and its ground truth (see the module docstring).

    Raises:
        CamscopeError: a bad shape or SNR, unknown classes, or more particles than fit.
    """
    config = config or TomogramConfig()
    _check(config)
    shape = config.shape
    simulator = Simulator(config.simulation)
    sim = simulator.config
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 7_000_001]))
    particles = _place(config, simulator, rng)
    steps = tqdm(total=4, desc="tomogram", disable=not progress, leave=False)
    kz, ky, kx = fourier_frequencies(shape)
    noise_filter = missing_wedge_mask(shape, sim.tilt_degrees) * band_limit(
        shape, sim.voxel / sim.band_limit_nm, sim.band_edge * sim.voxel
    )
    if config.imaging == "particle":
        signal = np.zeros(shape)
        for particle in particles:
            _add_particle(signal, particle, simulator)
    elif config.imaging == "tomogram":
        points, masses = [], []
        for particle in particles:
            structure = simulator.structures[particle.class_id]
            points.append(
                structure.coordinates / sim.voxel @ np.asarray(particle.rotation).T
                + np.asarray(particle.position)
            )
            masses.append(structure.masses)
        density = splat(np.concatenate(points), np.concatenate(masses), shape)
        sigma = sim.resolution_nm / (2 * math.sqrt(3)) / sim.voxel
        blur = np.exp(-2 * math.pi**2 * sigma**2 * (kz**2 + ky**2 + kx**2))
        signal_filter = noise_filter * blur
        if sim.use_ctf:
            signal_filter = signal_filter * ctf(
                shape,
                defocus_um=sim.defocus_um,
                voltage_kv=sim.voltage_kv,
                cs_mm=sim.cs_mm,
                voxel_nm=sim.voxel,
            )
        signal = np.fft.irfftn(np.fft.rfftn(density) * signal_filter, s=shape, axes=(0, 1, 2))
        del density
    else:
        raise CamscopeError(f"imaging must be 'particle' or 'tomogram', not {config.imaging!r}")
    steps.update(2)
    boxes = [particle_box(p.position, sim.size, shape) for p in particles]
    box_variance = float(np.mean([signal[b].var() for b in boxes]))
    noise_std = 0.0
    if not math.isinf(config.snr):
        white = np.random.default_rng(np.random.SeedSequence([config.seed, 7_000_002]))
        noise = np.fft.irfftn(
            np.fft.rfftn(white.standard_normal(shape)) * noise_filter, s=shape, axes=(0, 1, 2)
        )
        noise_std = math.sqrt(box_variance / config.snr)
        signal += noise * (noise_std / noise.std())
        del noise
    steps.update()
    volume = -signal if sim.negate else signal
    means = [volume[b].mean() for b in boxes]
    spreads = [volume[b].std() for b in boxes]
    offset, scale = float(np.mean(means)), float(np.mean(spreads)) + 1e-12
    volume = ((volume - offset) / scale).astype(np.float32)
    labels = _masks(particles, simulator, shape, config.level)
    steps.update()
    steps.close()
    return Tomogram(
        volume, labels, particles, config, noise_std=noise_std, offset=offset, scale=scale
    )
