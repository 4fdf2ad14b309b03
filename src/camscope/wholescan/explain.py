"""``explain_scan()``: explain a whole scan (a CT, a tomogram) window by window.

The scan is cut into windows as MONAI's ``sliding_window_inference`` cuts it
(:mod:`~camscope.wholescan.windows`); each batch of windows is explained with
:func:`camscope.explain`, all targets from one forward and one batched backward pass; each window's
maps are brought to window resolution (upsampled the method's own way, input-space maps reduced
over channels) and blended into scan-sized maps with the same weights MONAI blends predictions
with. For a network with a
dense output (segmentation: an output the size of its window) the blended output equals MONAI's;
for a classifier applied window by window (a subtomogram classifier over a tomogram) each window's
scores are kept with its box.

Targets: ``None`` explains every class. A class index means, for a dense output, the sum of that
channel's logits over the voxels predicted as that class (see :mod:`camscope.targets`); for a
window classifier, that class's logit in every window.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from camscope.engine import eager_model
from camscope.engine.relay import said_once, warn
from camscope.errors import InputError, ModelError
from camscope.explain import explain
from camscope.explanation import Explanation
from camscope.layouts import LayoutSpec
from camscope.methods import get_method
from camscope.wholescan.blending import Blender
from camscope.wholescan.identity import job_identity
from camscope.wholescan.streaming import ScanFiles, check_scan_out
from camscope.wholescan.targets import (
    ScanTargets,
    classes_for_windows,
    region_scores_for_windows,
    scan_regions,
)
from camscope.wholescan.windows import Blend, WindowPlan, importance_map, pad_to_plan, plan_windows

__all__ = ["ScanExplanation", "ScanTargets", "explain_scan"]


@dataclass(frozen=True)
class ScanExplanation:
    """Maps of a whole scan.

    Attributes:
        maps: ``(T, *S)`` blended maps at scan resolution, one per target (``None`` when they
            were written to ``out``).
        targets: ``(T,)`` the classes explained (``None`` for a callable target).
        outputs: ``(C_out, *S)`` the blended network output (dense outputs), else ``None``.
        scores: ``(W, K)`` each window's output (window classifiers), else ``None``.
        windows: ``(W, 2·d)`` each window's box in the scan, half-open.
        method, layer: what made the maps.
        files: the files written with ``out``.
        labels: each map's name (``class3``, ``region0``, ``t0`` for a callable), as in the
            files' names.
    """

    maps: torch.Tensor | None
    targets: torch.Tensor | None
    outputs: torch.Tensor | None
    scores: torch.Tensor | None
    windows: torch.Tensor
    method: str
    layer: str
    files: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


@said_once
def explain_scan(
    model: nn.Module,
    scan: Any,
    *,
    method: str,
    roi_size: Sequence[int] | int,
    overlap: float = 0.25,
    blend: Blend = "gaussian",
    sigma_scale: float = 0.125,
    targets: ScanTargets = None,
    layer: str | nn.Module | None = None,
    layout: LayoutSpec = None,
    batch_size: int = 4,
    out: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool = True,
    **options: Any,
) -> ScanExplanation:
    """Explain ``model`` over a whole ``scan`` ``(C, *S)``, window by window.

    Args:
        model: a network taking windows ``(B, C, *roi)``: a classifier, or a dense network whose
            output has the window's size.
        scan: ``(C, *S)`` tensor or array, 2D or 3D, or a :class:`~camscope.io.LoadedImage` (whose
            geometry the files written with ``out`` keep).
        method: any camscope method.
        roi_size: the window's size (an int for every axis).
        overlap: the windows' overlap, as MONAI's ``sliding_window_inference``.
        blend: how overlapping windows are blended (``"gaussian"`` or ``"constant"``), as MONAI.
        sigma_scale: the Gaussian blend's width relative to the window, as MONAI.
        targets: ``None`` (every class), a class index or a list of them (explained in every
            window), or a callable (see the module docstring).
        layer: for layer methods; ``None`` chooses on the first window batch.
        layout: how the layer lays out its map (:mod:`camscope.layouts`), as in
            :func:`camscope.explain`; ``None`` infers it.
        batch_size: windows explained together.
        out: write the maps to disk as the rows they cover are complete, holding only a band of
            rows in memory (see :mod:`~camscope.wholescan.streaming`): ``.npy`` (one array
            ``(T, *S)``),
            ``.mrc``, ``.nii`` or ``.nii.gz`` (one volume per target, ``<stem>.class<c>.mrc``)
            or ``.zarr`` (an OME-Zarr image ``(T, *S)``), with the scan's geometry; dense
            outputs go to ``<stem>.outputs.npy`` and window scores to ``<stem>.scores.npy``. The
            result's ``maps`` is then ``None``, ``outputs`` a memory map of the file, and
            ``files`` lists what was written. Without it everything is kept in memory (refused,
            before any work, when the maps would not fit).
        resume: with ``out``, go on from where an interrupted run of the same job stopped (same
            scan, model, method and settings; checked), writing the same files an uninterrupted
            run writes. ``False`` starts over.
        progress: show a progress bar (and say when a run resumes or starts over).
        **options: the method's options.

    Raises:
        InputError: a scan that is not ``(C, *S)`` with 2 or 3 spatial axes, bad windows, or an
            ``out`` that cannot hold the maps.
    """
    model = eager_model(model)  # a compiled or exported model: converted once, not per batch
    source = scan
    data = _scan_tensor(scan, batch_size)
    dtype = data.dtype  # blending in the scan's precision, as MONAI blends
    if out is not None:
        check_scan_out(Path(out), data.ndim - 1, source)
    plan = plan_windows(data.shape[1:], roi_size, overlap=overlap)
    weights = importance_map(plan.roi_size, blend, sigma_scale=sigma_scale).to(dtype)
    info = get_method(method)
    run = _Run(plan, weights, dtype, source)
    regions = scan_regions(targets, plan)  # checked before any file is opened
    if regions is not None:
        run.names = regions[2]
    first = 0
    if out is not None:
        identity = job_identity(
            model,
            data,
            info.name,
            layer,
            targets,
            options if layout is None else {**options, "layout": str(layout)},
            plan,
            overlap,
            blend,
            sigma_scale,
            batch_size,
        )
        run.files = ScanFiles(Path(out), plan.scan_size, len(plan), source, identity)
        first = run.resume_point(batch_size, resume=resume, say=progress)
    padded = pad_to_plan(data, plan)
    explain_targets = "all" if targets is None else targets
    bar = tqdm(
        total=len(plan),
        initial=first,
        disable=not progress,
        desc="windows",
        unit="window",
        delay=3.0,
    )
    try:
        for start in range(first, len(plan), batch_size):
            indices = range(start, min(start + batch_size, len(plan)))
            windows = torch.stack([padded[(slice(None), *plan.slices(i))] for i in indices])
            e = _explain_windows(
                model,
                windows,
                info,
                layer=layer,
                layout=layout,
                targets=(
                    classes_for_windows(explain_targets, len(windows))
                    if regions is None
                    else region_scores_for_windows(regions, plan, indices)
                ),
                first_batch=start == first,
                roi_size=plan.roi_size,
                options=options,
            )
            if info.needs_layer and layer is None:
                layer = e.layer  # the same layer for every window
            run.layer = e.layer
            maps = _at_window_resolution(e, plan.roi_size).to(dtype)
            run.add(indices, maps, e)
            bar.update(len(indices))
        run.finish()
        files = run.files.finish() if run.files is not None else []
    except BaseException as error:
        run.stop(error)
        raise
    finally:
        bar.close()
    return run.result(info.name, files)


def _scan_tensor(scan: Any, batch_size: int) -> torch.Tensor:
    """The scan as a floating ``(C, *S)`` tensor, its shape and the batch size checked."""
    data = scan.tensor() if hasattr(scan, "tensor") and hasattr(scan, "spacing") else scan
    data = torch.as_tensor(data)
    if data.ndim not in (3, 4):
        raise InputError(
            f"scan must be (C, H, W) or (C, D, H, W), got shape {tuple(data.shape)}; add a "
            "channel axis with scan[None]"
        )
    if data.shape[0] > 16:
        raise InputError(
            f"scan of shape {tuple(data.shape)} has {data.shape[0]} channels; scans are "
            "(C, *S): for a volume without a channel axis pass scan[None]"
        )
    if min(data.shape[1:]) < 1:
        raise InputError(f"scan of shape {tuple(data.shape)} is empty along a spatial axis")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    return data if data.is_floating_point() else data.float()


def _explain_windows(
    model: nn.Module,
    windows: torch.Tensor,
    info: Any,
    *,
    layer: str | nn.Module | None,
    layout: LayoutSpec,
    targets: Any,
    first_batch: bool,
    roi_size: tuple[int, ...],
    options: dict[str, Any],
) -> Explanation:
    """One batch of windows explained; a model that refuses the first batch is told the windows'
    size (the usual cause)."""
    try:
        return explain(
            model,
            windows,
            method=info.name,
            layer=layer if info.needs_layer else None,
            layout=layout if info.needs_layer else None,
            targets=targets,
            progress=False,
            **options,
        )
    except ModelError as error:
        if not first_batch:  # later batches: the windows were fine for the first
            raise
        raise ModelError(
            f"{error}; does the model take windows of {roi_size}? (roi_size must be the input "
            "size the model was made for)"
        ) from error


class _Run:
    """The state of one scan's explanation: the blenders, the sinks they hand rows to, the
    window scores, and (with ``out``) the files and their progress record."""

    def __init__(
        self, plan: WindowPlan, weights: torch.Tensor, dtype: torch.dtype, source: Any
    ) -> None:
        self.plan, self.weights, self.dtype, self.source = plan, weights, dtype, source
        self.files: ScanFiles | None = None
        self.maps: Blender | None = None
        self.outputs: Blender | None = None
        self.kept: dict[str, torch.Tensor] = {}  # in memory: "maps", "outputs"
        self.scores: list[torch.Tensor] = []
        self.classes: torch.Tensor | None = None
        self.layer = "input"
        self.names: list[str] | None = None  # what the maps are called when not classes
        self.labels: list[str] = []
        self.record: dict[str, Any] | None = None  # the interrupted run's, when resuming
        self.windows_done = 0

    def resume_point(self, batch_size: int, *, resume: bool, say: bool) -> int:
        """The first window to explain: 0, or the first window an interrupted run of this job
        had not blended (always the start of a batch, so every batch is the one the interrupted
        run explained); the blenders' saved band is brought back."""
        assert self.files is not None
        record, why_not = self.files.previous() if resume else (None, None)
        if record is None:
            if why_not is not None:  # work thrown away: said with or without progress
                warn(f"camscope: not resuming from {self.files.work}: {why_not}; starting over")
            return 0
        self.record = record
        first = int(record["windows_done"])
        labels = record["layout"]["labels"]
        self.labels = list(labels)
        self.classes = (
            torch.tensor(record["layout"]["targets"]) if record["layout"]["targets"] else None
        )
        self.layer = record.get("layer", self.layer)
        self.windows_done = first
        self._open(len(labels), record["layout"].get("outputs"), resume=True)
        if say:
            tqdm.write(
                f"camscope: resuming from {self.files.work}: {len(self.plan) - first} of "
                f"{len(self.plan)} windows left (going on from window {first + 1})",
                file=sys.stderr,
            )
        return first

    def _open(self, targets: int, outputs: int | None, *, resume: bool) -> None:
        base = int(self.record["rows_done"]) if resume and self.record else 0
        plan, weights = self.plan, self.weights
        if self.files is None:
            _check_memory(targets, plan)
            # every row is written exactly once by the blender: no need to zero it first
            maps = torch.empty((targets, *plan.scan_size), dtype=self.dtype)
            self.kept["maps"] = maps
            self.maps = Blender(targets, plan, weights, _into(maps))
            if outputs:
                dense = torch.empty((outputs, *plan.scan_size), dtype=self.dtype)
                self.kept["outputs"] = dense
                self.outputs = Blender(outputs, plan, weights, _into(dense))
            return
        files = self.files
        self.maps = Blender(
            targets, plan, weights, lambda i, rows: files.write_maps(i, rows.numpy()), base=base
        )
        if outputs:
            self.outputs = Blender(
                outputs,
                plan,
                weights,
                lambda i, rows: files.write_outputs(i, rows.numpy()),
                base=base,
            )
        if resume and self.record is not None:
            files.open(self.record["layout"], resume=True)
            band = torch.from_numpy(files.load_band(int(self.record["band_slot"])))
            self.maps.restore(band[:targets], band[-1], base)
            if self.outputs is not None:
                self.outputs.restore(band[targets:-1], band[-1], base)

    def add(self, indices: range, maps: torch.Tensor, e: Any) -> None:
        dense = _dense_output(e.outputs, self.plan, self.dtype)
        scores = (
            None
            if dense is not None or not isinstance(e.outputs, torch.Tensor)
            else (e.outputs.detach().cpu().to(self.dtype))
        )
        if self.maps is None:  # the first batch says what there is to keep
            if e.targets is not None:
                self.classes = e.targets[0].cpu()
            labels = self.names or (
                [f"class{int(c)}" for c in self.classes]
                if self.classes is not None
                else [f"t{i}" for i in range(maps.shape[1])]
            )
            outputs = None if dense is None else int(dense.shape[1])
            self.labels = labels
            if self.files is not None:
                self.files.open(
                    {
                        "labels": labels,
                        "targets": None if self.classes is None else self.classes.tolist(),
                        "outputs": outputs,
                        "scores": None if scores is None else int(scores.shape[1]),
                        "dtype": str(self.dtype).removeprefix("torch."),
                        "band": [self.plan.roi_size[0], *self.plan.padded_size[1:]],
                    },
                    resume=False,
                )
            self._open(maps.shape[1], outputs, resume=False)
        assert self.maps is not None
        for row, index in enumerate(indices):
            self.maps.add(index, maps[row])
            if dense is not None and self.outputs is not None:
                self.outputs.add(index, dense[row])
        if scores is not None:
            if self.files is not None:
                self.files.write_scores(indices[0], scores.numpy())
            else:
                self.scores.append(scores)
        self.windows_done = indices[-1] + 1
        self._checkpoint()

    def _checkpoint(self) -> None:
        if self.files is None or self.maps is None:
            return
        values, coverage = self.maps.state()
        parts = [values, *([self.outputs.state()[0]] if self.outputs else []), coverage[None]]
        slot = self.files.save_band([part.numpy() for part in parts])
        self.files.checkpoint(
            {
                "rows_done": self.maps.rows_done,
                "windows_done": self.windows_done,
                "band_slot": slot,
                "layer": self.layer,
            }
        )

    def finish(self) -> None:
        assert self.maps is not None
        self.maps.finish()
        if self.outputs is not None:
            self.outputs.finish()

    def stop(self, error: BaseException) -> None:
        """Close the files; keep the work folder when a resumed run could use it."""
        if self.files is None:
            return
        self.files.close()
        if self.files.identity is None:  # a callable target: no later call can resume this run
            self.files.discard()
        elif self.windows_done or self.record is not None:
            error.add_note(
                f"camscope: the work done so far is kept in {self.files.work}; the same call "
                "(the same command) goes on from there"
            )
        else:
            self.files.discard()

    def result(self, method: str, files: list[str]) -> ScanExplanation:
        outputs = self.kept.get("outputs")
        scores = torch.cat(self.scores) if self.scores else None
        if self.files is not None:
            stem = self.files.out.parent / self.files.stem
            if self.files.layout.get("outputs"):
                outputs = torch.from_numpy(np.load(f"{stem}.outputs.npy", mmap_mode="c"))
            if self.files.layout.get("scores"):
                scores = torch.from_numpy(np.load(f"{stem}.scores.npy"))
        return ScanExplanation(
            maps=self.kept.get("maps"),
            targets=self.classes,
            outputs=outputs,
            scores=scores,
            windows=self.plan.boxes(),
            method=method,
            layer=self.layer,
            files=files,
            labels=self.labels,
        )


def _into(array: torch.Tensor) -> Any:
    def write(start: int, rows: torch.Tensor) -> None:
        array[:, start : start + rows.shape[1]] = rows

    return write


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
    needed = (targets + 2) * voxels * 8  # maps and weights, and the result
    available = _available_bytes()
    if needed > 0.8 * available:
        raise InputError(
            f"the maps of this scan ({targets} target(s) × {voxels:,} voxels) need about "
            f"{needed / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB free; explain "
            "fewer targets (targets=[...]) or a region of the scan at a time"
        )


def _dense_output(outputs: Any, plan: WindowPlan, dtype: torch.dtype) -> torch.Tensor | None:
    """The windows' outputs ``(n, C, *roi)`` when the network's output has the window's size."""
    if isinstance(outputs, torch.Tensor) and tuple(outputs.shape[2:]) == plan.roi_size:
        return outputs.detach().cpu().to(dtype)
    return None


def _at_window_resolution(e: Any, roi: tuple[int, ...]) -> torch.Tensor:
    """A window batch's maps ``(n, T, *roi)`` on the CPU: input-space maps reduced over
    channels, layer maps upsampled the method's way."""
    if e.per_channel:
        return e.reduce_channels().maps.detach().cpu()
    maps = e.maps if tuple(e.maps.shape[2:]) == roi else e.upsample(roi).maps
    return maps.detach().cpu()
