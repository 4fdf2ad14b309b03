"""Find layers by name or module, list candidate layers, and pick a sensible default.

Layer names are those of ``model.named_modules()`` (e.g. ``"layer4"``, ``"features.29"``,
``"maxpool2"``). A *spatial* layer is one whose output is a tensor ``(B, C, *s)`` with at least one
spatial axis and more than one position: the layers a class activation map can be taken at.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import nn

from camscope.errors import LayerError, ModelError

__all__ = ["LayerInfo", "default_layer", "probe_layers", "resolve_layer"]


@dataclass(frozen=True)
class LayerInfo:
    """What one module did in a forward pass.

    Attributes:
        name: its name in ``model.named_modules()``.
        kind: its class name.
        output_shape: shape of its (last) output without the batch axis, or ``None`` when the
            output is not a single tensor.
        calls: how many times it ran in the forward pass.
        order: position in the order modules *finished* (later layers have larger numbers).
    """

    name: str
    kind: str
    output_shape: tuple[int, ...] | None
    calls: int
    order: int

    @property
    def is_spatial(self) -> bool:
        """Whether the output is ``(C, *s)`` with at least two spatial positions."""
        shape = self.output_shape
        if shape is None or len(shape) < 2:
            return False
        spatial = 1
        for size in shape[1:]:
            spatial *= size
        return spatial > 1


def _available_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Turn a layer name or a module into ``(name, module)``.

    Args:
        model: the network.
        layer: a name from ``model.named_modules()`` or a submodule of ``model``.

    Returns:
        The layer's name and the module itself.

    Raises:
        LayerError: the name is unknown (the message lists close matches and the available
            names), or the module is not part of ``model``.
    """
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                if not name:
                    raise LayerError(
                        "the layer is the whole model; choose one of its submodules, e.g. "
                        + _short_list(_available_names(model))
                    )
                return name, module
        raise LayerError(
            f"the module {type(layer).__name__} passed as layer is not a submodule of the model; "
            "pass a module taken from this model or its name (see camscope.probe_layers)"
        )
    if not isinstance(layer, str):
        raise LayerError(
            f"layer must be a module name (str) or an nn.Module, not {type(layer).__name__}"
        )
    modules = dict(model.named_modules())
    if layer and layer in modules:
        return layer, modules[layer]
    names = _available_names(model)
    close = difflib.get_close_matches(layer, names, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise LayerError(
        f"no layer named {layer!r} in the model.{hint} Available: {_short_list(names)}"
    )


def _short_list(names: list[str], limit: int = 40) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names) - limit} more)"


def probe_layers(model: nn.Module, inputs: torch.Tensor) -> list[LayerInfo]:
    """Run one gradient-free forward pass and report every submodule's output shape.

    The model's state is not changed (hooks are removed even when the model raises). Only the
    first sample of ``inputs`` is used.

    Args:
        model: the network, in the train/eval mode the caller wants probed.
        inputs: a batch ``(B, C, *S)``.

    Returns:
        One :class:`LayerInfo` per submodule that ran, in the order they finished.

    Raises:
        ModelError: the model raised during the forward pass.
    """
    records: dict[str, dict[str, object]] = {}
    counter = [0]
    handles = []

    def make_hook(name: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: object, output: object) -> None:
            rec = records.setdefault(name, {"calls": 0})
            rec["calls"] = int(rec["calls"]) + 1  # type: ignore[call-overload]
            rec["shape"] = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else None
            rec["kind"] = type(module).__name__
            rec["order"] = counter[0]
            counter[0] += 1

        return hook

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        with torch.no_grad():
            try:
                model(inputs[:1])
            except Exception as error:  # the user's model; surface it as ours, cause chained
                raise ModelError(
                    f"the model raised {type(error).__name__} on the input: {error}"
                ) from error
    finally:
        for handle in handles:
            handle.remove()
    infos = [
        LayerInfo(
            name=name,
            kind=str(rec["kind"]),
            output_shape=rec["shape"],  # type: ignore[arg-type]
            calls=int(rec["calls"]),  # type: ignore[call-overload]
            order=int(rec["order"]),  # type: ignore[call-overload]
        )
        for name, rec in records.items()
    ]
    return sorted(infos, key=lambda info: info.order)


def default_layer(infos: list[LayerInfo]) -> str:
    """The last layer to finish whose output has spatial extent and that runs once.

    For a ResNet this is ``layer4``, for VGG the last block of ``features``, for the paper's
    CNN-1/CNN-2 ``maxpool2``: the layer right before the network flattens or pools globally.

    Raises:
        LayerError: no submodule produces a spatial output.
    """
    candidates = [info for info in infos if info.is_spatial and info.calls == 1]
    if not candidates:
        raise LayerError(
            "no layer of the model produces a spatial output (B, C, *s) with more than one "
            "position; pass layer= explicitly"
        )
    return candidates[-1].name
