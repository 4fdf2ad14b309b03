"""Sliding windows over a scan, placed and weighted exactly as MONAI's
``sliding_window_inference`` places and weights them, so that explanations line up with the
predictions of users who run MONAI.

* A scan smaller than the window is padded with zeros, symmetrically (the extra voxel after).
* Windows start every ``int(roi · (1 − overlap))`` voxels (at least 1; the whole axis when the
  window spans it), the last one shifted back to end at the scan's edge.
* ``"gaussian"`` blending weights each window by a separable Gaussian centred on it with
  ``σ = sigma_scale · roi`` per axis, clamped below at ``max(min, 1e-3)``; ``"constant"`` by 1.
  Blended values are ``Σ w · value / Σ w``: the weights of the windows covering a voxel sum to 1
  (:mod:`~camscope.wholescan.blending` does the sums).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from camscope.errors import InputError

__all__ = ["Blend", "WindowPlan", "importance_map", "pad_to_plan", "plan_windows"]

Blend = Literal["gaussian", "constant"]


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows go on a scan.

    Attributes:
        scan_size: the scan's spatial size.
        padded_size: after padding to at least one window.
        padding: ``(before, after)`` per axis.
        roi_size: the window's size.
        starts: ``(W, d)`` window starts in the padded scan.
    """

    scan_size: tuple[int, ...]
    padded_size: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    roi_size: tuple[int, ...]
    starts: torch.Tensor

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def slices(self, index: int) -> tuple[slice, ...]:
        """The window's region in the padded scan."""
        return tuple(
            slice(int(s), int(s) + r)
            for s, r in zip(self.starts[index], self.roi_size, strict=True)
        )

    def boxes(self) -> torch.Tensor:
        """``(W, 2·d)`` half-open boxes ``(start…, stop…)`` in the scan's own coordinates
        (clipped to the scan where a window reaches into the padding)."""
        before = torch.tensor([b for b, _ in self.padding])
        size = torch.tensor(self.scan_size)
        start = (self.starts - before).clamp(min=0)
        stop = (self.starts - before + torch.tensor(self.roi_size)).clamp(max=size)
        return torch.cat([start, stop], dim=1)


def plan_windows(
    scan_size: Sequence[int], roi_size: Sequence[int] | int, *, overlap: float = 0.25
) -> WindowPlan:
    """The windows ``sliding_window_inference`` would use for a scan of ``scan_size``.

    Raises:
        InputError: an overlap outside [0, 1) or a window with a non-positive size.
    """
    size = tuple(int(v) for v in scan_size)
    roi = (int(roi_size),) * len(size) if isinstance(roi_size, int) else tuple(map(int, roi_size))
    if len(roi) != len(size) or min(roi) < 1:
        raise InputError(f"roi_size {roi} must have {len(size)} positive entries (one per axis)")
    if not 0 <= overlap < 1:
        raise InputError(f"overlap must be in [0, 1), got {overlap}")
    padding = tuple(
        ((max(r - s, 0)) // 2, max(r - s, 0) - (max(r - s, 0)) // 2)
        for s, r in zip(size, roi, strict=True)
    )
    padded = tuple(max(s, r) for s, r in zip(size, roi, strict=True))
    per_axis = []
    for extent, window in zip(padded, roi, strict=True):
        interval = window if window == extent else max(int(window * (1 - overlap)), 1)
        count = math.ceil(extent / interval)
        number = next((d for d in range(count) if d * interval + window >= extent), count - 1) + 1
        axis = [i * interval - max(i * interval + window - extent, 0) for i in range(number)]
        per_axis.append(torch.tensor(axis))
    grid = torch.meshgrid(*per_axis, indexing="ij")
    return WindowPlan(size, padded, padding, roi, torch.stack([g.flatten() for g in grid], dim=1))


def importance_map(
    roi_size: Sequence[int], blend: Blend = "gaussian", *, sigma_scale: float = 0.125
) -> torch.Tensor:
    """The per-window weights ``(*roi)`` (float64)."""
    if blend == "constant":
        return torch.ones(tuple(roi_size), dtype=torch.float64)
    if blend != "gaussian":
        raise InputError(f"blend must be 'gaussian' or 'constant', not {blend!r}")
    weights: torch.Tensor | None = None
    for size in roi_size:
        sigma = size * sigma_scale
        axis = torch.arange(size, dtype=torch.float32) - (size - 1) / 2.0
        profile = torch.exp(axis**2 / (-2 * sigma**2))
        weights = profile if weights is None else weights.unsqueeze(-1) * profile
    assert weights is not None
    floor = max(float(weights.min()), 1e-3)
    return weights.clamp(min=floor).double()


def pad_to_plan(data: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
    """``(C, *S)`` zero-padded to the plan's padded size (as MONAI pads a small scan)."""
    if not any(b or a for b, a in plan.padding):
        return data
    pads: list[int] = []
    for before, after in reversed(plan.padding):
        pads += [before, after]
    return torch.nn.functional.pad(data, pads)
