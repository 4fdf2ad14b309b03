"""Load a user's model safely from what they have on disk.

==============================  ===============================================================
what                            how
==============================  ===============================================================
a built-in name (``cnn2``)      :func:`camscope.models.create_model`, seeded random weights
camscope saved model            ``<stem>.json`` + ``<stem>.safetensors`` (SHA-256 checked)
TorchScript (``.pt``/``.ts``)   ``torch.jit.load``: no Python pickle is executed
``torch.export`` (``.pt2``)     ``torch.export.unflatten(torch.export.load(...))``
weights (``.safetensors``)      + ``architecture``: a camscope name, ``torchvision:<name>`` or
                                ``module:callable`` (your code, imported by your choice)
weights (``.pt``/``.pth``)      ``torch.load(weights_only=True)`` + ``architecture``; a pickle
                                that needs more (a whole pickled model) is refused unless
                                ``trust_pickle=True``, because unpickling can run any code
==============================  ===============================================================
"""

from __future__ import annotations

import importlib
import os
import pickle
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from camscope.errors import ModelError
from camscope.io.checkpoints import CheckpointError

__all__ = ["build_architecture", "load_model_spec"]

#: Seed of a built-in architecture's random weights.
BUILTIN_SEED = 0


def build_architecture(architecture: str, options: dict[str, Any] | None = None) -> nn.Module:
    """A fresh model from ``camscope-name``, ``torchvision:<name>`` or ``module:callable``.

    Raises:
        ModelError: unknown name, import failure, or the callable does not return a Module.
    """
    options = dict(options or {})
    from camscope.models import create_model, list_models

    if architecture.startswith("torchvision:"):
        import torchvision

        name = architecture.split(":", 1)[1]
        try:
            return torchvision.models.get_model(name, weights=None, **options)
        except (ValueError, TypeError) as error:
            raise ModelError(f"torchvision cannot build {name!r}: {error}") from error
    if ":" in architecture:
        module_name, _, attribute = architecture.partition(":")
        try:
            module = importlib.import_module(module_name)
            factory = getattr(module, attribute)
        except (ImportError, AttributeError) as error:
            raise ModelError(
                f"cannot import {architecture!r} ({error}); give module:callable with the module "
                "on PYTHONPATH"
            ) from error
        try:
            model = factory(**options)
        except TypeError as error:
            raise ModelError(f"{architecture}({options}) failed: {error}") from error
        if not isinstance(model, nn.Module):
            raise ModelError(f"{architecture} returned {type(model).__name__}, not a torch Module")
        return model
    if architecture.replace("-", "_") in list_models():
        return create_model(architecture, **options)
    raise ModelError(
        f"unknown architecture {architecture!r}: give a camscope model "
        f"({', '.join(list_models())}), "
        "torchvision:<name> or module:callable"
    )


def _load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    for key in ("state_dict", "model_state_dict", "model"):
        if key in state and isinstance(state[key], dict):
            state = state[key]  # type: ignore[assignment]
    for prefix in ("_orig_mod.", "module."):  # torch.compile's and DataParallel's wrappers
        if state and all(name.startswith(prefix) for name in state):
            state = {name[len(prefix) :]: value for name, value in state.items()}
    if any("._orig_mod." in name for name in state) and not any(
        "._orig_mod." in name for name in model.state_dict()
    ):  # saved from a model with a submodule compiled in place (model.part = torch.compile(...))
        state = {name.replace("._orig_mod.", "."): value for name, value in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        lines = str(error).splitlines()
        raise CheckpointError(
            f"the weights in {source} do not fit this architecture: {' '.join(lines[:3])[:400]} "
            "(another architecture, or options such as num_classes=…?)"
        ) from error
    return model


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(
            "/code/" in name or name.endswith("constants.pkl") for name in archive.namelist()
        )


def load_model_spec(
    spec: str | os.PathLike[str],
    *,
    architecture: str | None = None,
    options: dict[str, Any] | None = None,
    trust_pickle: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model from a name or file (see the module's table) and say what was loaded.

    Args:
        spec: a built-in model name or a file path.
        architecture: for bare weights: ``camscope-name``, ``torchvision:<name>``,
            ``module:callable``.
        options: keyword arguments for the architecture (e.g. ``num_classes``).
        trust_pickle: allow ``torch.load(weights_only=False)`` for a whole pickled model. Only for
            files from a source you trust: unpickling can run arbitrary code.

    Returns:
        The model in eval mode, and a JSON-ready record for the run's manifest.

    Raises:
        ModelError, CheckpointError: what cannot be loaded, and what to do instead.
    """
    from camscope.models import list_models

    text = str(spec)
    if architecture is None and text.replace("-", "_") in list_models() and not Path(text).exists():
        return _load_builtin(text, options)
    path = Path(text)
    name = path.name.lower()
    json_beside = path.with_name(
        path.name.removesuffix(".json").removesuffix(".safetensors") + ".json"
    )
    if name.endswith(".json") or (
        name.endswith(".safetensors") and architecture is None and json_beside.exists()
    ):
        return _load_camscope(path)
    if not path.is_file():
        hint = ""
        if ":" in text and not path.suffix:  # torchvision:resnet18, package.module:build
            hint = (
                f"; {text} looks like an architecture: give it with --architecture, and the "
                "weights file (.safetensors or a .pt state dict) as the model"
            )
        raise ModelError(
            f"{path}: no such model file, and not a built-in model "
            f"({', '.join(list_models())}){hint}"
        )
    for matches, loader in _FILE_LOADERS:
        if matches(path):
            return loader(path, architecture, options, trust_pickle)
    raise AssertionError("the last loader takes every file")  # pragma: no cover


Loaded = tuple[nn.Module, dict[str, Any]]


def _load_builtin(name: str, options: dict[str, Any] | None) -> Loaded:
    """A built-in architecture with seeded random weights (two runs, and a resumed run, get the
    same ones)."""
    from camscope.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILTIN_SEED)
        try:
            model = create_model(name, **(options or {})).eval()
        except (TypeError, ValueError) as error:
            raise ModelError(
                f"cannot build {name} with {options or {}}: {error} (check --arch-option)"
            ) from error
    return model, {
        "architecture": name,
        "weights": f"random (built-in architecture, seed {BUILTIN_SEED})",
    }


def _load_camscope(path: Path) -> Loaded:
    """A camscope checkpoint: safetensors + JSON (the architecture is in the JSON)."""
    from camscope.io.checkpoints import load_model

    stem = path.with_name(path.name.removesuffix(".json").removesuffix(".safetensors"))
    model, saved = load_model(stem)
    return model, {
        "path": str(stem),
        "format": "camscope",
        "architecture": saved.architecture,
        **saved.options,
    }


def _load_export(path: Path, architecture: Any, options: Any, trust_pickle: bool) -> Loaded:
    """A ``torch.export`` program (``.pt2``), unflattened."""
    try:
        program = torch.export.load(str(path))
    except Exception as error:
        raise ModelError(f"cannot load {path} as a torch.export program: {error}") from error
    # Unflattened, not .module(): submodules keep their names and run as modules, so layer
    # methods can record conv2 as in the eager model.
    return torch.export.unflatten(program), {"path": str(path), "format": "torch.export"}


def _load_safetensors(
    path: Path, architecture: str | None, options: dict[str, Any] | None, trust_pickle: bool
) -> Loaded:
    """Bare weights in safetensors, into ``architecture``."""
    if architecture is None:
        raise ModelError(
            f"{path} holds weights only; say which network they belong to with an "
            "architecture (camscope name, torchvision:<name> or module:callable)"
        )
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"cannot read {path} as safetensors: {error}") from error
    model = _load_weights(build_architecture(architecture, options), state, str(path))
    return model.eval(), {
        "path": str(path),
        "format": "safetensors",
        "architecture": architecture,
        **(options or {}),
    }


def _load_torchscript(path: Path, architecture: Any, options: Any, trust_pickle: bool) -> Loaded:
    """A TorchScript archive (safe: no Python pickle runs)."""
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated in favour of torch.export, but users still have such
            # files; loading one is safe (no Python pickle runs).
            warnings.simplefilter("ignore", FutureWarning)
            scripted = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as error:
        raise ModelError(f"cannot load {path} as TorchScript: {error}") from error
    return scripted.eval(), {"path": str(path), "format": "torchscript"}


def _load_pickle(
    path: Path, architecture: str | None, options: dict[str, Any] | None, trust_pickle: bool
) -> Loaded:
    """``torch.save`` files: a state dict (``weights_only``), or a whole pickled module only
    when trusted."""
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
        trusted = False
    except pickle.UnpicklingError as error:
        if "unsupported global" not in str(error).lower():  # not code in the pickle: broken
            raise CheckpointError(f"cannot read {path} as a PyTorch file: {error}") from error
        if not trust_pickle:
            raise CheckpointError(
                f"{path} is a pickle that holds more than weights (e.g. a whole pickled model), "
                "and unpickling it could run arbitrary code. Save a state dict "
                "(torch.save(model.state_dict(), ...)), safetensors, TorchScript or torch.export "
                "instead; or, only if you trust where the file comes from, pass --trust-pickle "
                "(trust_pickle=True)"
            ) from error
        try:
            loaded = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as inner:
            raise CheckpointError(f"cannot unpickle {path}: {inner}") from inner
        trusted = True
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise CheckpointError(f"cannot read {path} as a PyTorch file: {error}") from error
    record: dict[str, Any] = {"path": str(path)}
    if isinstance(loaded, nn.Module):
        return loaded.eval(), {**record, "format": "pickled module (trusted)"}
    if isinstance(loaded, dict):
        if architecture is None:
            raise ModelError(
                f"{path} holds a state dict (weights only); say which network it belongs to "
                "with an architecture (--architecture on the command line, architecture= in "
                "Python): a camscope name, torchvision:<name> or module:callable"
            )
        model = _load_weights(build_architecture(architecture, options), loaded, str(path))
        kind = "state dict (trusted pickle)" if trusted else "state dict (weights_only)"
        return model.eval(), {
            **record,
            "format": kind,
            "architecture": architecture,
            **(options or {}),
        }
    raise ModelError(f"{path} holds a {type(loaded).__name__}, not a model or a state dict")


#: Model files by kind, tried in order (the first that matches loads the file): like the input
#: readers, one loader per format. ``torch.load`` files come last: they have no fixed ending.
_FILE_LOADERS: tuple[tuple[Callable[[Path], bool], Callable[..., Loaded]], ...] = (
    (lambda path: path.name.lower().endswith(".pt2"), _load_export),
    (lambda path: path.name.lower().endswith(".safetensors"), _load_safetensors),
    (lambda path: _is_torchscript(path), _load_torchscript),
    (lambda path: True, _load_pickle),
)
