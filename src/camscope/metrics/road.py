"""ROAD (Rong et al. 2022): remove the most or least relevant positions by noisy linear imputation
and watch the model, in 2D and 3D.

Removing pixels by setting them to a constant leaks the removal pattern to the model (the
"class information leakage" of the paper); noisy linear imputation instead fills each removed
position with the weighted mean of its neighbours, solving one sparse linear system per sample
for all removed positions and all channels at once (LU in 2D; conjugate gradients in 3D), then
adds a little noise.

Stencil: the neighbours within one step on every axis, weighted in proportion to
``1 / distance²`` and normalised to sum 1. In 2D this gives the paper's weights exactly (1/6 for
the 4 edge neighbours, 1/12 for the 4 diagonal ones); in 3D the 26 neighbours get 3/44 (6 faces),
3/88 (12 edges) and 1/44 (8 corners). Neighbours outside the frame are left out and the weights of
the others renormalised. The imputed field is exact on linear fields away from the frame.

References:
    Rong, Leemann, Borisov, Kasneci, Kasneci, "A Consistent and Efficient Evaluation Strategy
    for Attribution Methods", ICML 2022.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from scipy.sparse import csc_matrix, diags
from scipy.sparse.linalg import cg, splu, spsolve
from torch import nn

from camscope.engine import any_model
from camscope.errors import InputError
from camscope.metrics._stats import mean_std
from camscope.metrics.faithfulness import _check, _input_maps, target_outputs

__all__ = ["RoadResult", "imputation_stencil", "noisy_linear_imputation", "road"]


def imputation_stencil(spatial_dims: int) -> list[tuple[tuple[int, ...], float]]:
    """``(offset, weight)`` pairs of the neighbours within one step, weights ∝ 1/distance²,
    summing to 1."""
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=spatial_dims) if any(o)]
    raw = [1.0 / sum(v * v for v in o) for o in offsets]
    total = sum(raw)
    return [(o, w / total) for o, w in zip(offsets, raw, strict=True)]


def _impute_one(
    values: np.ndarray, removed: np.ndarray, stencil: list[tuple[tuple[int, ...], float]]
) -> np.ndarray:
    """One sample ``(C, *S)``: the removed positions ``(*S)`` solved from their neighbours."""
    shape = removed.shape
    flat_values = values.reshape(values.shape[0], -1)
    unknown = np.flatnonzero(removed)
    count = len(unknown)
    out = flat_values.copy()
    if count == 0:
        return out.reshape(values.shape)
    if count == removed.size:  # nothing known anywhere: nothing to interpolate from
        out[:] = 0.0
        return out.reshape(values.shape)
    variable = np.full(removed.size, -1, dtype=np.int64)
    variable[unknown] = np.arange(count)
    coords = np.stack(np.unravel_index(unknown, shape))  # (d, n)
    extent = np.asarray(shape)[:, None]
    diagonal = np.zeros(count)
    rhs = np.zeros((count, values.shape[0]))
    rows, cols, weights = [], [], []
    for offset, weight in stencil:
        neighbour = coords + np.asarray(offset)[:, None]
        inside = np.all((neighbour >= 0) & (neighbour < extent), axis=0)
        ids = np.flatnonzero(inside)
        flat = np.ravel_multi_index(tuple(neighbour[:, inside]), shape)
        diagonal[ids] += weight
        is_unknown = variable[flat] >= 0
        rows.append(ids[is_unknown])
        cols.append(variable[flat[is_unknown]])
        weights.append(np.full(int(is_unknown.sum()), -weight))
        known = ~is_unknown
        rhs[ids[known]] += weight * flat_values[:, flat[known]].T
    rows.append(np.arange(count))
    cols.append(np.arange(count))
    weights.append(diagonal)
    system = csc_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
        shape=(count, count),
    )
    out[:, unknown] = _solve(system, rhs, unknown, shape).T
    return out.reshape(values.shape)


@functools.lru_cache(maxsize=8)
def _dissection_rank(shape: tuple[int, ...]) -> np.ndarray:
    """The rank of every grid position in a nested dissection order (flat, ``prod(shape)``):
    split the box across its longest axis, number the two halves (recursively) before the
    separating row. For a grid stencil this ordering keeps the LU factors' fill near its
    minimum (about ``n log n`` in 2D)."""
    rank = np.empty(shape, dtype=np.int64)
    counter = 0
    pending = [("box", tuple(slice(0, n) for n in shape))]
    while pending:  # depth first, children before their separator
        kind, box = pending.pop()
        sizes = [part.stop - part.start for part in box]
        if kind == "box" and max(sizes) > 4 and min(sizes) > 0:
            axis = int(np.argmax(sizes))
            middle = box[axis].start + sizes[axis] // 2
            halves = [
                tuple(slice(a, b) if i == axis else part for i, part in enumerate(box))
                for a, b in ((box[axis].start, middle), (middle + 1, box[axis].stop))
            ]
            separator = tuple(
                slice(middle, middle + 1) if i == axis else part for i, part in enumerate(box)
            )
            pending += [("leaf", separator), ("box", halves[1]), ("box", halves[0])]
            continue
        count = int(np.prod(sizes))
        rank[box] = np.arange(counter, counter + count).reshape(sizes)
        counter += count
    rank = rank.ravel()
    rank.flags.writeable = False  # shared by every call (cached)
    return rank


def _solve(
    system: csc_matrix, rhs: np.ndarray, unknown: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """The imputed values ``(n, C)`` of the unknown positions (flat indices into ``shape``).

    The matrix is symmetric positive definite (a weighted graph Laplacian with the known values
    as boundary). In 2D: a sparse LU factorisation in nested dissection order without pivoting
    (stable for this diagonally dominant matrix; the same numbers as the reference
    implementation's ``spsolve`` to rounding, 2× faster than its default ordering). In 3D,
    where LU fills in badly (a 40³ volume takes seconds), conjugate gradients with a Jacobi
    preconditioner to a relative residual of 1e-10, with LU as the fallback."""
    if len(shape) < 3:
        order = np.argsort(_dissection_rank(shape)[unknown], kind="stable")
        permuted = system[order][:, order].tocsc()
        factors = splu(
            permuted,
            permc_spec="NATURAL",
            diag_pivot_thresh=0.0,
            options={"SymmetricMode": True},
        )
        solution = np.empty_like(rhs)
        solution[order] = factors.solve(np.ascontiguousarray(rhs[order]))
        return solution
    matrix = system.tocsr()
    preconditioner = diags(1.0 / matrix.diagonal())
    columns = []
    for column in rhs.T:
        answer, info = cg(matrix, column, rtol=1e-10, M=preconditioner, maxiter=20_000)
        if info != 0:  # did not converge: solve exactly
            answer = spsolve(system, column)
        columns.append(answer)
    return np.stack(columns, axis=1)


def _impute(values: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Every sample of ``values`` ``(N, C, *S)`` with its ``removed`` ``(N, *S)`` positions
    imputed (no noise). In 2D the samples' sparse solves run on a thread pool of torch's thread
    count (the LU factorisation releases the GIL: about 1.4× on 2 cores); 3D's conjugate gradients
    hold it, and run one after the other."""
    stencil = imputation_stencil(values.ndim - 2)
    workers = max(1, min(torch.get_num_threads(), len(values)))
    if workers == 1 or values.ndim > 4:
        return np.stack([_impute_one(v, r, stencil) for v, r in zip(values, removed, strict=True)])
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="camscope-road") as pool:
        return np.stack(list(pool.map(lambda v, r: _impute_one(v, r, stencil), values, removed)))


def _add_noise(imputed: torch.Tensor, mask: torch.Tensor, noise: float, seed: int) -> torch.Tensor:
    """``noise · N(0, 1)`` added in place to the imputed positions, seeded per sample (``seed +
    b``) so that a sample's result does not depend on its batch."""
    if noise > 0:
        for b in range(len(imputed)):
            generator = torch.Generator().manual_seed(int(seed) + b)
            draws = torch.randn(imputed[b].shape, generator=generator, dtype=imputed.dtype)
            imputed[b] += noise * draws.to(imputed.device) * mask[b].to(imputed.dtype)
    return imputed


def noisy_linear_imputation(
    x: torch.Tensor, mask: torch.Tensor, *, noise: float = 0.01, seed: int = 0
) -> torch.Tensor:
    """Fill the masked positions of each sample from their neighbours, plus Gaussian noise.

    Every removed position becomes the weighted mean of its in-frame neighbours (removed ones
    included, hence one sparse linear system per sample, solved for all channels at once); then
    ``noise · N(0, 1)`` is added to the imputed values (seeded per sample, so a sample's result
    does not depend on its batch).

    Args:
        x: ``(B, C, *S)`` inputs, 2D or 3D, floating point.
        mask: ``(B, *S)`` (or ``(B, 1, *S)``) booleans, True where a value is removed and
            imputed. A sample whose every position is removed has nothing to interpolate from:
            it becomes zeros (plus the noise).
        noise: standard deviation of the added noise (0: none).
        seed: seed of the noise.

    Returns:
        A new tensor like ``x``.

    Raises:
        InputError: shapes that do not match, a mask that is not boolean, inputs that are not
            floating point, a negative noise.
    """
    if not x.is_floating_point():
        raise InputError(f"x must be floating point, got {x.dtype}; convert with x.float()")
    if noise < 0:
        raise InputError(f"noise must be non-negative, got {noise}")
    if mask.ndim == x.ndim and mask.shape[1] == 1:
        mask = mask[:, 0]
    if x.ndim not in (4, 5) or mask.shape != (x.shape[0], *x.shape[2:]):
        raise InputError(
            f"x must be (B, C, *S) and mask (B, *S) of the same B and S, got {tuple(x.shape)} "
            f"and {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise InputError(f"mask must be boolean (True = impute), not {mask.dtype}")
    imputed = _impute(x.detach().cpu().double().numpy(), mask.detach().cpu().numpy())
    result = torch.from_numpy(imputed).to(dtype=x.dtype, device=x.device)
    return _add_noise(result, mask, noise, seed)


@dataclass(frozen=True)
class RoadResult:
    """ROAD curves and their areas.

    Attributes:
        percentages: ``(P,)`` the share of positions removed (0–100).
        morf_accuracy, lerf_accuracy: ``(B, P)`` 1 where the model still predicts the target
            after removing the most (MoRF) or least (LeRF) relevant positions.
        morf_probability, lerf_probability: ``(B, P)`` the target's softmax probability.
        morf_area, lerf_area: ``(B,)`` mean probability over the percentages (lower MoRF and
            higher LeRF: a more faithful map).
        gap: ``(B,)`` ``lerf_area − morf_area`` (higher is better; the paper's consistent score).
    """

    percentages: torch.Tensor
    morf_accuracy: torch.Tensor
    lerf_accuracy: torch.Tensor
    morf_probability: torch.Tensor
    lerf_probability: torch.Tensor
    morf_area: torch.Tensor
    lerf_area: torch.Tensor
    gap: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation over the samples."""
        out: dict[str, float] = {}
        for name in ("morf_area", "lerf_area", "gap"):
            out[name], out[f"{name}_std"] = mean_std(getattr(self, name))
        return out


def _removal_masks(
    order: torch.Tensor, percentages: Sequence[float], shape: tuple[int, ...]
) -> torch.Tensor:
    """``(P, B, *S)`` masks of the first ``int(Z · p / 100)`` positions in ``order``."""
    batch, positions = order.shape
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(positions).expand(batch, positions).contiguous())
    counts = torch.tensor([int(positions * p / 100) for p in percentages])
    return (rank[None] < counts[:, None, None]).view(len(percentages), batch, *shape)


@any_model
def road(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: Any,
    targets: Any = None,
    *,
    percentages: Sequence[float] = tuple(range(10, 100, 10)),
    noise: float = 0.01,
    seed: int = 0,
    batch_size: int = 32,
    order: Literal["both", "morf", "lerf"] = "both",
) -> RoadResult:
    """ROAD: MoRF and LeRF curves under noisy linear imputation, in 2D and 3D.

    The map (upsampled linearly to the input when it is coarser) ranks the positions; for every
    percentage ``p`` the top (MoRF) or bottom (LeRF) ``int(Z · p / 100)`` positions of ``Z`` are
    imputed in every channel (:func:`noisy_linear_imputation`) and the model is asked again. All
    perturbed inputs of all samples and percentages go through the model in batches.

    Args:
        model: the classifier (eval mode, restored afterwards).
        inputs: ``(B, C, *S)``.
        maps: ``(B, *s)`` one map per sample, ``(B, 1, *s)``, or an Explanation.
        targets: ``(B,)`` classes (``None`` with an Explanation: its targets).
        percentages: shares of positions removed, 0–100 (Quantus: ``range(1, 100, 2)``).
        noise: the imputation's noise.
        seed: the imputation's seed.
        batch_size: perturbed inputs per forward pass.
        order: compute ``"both"`` curves, or only ``"morf"`` / ``"lerf"`` (the other is NaN).
    """
    if any(not 0 <= float(p) <= 100 for p in percentages) or not percentages:
        raise InputError(f"percentages must lie in 0–100, got {list(percentages)}")
    if noise < 0:
        raise InputError(f"noise must be non-negative, got {noise}")
    if order not in ("both", "morf", "lerf"):
        raise InputError(f"order must be 'both', 'morf' or 'lerf', not {order!r}")
    size, maps, targets = _check(inputs, maps, targets)
    values = _input_maps(maps, size).flatten(1)
    batch = len(targets)
    plain = inputs.detach().cpu().double().numpy()
    nan = torch.full((batch, len(percentages)), float("nan"), dtype=torch.float64)
    curves: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for kind in ("morf", "lerf"):
        if order not in ("both", kind):
            curves[kind] = (nan, nan)
            continue
        ranking = values.argsort(dim=1, descending=kind == "morf", stable=True)
        masks = _removal_masks(ranking, percentages, size)  # (P, B, *S)
        # Every percentage's systems in one pool of solves, then each percentage's noise.
        stacked = np.broadcast_to(plain, (len(percentages), *plain.shape))
        imputed = _impute(stacked.reshape(-1, *plain.shape[1:]), masks.flatten(0, 1).numpy())
        perturbed = torch.from_numpy(imputed).to(inputs.dtype).view(len(percentages), *plain.shape)
        for p in range(len(percentages)):
            _add_noise(perturbed[p], masks[p], noise, seed + 7919 * p)
        perturbed = perturbed.flatten(0, 1).to(inputs.device)  # (P·B, C, *S)
        probability, predicted = _predict(
            model, perturbed, targets.repeat(len(percentages)), batch_size
        )
        shape = (len(percentages), batch)
        curves[kind] = (
            (predicted == targets.repeat(len(percentages))).view(shape).T.double(),
            probability.view(shape).T.double(),
        )
    morf_area = curves["morf"][1].mean(dim=1)
    lerf_area = curves["lerf"][1].mean(dim=1)
    return RoadResult(
        percentages=torch.tensor([float(p) for p in percentages]),
        morf_accuracy=curves["morf"][0],
        lerf_accuracy=curves["lerf"][0],
        morf_probability=curves["morf"][1],
        lerf_probability=curves["lerf"][1],
        morf_area=morf_area,
        lerf_area=lerf_area,
        gap=lerf_area - morf_area,
    )


def _predict(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target probabilities and predicted classes of ``inputs`` (row ``i`` ↔ ``targets[i]``)."""
    return target_outputs(model, inputs, targets, batch_size=batch_size)
