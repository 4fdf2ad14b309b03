"""Run the model above a layer on changed copies of that layer's output (Ablation-CAM).

A method that perturbs a layer's activations (zero one channel, then score the result) needs the
part of the network *above* the layer only: the trunk below it gives the same output every time.
:class:`LayerHead` runs the trunk on one sample and lets a forward hook replace the layer's
``(1, C, *s)`` output by ``n`` changed copies ``(n, C, *s)``, so one call runs the trunk once and
the head on ``n`` rows.

That is right for any head that treats rows independently and receives nothing from below the
layer except through it. A head that also takes a skip connection from the trunk (a U-Net, a
residual block around the layer) gets that tensor with batch 1 beside the layer's batch ``n``:
broadcasting then gives each row exactly what it would get alone (the trunk is the same for all),
and an op that does not broadcast (a concatenation) raises. Both are checked: the first call
runs one more row, an unchanged copy, and compares its output with the model's own output on
the sample; on any mismatch or error that call and every later one run the whole model on ``n``
copies of the input instead (slower, always right).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from camscope.engine.capture import attach_hook
from camscope.errors import CamscopeError
from camscope.layouts import CHANNELS_FIRST, Layout

__all__ = ["LayerHead"]


class LayerHead:
    """Outputs of the model when the layer's output of one sample is replaced by given maps.

    Args:
        model: the network (in the mode the caller chose; never modified).
        layer, name: the layer and its name.
        layout: how the layer's output is laid out as maps ``(B, C, *s)``.
        forward: runs the model on a batch without autograd (e.g.
            :meth:`~camscope.methods.context.MethodContext.forward`).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module,
        name: str,
        forward: Callable[[torch.Tensor], Any],
        layout: Layout = CHANNELS_FIRST,
    ) -> None:
        self.model = model
        self.layer = layer
        self.name = name
        self.layout = layout
        self._forward = forward
        #: whether the trunk runs once per call (``True``), the whole model per row (``False``),
        #: or not known yet (``None``: checked on the first call).
        self.head_only: bool | None = None

    def outputs(
        self, inputs: torch.Tensor, maps: torch.Tensor, unchanged: torch.Tensor, reference: Any
    ) -> Any:
        """The model's output when the layer's output on ``inputs (1, C_in, *S)`` is replaced by
        each row of ``maps (n, C, *s)``.

        ``unchanged`` ``(1, C, *s)`` is the layer's own output on ``inputs`` and ``reference`` the
        model's own output on them: the first call checks the head-only run against them.
        """
        if self.head_only is None:  # the first call checks the head-only run on its own rows
            checked = self._checked_head_only(inputs, maps, unchanged, reference)
            if checked is not None:
                return checked
        if self.head_only:
            return self._run(inputs, maps)
        return self._run(inputs.expand(len(maps), *inputs.shape[1:]), maps)

    def _checked_head_only(
        self, inputs: torch.Tensor, maps: torch.Tensor, unchanged: torch.Tensor, reference: Any
    ) -> Any:
        """The head-only outputs of ``maps``, run with the unchanged maps as one more row (last,
        so rows stay apart) and that row compared with the model's own output; ``None`` (and
        :attr:`head_only` ``False``) when the model cannot take it."""
        self.head_only = False
        try:
            output = self._run(inputs, torch.cat([maps, unchanged], dim=0))
        except CamscopeError:
            return None
        if not isinstance(output, torch.Tensor) or not isinstance(reference, torch.Tensor):
            return None
        if output.shape[0] != len(maps) + 1 or output.shape[1:] != reference.shape[1:]:
            return None
        if not bool(torch.allclose(output[-1:], reference[:1], rtol=1e-4, atol=1e-5)):
            return None
        self.head_only = True
        return output[:-1]

    def _run(self, inputs: torch.Tensor, maps: torch.Tensor) -> Any:
        def hook(module: nn.Module, args: object, output: Any) -> torch.Tensor:
            rows = maps.to(output.dtype)
            if self.layout.kind == "tokens":  # the prefix tokens (class token) of the sample
                prefix = output[:, : self.layout.prefix].expand(len(rows), -1, -1)
                return torch.cat([prefix, rows.flatten(2).transpose(1, 2)], dim=1)
            return self.layout.from_maps(rows, output)

        handle = attach_hook(self.layer, self.name, hook)
        try:
            return self._forward(inputs)
        finally:
            handle.remove()
