"""Cryo-electron tomography subtomograms: structure → density → pose → imaging → noise.

Recipe: the fast Fourier-mask model of the Respond-CAM lab's code (steps below).

Axis convention: volumes are ``(z, y, x)`` (torch's ``(D, H, W)``), 1 nm voxels. The beam is
along z and the tilt axis is y, so a tilt range of ±60° keeps the Fourier components with
``|k_z| ≤ tan(60°)·|k_x|`` (any ``k_y``) and the **missing wedge** is the region around the ``k_z``
axis.

Determinism: sample ``index`` of class ``c`` draws its pose from
``default_rng(SeedSequence([seed, c, index]))`` and its noise from a child of that sequence, so a
sample depends only on ``(seed, c, index)`` (and the noise draw), never on the order, chunking or
number of workers. The SNR ∞ and SNR 0.1 versions of an index share particle and pose.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch.utils.data import Dataset

from camscope.errors import CamscopeError
from camscope.simulate.structures import Structure, pseudo_structures

__all__ = [
    "Pose",
    "SimulationConfig",
    "Simulator",
    "SubtomogramDataset",
    "band_limit",
    "ctf",
    "fourier_frequencies",
    "missing_wedge_mask",
    "parse_snr",
    "simulate_arrays",
    "snr_label",
    "splat",
]


@dataclass(frozen=True)
class SimulationConfig:
    """Every knob of the simulation (defaults: the paper's set-up).

    Attributes:
        size: edge length in voxels (40 in the paper).
        voxel_nm: voxel size; ``None`` keeps the paper's 40 nm box whatever ``size`` (1 nm voxels
            at 40³, 2.5 nm at 16³), so every class fits.
        n_classes: how many of the 23 benchmark-sized classes to use.
        seed: data-set seed.
        similarity: pseudo-structure variants' closeness to their family (0–1).
        resolution_nm: density resolution ``R``; Gaussian of σ = R/(2√3) (Situs convention).
        tilt_degrees: maximal tilt angle; the missing wedge is the rest.
        band_limit_nm: keep ``|k| ≤ 1/band_limit_nm`` (Gaussian edge of width ``band_edge``).
        band_edge: edge width in cycles/nm.
        use_ctf: apply the phase-contrast CTF.
        defocus_um, voltage_kv, cs_mm: CTF parameters (defaults −5 µm, 300 kV, 2.0 mm).
        max_shift: particle shift ``U(−max_shift, max_shift)`` voxels per axis, capped so the
            particle is never clipped.
        negate: particles dark, as in tomograms.
        zscore: zero mean, unit variance per subtomogram.
        structures: explicit structures (e.g. read from PDB files) instead of pseudo-structures.
    """

    size: int = 40
    voxel_nm: float | None = None
    n_classes: int = 23
    seed: int = 0
    similarity: float = 0.5
    resolution_nm: float = 4.0
    tilt_degrees: float = 60.0
    band_limit_nm: float = 4.0
    band_edge: float = 0.02
    use_ctf: bool = False
    defocus_um: float = -5.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.0
    max_shift: float = 4.0
    negate: bool = True
    zscore: bool = True
    structures: tuple[Structure, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def voxel(self) -> float:
        """Voxel size in nm."""
        return self.voxel_nm if self.voxel_nm is not None else 40.0 / self.size

    @classmethod
    def from_record(cls, record: dict[str, object]) -> SimulationConfig:
        """The settings as ``dataclasses.asdict`` recorded them (e.g. in a trained model's
        checkpoint); keys this version does not know are left out."""
        from dataclasses import fields

        names = {f.name for f in fields(cls)} - {"structures"}
        return cls(**{k: v for k, v in record.items() if k in names})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Pose:
    """A sample's rotation (3×3, acting on ``(z, y, x)`` coordinates) and shift in voxels."""

    rotation: np.ndarray
    shift: np.ndarray


def parse_snr(text: str) -> float:
    """An SNR as written on a command line or in a CSV: a positive number, or ``inf``.

    Raises:
        CamscopeError: anything else.
    """
    try:
        value = math.inf if text.strip().lower() == "inf" else float(text)
    except ValueError as error:
        raise CamscopeError(f"not an SNR: {text!r}") from error
    if not value > 0:
        raise CamscopeError(f"SNR must be positive (or inf), got {text!r}")
    return value


def snr_label(snr: float) -> str:
    """``"inf"`` or the number's short form (``0.1``): for names, tables and CSV."""
    return "inf" if math.isinf(snr) else f"{snr:g}"


Shape = int | tuple[int, int, int]


def _shape(size: Shape) -> tuple[int, int, int]:
    """A cube's edge, or a ``(z, y, x)`` shape."""
    if isinstance(size, int):
        return (size, size, size)
    depth, height, width = (int(v) for v in size)
    return (depth, height, width)


def fourier_frequencies(size: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(k_z, k_y, k_x)`` in cycles/voxel on the ``rfftn`` grid of a cube of edge ``size`` or of
    a ``(z, y, x)`` shape, broadcastable."""
    depth, height, width = _shape(size)
    return (
        np.fft.fftfreq(depth)[:, None, None],
        np.fft.fftfreq(height)[None, :, None],
        np.fft.rfftfreq(width)[None, None, :],
    )


def missing_wedge_mask(size: Shape, tilt_degrees: float = 60.0) -> np.ndarray:
    """1 where tilts within ±``tilt_degrees`` about y sample Fourier space (beam z), else 0.

    On the ``rfftn`` grid, restricted to the Nyquist sphere.
    """
    kz, ky, kx = fourier_frequencies(size)
    kept = np.abs(kz) <= math.tan(math.radians(tilt_degrees)) * np.abs(kx)
    kept = kept | ((kz == 0) & (kx == 0))  # the k_y axis (incl. the origin) lies on the tilt axis
    radius = np.sqrt(kz**2 + ky**2 + kx**2)
    return (kept & (radius <= 0.5)).astype(np.float64)


def band_limit(size: Shape, cutoff: float, edge: float) -> np.ndarray:
    """1 inside ``|k| ≤ cutoff`` (cycles/voxel), Gaussian fall-off of width ``edge`` outside."""
    kz, ky, kx = fourier_frequencies(size)
    radius = np.sqrt(kz**2 + ky**2 + kx**2)
    return np.where(radius <= cutoff, 1.0, np.exp(-((radius - cutoff) ** 2) / (2 * edge**2)))


def ctf(
    size: Shape, *, defocus_um: float, voltage_kv: float, cs_mm: float, voxel_nm: float = 1.0
) -> np.ndarray:
    """Phase-contrast transfer function with the spec's envelope, on the ``rfftn`` grid."""
    volts = voltage_kv * 1e3
    wavelength_nm = 1.22643 / math.sqrt(volts * (1 + 0.978466e-6 * volts))  # relativistic
    kz, ky, kx = fourier_frequencies(size)
    k = np.sqrt(kz**2 + ky**2 + kx**2) / voxel_nm
    defocus_nm = defocus_um * 1e3
    cs_nm = cs_mm * 1e6
    phase = np.pi / 2 * (cs_nm * wavelength_nm**3 * k**4 - 2 * defocus_nm * wavelength_nm * k**2)
    nyquist = 0.5 / voxel_nm
    return np.sin(phase) * np.exp(-((k / (0.4 * nyquist)) ** 2))


def splat(points: np.ndarray, weights: np.ndarray, size: Shape) -> np.ndarray:
    """Spread weighted points (voxel coordinates ``(N, 3)``) onto a grid (a cube of edge
    ``size`` or a ``(z, y, x)`` shape) with trilinear weights.

    One ``np.bincount`` over the 8 corners of every point (far faster than ``np.add.at``).
    """
    shape = _shape(size)
    base = np.floor(points).astype(np.int64)
    frac = points - base
    flat_indices = []
    flat_weights = []
    for corner in range(8):
        offset = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        index = base + offset
        weight = weights * np.prod(np.where(offset == 1, frac, 1 - frac), axis=1)
        inside = np.all((index >= 0) & (index < np.asarray(shape)), axis=1)
        flat_indices.append(np.ravel_multi_index(index[inside].T, shape))
        flat_weights.append(weight[inside])
    counts = np.bincount(
        np.concatenate(flat_indices),
        weights=np.concatenate(flat_weights),
        minlength=int(np.prod(shape)),
    )
    return counts.reshape(shape)


class Simulator:
    """Deterministic subtomogram simulator (see the module docstring).

    Example:
        >>> sim = Simulator(SimulationConfig(size=32, n_classes=3))
        >>> volumes = sim.sample(class_id=1, index=0, snrs=(float("inf"), 0.1))
        >>> sorted(volumes) == [0.1, float("inf")] and volumes[0.1].shape == (32, 32, 32)
        True
    """

    def __init__(self, config: SimulationConfig | None = None) -> None:
        self.config = config or SimulationConfig()
        c = self.config
        if c.size < 8:
            raise CamscopeError(f"size must be at least 8 voxels, got {c.size}")
        if not 1 <= c.n_classes <= (len(c.structures) if c.structures else 23):
            raise CamscopeError(
                f"n_classes must be 1–23 (or the number of structures given), got {c.n_classes}"
            )
        voxel = c.voxel
        sigma = c.resolution_nm / (2 * math.sqrt(3)) / voxel  # in voxels
        kz, ky, kx = fourier_frequencies(c.size)  # cycles/voxel
        blur = np.exp(-2 * math.pi**2 * sigma**2 * (kz**2 + ky**2 + kx**2))
        self.wedge = missing_wedge_mask(c.size, c.tilt_degrees)
        self.noise_filter = self.wedge * band_limit(
            c.size, voxel / c.band_limit_nm, c.band_edge * voxel
        )
        self.signal_filter = self.noise_filter * blur
        if c.use_ctf:
            self.signal_filter = self.signal_filter * ctf(
                c.size,
                defocus_um=c.defocus_um,
                voltage_kv=c.voltage_kv,
                cs_mm=c.cs_mm,
                voxel_nm=voxel,
            )

    @functools.cached_property
    def structures(self) -> list[Structure]:
        """The classes' structures (pseudo-structures unless given in the config)."""
        c = self.config
        if c.structures is not None:
            return list(c.structures[: c.n_classes])
        return pseudo_structures(c.n_classes, seed=c.seed, similarity=c.similarity)

    def _radius_voxels(self, class_id: int) -> float:
        """Bounding radius plus two blur widths, in voxels."""
        blur = 2 * self.config.resolution_nm / (2 * math.sqrt(3))
        radius = (self.structures[class_id].radius_nm + blur) / self.config.voxel
        if radius > self.config.size / 2 - 1:
            structure = self.structures[class_id]
            raise CamscopeError(
                f"class {class_id} ({structure.name}, radius {structure.radius_nm:.1f} nm) does "
                f"not fit a {self.config.size}³ box of {self.config.voxel:g} nm voxels; use a "
                "larger size or voxel_nm=None"
            )
        return radius

    def _rng(self, class_id: int, index: int) -> np.random.SeedSequence:
        if not 0 <= class_id < self.config.n_classes:
            raise CamscopeError(f"class_id {class_id} out of range 0–{self.config.n_classes - 1}")
        return np.random.SeedSequence([self.config.seed, class_id, index])

    def pose(self, class_id: int, index: int) -> Pose:
        """The uniform random rotation and capped random shift of one sample."""
        rng = np.random.default_rng(self._rng(class_id, index))
        rotation = Rotation.random(random_state=rng).as_matrix()
        radius = self._radius_voxels(class_id)
        room = max(0.0, self.config.size / 2 - 1 - radius)
        limit = min(self.config.max_shift * self.config.size / 40, room)
        shift = rng.uniform(-1, 1, 3) * limit
        return Pose(rotation=rotation, shift=shift)

    def density(self, class_id: int, pose: Pose) -> np.ndarray:
        """The posed structure splatted onto the grid (mass-weighted, before blurring)."""
        structure = self.structures[class_id]
        centre = self.config.size / 2
        points = structure.coordinates / self.config.voxel @ pose.rotation.T + centre + pose.shift
        return splat(points, structure.masses, self.config.size)

    def signal(self, class_id: int, index: int) -> tuple[np.ndarray, Pose]:
        """The noise-free imaged volume (blur, band limit, missing wedge, CTF if on), unscaled."""
        pose = self.pose(class_id, index)
        spectrum = np.fft.rfftn(self.density(class_id, pose)) * self.signal_filter
        return np.fft.irfftn(spectrum, s=(self.config.size,) * 3, axes=(0, 1, 2)), pose

    def particle_mask(self, class_id: int, index: int, *, level: float = 0.1) -> np.ndarray:
        """Where the particle is: its posed density at the set resolution above ``level`` × max.

        Known exactly from the pose (no wedge, no noise): the ground truth for localisation.
        """
        pose = self.pose(class_id, index)
        sigma = self.config.resolution_nm / (2 * math.sqrt(3)) / self.config.voxel
        kz, ky, kx = fourier_frequencies(self.config.size)
        blur = np.exp(-2 * math.pi**2 * sigma**2 * (kz**2 + ky**2 + kx**2))
        density = np.fft.irfftn(
            np.fft.rfftn(self.density(class_id, pose)) * blur,
            s=(self.config.size,) * 3,
            axes=(0, 1, 2),
        )
        return density > level * density.max()

    def noise(self, class_id: int, index: int, draw: int = 0) -> np.ndarray:
        """Band-limited, wedge-filtered white noise of unit variance (one independent draw)."""
        child = self._rng(class_id, index).spawn(draw + 1)[draw]
        rng = np.random.default_rng(child)
        white = rng.standard_normal((self.config.size,) * 3)
        coloured = np.fft.irfftn(
            np.fft.rfftn(white) * self.noise_filter, s=white.shape, axes=(0, 1, 2)
        )
        return coloured / coloured.std()

    def finish(self, volume: np.ndarray) -> np.ndarray:
        """Contrast and scale: negate and z-score as configured; float32."""
        if self.config.negate:
            volume = -volume
        if self.config.zscore:
            volume = (volume - volume.mean()) / (volume.std() + 1e-12)
        return volume.astype(np.float32)

    def sample(
        self, class_id: int, index: int, snrs: tuple[float, ...] = (math.inf,), *, draw: int = 0
    ) -> dict[float, np.ndarray]:
        """One sample at several SNRs sharing particle and pose: ``{snr: volume}``.

        ``SNR = Var(signal) / Var(noise)`` in the final volume; ``inf`` means no noise.
        """
        signal, _ = self.signal(class_id, index)
        out: dict[float, np.ndarray] = {}
        noise = None
        for snr in snrs:
            if snr <= 0:
                raise CamscopeError(f"SNR must be positive (or inf), got {snr}")
            if math.isinf(snr):
                out[snr] = self.finish(signal)
                continue
            if noise is None:
                noise = self.noise(class_id, index, draw)
            out[snr] = self.finish(signal + noise * math.sqrt(signal.var() / snr))
        return out

    def with_config(self, **changes: object) -> Simulator:
        """A simulator with some settings changed."""
        return Simulator(replace(self.config, **changes))  # type: ignore[arg-type]

    def class_similarity(self, *, rotations: int = 24) -> np.ndarray:
        """``(K, K)`` similarity of the classes' noise-free densities.

        For each pair, the largest normalised cross-correlation of the centred densities over
        ``rotations`` seeded random rotations of the second (1 on the diagonal): a cheap,
        roughly rotation-invariant measure of how alike two classes look.
        """
        size = self.config.size
        rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, 99]))
        turns = Rotation.random(rotations, random_state=rng).as_matrix()
        spectra_filter = np.exp(
            -2
            * math.pi**2
            * (self.config.resolution_nm / (2 * math.sqrt(3)) / self.config.voxel) ** 2
            * sum(k**2 for k in fourier_frequencies(size))
        )

        def render(structure: Structure, rotation: np.ndarray) -> np.ndarray:
            points = structure.coordinates / self.config.voxel @ rotation.T + size / 2
            volume = splat(points, structure.masses, size)
            volume = np.fft.irfftn(
                np.fft.rfftn(volume) * spectra_filter, s=volume.shape, axes=(0, 1, 2)
            )
            volume = volume - volume.mean()
            return (volume / (np.linalg.norm(volume) + 1e-12)).ravel()

        canonical = np.stack([render(s, np.eye(3)) for s in self.structures])
        turned = np.stack([[render(s, r) for r in turns] for s in self.structures])
        k = len(self.structures)
        similarity = np.eye(k)
        for a in range(k):
            for b in range(k):
                if a != b:
                    similarity[a, b] = float((turned[b] @ canonical[a]).max())
        return np.maximum(similarity, similarity.T)


class SubtomogramDataset(Dataset[tuple[torch.Tensor, int]]):
    """A lazy data set: ``per_class`` samples of each class at one SNR, interleaved by class.

    Item ``i`` is class ``i % K``, index ``offset + i // K``; it returns
    ``(volume (1, S, S, S) float32, label)``. Disjoint ``offset`` ranges give disjoint splits.
    """

    def __init__(
        self, simulator: Simulator, per_class: int, *, snr: float = math.inf, offset: int = 0
    ) -> None:
        self.simulator = simulator
        self.per_class = per_class
        self.snr = snr
        self.offset = offset

    def __len__(self) -> int:
        return self.per_class * self.simulator.config.n_classes

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        if not 0 <= item < len(self):
            raise IndexError(item)
        classes = self.simulator.config.n_classes
        class_id, index = item % classes, self.offset + item // classes
        volume = self.simulator.sample(class_id, index, (self.snr,))[self.snr]
        return torch.from_numpy(volume)[None], class_id


def simulate_arrays(
    simulator: Simulator,
    per_class: int,
    snrs: tuple[float, ...],
    *,
    offset: int = 0,
    progress: bool = True,
    description: str = "simulating",
) -> tuple[dict[float, np.ndarray], np.ndarray]:
    """Simulate a whole split in memory: ``({snr: (N, 1, S, S, S) float32}, labels (N,))``.

    Items are interleaved by class as in :class:`SubtomogramDataset`; all SNRs share poses.
    """
    from tqdm.auto import tqdm

    classes = simulator.config.n_classes
    count = per_class * classes
    size = simulator.config.size
    volumes = {snr: np.empty((count, 1, size, size, size), dtype=np.float32) for snr in snrs}
    labels = np.empty(count, dtype=np.int64)
    for item in tqdm(range(count), desc=description, disable=not progress, leave=False):
        class_id, index = item % classes, offset + item // classes
        for snr, volume in simulator.sample(class_id, index, snrs).items():
            volumes[snr][item, 0] = volume
        labels[item] = class_id
    return volumes, labels
