"""The Ray backend: the same batches, the same per-batch code, on Ray Data actors.

Each row of the Ray dataset is one of the run's fixed batches (a list of input indices), so the
batches, and therefore the numbers, are exactly those of the local backend. ``map_batches`` runs
an actor pool; every actor loads the model once (from the model spec, not by shipping the
object), reads its batch's inputs and writes the outputs itself, atomically, to the shared output
folder, and returns the records; the driver writes the manifest. Any job runs here (explain,
evaluate). Actors ask for a GPU each when the cluster has GPUs. Install with
``pip install 'camscope[ray]'``.

Cost model on a cluster: each node pays Ray's start-up and one model load per actor; after that a
batch costs what it costs locally, plus reading inputs from and writing outputs to the shared
filesystem, which is where the bottleneck moves once there are more actors than the storage can
feed.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camscope.errors import CamscopeError
from camscope.io.inputs import LoadedImage
from camscope.runs.batch import process_batch
from camscope.runs.job import Job
from camscope.runs.sources import Source

__all__ = ["run_ray"]


class _Actor:
    """Holds the model once; turns one batch of input indices into written outputs and records."""

    def __init__(
        self,
        model_spec: dict[str, Any],
        job: Job,
        source: Source,
        folder: str | None,
        fingerprint: str,
        threads: int,
    ) -> None:
        import torch

        from camscope.io.models import load_model_spec

        torch.set_num_threads(threads)  # the local backend's, so both compute alike
        self.model, _ = load_model_spec(**model_spec)
        if torch.cuda.is_available():
            self.model = self.model.cuda()
        self.job, self.source = job, source
        self.folder = None if folder is None else Path(folder)
        self.fingerprint = fingerprint

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out_records, out_failures = [], []
        for indices in batch["indices"]:
            items: list[tuple[int, LoadedImage | Exception]] = []
            for index in [int(i) for i in indices]:
                try:
                    items.append((index, self.source.read(index)))
                except CamscopeError as error:
                    items.append((index, error))
            records, failures = process_batch(
                self.job, self.model, self.source, items, self.folder, self.fingerprint
            )
            out_records.append(json.dumps(records))
            out_failures.append(json.dumps(failures))
        return {"records": out_records, "failures": out_failures}


def run_ray(
    job: Job,
    source: Source,
    batches: list[list[int]],
    folder: Path | None,
    fingerprint: str,
    *,
    model_spec: dict[str, Any],
    address: str | None,
    workers: int,
    collect: Callable[[list[dict[str, Any]], list[dict[str, Any]]], None],
) -> None:
    """Run ``batches`` on a Ray actor pool and hand each batch's results to ``collect``.

    Raises:
        CamscopeError: Ray is not installed, or no model spec was given.
    """
    with warnings.catch_warnings():
        # Ray's own deprecation notices (about its internal settings) are not the user's business.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            import ray
        except ImportError as error:
            raise CamscopeError(
                "the Ray backend needs Ray: pip install 'camscope[ray]' (or 'ray[data]')"
            ) from error
        if not model_spec:
            raise CamscopeError("the Ray backend loads the model in each worker: give a model spec")
        if not batches:
            return
        import torch

        started = False
        if not ray.is_initialized():
            if address is None:
                ray.init(
                    num_cpus=max(workers, 1),
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                )
            else:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            started = True
        try:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= workers else 0
            dataset = ray.data.from_items(
                [{"indices": batch} for batch in batches], override_num_blocks=len(batches)
            )
            results = dataset.map_batches(
                _Actor,
                fn_constructor_kwargs={
                    "model_spec": model_spec,
                    "job": job,
                    "source": source,
                    "folder": None if folder is None else str(folder),
                    "fingerprint": fingerprint,
                    "threads": torch.get_num_threads(),
                },
                batch_size=1,
                concurrency=workers,
                num_cpus=1,
                num_gpus=gpus,
                batch_format="numpy",
            )
            for row in results.iter_rows():
                collect(json.loads(row["records"]), json.loads(row["failures"]))
        finally:
            if started:
                ray.shutdown()
