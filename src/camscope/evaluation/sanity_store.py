"""Each method's sanity checks saved as soon as they are done, so that an interrupted
``camscope evaluate sanity`` started again continues with the methods it had not checked.

One file per method, ``<out>/checked/<method>.safetensors``: the result's tensors, and in the
metadata its names, the key of the job (model, inputs and settings), the SHA-256 of its tensors
and the warnings said while it was checked. A file of another job, or whose tensors no longer
match their digest, is not used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from camscope.engine.relay import add_said
from camscope.engine.state import weights_digest
from camscope.evaluation.sanity import SanityResult
from camscope.io.atomic import atomic_path

__all__ = ["job_key", "load_checked", "save_checked"]

_TENSORS = ("similarity", "random_logit", "road_gap", "original", "steps")
_OPTIONAL = ("data_randomization", "sparseness", "sensitivity")


def job_key(model: Any, inputs: torch.Tensor, targets: torch.Tensor, settings: dict) -> str:
    """A digest of what a method's checks depend on: the model's weights, the inputs, the
    targets and the settings (seed, randomisation, layer, control, camscope's version)."""
    digest = hashlib.sha256()
    digest.update(weights_digest(model).encode())
    for tensor in (inputs, targets):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors (names, dtypes, shapes and values, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def save_checked(folder: Path, result: SanityResult, key: str, warned: Sequence[str] = ()) -> None:
    """Write one method's result (atomically: a killed run leaves no torn file), with the
    warnings said while checking it."""
    tensors = {name: getattr(result, name).contiguous() for name in _TENSORS}
    tensors |= {
        name: value.contiguous()
        for name in _OPTIONAL
        if (value := getattr(result, name)) is not None
    }
    metadata = {
        "job": key,
        "method": result.method,
        "layers": json.dumps(result.layers),
        "layer": json.dumps(result.layer),
        "sha256": _digest(tensors),
        "warnings": json.dumps(list(warned)),  # a resumed run's records keep them
    }
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"{result.method}.safetensors") as path:
        save_file(tensors, str(path), metadata=metadata)


def load_checked(folder: Path, methods: list[str], key: str) -> dict[str, SanityResult]:
    """The results of ``methods`` saved by the same job (other, unreadable, incomplete or
    altered files: ignored, their methods are checked again). The warnings said by the run that
    saved them count as said in the running call (:func:`~camscope.engine.relay.add_said`)."""
    done: dict[str, SanityResult] = {}
    for method in methods:
        path = folder / f"{method}.safetensors"
        if not path.exists():
            continue
        try:
            with safe_open(str(path), framework="pt") as stored:
                metadata = stored.metadata() or {}
                if metadata.get("job") != key or metadata.get("method") != method:
                    continue
                tensors = {name: stored.get_tensor(name) for name in stored.keys()}
            if metadata.get("sha256") != _digest(tensors):  # changed since it was saved
                continue
            done[method] = SanityResult(
                method=method,
                layers=json.loads(metadata["layers"]),
                similarity=tensors["similarity"],
                random_logit=tensors["random_logit"],
                road_gap=tensors["road_gap"],
                data_randomization=tensors.get("data_randomization"),
                original=tensors["original"],
                steps=tensors["steps"],
                layer=json.loads(metadata["layer"]),
                sparseness=tensors.get("sparseness"),
                sensitivity=tensors.get("sensitivity"),
            )
            add_said(json.loads(metadata.get("warnings", "[]")))
        except (OSError, ValueError, KeyError, SafetensorError):  # torn or incomplete
            continue
    return done
