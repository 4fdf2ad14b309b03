"""Targets per window: class lists for every window, and region/voxel targets over the whole
scan cropped to each window."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from camscope.errors import InputError, TargetError
from camscope.targets import RegionTarget, TargetSpec, VoxelTarget
from camscope.wholescan.windows import WindowPlan, pad_to_plan

__all__ = ["ScanTargets", "classes_for_windows", "region_scores_for_windows", "scan_regions"]

ScanTargets = TargetSpec | RegionTarget | VoxelTarget | Sequence[RegionTarget | VoxelTarget]
"""What ``explain_scan`` explains: any ``TargetSpec`` of :func:`camscope.explain` (``None`` for
every class, a class index or a list of them, explained in every window), or region and voxel
targets over the whole scan (one map per region, each cropped to the windows it touches)."""


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
