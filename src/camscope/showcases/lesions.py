"""A 3D segmentation network on a real brain volume, explained window by window.

The volume is the MNI152 (ICBM 2009a, symmetric) T1 template that nilearn ships inside its
package (``nilearn/datasets/data``, nothing downloaded), at 2 mm. Synthetic lesions (dark
ellipsoids with soft edges, 4–10 mm across, like the T1 "black holes" of multiple sclerosis)
are pasted into its white matter; a MONAI ``UNet``
(a real architecture users train) is trained here, seeded, on 32³ patches of lesioned copies,
then applied to a copy with lesions at new places, window by window as MONAI's
``sliding_window_inference`` applies it (:func:`camscope.explain_scan`).

Each lesion is one **region target**: the lesion class's logits summed over the lesion's mask
(cropped to every window). For each method, per lesion: the share of the map's positive mass
inside the lesion (relevance mass accuracy, Arras et al. 2022; chance = the lesion's share of the
volume), the share of the lesion-sized top of the map inside it (relevance rank accuracy), and
whether the map peaks inside it. The network's own Dice on the new copy is reported beside.

Written: ``results.json``, ``report.html`` and ``figures/``, and as NIfTI with the template's
affine: the lesioned volume, the true lesions, the predicted segmentation and each method's maps
(one 4D file per method, a volume per lesion).
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import camscope
from camscope.errors import CamscopeError
from camscope.io import LoadedImage, prepare_output_dir, write_json
from camscope.io.heatmaps import write_nifti
from camscope.methods import get_method
from camscope.metrics import relevance_mass_accuracy, relevance_rank_accuracy
from camscope.render import figure_png, slice_image, subplots
from camscope.render.text import summary_table
from camscope.showcases.pages import write_figures_and_page
from camscope.targets import region_target

__all__ = ["Lesions", "brain_volume", "paste_lesions", "run_showcase", "train_unet"]

TEMPLATE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
WHITE_MATTER = "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"


def _nilearn_data() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise CamscopeError(
            "the lesion showcase reads the MNI152 template that nilearn ships: pip install "
            "nilearn (no download happens: the template is inside the package)"
        )
    return Path(spec.origin).parent / "datasets" / "data"


def brain_volume(factor: int = 2) -> tuple[LoadedImage, np.ndarray]:
    """The MNI152 T1 template, block-averaged by ``factor`` (2 mm at 2), scaled to [0, 1] by its
    99.5th percentile, as a :class:`~camscope.io.LoadedImage` with the matching affine; and the
    white-matter mask (probability > 0.5) at the same resolution."""
    import nibabel

    folder = _nilearn_data()
    image: Any = nibabel.load(folder / TEMPLATE)
    white_image: Any = nibabel.load(folder / WHITE_MATTER)
    white = np.asarray(white_image.dataobj, dtype=np.float32)
    raw = np.asarray(image.dataobj, dtype=np.float32)

    def pooled(values: np.ndarray) -> np.ndarray:
        size = [s - s % factor for s in values.shape]
        values = values[: size[0], : size[1], : size[2]]
        shape = [v for s in size for v in (s // factor, factor)]
        return values.reshape(shape).mean(axis=(1, 3, 5))

    volume = pooled(raw)
    volume = np.clip(volume / np.percentile(volume, 99.5), 0, 1).astype(np.float32)
    scale = np.diag([factor, factor, factor, 1.0])
    scale[:3, 3] = (factor - 1) / 2  # the centre of each block of voxels
    affine = image.affine @ scale
    scan = LoadedImage(volume[None], str(folder / TEMPLATE), "nifti", affine=affine)
    scan.details["unit"] = "mm"
    return scan, pooled(white) > 0.5


class Lesions:
    """Lesions pasted into a volume: the new volume ``(D, H, W)``, one boolean mask per lesion
    and their centres (voxels)."""

    def __init__(self, volume: np.ndarray, masks: list[np.ndarray], centres: list[tuple]) -> None:
        self.volume, self.masks, self.centres = volume, masks, centres

    @property
    def labels(self) -> np.ndarray:
        """``(D, H, W)`` 0 = background, 1 = lesion."""
        return np.any(self.masks, axis=0) if self.masks else np.zeros(self.volume.shape, bool)


def paste_lesions(
    volume: np.ndarray, allowed: np.ndarray, count: int, *, seed: int, noise: float = 0.03
) -> Lesions:
    """Paste ``count`` dark ellipsoids (semi-axes 2–5 voxels, random orientation of the axes,
    soft 1-voxel edge) at random places of ``allowed`` at least 12 voxels apart, and add Gaussian
    noise of standard deviation ``noise`` to the whole volume."""
    rng = np.random.default_rng(seed)
    candidates = np.argwhere(allowed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in volume.shape], indexing="ij"), -1)
    out = volume.copy()
    masks: list[np.ndarray] = []
    centres: list[tuple] = []
    attempts = 0
    while len(masks) < count:
        attempts += 1
        if attempts > 1000 * count:
            raise CamscopeError(f"could not place {count} lesions 12 voxels apart")
        centre = candidates[rng.integers(len(candidates))]
        if any(np.linalg.norm(centre - np.array(c)) < 12 for c in centres):
            continue
        axes = rng.uniform(2.0, 5.0, size=3)
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        local = (grid - centre) @ rotation
        radius = np.sqrt(((local / axes) ** 2).sum(-1))  # 1 on the ellipsoid's surface
        weight = np.clip((1.25 - radius) / 0.5, 0, 1)  # soft edge around radius 1
        brightness = rng.uniform(0.1, 0.3)  # white matter is about 0.75 here
        out = out * (1 - weight) + brightness * weight
        masks.append(radius <= 1.0)
        centres.append(tuple(int(v) for v in centre))
    out = out + rng.normal(0, noise, size=out.shape)
    return Lesions(out.astype(np.float32), masks, centres)


def train_unet(
    volumes: list[Lesions],
    *,
    steps: int = 300,
    patch: int = 32,
    batch_size: int = 8,
    seed: int = 0,
    log: Callable[[str], None] = print,
    network: str = "unet",
) -> torch.nn.Module:
    """A MONAI ``UNet`` (16/32/64 channels, 2 classes) or ``UNETR`` (``network="unetr"``)
    trained on random patches of ``volumes`` (half of them around a lesion) with Dice +
    cross-entropy, seeded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from monai.losses import DiceCELoss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = _network(network, patch)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    half = patch // 2
    model.train()
    for step in range(steps):
        inputs, labels = [], []
        for _ in range(batch_size):
            sample = volumes[rng.integers(len(volumes))]
            shape = np.array(sample.volume.shape)
            if rng.random() < 0.5 and sample.centres:
                centre = np.array(sample.centres[rng.integers(len(sample.centres))])
                centre = centre + rng.integers(-half + 4, half - 4, size=3)
            else:
                centre = rng.integers(half, shape - half)
            start = np.clip(centre - half, 0, shape - patch)
            box = tuple(slice(s, s + patch) for s in start)
            inputs.append(sample.volume[box])
            labels.append(sample.labels[box])
        x = torch.from_numpy(np.stack(inputs))[:, None]
        y = torch.from_numpy(np.stack(labels).astype(np.int64))[:, None]
        optimiser.zero_grad()
        loss = loss_function(model(x), y)
        loss.backward()
        optimiser.step()
        if (step + 1) % 50 == 0:
            log(f"  step {step + 1}/{steps}: loss {loss.item():.3f}")
    return model.eval()


#: The showcase's networks: MONAI's ``UNet`` (16/32/64 channels, residual units) and
#: ``UNETR`` (a ViT of 12 blocks, width 96, over 16³ patches, feature size 8), 2 classes.
NETWORKS = ("unet", "unetr")


def _network(name: str, roi: int) -> torch.nn.Module:
    if name not in NETWORKS:
        raise CamscopeError(f"network must be one of {', '.join(NETWORKS)}, not {name!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from monai.networks.nets import UNETR, UNet

    if name == "unetr":
        return UNETR(
            in_channels=1,
            out_channels=2,
            img_size=roi,
            feature_size=8,
            hidden_size=96,
            mlp_dim=192,
            num_heads=4,
        )
    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        channels=(16, 32, 64),
        strides=(2, 2),
        num_res_units=1,
    )


def _check_methods(methods: tuple[str, ...], roi: int, network: str = "unet") -> None:
    """Explain one window of zeros with an untrained network of the same architecture, so a
    method that cannot work on it (guided rules on PReLU, CAM without global pooling, LeGrad
    without a classifier head) is refused before the training."""
    model = _network(network, roi).eval()
    window = torch.zeros(1, 1, roi, roi, roi)
    mask = torch.zeros(roi, roi, roi, dtype=torch.bool)
    mask[roi // 2, roi // 2, roi // 2] = True
    for method in methods:
        options: dict[str, Any] = {"steps": 2} if method == "integrated_gradients" else {}
        try:
            camscope.explain(
                model, window, method=method, targets=region_target(1, mask), **options
            )
        except CamscopeError as error:
            raise CamscopeError(f"--methods {method}: {error}") from error


def _dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    total = predicted.sum() + truth.sum()
    return float(2 * (predicted & truth).sum() / total) if total else 1.0


def _scores(maps: np.ndarray, lesions: Lesions) -> list[dict[str, float]]:
    """Per lesion: positive mass inside it, rank accuracy, peak inside, chance."""
    masks = torch.from_numpy(np.stack(lesions.masks))
    positive = torch.from_numpy(np.maximum(maps, 0))
    # no positive evidence anywhere: none of it in the lesion (the metric itself says NaN)
    mass = torch.nan_to_num(relevance_mass_accuracy(positive, masks).values, nan=0.0).tolist()
    rank = relevance_rank_accuracy(positive, masks).values.tolist()
    rows = []
    for index, mask in enumerate(lesions.masks):
        peak = np.unravel_index(int(np.argmax(maps[index])), mask.shape)
        rows.append(
            {
                "mass": float(mass[index]),
                "rank": float(rank[index]),
                "peak_inside": bool(mask[peak]),
                "chance": float(mask.mean()),
                "voxels": int(mask.sum()),
            }
        )
    return rows


def run_showcase(
    out_dir: str | Path,
    *,
    methods: tuple[str, ...] = (
        "grad_cam",
        "grad_cam_pp",
        "layer_cam",
        "saliency",
        "integrated_gradients",
    ),
    layer: str | None = None,
    lesions: int = 5,
    train_volumes: int = 6,
    steps: int = 600,
    roi: int = 32,
    overlap: float = 0.25,
    batch_size: int = 8,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    network: str = "unet",
) -> dict[str, Any]:
    """Train, explain and score; see the module docstring. Returns the results."""
    for method in methods:  # a misspelt method is refused before any work
        get_method(method)
    # before minutes of training, and before any folder is made
    _check_methods(methods, roi, network)
    folder = prepare_output_dir(out_dir, ["results.json", "report.html"], force=force)
    started = time.perf_counter()
    scan, white = brain_volume()
    base = scan.data[0]
    log(f"MNI152 T1 at 2 mm: {'×'.join(map(str, base.shape))} voxels")
    training = [
        paste_lesions(base, white, 8, seed=seed * 1000 + 1 + i) for i in range(train_volumes)
    ]
    title = {"unet": "UNet", "unetr": "UNETR"}[network]
    log(f"training a MONAI {title} on {train_volumes} lesioned copies ({steps} steps)")
    begin = time.perf_counter()
    model = train_unet(training, steps=steps, patch=roi, seed=seed, log=log, network=network)
    train_seconds = time.perf_counter() - begin
    test = paste_lesions(base, white, lesions, seed=seed * 1000 + 999)
    tested = LoadedImage(test.volume[None], scan.path, "nifti", affine=scan.affine)
    tested.details["unit"] = "mm"
    explained = _explain_lesions(
        model, tested, test, methods, layer=layer, roi=roi, overlap=overlap,
        batch_size=batch_size, progress=progress, log=log,
    )  # fmt: skip
    maps, segmentation = explained.maps, explained.segmentation
    dice = _dice(segmentation, test.labels)
    _write_volumes(folder, test, tested, segmentation, maps)
    summary = _summarise(explained)
    table = summary_table(summary, _COLUMNS)
    slices = _figure_slices(test, segmentation, maps)
    figures = [("Axial slices through the lesions", "slices.png", slices)]
    elapsed = time.perf_counter() - started
    results = {
        "camscope": camscope.__version__,
        "volume": {"template": TEMPLATE, "shape": list(base.shape), "voxel_mm": 2},
        "training": {
            "volumes": train_volumes,
            "steps": steps,
            "patch": roi,
            "network": network,
            "seconds": train_seconds,
        },
        "lesions": [
            {"centre": list(c), "voxels": int(m.sum())}
            for c, m in zip(test.centres, test.masks, strict=True)
        ],
        "dice": dice,
        "summary": summary,
        "per_lesion": explained.scores,
        "seconds": elapsed,
    }
    write_json(folder / "results.json", results)
    write_figures_and_page(
        folder,
        title="A segmentation network on a real brain volume, explained window by window",
        paragraph=(
            f"A MONAI {title} trained here to segment synthetic lesions in the MNI152 T1 template "
            f"(2 mm), applied window by window ({roi}³ windows, overlap {overlap}) to a copy with "
            f"{lesions} new lesions (Dice {dice:.3f}). Each lesion is a region target; the table "
            "gives, per method, the share of the map's positive mass inside the lesion, the "
            "rank accuracy and how often the map peaks inside, averaged over the lesions."
        ),
        table=table,
        figures=figures,
        seconds=elapsed,
    )
    log(table)
    log(f"segmentation Dice on the new lesions: {dice:.3f}")
    log(f"wrote {folder}: results.json, report.html, *.nii.gz, maps/, figures/ "
        f"({elapsed / 60:.1f} min)")  # fmt: skip
    return results


@dataclass
class _Explained:
    """What explaining every lesion with every method gives."""

    maps: dict[str, np.ndarray]  # method → (lesions, D, H, W)
    scores: dict[str, list[dict[str, float]]]  # method → per lesion
    seconds: dict[str, float]
    layers: dict[str, str]
    segmentation: np.ndarray  # the network's own segmentation (bool)


def _explain_lesions(
    model: torch.nn.Module,
    tested: LoadedImage,
    test: Lesions,
    methods: tuple[str, ...],
    *,
    layer: str | None,
    roi: int,
    overlap: float,
    batch_size: int,
    progress: bool,
    log: Callable[[str], None],
) -> _Explained:
    """Each method over the whole volume window by window, every lesion a region target."""
    targets = [region_target(1, mask) for mask in test.masks]
    maps: dict[str, np.ndarray] = {}
    scores: dict[str, list[dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    layers: dict[str, str] = {}
    segmentation: np.ndarray | None = None
    for method in methods:
        log(f"explaining the {len(targets)} lesions window by window with {method}")
        options: dict[str, Any] = {"steps": 16} if method == "integrated_gradients" else {}
        begin = time.perf_counter()
        result = camscope.explain_scan(
            model,
            tested,
            method=method,
            roi_size=roi,
            overlap=overlap,
            targets=targets,
            batch_size=batch_size,
            layer=layer if get_method(method).needs_layer else None,
            progress=progress,
            **options,
        )
        seconds[method] = time.perf_counter() - begin
        layers[method] = result.layer
        assert result.maps is not None and result.outputs is not None
        maps[method] = result.maps.numpy()
        scores[method] = _scores(maps[method], test)
        if segmentation is None:
            segmentation = result.outputs.max(0).indices.numpy().astype(bool)
    assert segmentation is not None
    return _Explained(maps, scores, seconds, layers, segmentation)


def _write_volumes(
    folder: Path,
    test: Lesions,
    tested: LoadedImage,
    segmentation: np.ndarray,
    maps: dict[str, np.ndarray],
) -> None:
    """The test volume, its lesions, the segmentation and every map as NIfTI, aligned."""
    write_nifti(folder / "volume.nii.gz", test.volume, tested)
    write_nifti(folder / "lesions.nii.gz", test.labels.astype(np.float32), tested)
    write_nifti(folder / "segmentation.nii.gz", segmentation.astype(np.float32), tested)
    for method, values in maps.items():
        write_nifti(folder / "maps" / f"{method}.nii.gz", np.moveaxis(values, 0, -1), tested)


def _summarise(explained: _Explained) -> dict[str, dict[str, Any]]:
    """Per method: the scores averaged over the lesions, its layer and its time."""
    return {
        method: {
            "mass": float(np.mean([r["mass"] for r in rows])),
            "rank": float(np.mean([r["rank"] for r in rows])),
            "peak_inside": float(np.mean([r["peak_inside"] for r in rows])),
            "chance": float(np.mean([r["chance"] for r in rows])),
            "layer": explained.layers[method],
            "seconds": explained.seconds[method],
        }
        for method, rows in explained.scores.items()
    }


#: The summary table's columns: (title, key, format).
_COLUMNS = [
    ("layer", "layer", ""),
    ("mass in lesion", "mass", ".3f"),
    ("rank accuracy", "rank", ".3f"),
    ("peak in lesion", "peak_inside", ".2f"),
    ("chance", "chance", ".5f"),
    ("seconds", "seconds", ".1f"),
]


def _figure_slices(
    lesions: Lesions, segmentation: np.ndarray, maps: dict[str, np.ndarray], *, half: int = 16
) -> bytes:
    """Axial slices through up to three lesions, cropped to ``2·half`` voxels around each."""
    shown = min(len(lesions.masks), 3)
    columns = 1 + len(maps)
    figure, axes = subplots(shown, columns, squeeze=False, figsize=(1.9 * columns, 2.0 * shown))
    for row in range(shown):
        x, y, z = lesions.centres[row]
        box = (slice(max(x - half, 0), x + half), slice(max(y - half, 0), y + half), z)

        def axial(values: np.ndarray, box: tuple = box) -> np.ndarray:
            return np.asarray(values[box]).T[::-1]  # anterior up, as radiologists look

        background = axial(lesions.volume)
        truth = axial(lesions.masks[row])
        predicted = axial(segmentation)
        for column, (title, values) in enumerate([("T1 + lesions", None), *maps.items()]):
            axis = axes[row, column]
            if values is None:
                axis.imshow(background, cmap="gray")
                axis.set_xticks([])
                axis.set_yticks([])
                if predicted.any():
                    axis.contour(predicted, levels=[0.5], colors="yellow", linewidths=0.8)
            else:
                slice_image(axis, axial(values[row]), signed=True, background=background)
            axis.contour(truth, levels=[0.5], colors="lime", linewidths=0.8)
            if row == 0:
                axis.set_title(title, fontsize=8)
        axes[row, 0].set_ylabel(f"lesion {row} (z={z})", fontsize=8)
    figure.suptitle(
        "axial slices around each lesion; green: the lesion explained, yellow: the network's "
        "segmentation\nmaps: evidence for the lesion's region target (red +, blue −)",
        fontsize=8,
    )
    figure.tight_layout()
    return figure_png(figure, dpi=80)
