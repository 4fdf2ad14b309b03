"""ROAD (Rong et al. 2022): remove the most or least relevant positions by noisy linear imputation
and watch the model, in 2D and 3D.

Removing pixels by setting them to a constant leaks the removal pattern to the model (the
"class information leakage" of the paper); noisy linear imputation instead fills each removed
position with the weighted mean of its neighbours, solving one sparse linear system per sample
for all removed positions and all channels at once (LU in 2D; conjugate gradients with an
aggregation multigrid preconditioner in 3D), then adds a little noise.

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
from scipy.linalg import cho_factor, cho_solve
from scipy.sparse import csr_matrix
from scipy.sparse.linalg import splu, spsolve
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
    system, rhs = _system(values, removed, unknown, stencil)
    out[:, unknown] = _solve(system, rhs, unknown, shape).T
    return out.reshape(values.shape)


def _system(
    values: np.ndarray,
    removed: np.ndarray,
    unknown: np.ndarray,
    stencil: list[tuple[tuple[int, ...], float]],
) -> tuple[csr_matrix, np.ndarray]:
    """The system ``A x = rhs`` of one sample's ``unknown`` positions (flat, ascending): row ``i``
    is ``Σ_k w_k (x_i − x_{i+k})`` over the in-frame neighbours ``k``, the known ones moved to
    ``rhs`` ``(n, C)``. Built in compressed rows directly, column indices ascending (neighbours
    taken in the order of their flat offset), on a grid padded by one position so that the
    frame needs no test."""
    shape = removed.shape
    channels = values.shape[0]
    count = len(unknown)
    padded = tuple(n + 2 for n in shape)
    inner = tuple(slice(1, -1) for _ in shape)
    variable = np.full(padded, -2, dtype=np.int64)  # -2: outside the frame, -1: known
    variable[inner] = -1
    variable[inner][removed] = np.arange(count)
    variable = variable.ravel()
    grid = np.zeros((channels, *padded))
    grid[(slice(None), *inner)] = values
    grid = grid.reshape(channels, -1)
    centre = np.ravel_multi_index(tuple(np.stack(np.unravel_index(unknown, shape)) + 1), padded)
    steps = np.cumprod((1, *padded[:0:-1]))[::-1]  # the padded grid's strides, in positions
    entries = sorted([(int(np.dot(o, steps)), w) for o, w in stencil] + [(0, 0.0)])
    columns = np.empty((count, len(entries)), dtype=np.int64)
    data = np.empty((count, len(entries)))
    diagonal = np.zeros(count)
    rhs = np.zeros((count, channels))
    for j, (step, weight) in enumerate(entries):
        if step == 0:
            columns[:, j] = np.arange(count)
            middle = j
            continue
        neighbour = centre + step
        number = variable[neighbour]
        columns[:, j] = number
        data[:, j] = -weight
        diagonal += weight * (number != -2)
        known = np.flatnonzero(number == -1)
        rhs[known] += weight * grid[:, neighbour[known]].T
    data[:, middle] = diagonal
    kept = columns >= 0
    indptr = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(kept.sum(axis=1), out=indptr[1:])
    return csr_matrix((data[kept], columns[kept], indptr), shape=(count, count)), rhs


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
    system: csr_matrix, rhs: np.ndarray, unknown: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """The imputed values ``(n, C)`` of the unknown positions (flat indices into ``shape``).

    The matrix is symmetric positive definite (a weighted graph Laplacian with the known values
    as boundary). In 2D: a sparse LU factorisation in nested dissection order without pivoting
    (stable for this diagonally dominant matrix; the same numbers as the reference
    implementation's ``spsolve`` to rounding, 2× faster than its default ordering). In 3D,
    where LU fills in badly (a 40³ volume takes seconds), conjugate gradients to a relative
    residual of 1e-10, with LU as the fallback: preconditioned by an aggregation multigrid
    V-cycle from :data:`MULTIGRID_FROM` unknowns (about 15 steps at any size, where Jacobi's
    grow with the removed region: 216 for 95 % of 40³), by Jacobi below."""
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
    if system.shape[0] < MULTIGRID_FROM:
        inverse = 1.0 / system.diagonal()
        precondition = inverse.__mul__
        maxiter = 20_000
    else:
        levels, coarsest = _aggregation_hierarchy(
            system, np.stack(np.unravel_index(unknown, shape))
        )
        precondition = functools.partial(_v_cycle, levels, coarsest)
        maxiter = 500
    solution = np.empty_like(rhs)
    for c, column in enumerate(rhs.T):
        answer = _pcg(system, np.ascontiguousarray(column), precondition, maxiter=maxiter)
        solution[:, c] = spsolve(system, column) if answer is None else answer
    return solution


#: Unknowns from which a 3D system is solved with the multigrid preconditioner; below, conjugate
#: gradients with a Jacobi preconditioner converge in under ~100 steps and cost less than the
#: hierarchy's set-up.
MULTIGRID_FROM = 20_000

#: Unknowns at which the hierarchy stops coarsening and factorises the system densely.
_COARSEST = 400


def _aggregation_hierarchy(
    matrix: Any, coords: np.ndarray
) -> tuple[list[tuple[Any, Any, np.ndarray]], tuple[np.ndarray, bool]]:
    """The levels ``(A, P, 1/diag A)`` of an aggregation multigrid and the coarsest system's
    Cholesky factor. Each level groups the unknowns of every 2×2×2 box of the grid into one
    (``P``: which box each unknown is in), and the coarse system is the Galerkin product
    ``Pᵀ A P`` (symmetric positive definite as ``A`` is)."""
    levels = []
    while matrix.shape[0] > _COARSEST:
        boxes = coords // 2
        extent = tuple(int(v) + 1 for v in boxes.max(axis=1))
        key = np.ravel_multi_index(tuple(boxes), extent)
        occupied = np.zeros(int(np.prod(extent)), dtype=bool)
        occupied[key] = True
        number = np.cumsum(occupied) - 1
        box_of = number[key]
        count = int(number[-1]) + 1
        n = matrix.shape[0]
        prolong = csr_matrix((np.ones(n), box_of, np.arange(n + 1)), shape=(n, count))
        coarse = (prolong.T.tocsr() @ (matrix @ prolong)).tocsr()  # Pᵀ A P
        levels.append((matrix, prolong, 1.0 / matrix.diagonal()))
        matrix = coarse
        coords = np.stack(np.unravel_index(np.flatnonzero(occupied), extent))
    return levels, cho_factor(matrix.toarray())


#: Damping of the Jacobi smoother and scaling of the coarse correction (unsmoothed aggregation's
#: correction is too small by about this factor on a Laplacian: Braess 1995, Vaněk et al.).
_DAMPING, _COARSE_SCALE = 0.7, 1.8


def _v_cycle(
    levels: list[tuple[Any, Any, np.ndarray]],
    coarsest: tuple[np.ndarray, bool],
    b: np.ndarray,
    level: int = 0,
) -> np.ndarray:
    """One V-cycle for ``A x = b``: two damped Jacobi steps, the coarse correction, two more
    (symmetric, as conjugate gradients need)."""
    if level == len(levels):
        return cho_solve(coarsest, b)
    matrix, prolong, inverse = levels[level]
    x = _DAMPING * inverse * b
    x += _DAMPING * inverse * (b - matrix @ x)
    x += _COARSE_SCALE * (
        prolong @ _v_cycle(levels, coarsest, prolong.T @ (b - matrix @ x), level + 1)
    )
    for _ in range(2):
        x += _DAMPING * inverse * (b - matrix @ x)
    return x


def _pcg(
    matrix: Any,
    b: np.ndarray,
    precondition: Any,
    rtol: float = 1e-10,
    maxiter: int = 500,
) -> np.ndarray | None:
    """Preconditioned conjugate gradients to ``‖r‖ ≤ rtol ‖b‖``; None if they do not get there.
    Inner products by ``einsum``, not BLAS: a threaded BLAS ``dot`` on vectors of this size costs
    more than it saves whenever the other cores are busy (2× slower ROAD on a shared 2-core
    machine)."""
    x = np.zeros_like(b)
    r = b.copy()
    z = precondition(r)
    p = z.copy()
    rz = _dot(r, z)
    goal = rtol**2 * _dot(b, b)
    for _ in range(maxiter):
        if _dot(r, r) <= goal:
            return x
        q = matrix @ p
        step = rz / _dot(p, q)
        x += step * p
        r -= step * q
        z = precondition(r)
        rz, previous = _dot(r, z), rz
        p *= rz / previous
        p += z
    return x if _dot(r, r) <= goal else None


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.einsum("i,i->", a, b))


def _impute(values: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Every sample of ``values`` ``(N, C, *S)`` with its ``removed`` ``(N, *S)`` positions
    imputed (no noise). The samples' sparse solves run on a thread pool of torch's thread count,
    the largest first (SciPy's factorisations and products and NumPy's arithmetic release the
    GIL: about 1.4× on 2 cores)."""
    stencil = imputation_stencil(values.ndim - 2)
    workers = max(1, min(torch.get_num_threads(), len(values)))
    if workers == 1:
        return np.stack([_impute_one(v, r, stencil) for v, r in zip(values, removed, strict=True)])
    largest_first = np.argsort(-removed.reshape(len(removed), -1).sum(1), kind="stable")
    out = np.empty_like(values)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="camscope-road") as pool:
        done = pool.map(lambda i: _impute_one(values[i], removed[i], stencil), largest_first)
        for i, imputed in zip(largest_first, done, strict=True):
            out[i] = imputed
    return out


def _add_noise(imputed: torch.Tensor, mask: torch.Tensor, noise: float, seed: int) -> torch.Tensor:
    """``noise · N(0, 1)`` added in place to the imputed positions, seeded by each sample's
    position in the batch (``seed + b``): sample ``b``'s noise does not depend on the other
    samples, and the same call gives the same result."""
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
    ``noise · N(0, 1)`` is added to the imputed values (seeded by the sample's position in the
    batch, ``seed + b``: not by the other samples).

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
        percentages=torch.tensor([float(p) for p in percentages], dtype=torch.float64),
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
