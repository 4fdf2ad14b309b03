"""What every command shares: one-line errors, the model options, loading a model."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from torch import nn

from camscope.cli.params import KEY_VALUE
from camscope.engine.relay import said_once
from camscope.errors import CamscopeError

__all__ = [
    "ALLOW_OUTSIDE",
    "ModelChoice",
    "backend_options",
    "exit_if_failed",
    "friendly",
    "input_options",
    "model_options",
    "output_options",
    "run_flags",
    "show_input_warnings",
]

F = TypeVar("F", bound=Callable[..., Any])


def friendly(function: F) -> F:
    """Turn CamscopeError into ``camscope: error: ...`` and exit code 2, never a traceback; each
    warning said once per command (:func:`~camscope.engine.relay.said_once`)."""

    @said_once
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except CamscopeError as error:
            click.echo(f"camscope: error: {error}", err=True)
            _notes(error)
            sys.exit(2)
        except KeyboardInterrupt as interrupt:
            click.echo("camscope: interrupted; outputs already written are complete", err=True)
            _notes(interrupt)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _notes(error: BaseException) -> None:
    """What camscope added to an error on its way up (e.g. where a resumable run's work is)."""
    for note in getattr(error, "__notes__", []):
        click.echo(note, err=True)


_MODEL_OPTIONS = [
    click.option(
        "--architecture",
        default=None,
        help="For bare weights (.safetensors, .pt state dict): a camscope model name, "
        "torchvision:<name> or module:callable.",
    ),
    click.option(
        "--arch-option",
        "arch_options",
        multiple=True,
        type=KEY_VALUE,
        help="Keyword for the architecture (repeat), e.g. num_classes=2.",
    ),
    click.option(
        "--trust-pickle",
        is_flag=True,
        help="Allow a whole pickled model (torch.load weights_only=False). Unpickling can run "
        "arbitrary code: only for files you trust.",
    ),
]


_BACKEND_OPTIONS = [
    click.option(
        "--backend",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="ray: Ray Data actors (pip install 'camscope[ray]'); same batches, same results.",
    ),
    click.option("--ray-address", default=None, help="A Ray cluster (default: start one)."),
    click.option("--workers", type=int, default=2, show_default=True, help="Ray actors."),
]


def _add(options: list[Any]) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _volume(text: str | None) -> int | str | None:
    if text is None or text.strip() == "channels":
        return None if text is None else "channels"
    try:
        return int(text)
    except ValueError:
        raise click.BadParameter(
            f"expected a volume index or 'channels', got {text!r}", param_hint="--nifti-volume"
        ) from None


_INPUT_OPTIONS = [
    click.option(
        "--intensity",
        type=click.Choice(["auto", "stored", "window", "minmax", "zscore"]),
        default="auto",
        show_default=True,
        help="What the model receives. auto: 8/16-bit images to [0, 1], DICOM through its window "
        "to [0, 1] if it has one (else modality values, e.g. HU), other formats as stored; "
        "stored: the file's values; window: DICOM window required; minmax / zscore: per input. "
        "The manifest and report say which.",
    ),
    click.option(
        "--dicom-window",
        type=click.Choice(["auto", "none"]),
        default="auto",
        show_default=True,
        help="none: DICOM modality values (HU) even where --intensity auto would window.",
    ),
    click.option(
        "--nifti-volume",
        default=None,
        callback=lambda ctx, param, value: _volume(value),
        help="For 4D NIfTI inputs: the volume to take (0, 1, ...) or 'channels' for all.",
    ),
]


def model_options(function: F) -> F:
    """``--architecture``, ``--arch-option`` and ``--trust-pickle``, handed to the command as one
    ``weights: ModelChoice``."""

    @functools.wraps(function)
    def wrapper(
        *args: Any,
        architecture: str | None,
        arch_options: tuple[tuple[str, object], ...],
        trust_pickle: bool,
        **kwargs: Any,
    ) -> Any:
        return function(
            *args, weights=ModelChoice(architecture, arch_options, trust_pickle), **kwargs
        )

    return _add(_MODEL_OPTIONS)(wrapper)  # type: ignore[return-value]


_FLAGS = [
    click.option("--force", is_flag=True, help="Start afresh: replace what is in --out."),
    click.option("--quiet", is_flag=True, help="No progress bars."),
]

#: ``--force`` and ``--quiet``.
run_flags = _add(_FLAGS)

#: ``--out`` (required), ``--force`` and ``--quiet``: where results go.
output_options = _add(
    [click.option("--out", "out_dir", required=True, help="Output folder."), *_FLAGS]
)

#: ``--intensity``, ``--dicom-window`` and ``--nifti-volume``: how inputs are read.
input_options = _add(_INPUT_OPTIONS)

#: ``--backend``, ``--ray-address`` and ``--workers`` of dataset runs.
backend_options = _add(_BACKEND_OPTIONS)


@dataclass(frozen=True)
class ModelChoice:
    """How MODEL is to be loaded (``--architecture``, ``--arch-option``, ``--trust-pickle``)."""

    architecture: str | None = None
    options: tuple[tuple[str, object], ...] = ()
    trust_pickle: bool = False

    def spec(self, text: str) -> dict[str, Any]:
        """Keyword arguments of :func:`camscope.io.load_model_spec` (what Ray workers load)."""
        return {
            "spec": text,
            "architecture": self.architecture,
            "options": dict(self.options),
            "trust_pickle": self.trust_pickle,
        }

    def with_options(self, *extra: tuple[str, object]) -> ModelChoice:
        """This choice with more KEY=VALUE architecture options."""
        return ModelChoice(self.architecture, (*self.options, *extra), self.trust_pickle)

    def load(self, text: str) -> tuple[nn.Module, dict[str, object]]:
        """Load MODEL; note built-in random weights on stderr."""
        from camscope.io.models import load_model_spec

        model, record = load_model_spec(**self.spec(text))
        if str(record.get("weights", "")).startswith("random"):
            click.echo(f"note: {text} is a built-in architecture with random weights", err=True)
        return model, record


def show_input_warnings(records: list[dict[str, Any]]) -> None:
    """Print what the readers warned about (e.g. a spacing assumed), one line per input, and
    once per method a layer whose maps only restate the output."""
    restating: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for record in records:
        scan = record.get("input", {})
        if scan.get("warning"):
            click.echo(f"camscope: note: {scan.get('path')}: {scan['warning']}", err=True)
        for method, result in record.get("results", {}).items():
            if isinstance(result, dict) and "restates_output" in result:
                key = (str(result.get("layer", "?")), tuple(result["restates_output"]))
                if method not in restating.setdefault(key, []):
                    restating[key].append(method)
    for (layer, tail), methods in restating.items():
        why = (
            f"only pointwise modules ({', '.join(tail)}) follow layer {layer}"
            if tail
            else f"layer {layer} gives the model's output itself"
        )
        click.echo(
            f"camscope: note: {', '.join(methods)}: {why}, so the maps restate the output (each "
            "class's logits, position by position); choose an earlier layer (camscope layers "
            "marks the default)",
            err=True,
        )


ALLOW_OUTSIDE = click.option(
    "--allow-outside",
    is_flag=True,
    help="Let a manifest CSV name files outside its own folder (only for manifests you trust).",
)


def exit_if_failed(failed: list[dict[str, str]]) -> None:
    """Exit 1 after saying how many inputs were skipped (their errors are in the manifest)."""
    if failed:
        click.echo(
            f"camscope: {len(failed)} input(s) failed and were skipped (listed in manifest.json)",
            err=True,
        )
        sys.exit(1)
