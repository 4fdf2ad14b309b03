"""Click parameter types for camscope's options: lists, KEY=VALUE pairs, shapes, sigmas, SNRs,
targets. Spaces around items are stripped everywhere; a bad value is a one-line usage error.

One grammar for methods, targets and layers in every command (:func:`methods_option`,
:func:`targets_option`, :func:`layer_option`): a comma list, the option repeated, or both
(``--method grad-cam,layer-cam --method saliency``); the singular and plural spellings of the
option are the same option; method names in kebab or snake case."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click

__all__ = [
    "CLASS_LIST",
    "INT_LIST",
    "KEY_VALUE",
    "LAYOUT",
    "NAME_LIST",
    "SHAPE",
    "SIGMA",
    "SNR",
    "TARGETS",
    "CommaList",
    "layer_option",
    "methods_option",
    "network_2d",
    "parse_value",
    "targets_option",
]


def parse_value(text: str) -> object:
    """A command-line value: int, float, true/false/none, a comma list of those, or text."""
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    if "," in text:
        return tuple(parse_value(part) for part in text.split(",") if part.strip())
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class CommaList(click.ParamType):
    """``a,b, c`` → a tuple of items converted by ``item`` (empty items dropped)."""

    def __init__(self, item: Callable[[str], Any], what: str) -> None:
        self.item = item
        self.what = what
        self.name = f"list of {what}"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[Any, ...]:
        """Parse the option's text (Click's hook)."""
        if isinstance(value, tuple):
            return value
        parts = [part.strip() for part in str(value).split(",") if part.strip()]
        if not parts:
            self.fail(f"expected a comma-separated list of {self.what}, got {value!r}", param, ctx)
        try:
            return tuple(self.item(part) for part in parts)
        except ValueError:
            self.fail(f"expected a comma-separated list of {self.what}, got {value!r}", param, ctx)


class KeyValue(click.ParamType):
    """``KEY=VALUE`` → ``(key, value)``; keys in kebab-case become snake_case."""

    name = "KEY=VALUE"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, object]:
        if isinstance(value, tuple):
            return value
        key, equals, text = str(value).partition("=")
        if not equals or not key.strip():
            self.fail(f"expected KEY=VALUE, got {value!r}", param, ctx)
        return key.strip().replace("-", "_"), parse_value(text)


class Shape(click.ParamType):
    """``C,H,W`` or ``C,D,H,W`` → positive ints."""

    name = "C,H,W"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            shape = tuple(int(part) for part in str(value).split(",") if part.strip())
        except ValueError:
            shape = ()
        if len(shape) not in (3, 4) or min(shape) < 1:
            self.fail(f"expected C,H,W or C,D,H,W (positive integers), got {value!r}", param, ctx)
        return shape


class Sigma(click.ParamType):
    """``erf`` or a positive number of pixels."""

    name = "erf|PIXELS"

    def convert(self, value: Any, param: Any, ctx: Any) -> str | float:
        text = str(value).strip().lower()
        if text == "erf":
            return "erf"
        try:
            number = float(text)
        except ValueError:
            number = -1.0
        if not number > 0 or math.isinf(number):
            self.fail(f"expected 'erf' or a positive number of pixels, got {value!r}", param, ctx)
        return number


class Snr(click.ParamType):
    """A signal-to-noise ratio: a positive number or ``inf``."""

    name = "SNR"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, float):
            return value
        from camscope.errors import CamscopeError
        from camscope.simulate.subtomogram import parse_snr

        try:
            return parse_snr(str(value).strip())
        except CamscopeError as error:
            self.fail(f"expected a positive number or 'inf': {error}", param, ctx)


class Targets(click.ParamType):
    """``predicted``, ``all``, ``label`` or class indices ``3`` / ``0,4,7``."""

    name = "TARGETS"

    def convert(self, value: Any, param: Any, ctx: Any) -> str | list[int]:
        if isinstance(value, list):
            return value
        text = str(value).strip()
        if text in ("predicted", "all", "label"):
            return text
        try:
            classes = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            classes = []
        if not classes or min(classes) < 0:
            self.fail(
                f"expected 'predicted', 'all', 'label' or class indices like 3 or 0,4,7; got "
                f"{value!r}",
                param,
                ctx,
            )
        return classes


NAME_LIST = CommaList(str, "names")
INT_LIST = CommaList(int, "integers")
CLASS_LIST = INT_LIST
KEY_VALUE = KeyValue()
SHAPE = Shape()
SIGMA = Sigma()
SNR = Snr()
TARGETS = Targets()


#: ``--layout``: how the layer lays out its map (checked where the command builds its settings).
LAYOUT = click.option(
    "--layout",
    default=None,
    help="How the layer lays out its map (default: inferred from the model and shape): "
    "channels_first, channels_last, tokens (grid from the model) or tokens:GRID[:PREFIX], "
    "e.g. tokens:14x14:1 for a ViT's 14×14 patches after its class token.",
)


#: ``--network`` of the shapes benchmark: the small network trained on it.
network_2d = click.option(
    "--network",
    type=click.Choice(["tiny2d", "vit2d"]),
    default="tiny2d",
    show_default=True,
    help="shapes: the network trained, a small CNN or a small ViT (the attention methods, "
    "e.g. attention-rollout, chefer, legrad, apply to it).",
)


def _flatten(values: Any) -> list[Any]:
    """Repeated comma-list options (a tuple of tuples) as one list, in order."""
    return [item for value in values or () for item in value]


def methods_option(default: str, help: str | None = None) -> Callable[[Any], Any]:
    """``--method/--methods``: method names (kebab or snake case), repeated or comma-separated;
    the command receives ``methods``, the registry's names in order, each once."""

    def names(ctx: Any, param: Any, value: Any) -> tuple[str, ...]:
        from camscope.errors import CamscopeError
        from camscope.methods import get_method

        chosen: list[str] = []
        for name in _flatten(value):
            try:
                canonical = get_method(name).name
            except CamscopeError as error:
                raise click.BadParameter(str(error).splitlines()[0], ctx, param) from None
            if canonical not in chosen:
                chosen.append(canonical)
        return tuple(chosen)

    return click.option(
        "--method",
        "--methods",
        "methods",
        type=NAME_LIST,
        multiple=True,
        default=[default],
        show_default=True,
        callback=names,
        help=help or "Methods: a comma list or the option repeated (kebab or snake case).",
    )


def targets_option(default: str, help: str) -> Callable[[Any], Any]:
    """``--targets/--target``: ``predicted``, ``all``, ``label`` or class indices, repeated or
    comma-separated; the command receives ``targets``, a keyword or a list of classes."""

    def merged(ctx: Any, param: Any, value: Any) -> str | list[int]:
        keywords = [v for v in value if isinstance(v, str)]
        if keywords and len(value) > 1:
            raise click.BadParameter(
                f"{keywords[0]!r} stands alone; give it once, or list class indices", ctx, param
            )
        if keywords:
            return keywords[0]
        classes: list[int] = []
        for item in _flatten(value):
            if item not in classes:
                classes.append(item)
        return classes

    return click.option(
        "--targets",
        "--target",
        "targets",
        type=TARGETS,
        multiple=True,
        default=[default],
        show_default=True,
        callback=merged,
        help=help + " A comma list or the option repeated.",
    )


def layer_option(help: str, *, several: bool = True) -> Callable[[Any], Any]:
    """``--layer/--layers``: a layer name, or several (repeated or comma-separated; their maps are
    fused on the finest grid) where ``several``; the command receives ``layer``: ``None``, a name
    or a list of names."""

    def layers(ctx: Any, param: Any, value: Any) -> str | list[str] | None:
        names = list(dict.fromkeys(_flatten(value)))
        if len(names) > 1 and not several:
            raise click.BadParameter(
                f"this command explains one layer at a time, got {', '.join(names)}; explain "
                "and scan take several (their maps fused)",
                ctx,
                param,
            )
        return None if not names else names[0] if len(names) == 1 else names

    return click.option(
        "--layer",
        "--layers",
        "layer",
        type=NAME_LIST,
        multiple=True,
        default=None,
        callback=layers,
        help=help,
    )
