"""``camscope explain``'s job: explain files and write what imaging people open.

For every input and method, :class:`ExplainJob` writes

* ``<name>.<method>.npz``: raw maps ``(T, …)``, scores, targets, the input-resolution heatmaps
  ``(T, *S)`` and any per-target values the method reports (e.g. ``completeness_gap``);
* ``<name>.<method>.<target>.<ext>`` in each requested format (NIfTI, MRC, TIFF, PNG, NPY) with the
  input's geometry;

then the run engine (:mod:`camscope.runs.runner`) writes its record, and at the end
``manifest.json`` and ``report.html``. Each file is written atomically; resuming, failures and
backends are the engine's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import camscope
from camscope.engine.relay import said_once
from camscope.errors import CamscopeError
from camscope.io.atomic import write_npz
from camscope.io.heatmaps import heatmap_suffix, nifti_units_note, write_heatmap
from camscope.io.inputs import INTENSITY_RULES, read_image
from camscope.layouts import parse_layout
from camscope.methods.registry import check_option
from camscope.runs.job import Batch, Finished
from camscope.runs.runner import RunSummary, run_job
from camscope.runs.sources import FileSource

__all__ = [
    "REPORT_INPUTS",
    "ExplainJob",
    "ExplainSettings",
    "explain_files",
    "split_options",
    "target_spec",
]

#: The report shows at most this many inputs (a dataset's report would otherwise be huge).
REPORT_INPUTS = 12


@dataclass
class ExplainSettings:
    """What to compute and write. All fields are JSON-ready (they go into the manifest).

    Attributes:
        methods: registry names.
        layer: layer for methods that use one (``None``: the default layer), or a list of
            layers whose maps are fused (mean, on the finest grid).
        layout: how that layer lays out its map (``None``: inferred; see
            :func:`camscope.layouts.parse_layout` for the text forms).
        targets: ``"predicted"``, ``"all"`` or a list of class indices.
        upsample: ``"auto"`` (Gaussian for Extended-CAM, linear for the others), ``"linear"``,
            ``"nearest"`` or ``"gaussian"``: how layer maps reach input resolution.
        sigma: ``"erf"`` or a number of pixels, for Gaussian upsampling.
        formats: heatmap formats beside the NPZ (see :data:`HEATMAP_FORMATS`).
        options: per-method options, ``{method: {name: value}}``.
        intensity: what the model receives (:data:`camscope.io.inputs.INTENSITY_RULES`).
        dicom_window: ``"auto"`` or ``"none"`` (see :func:`camscope.io.read_image`).
        nifti_volume: for 4D NIfTI inputs: a volume index or ``"channels"``.
        report: write ``report.html``.
        batch_size: inputs explained together. Batches are fixed ranges of the dataset's order,
            so an interrupted run redoes whole batches and gets the same numbers.
    """

    methods: list[str]
    layer: str | list[str] | None = None
    layout: str | None = None
    targets: str | list[int] = "predicted"
    upsample: str = "auto"
    sigma: str | float = "erf"
    formats: list[str] = field(default_factory=lambda: ["png"])
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    dicom_window: str = "auto"
    intensity: str = "auto"
    nifti_volume: int | str | None = None
    report: bool = True
    batch_size: int = 8

    def __post_init__(self) -> None:
        self.methods = list(dict.fromkeys(camscope.get_method(m).name for m in self.methods))
        parse_layout(self.layout)  # checked before any input is read
        infos = [camscope.get_method(m) for m in self.methods]
        for given, value, reads in (
            ("--layer", self.layer, lambda i: i.needs_layer),
            ("--layout", self.layout, lambda i: i.kind != "input"),
        ):
            if value is not None and not any(reads(info) for info in infos):
                raise CamscopeError(
                    f"{given} {value}: none of the methods run ({', '.join(self.methods)}) "
                    f"reads a layer; drop {given}"
                )
        for kind in self.formats:
            heatmap_suffix(kind)
        unknown = set(self.options) - set(self.methods)
        if unknown:
            raise CamscopeError(f"options given for methods not run: {', '.join(sorted(unknown))}")
        for method, options in self.options.items():  # before any input is read
            for name, value in options.items():
                check_option(camscope.get_method(method), name, value)
        if self.upsample not in ("auto", "linear", "nearest", "gaussian"):
            raise CamscopeError(
                f"upsample must be auto, linear, nearest or gaussian, not {self.upsample!r}"
            )
        if int(self.batch_size) < 1:
            raise CamscopeError(f"batch size must be at least 1, got {self.batch_size}")
        if self.dicom_window not in ("auto", "none"):
            raise CamscopeError(f"dicom_window must be 'auto' or 'none', not {self.dicom_window!r}")
        if self.intensity not in INTENSITY_RULES:
            raise CamscopeError(
                f"intensity must be one of {', '.join(INTENSITY_RULES)}, not {self.intensity!r}"
            )

    def read_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`camscope.io.read_image` for the inputs."""
        return {
            "intensity": self.intensity,
            "dicom_window": self.dicom_window,
            "nifti_volume": self.nifti_volume,
        }


def split_options(methods: Sequence[str], options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Give each method the options it takes: ``{"steps": 64}`` → ``{"integrated_gradients": …}``.

    Raises:
        CamscopeError: an option none of the methods takes.
    """
    accepted = {camscope.get_method(m).name: camscope.get_method(m).options for m in methods}
    for name in options:
        if not any(name in taken for taken in accepted.values()):
            raise CamscopeError(f"--option {name}: none of the chosen methods has that option")
    split = {m: {k: v for k, v in options.items() if k in taken} for m, taken in accepted.items()}
    return {m: chosen for m, chosen in split.items() if chosen}


def target_spec(targets: str | list[int], batch: int = 1, labels: list[int] | None = None) -> Any:
    """Settings' targets → what :func:`camscope.explain` takes for a batch of ``batch`` inputs.

    ``"label"`` explains each input's own label (from a manifest CSV).
    """
    if targets == "predicted":
        return None
    if targets == "all":
        return "all"
    if targets == "label":
        if labels is None:
            raise CamscopeError(
                "targets 'label' needs labels: give a manifest CSV with a label column"
            )
        return torch.tensor(labels)
    if isinstance(targets, list):
        return targets[0] if len(targets) == 1 else torch.tensor([targets]).expand(batch, -1)
    raise CamscopeError(
        f"targets must be 'predicted', 'all', 'label' or class indices, not {targets!r}"
    )


def _target_labels(e: camscope.Explanation, row: int) -> list[str]:
    if e.targets is None:
        return [f"t{i}" for i in range(e.maps.shape[1])]
    return [f"class{int(c)}" for c in e.targets[row]]


def _heatmaps(e: camscope.Explanation, settings: ExplainSettings) -> camscope.Explanation:
    """Input-resolution maps ``(B, T, *S)``."""
    if e.per_channel:
        return e.reduce_channels()
    mode = settings.upsample
    if mode == "auto":
        mode = camscope.get_method(e.method).upsampling
    sigma: Any = None
    if mode == "gaussian":
        sigma = settings.sigma if settings.sigma == "erf" else float(settings.sigma)
    return e.upsample(mode=mode, sigma=sigma)  # type: ignore[arg-type]


def _explain_or_refusal(
    model: nn.Module, x: torch.Tensor, method: str, settings: ExplainSettings, targets: Any
) -> camscope.Explanation | camscope.CamscopeError:
    """One method's explanation of a batch, or why it cannot explain this model (e.g. a layer
    method on TorchScript): the other methods still run and the record says why."""
    info = camscope.get_method(method)
    try:
        return camscope.explain(
            model,
            x,
            method=method,
            layer=settings.layer if info.needs_layer else None,
            layout=parse_layout(settings.layout) if info.kind != "input" else None,
            targets=targets,
            progress=False,
            **settings.options.get(method, {}),
        )
    except camscope.ModelError as error:
        if "torch.export" in str(error):
            return error
        return camscope.ModelError(
            f"{error}; does the model take inputs of this shape and channel count? (resize "
            "them, or check with camscope layers MODEL --input FILE)"
        )
    except camscope.CamscopeError as error:
        return error


def _row_arrays(
    e: camscope.Explanation, maps: np.ndarray, heat: np.ndarray, row: int
) -> dict[str, np.ndarray]:
    """One input's arrays for its NPZ: raw maps, heatmaps, scores, targets and per-sample
    extras."""
    arrays: dict[str, np.ndarray] = {
        "maps": maps[row],
        "heatmaps": heat[row],
        "scores": e.scores[row].cpu().numpy(),
    }
    if e.targets is not None:
        arrays["targets"] = e.targets[row].cpu().numpy()
    for key, value in e.extras.items():
        if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == len(maps):
            arrays[f"extra_{key}"] = value[row].detach().cpu().numpy()
    return arrays


def _write_row(
    folder: Path,
    name: str,
    method: str,
    scan: Any,
    arrays: dict[str, np.ndarray],
    heat: np.ndarray,
    labels: list[str],
    settings: ExplainSettings,
) -> list[str]:
    """Write one input's NPZ and its heatmap files (one per target and format); their names."""
    npz = f"{name}.{method}.npz"
    write_npz(folder / npz, **arrays)
    written = [npz]
    signed = camscope.get_method(method).shown_signed
    for kind in settings.formats:
        for index, label in enumerate(labels):
            file = f"{name}.{method}.{label}{heatmap_suffix(kind)}"
            write_heatmap(
                folder / file,
                heat[index],
                scan,
                kind,
                signed=signed,
                title=f"{method} · {label}",
            )
            written.append(file)
    return written


@dataclass
class ExplainJob:
    """Explain each input with every method of ``settings`` and write the heatmaps."""

    settings: ExplainSettings
    kind: str = "explain"

    def describe(self) -> dict[str, Any]:
        """The settings that make the outputs (part of the run's fingerprint)."""
        return asdict(self.settings)

    def run(self, model: nn.Module, batch: Batch) -> list[dict[str, Any]]:
        """Explain a group of same-shaped inputs; write each one's outputs."""
        settings, folder = self.settings, batch.folder
        scans, names = batch.scans, batch.names
        x = batch.tensor()
        targets = target_spec(settings.targets, len(scans), batch.labels)
        outputs: list[list[str]] = [[] for _ in scans]
        results: list[dict[str, Any]] = [{} for _ in scans]
        refused: dict[str, camscope.CamscopeError] = {}
        for method in settings.methods:
            e = _explain_or_refusal(model, x, method, settings, targets)
            if isinstance(e, camscope.CamscopeError):
                refused[method] = e
                continue
            heat = _heatmaps(e, settings).maps.detach().cpu().numpy().astype(np.float32)
            maps = e.maps.detach().cpu().numpy()
            for row, (scan, name) in enumerate(zip(scans, names, strict=True)):
                labels_row = _target_labels(e, row)
                if folder is not None:
                    outputs[row] += _write_row(
                        folder, name, method, scan, _row_arrays(e, maps, heat, row), heat[row],
                        labels_row, settings,
                    )  # fmt: skip
                results[row][method] = {
                    "layer": e.layer,
                    "layout": e.layout,
                    "targets": labels_row,
                    "scores": [float(v) for v in e.scores[row]],
                    "maps_shape": list(e.maps.shape[1:]),
                }
                if "restates_output" in e.extras:
                    results[row][method]["restates_output"] = list(e.extras["restates_output"])
        if refused and len(refused) == len(settings.methods):
            raise next(iter(refused.values()))
        records = []
        for row, scan in enumerate(scans):
            record: dict[str, Any] = {
                "input": scan.record(),
                "results": results[row],
                "outputs": outputs[row],
            }
            if refused:
                record["refused"] = {method: str(error) for method, error in refused.items()}
            if "nifti" in settings.formats and nifti_units_note(scan):
                record["nifti_units"] = nifti_units_note(scan)
            if batch.labels is not None:
                record["label"] = batch.labels[row]
            records.append(record)
        return records

    def complete(self, record: dict[str, Any], folder: Path) -> bool:
        """Whether every output file a record names exists."""
        return all((folder / output).exists() for output in record.get("outputs", []))

    def finish(self, run: Finished) -> dict[str, Any]:
        """The manifest, built from the records alone."""
        if run.folder is None or not self.settings.report:
            return {}
        _write_run_report(run.folder, run.records, run.failed, self.settings)
        return {"report": "report.html"}


@said_once
def explain_files(
    model: nn.Module | None,
    paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    settings: ExplainSettings,
    *,
    root: str | os.PathLike[str] | None = None,
    labels: list[int] | None = None,
    **run_options: Any,
) -> RunSummary:
    """Explain every file with every method and write the outputs (see the module docstring).

    Args:
        model: the network (``None`` with the Ray backend, which loads ``model_spec`` in each
            worker).
        paths: input files, in the dataset's order.
        out_dir: output folder (created).
        settings: methods, targets, formats, batch size, ...
        root: name outputs by their path relative to this folder (datasets with subfolders).
        labels: per-input classes (for ``targets="label"``), recorded beside each result.
        **run_options: ``model_record`` (how the model was loaded, for the manifest and the
            resume check), ``force``, ``progress``, ``read_workers``, ``backend``,
            ``model_spec``, ``ray_address``, ``ray_workers``: see :func:`camscope.runs.run_job`.

    Raises:
        OutputError: the folder holds another run's results and ``force`` is not set.
        InputError: every input failed (the first failure).
    """
    source = FileSource.from_paths(paths, root=root, labels=labels, **settings.read_options())
    return run_job(
        ExplainJob(settings),
        source,
        out_dir,
        model=model,
        batch_size=int(settings.batch_size),
        made=["report.html"],
        **run_options,
    )


def _write_run_report(
    folder: Path,
    records: list[dict[str, Any]],
    failed: list[dict[str, str]],
    settings: ExplainSettings,
) -> None:
    from camscope.render.report import ReportEntry, ReportMap, write_report

    entries = []
    for record in records[:REPORT_INPUTS]:
        try:
            scan = read_image(record["input"]["path"], **settings.read_options())
        except CamscopeError:
            continue
        maps = []
        for method, result in record["results"].items():
            with np.load(folder / f"{record['name']}.{method}.npz", allow_pickle=False) as arrays:
                heat = arrays["heatmaps"]
            signed = camscope.get_method(method).shown_signed
            for index, label in enumerate(result["targets"]):
                maps.append(ReportMap(method, label, heat[index], signed))
        details = {"shape": "×".join(map(str, scan.data.shape)), "format": scan.format}
        for key in ("intensity", "window", "volumes", "warning"):
            if key in scan.details:
                details[key] = scan.details[key]
        if record.get("refused"):
            details["not run"] = "; ".join(f"{m}: {e}" for m, e in record["refused"].items())
        entries.append(ReportEntry(record["name"], scan.data, maps, details))
    note = f" (first {REPORT_INPUTS} of {len(records)})" if len(records) > REPORT_INPUTS else ""
    write_report(
        folder / "report.html",
        entries,
        title=f"camscope explain: {len(records)} input(s){note}",
        settings={
            "methods": ", ".join(settings.methods),
            "layer": settings.layer or "default",
            "layout": settings.layout or "inferred",
            "targets": settings.targets,
            "upsample": settings.upsample,
            "intensity": settings.intensity,
            **({"failed": f"{len(failed)} input(s)"} if failed else {}),
        },
        failures=failed,
    )
