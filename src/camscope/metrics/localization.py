"""Weakly supervised localisation and the pointing game, in 2D and 3D.

Boxes are half-open pixel index ranges: ``(y0, x0, y1, x1)`` in 2D and ``(z0, y0, x0, z1, y1, x1)``
in 3D, shape ``(B, 2·n)``. Boolean masks ``(B, *S)`` are accepted wherever boxes are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from camscope.errors import InputError
from camscope.metrics._shapes import one_map_per_sample

__all__ = [
    "LocalizationResult",
    "PointingResult",
    "RelevanceResult",
    "attribution_localisation",
    "auc",
    "energy_pointing_game",
    "focus",
    "localization",
    "mosaics",
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "top_k_intersection",
]


@dataclass(frozen=True)
class LocalizationResult:
    """Per-sample localisation.

    Attributes:
        iou: ``(B,)`` intersection over union with the ground truth.
        hit: ``(B,)`` whether the IoU passes the hit rule.
        boxes: ``(B, 2·n)`` the predicted boxes (half-open).
    """

    iou: torch.Tensor
    hit: torch.Tensor
    boxes: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Mean IoU, hit rate and localisation error (1 − hit rate)."""
        rate = float(self.hit.double().mean())
        return {"iou": float(self.iou.double().mean()), "hit_rate": rate, "error": 1 - rate}


@dataclass(frozen=True)
class PointingResult:
    """Per-sample pointing-game hits and the arg-max positions ``(B, n)``."""

    hit: torch.Tensor
    points: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Accuracy = hits / (hits + misses)."""
        return {"accuracy": float(self.hit.double().mean())}


def _as_numpy_maps(saliency: Any, truth: Any) -> np.ndarray:
    """``(B, *S)`` float64 maps from a tensor, ``(B, 1, *S)`` or an Explanation."""
    if isinstance(truth, torch.Tensor) and truth.ndim == 2 and truth.shape[1] not in (4, 6):
        raise InputError(
            f"boxes must be (B, 4) as (y0, x0, y1, x1) or (B, 6) as (z0, y0, x0, z1, y1, x1), "
            f"got shape {tuple(truth.shape)}; masks are (B, H, W) or (B, D, H, W)"
        )
    if isinstance(truth, torch.Tensor) and truth.ndim >= 2:
        boxes = truth.ndim == 2 and truth.shape[1] in (4, 6) and truth.dtype != torch.bool
        if boxes or truth.ndim >= 3:  # valid boxes, or masks: their number of axes is known
            axes = truth.shape[1] // 2 if boxes else truth.ndim - 1
            saliency, _ = one_map_per_sample(saliency, None, spatial_dims=axes)
    if not isinstance(saliency, torch.Tensor) or saliency.ndim not in (3, 4):
        shape = tuple(saliency.shape) if isinstance(saliency, torch.Tensor) else type(saliency)
        raise InputError(f"saliency must be (B, H, W) or (B, D, H, W), got {shape}")
    values = saliency.detach().double().cpu().numpy()
    if not np.isfinite(values).all():
        raise InputError("saliency contains NaN or infinite values")
    return values


def _truth_masks(truth: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean ``(B, *S)`` masks from boxes ``(B, 2n)`` or masks."""
    batch, spatial = shape[0], shape[1:]
    axes = len(spatial)
    if truth.ndim > 2 and truth.dtype != torch.bool:  # a mask given as numbers: non-zero inside
        truth = truth != 0
    if truth.dtype == torch.bool:
        if tuple(truth.shape) != shape:
            raise InputError(f"masks of shape {tuple(truth.shape)} do not match saliency {shape}")
        return truth.cpu().numpy()
    if tuple(truth.shape) != (batch, 2 * axes):
        raise InputError(
            f"boxes must be (B, {2 * axes}) = (start…, stop…) half-open indices for {axes}D maps, "
            f"got {tuple(truth.shape)}"
        )
    boxes = truth.long().cpu().numpy()
    masks = np.zeros(shape, dtype=bool)
    for b in range(batch):
        start, stop = boxes[b, :axes], boxes[b, axes:]
        if np.any(stop <= start) or np.any(start < 0) or np.any(stop > np.array(spatial)):
            raise InputError(f"box {boxes[b].tolist()} is empty or outside the map {spatial}")
        region: tuple[int | slice, ...] = (
            b,
            *[slice(s, e) for s, e in zip(start, stop, strict=True)],
        )
        masks[region] = True
    return masks


def _bounding_box(mask: np.ndarray) -> np.ndarray:
    indices = np.nonzero(mask)
    start = [int(axis.min()) for axis in indices]
    stop = [int(axis.max()) + 1 for axis in indices]
    return np.array(start + stop)


def localization(
    saliency: Any,
    boxes: torch.Tensor,
    *,
    threshold: float = 0.15,
    small_box_rule: bool = False,
) -> LocalizationResult:
    """Box localisation from a saliency map (Selvaraju et al.; as Nagy, Nimara & Qian reproduce it).

    Each map is min-max scaled, thresholded at ``threshold`` of its maximum, its largest connected
    component kept (8-connected in 2D, 26 in 3D) and boxed. With a box as ground truth the IoU is
    between the boxes; with a mask, between the component and the mask. A hit has IoU ≥ 0.5, or
    with ``small_box_rule`` IoU ≥ ``min(0.5, Π s_d / Π (s_d + 10))`` for a ground-truth box of
    sides ``s_d`` (the reproduction's rule for small objects).

    Args:
        saliency: ``(B, *S)`` maps at input resolution (any sign; raw maps are fine).
        boxes: ``(B, 2·n)`` half-open boxes, or boolean masks ``(B, *S)``.
        threshold: fraction of the maximum kept.
        small_box_rule: use the small-object hit rule.

    Raises:
        InputError: shapes that do not match, empty boxes, NaN maps.
    """
    values = _as_numpy_maps(saliency, boxes)
    truth_is_mask = boxes.dtype == torch.bool
    truth = _truth_masks(boxes, values.shape)
    axes = values.ndim - 1
    structure = np.ones((3,) * axes, dtype=bool)
    ious, hits, predicted = [], [], []
    for b in range(values.shape[0]):
        low, high = values[b].min(), values[b].max()
        scaled = (values[b] - low) / (high - low) if high > low else np.zeros_like(values[b])
        binary = scaled >= threshold if high > low else np.ones_like(scaled, dtype=bool)
        labels, count = ndimage.label(binary, structure=structure)
        sizes = np.bincount(labels.ravel())[1:]
        component = labels == (int(np.argmax(sizes)) + 1) if count else binary
        box = _bounding_box(component)
        predicted.append(box)
        if truth_is_mask:
            region = component
            reference = truth[b]
        else:
            region = np.zeros_like(truth[b])
            region[tuple(slice(s, e) for s, e in zip(box[:axes], box[axes:], strict=True))] = True
            reference = truth[b]
        union = np.logical_or(region, reference).sum()
        iou = float(np.logical_and(region, reference).sum() / union) if union else 0.0
        needed = 0.5
        if small_box_rule and not truth_is_mask:
            sides = (boxes[b, axes:] - boxes[b, :axes]).double().numpy()
            needed = min(0.5, float(np.prod(sides) / np.prod(sides + 10)))
        ious.append(iou)
        hits.append(iou >= needed)
    return LocalizationResult(
        iou=torch.tensor(ious, dtype=torch.float64),
        hit=torch.tensor(hits),
        boxes=torch.from_numpy(np.stack(predicted)),
    )


def pointing_game(saliency: Any, boxes: torch.Tensor, *, tolerance: float = 0.0) -> PointingResult:
    """Does the map's arg-max fall in the ground truth (within ``tolerance`` pixels)?

    Args:
        saliency: ``(B, *S)`` maps at input resolution.
        boxes: ``(B, 2·n)`` half-open boxes, or boolean masks ``(B, *S)``.
        tolerance: Euclidean distance in pixels still counted as a hit (15 in the original paper,
            0 in the reproduction).
    """
    values = _as_numpy_maps(saliency, boxes)
    truth = _truth_masks(boxes, values.shape)
    hits, points = [], []
    for b in range(values.shape[0]):
        point = np.unravel_index(int(np.argmax(values[b])), values[b].shape)
        points.append(point)
        if truth[b][point]:
            hits.append(True)
            continue
        if tolerance <= 0:
            hits.append(False)
            continue
        distance = ndimage.distance_transform_edt(~truth[b])[point]
        hits.append(bool(distance <= tolerance))
    return PointingResult(hit=torch.tensor(hits), points=torch.tensor(np.array(points)))


@dataclass(frozen=True)
class RelevanceResult:
    """Per-sample values ``(B,)`` in [0, 1] (NaN for an empty ground truth); higher is better."""

    values: torch.Tensor

    def summary(self) -> dict[str, float]:
        """The mean over the samples whose value is finite."""
        finite = self.values[torch.isfinite(self.values)]
        return {"mean": float(finite.double().mean()) if len(finite) else float("nan")}


def _flat(saliency: Any, truth: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    values = _as_numpy_maps(saliency, truth)
    masks = _truth_masks(truth, values.shape)
    return values.reshape(len(values), -1), masks.reshape(len(masks), -1)


def relevance_mass_accuracy(saliency: Any, masks: torch.Tensor) -> RelevanceResult:
    """Relevance mass accuracy (Arras et al. 2022): the share of the map's total inside the ground
    truth, ``Σ_{s ∈ mask} R_s / Σ_s R_s``, on the map as given (pass ``relu(maps)`` to count
    positive evidence only, as the paper does).

    Args:
        saliency: ``(B, *S)`` maps at input resolution (or ``(B, 1, *S)``, an Explanation).
        masks: boolean ``(B, *S)`` ground truth, or boxes ``(B, 2·n)``.
    """
    values, inside = _flat(saliency, masks)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (values * inside).sum(1) / values.sum(1)
    share[inside.sum(1) == 0] = np.nan
    return RelevanceResult(torch.from_numpy(share))


def relevance_rank_accuracy(saliency: Any, masks: torch.Tensor) -> RelevanceResult:
    """Relevance rank accuracy (Arras et al. 2022): with ``K`` the ground truth's size, the share
    of the ``K`` highest-ranked positions that fall inside it.

    Args:
        saliency: ``(B, *S)`` maps at input resolution (or ``(B, 1, *S)``, an Explanation).
        masks: boolean ``(B, *S)`` ground truth, or boxes ``(B, 2·n)``.
    """
    values, inside = _flat(saliency, masks)
    order = np.argsort(-values, axis=1, kind="stable")
    ranked = np.take_along_axis(inside, order, axis=1)
    size = inside.sum(1)
    top = np.arange(values.shape[1])[None, :] < size[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = (ranked & top).sum(1) / size
    accuracy = accuracy.astype(np.float64)
    accuracy[size == 0] = np.nan
    return RelevanceResult(torch.from_numpy(accuracy))


def energy_pointing_game(saliency: Any, boxes: torch.Tensor) -> RelevanceResult:
    """Energy-based pointing game (Wang et al. 2020, Score-CAM): the share of the positive
    evidence that falls inside the ground truth, ``Σ_{box} max(L, 0) / Σ max(L, 0)``.

    Args:
        saliency: ``(B, *S)`` maps at input resolution (or ``(B, 1, *S)``, an Explanation).
        boxes: ``(B, 2·n)`` half-open boxes, or boolean masks ``(B, *S)``.
    """
    values, inside = _flat(saliency, boxes)
    positive = np.maximum(values, 0.0)
    total = positive.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, (positive * inside).sum(1) / total, 0.0)
    return RelevanceResult(torch.from_numpy(share))


def top_k_intersection(saliency: Any, masks: torch.Tensor, *, k: int = 1000) -> RelevanceResult:
    """Top-k intersection (Theiner et al. 2021): the share of the ``k`` highest-valued positions
    that fall inside the ground truth (Quantus's default ``k = 1000``; ties broken by position).

    Args:
        saliency: ``(B, *S)`` maps at input resolution (or ``(B, 1, *S)``, an Explanation).
        masks: boolean ``(B, *S)`` ground truth, or boxes ``(B, 2·n)``.
        k: how many positions (at most the map's size).

    Raises:
        InputError: ``k`` not in ``1..N``.
    """
    values, inside = _flat(saliency, masks)
    if not 1 <= int(k) <= values.shape[1]:
        raise InputError(f"k must be in 1..{values.shape[1]} (the map's size), got {k}")
    order = np.argsort(-values, axis=1, kind="stable")[:, : int(k)]
    share = np.take_along_axis(inside, order, axis=1).mean(1).astype(np.float64)
    share[inside.sum(1) == 0] = np.nan
    return RelevanceResult(torch.from_numpy(share))


def auc(saliency: Any, masks: torch.Tensor) -> RelevanceResult:
    """Area under the ROC curve of the map as a detector of the ground truth (Fawcett 2006): the
    chance that a random position inside it outscores a random one outside (ties count ½;
    equal to scikit-learn's ``roc_curve`` + ``auc`` that Quantus uses). 0.5 is chance.

    Args:
        saliency: ``(B, *S)`` maps at input resolution (or ``(B, 1, *S)``, an Explanation).
        masks: boolean ``(B, *S)`` ground truth, or boxes ``(B, 2·n)``.
    """
    from scipy.stats import rankdata

    values, inside = _flat(saliency, masks)
    ranks = rankdata(values, axis=1)  # average ranks: ties share
    positives = inside.sum(1).astype(np.float64)
    negatives = inside.shape[1] - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        area = ((ranks * inside).sum(1) - positives * (positives + 1) / 2) / (positives * negatives)
    area[(positives == 0) | (negatives == 0)] = np.nan
    return RelevanceResult(torch.from_numpy(area))


def attribution_localisation(
    saliency: Any, masks: torch.Tensor, *, weighted: bool = False
) -> RelevanceResult:
    """Attribution localisation (Kohlbrenner et al. 2020): the share of the absolute attribution
    inside the ground truth, ``Σ_{mask} |a| / Σ |a|`` (Quantus: ``abs=True``); ``weighted``
    multiplies it by the mask's share of the positions (Quantus's option). Quantus 0.6 computes
    that share from ``x_batch[2:].size``, the size of all samples but the first two; camscope
    uses the map's own number of positions.

    Args:
        saliency: ``(B, *S)`` maps at input resolution (or ``(B, 1, *S)``, an Explanation).
        masks: boolean ``(B, *S)`` ground truth, or boxes ``(B, 2·n)``.
        weighted: weigh by the mask's size.
    """
    values, inside = _flat(saliency, masks)
    magnitude = np.abs(values)
    share = (magnitude * inside).sum(1) / (magnitude.sum(1) + 1e-9)
    if weighted:
        share = share * inside.sum(1) / inside.shape[1]
    share = share.astype(np.float64)
    share[inside.sum(1) == 0] = np.nan
    return RelevanceResult(torch.from_numpy(share))


def tile_masks(tiles: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean masks ``(B, *S)`` of the flagged tiles of a mosaic: ``tiles`` ``(B, 2**d)`` in
    row-major order of the halves (2D: top-left, top-right, bottom-left, bottom-right)."""
    flags = np.asarray(tiles, dtype=bool)
    dims = len(shape) - 1
    if flags.shape != (shape[0], 2**dims):
        raise InputError(
            f"tiles must be (B, {2**dims}) flags, one per tile of a {dims}D mosaic, got "
            f"{flags.shape}"
        )
    halves = [np.arange(side) >= side // 2 for side in shape[1:]]
    index = np.zeros(shape[1:], dtype=np.int64)
    for axis, half in enumerate(halves):
        view = [1] * dims
        view[axis] = -1
        index = index * 2 + half.reshape(view)
    return flags[:, index]


def focus(saliency: Any, tiles: Any) -> RelevanceResult:
    """Focus (Arias-Duart et al. 2022) on mosaics: the share of the map's positive relevance
    that falls on the tiles showing the target class, ``Σ_{tiles} max(R, 0) / Σ max(R, 0)``.
    A mosaic is 2 × 2 images (2 × 2 × 2 volumes in 3D), made by :func:`mosaics`. Equal to
    Quantus's ``Focus``. 1 is best.

    Args:
        saliency: ``(B, *S)`` maps of the mosaics at input resolution (or an Explanation).
        tiles: ``(B, 2**d)`` flags of the tiles of the target class, in row-major order.
    """
    values = _as_numpy_maps(saliency, torch.zeros(1))
    inside = tile_masks(tiles, values.shape)
    positive = np.maximum(values, 0.0).reshape(len(values), -1)
    total = positive.sum(1)
    share = (positive * inside.reshape(len(values), -1)).sum(1) / (total + 1e-9)
    return RelevanceResult(torch.from_numpy(share.astype(np.float64)))


def mosaics(
    inputs: torch.Tensor, labels: Any, target: int, *, count: int = 8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mosaics for :func:`focus`: each puts ``2**(d-1)`` inputs of class ``target`` and as many
    of other classes on a ``2 × 2`` (``2 × 2 × 2``) grid at random places (seeded); the mosaic
    is twice the inputs' size on each axis.

    Args:
        inputs: ``(N, C, *S)`` the pool of inputs.
        labels: ``(N,)`` their classes.
        target: the class the mosaics are explained for.
        count: mosaics to make.
        seed: seed of the draws.

    Returns:
        Mosaics ``(count, C, *2S)`` and their tile flags ``(count, 2**d)``.
    """
    labels = torch.as_tensor(labels).reshape(-1)
    if not isinstance(inputs, torch.Tensor) or inputs.ndim not in (4, 5):
        raise InputError("inputs must be a (N, C, H, W) or (N, C, D, H, W) tensor")
    dims = inputs.ndim - 2
    tiles, half = 2**dims, 2 ** (dims - 1)
    own = torch.nonzero(labels == target).flatten()
    other = torch.nonzero(labels != target).flatten()
    if len(own) < 1 or len(other) < 1:
        raise InputError(
            f"mosaics need inputs of class {target} and of other classes; got {len(own)} and "
            f"{len(other)}"
        )
    generator = torch.Generator().manual_seed(seed)
    made, flags = [], []
    for _ in range(int(count)):
        chosen = torch.cat(
            [
                own[torch.randint(len(own), (half,), generator=generator)],
                other[torch.randint(len(other), (tiles - half,), generator=generator)],
            ]
        )
        order = torch.randperm(tiles, generator=generator)
        picked = inputs[chosen[order]]  # (tiles, C, *S) in row-major tile order
        grid = picked.view(*(2,) * dims, *inputs.shape[1:])  # (2, …, 2, C, *S)
        axes = [dims] + [a for axis in range(dims) for a in (axis, dims + 1 + axis)]
        size = [2 * side for side in inputs.shape[2:]]
        grid = grid.permute(*axes).reshape(inputs.shape[1], *size)
        made.append(grid)
        flags.append(order < half)
    return torch.stack(made), torch.stack(flags)
