"""What ``camscope scan`` writes: heatmap files per method and format, the network's own
segmentation or window scores, the report's maps (each linked to its full-resolution file) and
the manifest that marks the folder complete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

__all__ = ["ScanOutputs", "heatmap_files", "network_maps"]


class ScanOutputs:
    """What a scan command wrote, method by method, and its manifest."""

    def __init__(self, folder: Path, volume: Any, settings: dict[str, Any]) -> None:
        self.folder, self.volume, self.settings = folder, volume, settings
        self.files: list[str] = []
        self.layers: dict[str, str] = {}
        self.labels: list[str] = []
        self.windows: Any = None
        self.extra: dict[str, object] = {}

    def write_manifest(self, record: dict[str, Any], fingerprint: str) -> None:
        """Write ``manifest.json``, the mark that the scan's outputs are complete."""
        from camscope.engine.relay import said_so_far
        from camscope.io import write_json
        from camscope.io.heatmaps import nifti_units_note

        note = nifti_units_note(self.volume)
        if note and "nifti" in self.settings["formats"]:
            self.extra["nifti_units"] = note

        # the manifest last: it marks the folder complete (asked again: already done)
        write_json(
            self.folder / "manifest.json",
            {
                "input": self.volume.record(),
                "model": record,
                "fingerprint": fingerprint,
                "methods": list(self.layers),
                "layers": self.layers,
                "roi_size": self.settings["roi_size"],
                "overlap": self.settings["overlap"],
                "blend": self.settings["blend"],
                "targets": self.labels,
                "windows": self.windows.tolist(),
                "outputs": self.files,
                **self.extra,
                "warnings": said_so_far(),
            },
        )
        click.echo(
            f"explained {len(self.windows)} windows with {', '.join(self.layers)}; wrote "
            f"{len(self.files)} file(s), manifest.json and report.html to {self.folder}"
        )


#: Seconds the writing of a method's heatmap files runs before its progress bar appears.
WRITE_PROGRESS_DELAY = 3.0


def heatmap_files(
    written: ScanOutputs,
    info: Any,
    maps: Any,
    labels: list[str],
    stem: str,
    *,
    progress: bool = False,
) -> list[Any]:
    """One method's heatmaps in every format asked for (a progress bar over the files when it
    takes a while); its maps for the report, each linked to its full-resolution file."""
    from tqdm.auto import tqdm

    from camscope.io import write_heatmap
    from camscope.io.heatmaps import heatmap_suffix
    from camscope.render.report import ReportMap
    from camscope.wholescan.streaming import write_zarr

    folder, volume = written.folder, written.volume
    linked = {label: f"{stem}.{info.name}.npy" for label in labels}
    kinds = written.settings["formats"]
    count = sum(1 if kind == "zarr" else len(labels) for kind in kinds)
    bar = tqdm(
        total=count,
        desc=f"writing {info.name}",
        unit="file",
        disable=not progress or count < 2,
        delay=WRITE_PROGRESS_DELAY,
        leave=False,
    )
    for kind in kinds:
        if kind == "zarr":  # one OME-Zarr image of every target
            name = f"{stem}.{info.name}.zarr"
            write_zarr(folder / name, maps, volume, labels)
            written.files.append(name)
            bar.update()
            continue
        for label, heat in zip(labels, maps, strict=True):  # one target in memory at a time
            name = f"{stem}.{info.name}.{label}{heatmap_suffix(kind)}"
            write_heatmap(
                folder / name,
                heat,
                volume,
                kind,
                signed=info.shown_signed,
                title=f"{info.name} · {label}",
            )
            written.files.append(name)
            bar.update()
            if kind != "png":
                linked[label] = name
    bar.close()
    return [
        ReportMap(info.name, label, heat, info.shown_signed, file=linked[label])
        for label, heat in zip(labels, maps, strict=True)
    ]


def network_maps(written: ScanOutputs, result: Any, stem: str) -> list[Any]:
    """The network's own reading of the scan: its segmentation (dense outputs, written in each
    format) or a class's window scores (classifiers, in the manifest)."""
    import numpy as np

    from camscope.io import write_heatmap
    from camscope.io.heatmaps import heatmap_suffix
    from camscope.render.report import ReportMap

    shown = []
    volume = written.volume
    if result.outputs is not None:
        segmentation = result.outputs.max(0).indices.numpy().astype(np.float32)
        kinds = [k for k in written.settings["formats"] if k != "zarr"] or ["npy"]
        for kind in kinds:
            name = f"{stem}.segmentation{heatmap_suffix(kind)}"
            write_heatmap(written.folder / name, segmentation, volume, kind, signed=False)
            written.files.append(name)
        file = f"{stem}.segmentation{heatmap_suffix(kinds[0])}"
        shown.append(ReportMap("network", "segmentation", segmentation, False, file=file))
    if result.scores is not None:
        written.extra["window_scores"] = result.scores.tolist()
        best = int(result.scores.mean(0).argmax())
        coarse = _window_score_map(result.scores[:, best], result.windows, volume.spatial_shape)
        shown.append(ReportMap("window scores", f"class{best}", coarse, True))
    return shown


def _window_score_map(scores: Any, boxes: Any, shape: tuple[int, ...]) -> Any:
    """A class's window scores as a coarse map: each voxel the mean score of the windows that
    cover it (the classifier's own reading of the scan, beside the explanations)."""
    import numpy as np

    total = np.zeros(shape, dtype=np.float32)
    count = np.zeros(shape, dtype=np.float32)
    half = len(shape)
    for score, box in zip(scores.tolist(), boxes.tolist(), strict=True):
        region = tuple(slice(a, b) for a, b in zip(box[:half], box[half:], strict=True))
        total[region] += score
        count[region] += 1
    return total / np.maximum(count, 1)
