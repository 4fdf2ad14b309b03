"""``explain_scan()``: explain a whole scan (a CT, a tomogram) window by window.

The scan is cut into windows as MONAI's ``sliding_window_inference`` cuts it
(:mod:`camscope.windows`); each batch of windows is explained with :func:`camscope.explain`, all
targets from one forward and one batched backward pass; each window's maps are brought to window
resolution (upsampled the method's own way, input-space maps reduced over channels) and blended
into scan-sized maps with the same weights MONAI blends predictions with. For a network with a
dense output (segmentation: an output the size of its window) the blended output equals MONAI's;
for a classifier applied window by window (a subtomogram classifier over a tomogram) each window's
scores are kept with its box.

Targets: ``None`` explains every class. A class index means, for a dense output, the sum of that
channel's logits over the voxels predicted as that class (see :mod:`camscope.targets`); for a
window classifier, that class's logit in every window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from camscope.errors import InputError
from camscope.explain import explain
from camscope.methods import get_method
from camscope.targets import TargetSpec
from camscope.windows import Blend, WindowPlan, importance_map, plan_windows

__all__ = ["ScanExplanation", "explain_scan"]


@dataclass(frozen=True)
class ScanExplanation:
    """Maps of a whole scan.

    Attributes:
        maps: ``(T, *S)`` blended maps at scan resolution, one per target.
        targets: ``(T,)`` the classes explained (``None`` for a callable target).
        outputs: ``(C_out, *S)`` the blended network output (dense outputs), else ``None``.
        scores: ``(W, K)`` each window's output (window classifiers), else ``None``.
        windows: ``(W, 2·d)`` each window's box in the scan, half-open.
        method, layer: what made the maps.
    """

    maps: torch.Tensor
    targets: torch.Tensor | None
    outputs: torch.Tensor | None
    scores: torch.Tensor | None
    windows: torch.Tensor
    method: str
    layer: str


def explain_scan(
    model: nn.Module,
    scan: Any,
    *,
    method: str,
    roi_size: Sequence[int] | int,
    overlap: float = 0.25,
    blend: Blend = "gaussian",
    sigma_scale: float = 0.125,
    targets: TargetSpec = None,
    layer: str | nn.Module | None = None,
    batch_size: int = 4,
    progress: bool = True,
    **options: Any,
) -> ScanExplanation:
    """Explain ``model`` over a whole ``scan`` ``(C, *S)``, window by window.

    Args:
        model: a network taking windows ``(B, C, *roi)``: a classifier, or a dense network whose
            output has the window's size.
        scan: ``(C, *S)`` tensor or array, 2D or 3D.
        method: any camscope method.
        roi_size: the window's size (an int for every axis).
        overlap, blend, sigma_scale: as MONAI's ``sliding_window_inference``.
        targets: ``None`` (every class), a class index or a list of them (explained in every
            window), or a callable (see the module docstring).
        layer: for layer methods; ``None`` chooses on the first window batch.
        batch_size: windows explained together.
        progress: show a progress bar.
        **options: the method's options.

    Raises:
        InputError: a scan that is not ``(C, *S)`` with 2 or 3 spatial axes, or bad windows.
    """
    data = torch.as_tensor(scan)
    if data.ndim not in (3, 4):
        raise InputError(
            f"scan must be (C, H, W) or (C, D, H, W), got shape {tuple(data.shape)}; add a "
            "channel axis with scan[None]"
        )
    if not data.is_floating_point():
        data = data.float()
    plan = plan_windows(data.shape[1:], roi_size, overlap=overlap)
    padded = _pad(data, plan)
    weights = importance_map(plan.roi_size, blend, sigma_scale=sigma_scale)
    if targets is None:
        targets = "all"
    info = get_method(method)
    maps_sum: torch.Tensor | None = None
    outputs_sum: torch.Tensor | None = None
    coverage = torch.zeros(plan.padded_size, dtype=torch.float64)
    scores: list[torch.Tensor] = []
    classes: torch.Tensor | None = None
    layer_name = "input"
    bar = tqdm(total=len(plan), disable=not progress, desc="windows", unit="window")
    for start in range(0, len(plan), batch_size):
        indices = range(start, min(start + batch_size, len(plan)))
        windows = torch.stack([padded[(slice(None), *plan.slices(i))] for i in indices])
        e = explain(
            model,
            windows,
            method=info.name,
            layer=layer if info.needs_layer else None,
            targets=_for_windows(targets, len(windows)),
            progress=False,
            **options,
        )
        if info.needs_layer and layer is None:
            layer = e.layer  # the same layer for every window
        layer_name = e.layer
        shown = e.reduce_channels() if e.per_channel else e.upsample(plan.roi_size)
        maps = shown.maps.detach().double().cpu()  # (n, T, *roi)
        if classes is None and e.targets is not None:
            classes = e.targets[0].cpu()
        if maps_sum is None:
            _check_memory(maps.shape[1], plan)
            maps_sum = torch.zeros((maps.shape[1], *plan.padded_size), dtype=torch.float64)
        dense = _dense_output(e.outputs, plan)
        if dense is not None and outputs_sum is None:
            outputs_sum = torch.zeros((dense.shape[1], *plan.padded_size), dtype=torch.float64)
        for row, index in enumerate(indices):
            region = plan.slices(index)
            maps_sum[(slice(None), *region)] += maps[row] * weights
            coverage[region] += weights
            if dense is not None and outputs_sum is not None:
                outputs_sum[(slice(None), *region)] += dense[row] * weights
        if dense is None and isinstance(e.outputs, torch.Tensor):
            scores.append(e.outputs.detach().cpu())
        bar.update(len(indices))
    bar.close()
    assert maps_sum is not None
    crop = tuple(slice(b, b + s) for (b, _), s in zip(plan.padding, plan.scan_size, strict=True))
    blended = (maps_sum / coverage)[(slice(None), *crop)]
    outputs = None if outputs_sum is None else (outputs_sum / coverage)[(slice(None), *crop)]
    return ScanExplanation(
        maps=blended.to(data.dtype),
        targets=classes,
        outputs=None if outputs is None else outputs.to(data.dtype),
        scores=torch.cat(scores) if scores else None,
        windows=plan.boxes(),
        method=info.name,
        layer=layer_name,
    )


def _available_bytes() -> int:
    import os

    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not a POSIX system: do not guess
        return 1 << 62


def _check_memory(targets: int, plan: WindowPlan) -> None:
    """Refuse, before any real work, a scan whose blended maps would not fit in memory."""
    voxels = 1
    for size in plan.padded_size:
        voxels *= size
    needed = (targets + 2) * voxels * 8  # maps and weights, float64, and the result
    available = _available_bytes()
    if needed > 0.8 * available:
        raise InputError(
            f"the maps of this scan ({targets} target(s) × {voxels:,} voxels) need about "
            f"{needed / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB free; explain "
            "fewer targets (targets=[...]) or a region of the scan at a time"
        )


def _for_windows(targets: TargetSpec, count: int) -> TargetSpec:
    """Class lists name the classes explained in every window: ``(count, T)``."""
    if isinstance(targets, list | tuple) or (
        isinstance(targets, torch.Tensor) and targets.ndim == 1
    ):
        classes = torch.as_tensor(
            list(targets) if not isinstance(targets, torch.Tensor) else targets, dtype=torch.long
        )
        return classes[None].expand(count, -1)
    return targets


def _pad(data: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
    if not any(b or a for b, a in plan.padding):
        return data
    pads: list[int] = []
    for before, after in reversed(plan.padding):
        pads += [before, after]
    return torch.nn.functional.pad(data, pads)


def _dense_output(outputs: Any, plan: WindowPlan) -> torch.Tensor | None:
    """The windows' outputs ``(n, C, *roi)`` when the network's output has the window's size."""
    if isinstance(outputs, torch.Tensor) and tuple(outputs.shape[2:]) == plan.roi_size:
        return outputs.detach().double().cpu()
    return None
