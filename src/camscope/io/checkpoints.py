"""Model files and training checkpoints: safetensors weights + a JSON description. Never a pickle.

A saved model is a folder (or a pair of files sharing a stem) holding ``<stem>.safetensors`` (the
state dict) and ``<stem>.json`` (the registered architecture name, its constructor options and
any metadata, such as test accuracy). A training checkpoint adds the optimizer's tensors
(``<stem>.optimizer.safetensors``) and its non-tensor state, the scheduler's state and the epoch to
the JSON. The JSON is written last and records the SHA-256 of every tensor file, so a half-written
checkpoint is recognised and never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from camscope.errors import CamscopeError
from camscope.io.atomic import atomic_write, write_json

__all__ = ["CheckpointError", "SavedModel", "load_model", "read_checkpoint", "save_model"]

FORMAT = "camscope-checkpoint/1"


class CheckpointError(CamscopeError, OSError):
    """A model file or checkpoint is missing, incomplete, corrupted or does not fit the model."""


@dataclass(frozen=True)
class SavedModel:
    """What a model file's JSON says, plus its tensors."""

    architecture: str
    options: dict[str, Any]
    metadata: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    scheduler_state: dict[str, Any] | None
    epoch: int | None


def _beside(stem: Path, ending: str) -> Path:
    """``stem`` + ``ending`` (not ``with_suffix``: a stem like ``cnn2_snr-0.1`` has a dot)."""
    return stem.with_name(stem.name + ending)


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    from safetensors.torch import save

    payload = save(
        {k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata
    )
    with atomic_write(path, mode="wb") as handle:
        handle.write(payload)
    return hashlib.sha256(payload).hexdigest()


def _read_tensors(path: Path, digest: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    try:
        payload = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}") from error
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(
            f"{path} does not match its description (interrupted write or edited file); "
            "delete the checkpoint and train again"
        )
    return load(payload)


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for index, entries in state["state"].items():
        plain["state"][str(index)] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                plain["state"][str(index)][key] = value
    return tensors, plain


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in plain["state"].items()}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"param_groups": plain["param_groups"], "state": state}


def save_model(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    architecture: str,
    options: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    epoch: int | None = None,
) -> Path:
    """Save ``model`` (and optionally the training state) as ``path.safetensors`` + ``path.json``.

    Args:
        path: file stem, e.g. ``runs/models/cnn2_snr-inf`` (suffixes are added).
        model: the network; its ``state_dict`` is saved.
        architecture: a name :func:`camscope.models.create_model` knows.
        options: the constructor options that rebuild the architecture.
        metadata: anything JSON-serialisable (accuracy, data set, seed, ...).
        optimizer: its state, for resuming training.
        scheduler: the learning-rate scheduler's state, for resuming.
        epoch: epochs done, for resuming.

    Returns:
        The JSON file's path.
    """
    stem = Path(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    description: dict[str, Any] = {
        "format": FORMAT,
        "architecture": architecture,
        "options": options or {},
        "metadata": metadata or {},
        "epoch": epoch,
    }
    description["weights_sha256"] = _write_tensors(
        _beside(stem, ".safetensors"), model.state_dict(), {"architecture": architecture}
    )
    if optimizer is not None:
        tensors, plain = _flatten_optimizer(optimizer.state_dict())
        description["optimizer"] = plain
        description["optimizer_sha256"] = _write_tensors(
            _beside(stem, ".optimizer.safetensors"), tensors, {}
        )
    if scheduler is not None:
        description["scheduler"] = scheduler.state_dict()
    json_path = _beside(stem, ".json")
    try:
        write_json(json_path, description)
    except TypeError as error:
        raise CheckpointError(
            f"checkpoint description is not JSON-serialisable: {error}"
        ) from error
    return json_path


def read_checkpoint(path: str | os.PathLike[str]) -> SavedModel:
    """Read a saved model or checkpoint (``path`` with or without the ``.json`` suffix).

    Raises:
        CheckpointError: missing, incomplete or corrupted files, or not a camscope checkpoint.
    """
    stem = Path(path)
    for ending in (".json", ".safetensors"):
        if stem.name.endswith(ending):
            stem = stem.with_name(stem.name[: -len(ending)])
    json_path = _beside(stem, ".json")
    try:
        description = json.loads(json_path.read_text())
    except FileNotFoundError as error:
        raise CheckpointError(f"no saved model at {json_path}") from error
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{json_path} is not a readable checkpoint description: {error}"
        ) from error
    if description.get("format") != FORMAT:
        raise CheckpointError(
            f"{json_path} is not a camscope checkpoint (format {FORMAT!r} expected)"
        )
    state_dict = _read_tensors(_beside(stem, ".safetensors"), description["weights_sha256"])
    optimizer_state = None
    if "optimizer" in description:
        tensors = _read_tensors(
            _beside(stem, ".optimizer.safetensors"), description["optimizer_sha256"]
        )
        optimizer_state = _unflatten_optimizer(tensors, description["optimizer"])
    return SavedModel(
        architecture=description["architecture"],
        options=description["options"],
        metadata=description["metadata"],
        state_dict=state_dict,
        optimizer_state=optimizer_state,
        scheduler_state=description.get("scheduler"),
        epoch=description.get("epoch"),
    )


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, SavedModel]:
    """Rebuild a saved model from its architecture name and options, and load its weights.

    Returns:
        The model (in eval mode) and the saved description.

    Raises:
        CheckpointError: unreadable files, or weights that do not fit the architecture.
    """
    from camscope.models import create_model

    saved = read_checkpoint(path)
    model = create_model(saved.architecture, **saved.options)
    try:
        model.load_state_dict(saved.state_dict, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"the weights in {path} do not fit architecture {saved.architecture!r}: "
            f"{str(error).splitlines()[0]}"
        ) from error
    return model.eval(), saved
