"""Explicit post-processing of raw maps: ReLU, normalisation, upsampling.

Maps are ``(B, T, *s)``: batch, targets, then 1–3 spatial axes. Every function returns a new tensor
and never changes its input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from camscope.errors import InputError

__all__ = [
    "gaussian_upsampling_matrix",
    "linear_upsampling_matrix",
    "normalize",
    "relu",
    "separable_apply",
    "upsample",
]

NormalizeKind = Literal["minmax", "maxabs", "none"]
UpsampleMode = Literal["nearest", "linear", "gaussian"]


def _check_maps(maps: torch.Tensor) -> int:
    if not isinstance(maps, torch.Tensor):
        raise InputError(f"maps must be a tensor (B, T, *s), not {type(maps).__name__}")
    if maps.ndim < 3:
        raise InputError(
            f"maps must be (B, T, *s) with at least one spatial axis, got {tuple(maps.shape)}"
        )
    return maps.ndim - 2


def relu(maps: torch.Tensor) -> torch.Tensor:
    """Keep the positive evidence: ``max(maps, 0)``, a new tensor."""
    _check_maps(maps)
    return torch.relu(maps)


def normalize(maps: torch.Tensor, *, kind: NormalizeKind = "minmax") -> torch.Tensor:
    """Scale each map (per sample and target) for display or thresholding.

    Args:
        maps: ``(B, T, *s)``.
        kind: ``"minmax"`` → ``[0, 1]`` (a constant map becomes 0); ``"maxabs"`` → ``[-1, 1]``
            keeping the sign and zero (for signed maps); ``"none"`` → an unchanged copy.

    Returns:
        A new tensor of the same shape.

    Raises:
        InputError: unknown ``kind`` or malformed maps.
    """
    spatial_dims = _check_maps(maps)
    axes = tuple(range(-spatial_dims, 0))
    if kind == "none":
        return maps.clone()
    if kind == "minmax":
        low = maps.amin(dim=axes, keepdim=True)
        span = maps.amax(dim=axes, keepdim=True) - low
        safe = torch.where(span > 0, span, torch.ones_like(span))
        return torch.where(span > 0, (maps - low) / safe, torch.zeros_like(maps))
    if kind == "maxabs":
        scale = maps.abs().amax(dim=axes, keepdim=True)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        return maps / safe
    raise InputError(f"normalize kind {kind!r} unknown; use 'minmax', 'maxabs' or 'none'")


def gaussian_upsampling_matrix(
    grid_size: int,
    output_size: int,
    sigma: float,
    *,
    mass_preserving: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """One axis of Gaussian upsampling: the ``(output_size, grid_size)`` spray matrix.

    Cell ``i`` is centred at ``c(i) = (i + 0.5) · S / s - 0.5`` in output pixel coordinates and
    contributes ``exp(-(p - c(i))² / (2σ²))`` to every output pixel ``p`` (no truncation).
    With ``mass_preserving`` each column sums to 1, so the total of the map is kept.
    """
    if sigma <= 0 or not torch.isfinite(torch.tensor(float(sigma))):
        raise InputError(f"Gaussian upsampling needs a positive, finite sigma, got {sigma}")
    pixels = torch.arange(output_size, dtype=torch.float64)
    centres = (torch.arange(grid_size, dtype=torch.float64) + 0.5) * output_size / grid_size - 0.5
    matrix = torch.exp(-((pixels[:, None] - centres[None, :]) ** 2) / (2.0 * float(sigma) ** 2))
    if mass_preserving:
        matrix = matrix / matrix.sum(dim=0, keepdim=True)
    return matrix.to(dtype=dtype, device=device)


def linear_upsampling_matrix(
    grid_size: int,
    output_size: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """One axis of linear interpolation with ``align_corners=False``, as ``F.interpolate`` does it
    for a given output size: the ``(output_size, grid_size)`` matrix. Output pixel ``p`` reads the
    grid at ``max((p + 0.5) · s / S - 0.5, 0)``, between its two neighbours (the last clamped)."""
    position = (torch.arange(output_size, dtype=torch.float64) + 0.5) * grid_size / output_size
    position = (position - 0.5).clamp(min=0)
    low = position.floor().long().clamp(max=grid_size - 1)
    high = (low + 1).clamp(max=grid_size - 1)
    fraction = position - low
    matrix = torch.zeros(output_size, grid_size, dtype=torch.float64)
    rows = torch.arange(output_size)
    matrix.index_put_((rows, low), 1 - fraction, accumulate=True)
    matrix.index_put_((rows, high), fraction, accumulate=True)
    return matrix.to(dtype=dtype, device=device)


def separable_apply(maps: torch.Tensor, matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Apply one ``(S_d, s_d)`` matrix per spatial axis of ``(B, T, *s)`` maps → ``(B, T, *S)``.

    Axes are contracted from the last to the first, each as one broadcast matrix product on a
    contiguous view, so no axis is ever permuted and the output is written once at the end.
    """
    spatial = list(maps.shape[2:])
    head = maps.shape[:2]
    out = maps.contiguous()
    last = len(spatial) - 1
    out = out @ matrices[last].T  # (..., s_last) → (..., S_last)
    spatial[last] = matrices[last].shape[0]
    for axis in range(last - 1, -1, -1):
        before = 1
        for size in spatial[:axis]:
            before *= size
        after = 1
        for size in spatial[axis + 1 :]:
            after *= size
        view = out.reshape(head[0] * head[1] * before, spatial[axis], after)
        out = matrices[axis] @ view  # (S_d, s_d) @ (N, s_d, after) → (N, S_d, after)
        spatial[axis] = matrices[axis].shape[0]
    return out.reshape(*head, *spatial)


def upsample(
    maps: torch.Tensor,
    size: Sequence[int],
    *,
    mode: UpsampleMode = "linear",
    sigma: float | Sequence[float] | None = None,
    mass_preserving: bool = False,
) -> torch.Tensor:
    """Resize maps ``(B, T, *s)`` to ``(B, T, *size)``.

    Args:
        maps: raw or processed maps.
        size: the output spatial size, one entry per spatial axis.
        mode: ``"nearest"`` (exact nearest, as PIL/scikit-image), ``"linear"`` (bi-/tri-linear by
            the number of axes, ``align_corners=False``: ``F.interpolate``'s values, computed as
            one matrix product per axis), or ``"gaussian"`` (Kim et al. 2020:
            every cell sprays a Gaussian over the whole output; separable, exact).
        sigma: Gaussian widths in output pixels, one number or one per axis. For the widths
            of the layer's effective receptive field use :meth:`Explanation.upsample` (its
            default for Gaussian mode) or :func:`camscope.receptive.erf_sigmas`.
        mass_preserving: Gaussian only: keep the map's total (``Σ out = Σ in``).

    Returns:
        A new tensor ``(B, T, *size)``.

    Raises:
        InputError: ``size`` does not match the number of spatial axes, unknown mode, or a missing
            or invalid ``sigma``.
    """
    spatial_dims = _check_maps(maps)
    size = tuple(int(v) for v in size)
    if len(size) != spatial_dims or any(v < 1 for v in size):
        raise InputError(
            f"size {size} must have {spatial_dims} positive entries, one per spatial axis of maps "
            f"{tuple(maps.shape)}"
        )
    if mode == "nearest":
        return F.interpolate(maps, size=size, mode="nearest-exact")
    if mode == "linear":  # F.interpolate's values as separable matrix products: as fast for
        # one map, 1.3-3.6x faster for many targets or volumes (2 AMD EPYC threads, torch 2.14.1)
        if spatial_dims > 3:
            raise InputError(f"linear upsampling supports 1 to 3 spatial axes, not {spatial_dims}")
        matrices = [
            linear_upsampling_matrix(grid, target, dtype=maps.dtype, device=maps.device)
            for grid, target in zip(maps.shape[2:], size, strict=True)
        ]
        return separable_apply(maps, matrices)
    if mode == "gaussian":
        if sigma is None or isinstance(sigma, str):
            raise InputError(
                "Gaussian upsampling needs sigma in pixels; for sigma='erf' (the effective "
                "receptive field's widths) it needs the model: use Explanation.upsample, or "
                "camscope.receptive.erf_sigmas(model, layer, input_shape, size)"
            )
        if isinstance(sigma, int | float):
            sigmas = [float(sigma)] * spatial_dims
        else:
            sigmas = [float(v) for v in sigma]
        if len(sigmas) != spatial_dims:
            raise InputError(f"sigma needs {spatial_dims} entries, got {len(sigmas)}")
        matrices = [
            gaussian_upsampling_matrix(
                grid,
                target,
                width,
                mass_preserving=mass_preserving,
                dtype=maps.dtype,
                device=maps.device,
            )
            for grid, target, width in zip(maps.shape[2:], size, sigmas, strict=True)
        ]
        return separable_apply(maps, matrices)
    raise InputError(f"upsampling mode {mode!r} unknown; use 'nearest', 'linear' or 'gaussian'")
