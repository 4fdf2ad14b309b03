"""Respond-CAM's Figure 4 for any model: one method's map at every layer with spatial extent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from camscope.errors import MethodError

__all__ = ["layer_grid"]


def layer_grid(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str = "respond_cam",
    target: int | None = None,
    layers: Sequence[str] | None = None,
    title: str = "",
) -> Any:
    """Explain one input at every layer (or the given ones) and draw the maps in network order.

    Args:
        model: the network.
        inputs: one sample ``(1, C, *S)``.
        method: a layer method (CAM family).
        target: class to explain (default: predicted).
        layers: layer names; default every layer with spatial extent that runs once.
        title: the figure's title.

    Returns:
        A Matplotlib figure (see :func:`camscope.render.layer_grid_figure`).
    """
    import camscope
    from camscope.render.overlays import layer_grid_figure

    info = camscope.get_method(method)
    if info.kind != "cam":
        raise MethodError(f"layer_grid needs a layer method (CAM family), not {info.name}")
    if inputs.ndim < 4 or inputs.shape[0] != 1:
        raise MethodError(f"layer_grid takes one sample (1, C, *S), got {tuple(inputs.shape)}")
    if layers is None:
        infos = sorted(camscope.probe_layers(model, inputs), key=lambda layer: layer.order)
        layers = [
            layer.name for layer in infos if layer.is_spatial and layer.calls == 1 and layer.name
        ]
    maps = {}
    for name in layers:
        e = camscope.explain(model, inputs, method=info.name, layer=name, targets=target)
        maps[name] = e.maps[0, 0].detach().cpu().numpy()
    return layer_grid_figure(maps, signed=info.signed, title=title or f"{info.name} at every layer")
