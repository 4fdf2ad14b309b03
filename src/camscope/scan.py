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

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from camscope.errors import InputError, ModelError
from camscope.explain import explain
from camscope.methods import get_method
from camscope.targets import TargetSpec
from camscope.windows import Blend, WindowPlan, importance_map, plan_windows

__all__ = ["ScanExplanation", "explain_scan"]


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
    """

    maps: torch.Tensor | None
    targets: torch.Tensor | None
    outputs: torch.Tensor | None
    scores: torch.Tensor | None
    windows: torch.Tensor
    method: str
    layer: str
    files: list[str] = field(default_factory=list)


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
    out: str | os.PathLike[str] | None = None,
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
        out: write the maps to this file as the rows they cover are complete, holding only a
            band of rows in memory: ``.npy`` (one array ``(T, *S)``), or ``.mrc``, ``.nii`` or
            ``.nii.gz`` (one volume per target, ``<stem>.class<c>.mrc``, with the scan's geometry
            when ``scan`` is a :class:`~camscope.io.Scan`); the result's ``maps`` is then
            ``None`` and ``files`` lists what was written. Without it the maps are kept in
            memory (refused, before any work, when they would not fit).
        progress: show a progress bar.
        **options: the method's options.

    Raises:
        InputError: a scan that is not ``(C, *S)`` with 2 or 3 spatial axes, or bad windows.
    """
    source = scan
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
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    if not data.is_floating_point():
        data = data.float()
    if out is not None:
        _check_out(Path(out), data.ndim - 1)
    plan = plan_windows(data.shape[1:], roi_size, overlap=overlap)
    padded = _pad(data, plan)
    weights = importance_map(plan.roi_size, blend, sigma_scale=sigma_scale)
    if targets is None:
        targets = "all"
    info = get_method(method)
    maps_blender: _Blender | None = None
    outputs_blender: _Blender | None = None
    scores: list[torch.Tensor] = []
    classes: torch.Tensor | None = None
    layer_name = "input"
    bar = tqdm(total=len(plan), disable=not progress, desc="windows", unit="window", delay=3.0)
    for start in range(0, len(plan), batch_size):
        indices = range(start, min(start + batch_size, len(plan)))
        windows = torch.stack([padded[(slice(None), *plan.slices(i))] for i in indices])
        try:
            e = explain(
                model,
                windows,
                method=info.name,
                layer=layer if info.needs_layer else None,
                targets=_for_windows(targets, len(windows)),
                progress=False,
                **options,
            )
        except ModelError as error:
            raise ModelError(
                f"{error}; does the model take windows of {plan.roi_size}? (roi_size must be "
                "the input size the model was made for)"
            ) from error
        if info.needs_layer and layer is None:
            layer = e.layer  # the same layer for every window
        layer_name = e.layer
        shown = e.reduce_channels() if e.per_channel else e.upsample(plan.roi_size)
        maps = shown.maps.detach().double().cpu()  # (n, T, *roi)
        if classes is None and e.targets is not None:
            classes = e.targets[0].cpu()
        if maps_blender is None:
            sink = _sink(out, maps.shape[1], plan, source, classes)
            maps_blender = _Blender(maps.shape[1], plan, weights, sink)
        dense = _dense_output(e.outputs, plan)
        if dense is not None and outputs_blender is None:
            outputs_blender = _Blender(
                dense.shape[1], plan, weights, _ArraySink((dense.shape[1], *plan.scan_size))
            )
        for row, index in enumerate(indices):
            maps_blender.add(index, maps[row])
            if dense is not None and outputs_blender is not None:
                outputs_blender.add(index, dense[row])
        if dense is None and isinstance(e.outputs, torch.Tensor):
            scores.append(e.outputs.detach().cpu())
        bar.update(len(indices))
    bar.close()
    assert maps_blender is not None
    maps_blender.finish()
    if outputs_blender is not None:
        outputs_blender.finish()
    blended = maps_blender.sink
    return ScanExplanation(
        maps=blended.result().to(data.dtype) if isinstance(blended, _ArraySink) else None,
        targets=classes,
        outputs=None if outputs_blender is None else outputs_blender.sink.result().to(data.dtype),
        scores=torch.cat(scores) if scores else None,
        windows=plan.boxes(),
        method=info.name,
        layer=layer_name,
        files=blended.files(),
    )


class _ArraySink:
    """Blended rows kept in memory: ``(C, *S)``."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.values = torch.zeros(shape, dtype=torch.float64)

    def write(self, start: int, rows: torch.Tensor) -> None:
        self.values[:, start : start + rows.shape[1]] = rows

    def result(self) -> torch.Tensor:
        return self.values

    def close(self) -> None:
        pass

    def files(self) -> list[str]:
        return []


class _FileSink:
    """Blended rows written to disk as they are complete: ``.npy`` (one array ``(T, *S)``),
    ``.mrc`` (one volume per target, with the scan's voxel size and origin) or ``.nii`` /
    ``.nii.gz`` (one volume per target with the scan's affine). Rows are written at their offset
    in the file (not through a memory map, whose written pages would stay resident), each file
    under a temporary name until the last row is in. NIfTI stores its first axis fastest, so a
    row of the scan is not contiguous there: its rows go to a temporary ``.npy`` first, turned
    into NIfTI a slice at a time at the end (nibabel reads the memory map slice by slice)."""

    def __init__(
        self,
        path: Path,
        shape: tuple[int, ...],
        source: Any,
        classes: torch.Tensor | None,
    ) -> None:
        import numpy as np

        from camscope.io.atomic import atomic_path

        self.shape = shape
        self._contexts: list[Any] = []
        self.handles: list[Any] = []
        self.offsets: list[int] = []
        self.names: list[str] = []
        suffix = path.suffix.lower()
        lowered = path.name.lower()
        plane = int(np.prod(shape[2:])) * 4  # float32 bytes of one row of one target
        self.row_bytes = plane
        self.nifti: list[Path] = []
        self.source = source
        labels = (
            [f"class{int(c)}" for c in classes]
            if classes is not None
            else [f"t{i}" for i in range(shape[0])]
        )
        if lowered.endswith((".nii", ".nii.gz")):
            compressed = lowered.endswith(".gz")
            stem = path.name[: -len(".nii.gz")] if compressed else path.stem
            ending = ".nii.gz" if compressed else ".nii"
            self.nifti = [path.with_name(f"{stem}.{label}{ending}") for label in labels]
            path, suffix = path.with_name(f".{stem}.rows.npy"), ".npy"
        if suffix == ".npy":
            final_names = [path]
            per_target = shape[1] * plane
        else:  # .mrc; explain_scan checked the ending and the dimensions (_check_out)
            final_names = [path.with_name(f"{path.stem}.{label}.mrc") for label in labels]
            per_target = 0
        for final in final_names:
            context = atomic_path(final)
            temporary = Path(context.__enter__())
            self._contexts.append(context)
            if suffix == ".npy":
                header = np.lib.format.open_memmap(
                    temporary, mode="w+", dtype=np.float32, shape=shape
                )
                offset = header.offset
                del header  # the file exists at full size; rows are written below
            else:
                offset = _new_mrc(temporary, shape[1:], source)
            self.handles.append(open(temporary, "r+b"))
            self.offsets.append(offset)
            self.names.append(str(final))
        self.per_target = per_target

    def write(self, start: int, rows: torch.Tensor) -> None:
        values = rows.float().numpy()
        for target in range(self.shape[0]):
            handle = self.handles[0 if self.per_target else target]
            base = self.offsets[0 if self.per_target else target] + target * self.per_target
            handle.seek(base + start * self.row_bytes)
            handle.write(values[target].tobytes())

    def close(self) -> None:
        for handle in self.handles:
            handle.close()
        for context in self._contexts:
            context.__exit__(None, None, None)
        if self.nifti:
            self._to_nifti(Path(self.names[0]))
            self.names = [str(name) for name in self.nifti]

    def _to_nifti(self, rows: Path) -> None:
        import numpy as np

        from camscope.io.heatmaps import write_nifti
        from camscope.io.scan import Scan

        geometry = (
            self.source
            if isinstance(self.source, Scan)  # a bare tensor: voxel axes as given, unit voxels
            else Scan(np.zeros((1, 1, 1, 1), np.float32), "tensor", "npy", affine=np.eye(4))
        )
        try:
            maps = np.load(rows, mmap_mode="r")
            for target, name in enumerate(self.nifti):
                write_nifti(name, maps[target], geometry)
            del maps
        finally:
            rows.unlink(missing_ok=True)

    def files(self) -> list[str]:
        return self.names


def _new_mrc(path: Path, shape: tuple[int, ...], source: Any) -> int:
    """An MRC file of ``shape`` float32 zeros with the scan's geometry; the data's offset."""
    import mrcfile

    with mrcfile.new_mmap(path, shape=shape, mrc_mode=2, overwrite=True) as mrc:
        spacing = getattr(source, "spacing", None)
        if spacing is not None and getattr(source, "format", "") == "mrc":
            mrc.voxel_size = tuple(reversed(spacing))
        origin = getattr(source, "origin", None)
        if origin is not None:
            mrc.header.origin = origin
        mrc.header.label[0] = b"written by camscope"
        mrc.header.nlabl = 1
        return 1024 + int(mrc.header.nsymbt)


def _check_out(path: Path, spatial_dims: int) -> None:
    """Refuse, before any work, an output path whose format cannot hold the maps."""
    name = path.name.lower()
    if not name.endswith((".npy", ".mrc", ".nii", ".nii.gz")):
        raise InputError(f"out must end in .npy, .mrc, .nii or .nii.gz, not {path.name!r}")
    if spatial_dims != 3 and name.endswith((".mrc", ".nii", ".nii.gz")):
        kind = "MRC" if name.endswith(".mrc") else "NIfTI"
        raise InputError(
            f"out={path.name} needs a 3D scan ({kind} heatmaps are volumes); use .npy for 2D"
        )


def _sink(
    out: str | os.PathLike[str] | None,
    targets: int,
    plan: WindowPlan,
    source: Any,
    classes: torch.Tensor | None,
) -> _ArraySink | _FileSink:
    shape = (targets, *plan.scan_size)
    if out is None:
        _check_memory(targets, plan)
        return _ArraySink(shape)
    return _FileSink(Path(out), shape, source, classes)


class _Blender:
    """Weighted sums of window values over a band of ``roi`` rows along the first axis, kept in a
    ring buffer: rows no later window can reach are divided by their weight and handed to the
    sink, so memory holds one band of rows, not the scan (windows come ordered along the first
    axis, so every window lies inside the band once the rows before it are handed on)."""

    def __init__(self, channels: int, plan: WindowPlan, weights: torch.Tensor, sink: Any) -> None:
        self.plan, self.weights = plan, weights
        self.sink: Any = sink
        self.rows = plan.roi_size[0]
        rest = plan.padded_size[1:]
        self.values = torch.zeros((channels, self.rows, *rest), dtype=torch.float64)
        self.coverage = torch.zeros((self.rows, *rest), dtype=torch.float64)
        self.base = 0  # the first padded row not yet handed on
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
        region = self.plan.slices(index)
        first = region[0].start
        if first > self.base:
            self._flush(first - self.base)
        weighted = values * self.weights
        for ring, local in self._segments(first, self.rows):
            self.values[(slice(None), ring, *region[1:])] += weighted[:, local]
            self.coverage[(ring, *region[1:])] += self.weights[local]

    def _flush(self, count: int) -> None:
        top = self.crop[0]
        for ring, local in self._segments(self.base, min(count, self.rows)):
            begin = self.base + local.start
            rows = range(begin, begin + (local.stop - local.start))
            keep = [r for r in rows if top.start <= r < top.stop]
            if keep:
                inside = slice(ring.start + keep[0] - begin, ring.start + keep[-1] - begin + 1)
                done = self.values[:, inside] / self.coverage[inside]
                self.sink.write(
                    keep[0] - top.start, done[(slice(None), slice(None), *self.crop[1:])]
                )
            self.values[:, ring] = 0
            self.coverage[ring] = 0
        self.base += count

    def finish(self) -> None:
        while self.base < self.plan.padded_size[0]:
            self._flush(min(self.rows, self.plan.padded_size[0] - self.base))
        self.sink.close()


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
