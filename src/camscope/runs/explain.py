"""Explain a list of files and write what imaging people open: the engine of ``camscope explain``.

For every input file and method, the pipeline writes

* ``<name>.<method>.npz``: raw maps ``(T, …)``, scores, targets, the input-resolution heatmaps
  ``(T, *S)`` and any per-target values the method reports (e.g. ``completeness_gap``);
* ``<name>.<method>.<target>.<ext>`` in each requested format (NIfTI, MRC, TIFF, PNG, NPY) with the
  input's geometry;
* ``records/<name>.json``: written last, it marks the input as done (what was written, scores),

and at the end ``manifest.json`` (versions, model, settings, every input, failures) and
``report.html``. Each file is written atomically. A run interrupted at any point and started again
with the same settings skips the inputs whose record exists and redoes the others, so every input
ends with exactly one complete set of outputs; the manifest is rebuilt from the records, so it is
the same whether the run was interrupted or not. An unreadable input is reported, listed under
``failed`` in the manifest and skipped; the others go on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import camscope
from camscope.errors import CamscopeError, InputError
from camscope.io.atomic import OutputError, write_json, write_npz
from camscope.io.heatmaps import heatmap_suffix, write_heatmap
from camscope.io.inputs import Scan, read_scan
from camscope.runs.records import (
    RECORDS,
    fixed_batches,
    group_by_shape,
    load_records,
    output_names,
    prepare_records,
)

__all__ = [
    "ExplainSettings",
    "RunSummary",
    "explain_files",
    "output_names",
    "process_batch",
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
        layer: layer for methods that use one (``None``: the default layer).
        targets: ``"predicted"``, ``"all"`` or a list of class indices.
        upsample: ``"auto"`` (Gaussian for Extended-CAM, linear for the others), ``"linear"``,
            ``"nearest"`` or ``"gaussian"``: how layer maps reach input resolution.
        sigma: ``"erf"`` or a number of pixels, for Gaussian upsampling.
        formats: heatmap formats beside the NPZ (see :data:`HEATMAP_FORMATS`).
        options: per-method options, ``{method: {name: value}}``.
        dicom_window: ``"auto"`` or ``"none"`` (see :func:`camscope.io.read_scan`).
        report: write ``report.html``.
        batch_size: inputs explained together. Batches are fixed ranges of the dataset's order,
            so an interrupted run redoes whole batches and gets the same numbers.
    """

    methods: list[str]
    layer: str | None = None
    targets: str | list[int] = "predicted"
    upsample: str = "auto"
    sigma: str | float = "erf"
    formats: list[str] = field(default_factory=lambda: ["png"])
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    dicom_window: str = "auto"
    report: bool = True
    batch_size: int = 8

    def __post_init__(self) -> None:
        self.methods = [camscope.get_method(m).name for m in self.methods]
        for kind in self.formats:
            heatmap_suffix(kind)
        unknown = set(self.options) - set(self.methods)
        if unknown:
            raise CamscopeError(f"options given for methods not run: {', '.join(sorted(unknown))}")
        if self.upsample not in ("auto", "linear", "nearest", "gaussian"):
            raise CamscopeError(
                f"upsample must be auto, linear, nearest or gaussian, not {self.upsample!r}"
            )
        if int(self.batch_size) < 1:
            raise CamscopeError(f"batch size must be at least 1, got {self.batch_size}")
        if self.dicom_window not in ("auto", "none"):
            raise CamscopeError(f"dicom_window must be 'auto' or 'none', not {self.dicom_window!r}")

    def fingerprint(self, model_record: dict[str, Any]) -> str:
        text = json.dumps(
            {"settings": asdict(self), "model": model_record}, sort_keys=True, default=str
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class RunSummary:
    """What a run did: folder, inputs done now, skipped as already done, and failures."""

    folder: Path
    done: list[str]
    resumed: list[str]
    failed: list[dict[str, str]]
    manifest: dict[str, Any]


def split_options(methods: Sequence[str], options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Give each method the options it takes: ``{"steps": 64}`` → ``{"integrated_gradients": …}``.

    Raises:
        CamscopeError: an option none of the methods takes.
    """
    from camscope.explain import method_options

    accepted = {
        camscope.get_method(m).name: method_options(camscope.get_method(m)) for m in methods
    }
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
        mode = "gaussian" if e.method == "extended_cam" else "linear"
    sigma: Any = None
    if mode == "gaussian":
        sigma = settings.sigma if settings.sigma == "erf" else float(settings.sigma)
    return e.upsample(mode=mode, sigma=sigma)  # type: ignore[arg-type]


def _explain_group(
    model: nn.Module,
    scans: list[Scan],
    names: list[str],
    labels: list[int] | None,
    folder: Path,
    settings: ExplainSettings,
    fingerprint: str,
) -> list[dict[str, Any]]:
    """Explain inputs of one shape together; write each one's outputs, then its record."""
    x = torch.stack([scan.tensor() for scan in scans])
    targets = target_spec(settings.targets, len(scans), labels)
    outputs: list[list[str]] = [[] for _ in scans]
    results: list[dict[str, Any]] = [{} for _ in scans]
    for method in settings.methods:
        info = camscope.get_method(method)
        options = settings.options.get(method, {})
        try:
            e = camscope.explain(
                model,
                x,
                method=method,
                layer=settings.layer if info.needs_layer else None,
                targets=targets,
                progress=False,
                **options,
            )
        except camscope.ModelError as error:
            raise camscope.ModelError(
                f"{scans[0].path} (shape {tuple(scans[0].data.shape)}): {error}; does the model "
                "take inputs of this shape and channel count? (resize them, or check with "
                "camscope layers MODEL --input FILE)"
            ) from error
        heat = _heatmaps(e, settings).maps.detach().cpu().numpy().astype(np.float32)
        maps = e.maps.detach().cpu().numpy()
        for row, (scan, name) in enumerate(zip(scans, names, strict=True)):
            labels_row = _target_labels(e, row)
            arrays: dict[str, np.ndarray] = {
                "maps": maps[row],
                "heatmaps": heat[row],
                "scores": e.scores[row].cpu().numpy(),
            }
            if e.targets is not None:
                arrays["targets"] = e.targets[row].cpu().numpy()
            for key, value in e.extras.items():
                if (
                    isinstance(value, torch.Tensor)
                    and value.ndim >= 1
                    and value.shape[0] == len(scans)
                ):
                    arrays[f"extra_{key}"] = value[row].detach().cpu().numpy()
            npz = f"{name}.{method}.npz"
            write_npz(folder / npz, **arrays)
            outputs[row].append(npz)
            for kind in settings.formats:
                for index, label in enumerate(labels_row):
                    file = f"{name}.{method}.{label}{heatmap_suffix(kind)}"
                    write_heatmap(
                        folder / file,
                        heat[row, index],
                        scan,
                        kind,
                        signed=info.signed,
                        title=f"{method} · {label}",
                    )
                    outputs[row].append(file)
            results[row][method] = {
                "layer": e.layer,
                "targets": labels_row,
                "scores": [float(v) for v in e.scores[row]],
                "maps_shape": list(e.maps.shape[1:]),
            }
    records = []
    for row, (scan, name) in enumerate(zip(scans, names, strict=True)):
        record: dict[str, Any] = {
            "input": scan.record(),
            "name": name,
            "fingerprint": fingerprint,
            "results": results[row],
            "outputs": outputs[row],
        }
        if labels is not None:
            record["label"] = labels[row]
        write_json(folder / RECORDS / f"{name}.json", record)
        records.append(record)
    return records


def process_batch(
    model: nn.Module,
    items: list[tuple[int, Scan | Exception]],
    names: list[str],
    labels: list[int] | None,
    folder: Path,
    settings: ExplainSettings,
    fingerprint: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One batch: readable inputs grouped by shape (in order), explained, written.

    Returns:
        The records of the inputs done and the failures ``{index, error}``.
    """
    groups, errors = group_by_shape(items)
    failed: list[dict[str, Any]] = [{"index": i, "error": str(e)} for i, e in errors]
    records = []
    for group in groups:
        indices = [i for i, _ in group]
        records += _explain_group(
            model,
            [s for _, s in group],
            [names[i] for i in indices],
            None if labels is None else [labels[i] for i in indices],
            folder,
            settings,
            fingerprint,
        )
    return records, failed


def _check_folder(folder: Path, names: list[str], fingerprint: str, force: bool) -> dict[str, dict]:
    """Reusable records whose outputs all exist; refuse another run's results."""
    done = load_records(
        folder,
        names,
        fingerprint,
        force=force,
        complete=lambda record: all((folder / o).exists() for o in record.get("outputs", [])),
    )
    manifest = folder / "manifest.json"
    if not force and not done and manifest.exists():
        if json.loads(manifest.read_text()).get("fingerprint") != fingerprint:
            raise OutputError(
                f"{folder} already holds a camscope run (manifest.json); choose another --out "
                "or pass --force to overwrite"
            )
    return done


def explain_files(
    model: nn.Module | None,
    paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    settings: ExplainSettings,
    *,
    model_record: dict[str, Any] | None = None,
    root: str | os.PathLike[str] | None = None,
    labels: list[int] | None = None,
    force: bool = False,
    progress: bool = True,
    read_workers: int = 2,
    backend: str = "local",
    model_spec: dict[str, Any] | None = None,
    ray_address: str | None = None,
    ray_workers: int = 2,
) -> RunSummary:
    """Explain every file with every method and write the outputs (see the module docstring).

    Args:
        model: the network (``None`` with the Ray backend, which loads ``model_spec`` in each
            worker).
        paths: input files, in the dataset's order.
        out_dir: output folder (created).
        settings: methods, targets, formats, batch size, ...
        model_record: how the model was loaded, for the manifest and the resume check.
        root: name outputs by their path relative to this folder (datasets with subfolders).
        labels: per-input classes (for ``targets="label"``), recorded beside each result.
        force: start afresh, overwriting a previous run's outputs.
        progress: show a progress bar.
        read_workers: threads reading files ahead of the computation (0: none).
        backend: ``"local"`` (this process) or ``"ray"`` (Ray Data actors, each holding the model
            once; see :mod:`camscope.runs.ray_backend`).
        model_spec: for Ray: keyword arguments of :func:`camscope.io.load_model_spec`.
        ray_address: an existing Ray cluster's address; ``None`` starts a local one.
        ray_workers: Ray actors.

    Raises:
        OutputError: the folder holds another run's results and ``force`` is not set.
        InputError: every input failed (the first failure).
    """
    from tqdm.auto import tqdm

    model_record = dict(model_record or {"type": type(model).__name__})
    folder = Path(out_dir)
    names = output_names(paths, root)
    if labels is not None and len(labels) != len(paths):
        raise InputError(f"{len(labels)} labels for {len(paths)} inputs")
    fingerprint = settings.fingerprint(model_record)
    done = _check_folder(folder, names, fingerprint, force)
    prepare_records(folder)
    todo = fixed_batches(len(paths), int(settings.batch_size), lambda i: names[i] in done)
    failed: list[dict[str, str]] = []
    finished: list[str] = []
    bar = tqdm(
        total=sum(len(b) for b in todo), disable=not progress, desc="explaining", unit="input"
    )

    def collect(records: list[dict[str, Any]], failures: list[dict[str, Any]]) -> None:
        for record in records:
            done[record["name"]] = record
            finished.append(record["name"])
        for failure in failures:
            path = str(paths[failure["index"]])
            failed.append({"path": path, "error": failure["error"]})
            if len(paths) > 1:
                tqdm.write(f"camscope: skipped {path}: {failure['error']}")
        bar.update(len(records) + len(failures))

    if backend == "ray":
        from camscope.runs.ray_backend import run_with_ray

        run_with_ray(
            todo,
            [str(p) for p in paths],
            names,
            labels,
            folder,
            settings,
            fingerprint,
            model_spec=model_spec or {},
            address=ray_address,
            workers=ray_workers,
            collect=collect,
        )
    elif backend == "local":
        if model is None:
            raise CamscopeError("the local backend needs a model")
        from camscope.runs.loader import read_ahead

        def read(path: str) -> Scan:
            return read_scan(path, dicom_window=settings.dicom_window)  # type: ignore[arg-type]

        stream = read_ahead(
            [str(p) for p in paths], [i for b in todo for i in b], read, workers=read_workers
        )
        for batch in todo:
            items: list[tuple[int, Scan | Exception]] = [next(stream) for _ in batch]
            collect(*process_batch(model, items, names, labels, folder, settings, fingerprint))
    else:
        raise CamscopeError(f"unknown backend {backend!r}; use 'local' or 'ray'")
    bar.close()
    if failed and not done:
        first = failed[0]["error"]
        raise InputError(
            first if len(failed) == 1 else f"all {len(failed)} inputs failed; first: {first}"
        )
    ordered = [done[name] for name in names if name in done]
    manifest = {
        "camscope": camscope.__version__,
        "torch": torch.__version__,
        "fingerprint": fingerprint,
        "model": model_record,
        "settings": asdict(settings),
        "backend": backend,
        "n_inputs": len(paths),
        "inputs": ordered,
        "failed": failed,
    }
    if settings.report:
        _write_run_report(folder, ordered, settings, model_record)
        manifest["report"] = "report.html"
    write_json(folder / "manifest.json", manifest)
    resumed = [name for name in names if name in done and name not in finished]
    return RunSummary(folder, finished, resumed, failed, manifest)


def _write_run_report(
    folder: Path,
    records: list[dict[str, Any]],
    settings: ExplainSettings,
    model_record: dict[str, Any],
) -> None:
    from camscope.render.report import ReportEntry, ReportMap, write_report

    entries = []
    for record in records[:REPORT_INPUTS]:
        try:
            scan = read_scan(record["input"]["path"], dicom_window=settings.dicom_window)  # type: ignore[arg-type]
        except CamscopeError:
            continue
        maps = []
        for method, result in record["results"].items():
            with np.load(folder / f"{record['name']}.{method}.npz", allow_pickle=False) as arrays:
                heat = arrays["heatmaps"]
            signed = camscope.get_method(method).signed
            for index, label in enumerate(result["targets"]):
                maps.append(ReportMap(method, label, heat[index], signed))
        details = {"shape": "×".join(map(str, scan.data.shape)), "format": scan.format}
        entries.append(ReportEntry(record["name"], scan.data, maps, details))
    note = f" (first {REPORT_INPUTS} of {len(records)})" if len(records) > REPORT_INPUTS else ""
    write_report(
        folder / "report.html",
        entries,
        title=f"camscope explain: {len(records)} input(s){note}",
        settings={
            "model": json.dumps(model_record, default=str),
            "methods": ", ".join(settings.methods),
            "layer": settings.layer or "default",
            "targets": settings.targets,
            "upsample": settings.upsample,
        },
    )
