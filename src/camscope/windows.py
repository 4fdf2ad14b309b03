"""Sliding windows over a scan, placed and weighted exactly as MONAI's
``sliding_window_inference`` places and weights them, so that explanations line up with the
predictions of users who run MONAI.

* A scan smaller than the window is padded with zeros, symmetrically (the extra voxel after).
* Windows start every ``int(roi · (1 − overlap))`` voxels (at least 1; the whole axis when the
  window spans it), the last one shifted back to end at the scan's edge.
* ``"gaussian"`` blending weights each window by a separable Gaussian centred on it with
  ``σ = sigma_scale · roi`` per axis, clamped below at ``max(min, 1e-3)``; ``"constant"`` by 1.
  Blended values are ``Σ w · value / Σ w``: the weights of the windows covering a voxel sum to 1.

Also here: :class:`Blender` (the band of rows that blends window values and hands complete rows
on), and targets per window: class lists for every window, and region/voxel targets over the
whole scan cropped to each window (:func:`scan_regions`, :func:`region_scores_for_windows`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from camscope.errors import InputError, TargetError
from camscope.targets import RegionTarget, TargetSpec, VoxelTarget

__all__ = [
    "Blender",
    "WindowPlan",
    "classes_for_windows",
    "importance_map",
    "pad_to_plan",
    "plan_windows",
    "region_scores_for_windows",
    "scan_regions",
]

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


class Blender:
    """Weighted sums of window values over a band of ``roi`` rows along the first axis, kept in a
    ring buffer: rows no later window can reach are divided by their weight and handed to
    ``write(start, rows)`` (scan coordinates, ``rows`` ``(C, n, *rest)``), so memory holds one
    band of rows, not the scan. Windows must come in the plan's order (sorted along the first
    axis), so every window lies inside the band once the rows before it are handed on.

    ``base`` (padded rows already handed on) lets a resumed run start past them: the parts of
    windows that fall before it are skipped. :meth:`state` and :meth:`restore` save and bring back
    the band itself, so a resumed run goes on from the last window blended, to the same bits.
    """

    def __init__(
        self,
        channels: int,
        plan: WindowPlan,
        weights: torch.Tensor,
        write: Callable[[int, torch.Tensor], None],
        *,
        base: int = 0,
    ) -> None:
        self.plan, self.weights, self.write = plan, weights, write
        self.rows = plan.roi_size[0]
        rest = plan.padded_size[1:]
        self.values = torch.zeros((channels, self.rows, *rest), dtype=weights.dtype)
        self.coverage = torch.zeros((self.rows, *rest), dtype=weights.dtype)
        self.base = base  # the first padded row not yet handed on
        self.crop = tuple(
            slice(b, b + s) for (b, _), s in zip(plan.padding, plan.scan_size, strict=True)
        )

    def _segments(self, start: int, count: int) -> list[tuple[slice, slice]]:
        """Padded rows ``[start, start + count)`` as (ring slice, local slice) pairs."""
        position = start % self.rows
        first = min(count, self.rows - position)
        pieces = [(slice(position, position + first), slice(0, first))]
        if count > first:
            pieces.append((slice(0, count - first), slice(first, count)))
        return pieces

    def add(self, index: int, values: torch.Tensor) -> None:
        """Blend window ``index``'s values ``(C, *roi)``."""
        region = self.plan.slices(index)
        first = region[0].start
        if first > self.base:
            self._flush(first - self.base)
        skip = max(self.base - first, 0)  # rows a resumed run has already handed on
        if skip >= self.rows:
            return
        for ring, local in self._segments(first + skip, self.rows - skip):
            part = slice(local.start + skip, local.stop + skip)
            weights = self.weights[part]
            self.values[(slice(None), ring, *region[1:])].addcmul_(values[:, part], weights)
            self.coverage[(ring, *region[1:])] += weights

    def _flush(self, count: int) -> None:
        top = self.crop[0]
        for ring, local in self._segments(self.base, min(count, self.rows)):
            begin = self.base + local.start
            rows = range(begin, begin + (local.stop - local.start))
            keep = [r for r in rows if top.start <= r < top.stop]
            if keep:
                inside = slice(ring.start + keep[0] - begin, ring.start + keep[-1] - begin + 1)
                rest = self.crop[1:]
                done = self.values[(slice(None), inside, *rest)] / self.coverage[(inside, *rest)]
                self.write(keep[0] - top.start, done)
            self.values[:, ring] = 0
            self.coverage[ring] = 0
        self.base += count

    def finish(self) -> None:
        """Hand on every remaining row."""
        while self.base < self.plan.padded_size[0]:
            self._flush(min(self.rows, self.plan.padded_size[0] - self.base))

    @property
    def rows_done(self) -> int:
        """Padded rows handed on so far."""
        return self.base

    def state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The band's weighted sums ``(C, roi_rows, *rest)`` and weights ``(roi_rows, *rest)``
        (views, not copies), with :attr:`rows_done` all a resumed run needs."""
        return self.values, self.coverage

    def restore(self, values: Any, coverage: Any, base: int) -> None:
        """Bring back a band saved from :meth:`state` when ``base`` rows were handed on."""
        self.values.copy_(torch.as_tensor(values))
        self.coverage.copy_(torch.as_tensor(coverage))
        self.base = base


def pad_to_plan(data: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
    """``(C, *S)`` zero-padded to the plan's padded size (as MONAI pads a small scan)."""
    if not any(b or a for b, a in plan.padding):
        return data
    pads: list[int] = []
    for before, after in reversed(plan.padding):
        pads += [before, after]
    return torch.nn.functional.pad(data, pads)


def classes_for_windows(targets: Any, count: int) -> TargetSpec:
    """Class lists name the classes explained in every window: ``(count, T)``."""
    if isinstance(targets, list | tuple) or (
        isinstance(targets, torch.Tensor) and targets.ndim == 1
    ):
        classes = torch.as_tensor(
            list(targets) if not isinstance(targets, torch.Tensor) else targets, dtype=torch.long
        )
        return classes[None].expand(count, -1)
    return targets


def scan_regions(
    targets: Any, plan: WindowPlan
) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    """Region and voxel targets over the whole scan: their classes ``(T,)``, padded masks
    ``(T, *P)`` and names (a voxel is a region of one voxel); ``None`` for other targets."""
    if isinstance(targets, RegionTarget | VoxelTarget):
        targets = [targets]
    if not (isinstance(targets, list | tuple) and targets):
        return None
    spatial = (RegionTarget, VoxelTarget)
    if not all(isinstance(t, spatial) for t in targets):
        if any(isinstance(t, spatial) for t in targets):
            raise InputError("targets: give either class indices or region/voxel targets, not both")
        return None
    masks, names = [], []
    for index, target in enumerate(targets):
        if isinstance(target, VoxelTarget):
            position = target.position
            if len(position) != len(plan.scan_size) or not all(
                0 <= p < s for p, s in zip(position, plan.scan_size, strict=True)
            ):
                raise InputError(f"voxel target at {position} is outside the scan {plan.scan_size}")
            mask = torch.zeros(plan.scan_size, dtype=torch.bool)
            mask[position] = True
            names.append(f"voxel{index}")
        else:
            assert isinstance(target, RegionTarget)
            mask = torch.as_tensor(target.mask).bool()
            if tuple(mask.shape) != plan.scan_size:
                raise InputError(
                    f"a region target's mask has shape {tuple(mask.shape)}; over a scan it "
                    f"must have the scan's spatial shape {plan.scan_size}"
                )
            names.append(f"region{index}")
        masks.append(mask)
    classes = torch.tensor([t.class_index for t in targets])
    return classes, pad_to_plan(torch.stack(masks), plan), names


def region_scores_for_windows(
    regions: tuple[torch.Tensor, torch.Tensor, list[str]], plan: WindowPlan, indices: range
) -> Any:
    """The windows' scores ``(n, T)``: each region's class logits summed over the part of the
    region inside the window (zero where the window does not reach it)."""
    classes, masks, _ = regions
    crops = torch.stack([masks[(slice(None), *plan.slices(i))] for i in indices])  # (n, T, *roi)

    def scores(output: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.ndim != crops.ndim:
            raise TargetError("region and voxel targets need a dense output (B, K, *roi)")
        if int(classes.max()) >= output.shape[1]:
            raise TargetError(
                f"region/voxel target class {int(classes.max())} out of range: the output has "
                f"{output.shape[1]} channels (0 to {output.shape[1] - 1})"
            )
        chosen = output[:, classes.to(output.device)]  # (n, T, *roi)
        mine = crops if rows is None else crops[rows.cpu()]  # perturbed rows: their window's
        return (chosen * mine.to(output.device, output.dtype)).flatten(2).sum(-1)

    scores.takes_rows = True  # type: ignore[attr-defined]
    return scores
