"""One runner for many inputs: a job over a source, in fixed batches, resumable, on a backend.

For every batch of input indices (fixed ranges of the source's order), the backend reads the
inputs, the job computes and writes each input's outputs and then its record
``records/<name>.json``: the mark that the input is done. A run started again with the same
settings and model skips the inputs whose record matches the input as it is now (path, size and
time, or content) and whose outputs all exist, and redoes the others, so every input ends with
exactly one complete set of outputs; what comes at the end (manifest, tables, report) is built
from the records alone, so it is the same whether the run was interrupted or not. An input that
cannot be read or that the model refuses is listed under ``failed`` and the others go on.

An input that failed gets a record of its failure: a resumed run does not retry it unless the
input changed (``force`` retries everything). Without a folder (``out_dir=None``) the records stay
in memory: nothing is written or resumed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import camscope
from camscope.engine import weights_digest
from camscope.engine.relay import add_said, said_once, said_so_far
from camscope.errors import CamscopeError, InputError
from camscope.io.atomic import OutputError, write_json
from camscope.runs.backends import BACKENDS, run_local, run_ray
from camscope.runs.identity import fingerprint, recorded_fingerprint
from camscope.runs.job import Finished, Job
from camscope.runs.records import (
    RECORDS,
    fixed_batches,
    load_records,
    prepare_records,
    remove_previous_run,
)
from camscope.runs.sources import Source

__all__ = ["MANIFEST", "RunSummary", "fingerprint_of", "run_job"]

MANIFEST = "manifest.json"


@dataclass
class RunSummary:
    """What a run did: folder, inputs done now, skipped as already done, failures, the records
    of every input done (in the source's order) and the manifest."""

    folder: Path | None
    done: list[str]
    resumed: list[str]
    failed: list[dict[str, str]]
    records: list[dict[str, Any]]
    manifest: dict[str, Any]

    def __repr__(self) -> str:
        return (
            f"RunSummary(folder={self.folder!r}, done={len(self.done)}, "
            f"resumed={len(self.resumed)}, failed={len(self.failed)})"
        )


def fingerprint_of(job: Job, model_record: dict[str, Any], batch_size: int) -> str:
    """16 hex digits naming what made a record: the job's settings, the model (with the digest
    of its weights) and the batch size (batches are fixed, so it changes numbers)."""
    return fingerprint(
        {"job": job.kind, "settings": job.describe(), "model": model_record, "batch": batch_size}
    )


def _reusable(
    job: Job, source: Source, folder: Path, fingerprint: str, force: bool, made: list[str]
) -> dict[str, dict[str, Any]]:
    if force:
        remove_previous_run(folder, [MANIFEST, *made])
        return {}
    done = load_records(
        folder,
        source.names,
        fingerprint,
        identity=source.identity,
        complete=lambda record: "failed" in record or job.complete(record, folder),
    )
    manifest = folder / MANIFEST
    if not done and manifest.exists() and recorded_fingerprint(manifest) != fingerprint:
        raise OutputError(
            f"{folder} already holds a camscope run ({MANIFEST}); choose another --out "
            "or pass --force to overwrite"
        )
    return done


@said_once
def run_job(
    job: Job,
    source: Source,
    out_dir: str | os.PathLike[str] | None,
    *,
    model: nn.Module | None,
    model_record: dict[str, Any] | None = None,
    model_spec: dict[str, Any] | None = None,
    batch_size: int | None = None,
    force: bool = False,
    progress: bool = True,
    backend: str = "local",
    read_workers: int = 2,
    ray_address: str | None = None,
    ray_workers: int = 2,
    made: list[str] | None = None,
) -> RunSummary:
    """Run ``job`` on every input of ``source``.

    Args:
        job: what to compute (:class:`~camscope.runs.job.Job`).
        source: the inputs (:mod:`camscope.runs.sources`).
        out_dir: output folder (created), or ``None`` to keep the records in memory only.
        model: the network; with the Ray backend, used only for the fingerprint (each worker
            loads ``model_spec``) and may be ``None``.
        model_record: how the model was loaded (manifest); the weights' digest is added.
        model_spec: for Ray: keyword arguments of :func:`camscope.io.load_model_spec`.
        batch_size: inputs per batch (default: the job's own setting, e.g.
            ``ExplainSettings.batch_size``, else 8).
        force: start afresh, removing what a previous run in ``out_dir`` wrote.
        progress: show a progress bar.
        backend: ``"local"`` or ``"ray"`` (:mod:`camscope.runs.backends`).
        read_workers: threads reading inputs ahead of the computation (local backend).
        ray_address: an existing Ray cluster's address (``None`` starts one).
        ray_workers: Ray actors.
        made: run-level files the job writes at the end (removed by ``force`` too).

    Raises:
        OutputError: the folder holds another run's results and ``force`` is not set.
        InputError: every input failed (the first failure).
        CamscopeError: an unknown backend or a bad batch size.
    """
    from tqdm.auto import tqdm

    batch_size = _checked_batch_size(job, model, backend, batch_size)
    record = dict(model_record or {"type": type(model).__name__})
    if model is not None:
        record["weights_sha256"] = weights_digest(model)
    fingerprint = fingerprint_of(job, record, int(batch_size))
    folder = None if out_dir is None else Path(out_dir)
    created = folder is not None and not folder.exists()
    done: dict[str, dict[str, Any]] = {}
    if folder is not None:
        done = _reusable(job, source, folder, fingerprint, force, list(made or []))
        prepare_records(folder)
        for item in done.values():  # what the interrupted run said, for this run's manifest
            add_said(item.get("warnings", []))
    names = source.names
    todo = fixed_batches(len(source), int(batch_size), lambda i: names[i] in done)
    finished: list[str] = []
    bar = tqdm(total=sum(len(b) for b in todo), disable=not progress, desc=job.kind, unit="input")

    def collect(records: list[dict[str, Any]], failures: list[dict[str, Any]]) -> None:
        for item in records:
            done[item["name"]] = item
            finished.append(item["name"])
        for failure in failures:
            where = source.where(failure["index"])
            error = failure["error"]
            done[names[failure["index"]]] = {"failed": error}
            if len(source) > 1:
                said = error if where in error else f"{where}: {error}"
                tqdm.write(f"camscope: skipped {said}")
        bar.update(len(records) + len(failures))

    try:
        if backend == "ray":
            run_ray(
                job,
                source,
                todo,
                folder,
                fingerprint,
                model_spec=model_spec or {},
                address=ray_address,
                workers=ray_workers,
                collect=collect,
            )
        else:
            assert model is not None
            run_local(
                job,
                model,
                source,
                todo,
                folder,
                fingerprint,
                collect=collect,
                read_workers=read_workers,
            )
    finally:
        bar.close()
    failed, ordered = _outcome(source, done, folder, created)
    manifest: dict[str, Any] = {
        "camscope": camscope.__version__,
        "torch": torch.__version__,
        "job": job.kind,
        "fingerprint": fingerprint,
        "model": record,
        "settings": job.describe(),
        "batch_size": int(batch_size),
        "backend": backend,
        "n_inputs": len(source),
        "inputs": ordered,
        "failed": failed,
    }
    manifest.update(job.finish(Finished(folder, ordered, failed)))
    manifest["warnings"] = said_so_far()  # said in this process, each once
    if folder is not None:
        write_json(folder / MANIFEST, manifest)
    resumed = [
        name
        for name in names
        if name in done and name not in finished and "failed" not in done[name]
    ]
    return RunSummary(folder, finished, resumed, failed, ordered, manifest)


def _checked_batch_size(
    job: Job, model: nn.Module | None, backend: str, batch_size: int | None
) -> int:
    """The run's batch size (the job's own when not given), the backend and model checked."""
    if backend not in BACKENDS:
        raise CamscopeError(f"unknown backend {backend!r}; use {' or '.join(BACKENDS)}")
    if batch_size is None:
        batch_size = int(getattr(getattr(job, "settings", None), "batch_size", 8))
    if int(batch_size) < 1:
        raise CamscopeError(f"batch size must be at least 1, got {batch_size}")
    if backend == "local" and model is None:
        raise CamscopeError("the local backend needs a model")
    return int(batch_size)


def _outcome(
    source: Source, done: dict[str, dict[str, Any]], folder: Path | None, created: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The failed inputs and the records of the others, in the source's order.

    Raises:
        InputError: every input failed (saying the first error); the folder is left as it was.
    """
    names = source.names
    failed = [
        {"path": source.where(index), "error": done[name]["failed"]}
        for index, name in enumerate(names)
        if "failed" in done.get(name, {})
    ]
    ordered = [done[name] for name in names if name in done and "failed" not in done[name]]
    if failed and not ordered:
        if folder is not None:
            _remove_empty(folder, created)
        first = failed[0]["error"]
        if failed[0]["path"] not in first:  # say which input, once
            first = f"{failed[0]['path']}: {first}"
        raise InputError(
            first if len(failed) == 1 else f"all {len(failed)} inputs failed; first: {first}"
        )
    return failed, ordered


def _remove_empty(folder: Path, created: bool) -> None:
    """After a run in which nothing succeeded: no ``records/`` of failures only (a run with
    other settings may then use the folder), nor a folder the run made."""
    records = folder / RECORDS
    if records.is_dir():
        for path in records.glob("*.json"):
            try:
                failure = "failed" in json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                failure = True
            if failure:
                path.unlink()
        if not any(records.iterdir()):
            records.rmdir()
    if created and folder.is_dir() and not any(folder.iterdir()):
        shutil.rmtree(folder)
