"""The frozen result of :func:`camscope.explain`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from camscope import postprocess

__all__ = ["Explanation"]


@dataclass(frozen=True)
class Explanation:
    """Maps for ``T`` targets of each of ``B`` samples, with what produced them.

    Attributes:
        maps: ``(B, T, *s)``: raw, signed maps at layer resolution unless ``steps`` says otherwise.
        scores: ``(B, T)``: the explained scores ``y`` (logits for class targets).
        targets: ``(B, T)`` class indices, or ``None`` for a callable target.
        outputs: the model's output on the batch (detached), e.g. ``(B, K)`` logits.
        method: registry name of the method.
        layer: name of the layer the maps were taken at (the chosen default when none was given).
        input_size: spatial size ``S`` of the inputs, e.g. ``(H, W)`` or ``(D, H, W)``.
        steps: post-processing applied since :func:`explain`, in order (empty for raw maps).
    """

    maps: torch.Tensor
    scores: torch.Tensor
    targets: torch.Tensor | None
    outputs: Any
    method: str
    layer: str
    input_size: tuple[int, ...]
    steps: tuple[str, ...] = ()

    @property
    def is_raw(self) -> bool:
        """True when no post-processing was applied."""
        return not self.steps

    def _with(self, maps: torch.Tensor, step: str) -> Explanation:
        return dataclasses.replace(self, maps=maps, steps=(*self.steps, step))

    def relu(self) -> Explanation:
        """A new Explanation with ``max(maps, 0)``."""
        return self._with(postprocess.relu(self.maps), "relu")

    def normalize(self, kind: postprocess.NormalizeKind = "minmax") -> Explanation:
        """A new Explanation with maps normalised per sample and target (see :func:`normalize`)."""
        return self._with(postprocess.normalize(self.maps, kind=kind), f"normalize({kind})")

    def upsample(
        self,
        size: Sequence[int] | None = None,
        *,
        mode: postprocess.UpsampleMode = "linear",
        sigma: float | Sequence[float] | None = None,
        mass_preserving: bool = False,
    ) -> Explanation:
        """A new Explanation with maps resized, by default to the input's spatial size."""
        target = tuple(size) if size is not None else self.input_size
        maps = postprocess.upsample(
            self.maps, target, mode=mode, sigma=sigma, mass_preserving=mass_preserving
        )
        return self._with(maps, f"upsample({mode})")

    def __repr__(self) -> str:
        targets = "callable" if self.targets is None else f"classes {tuple(self.targets.shape)}"
        return (
            f"Explanation(method={self.method!r}, layer={self.layer!r}, "
            f"maps={tuple(self.maps.shape)} {self.maps.dtype}, targets={targets}, "
            f"input_size={self.input_size}, steps={self.steps})"
        )
