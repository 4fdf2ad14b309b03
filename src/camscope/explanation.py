"""The frozen result of :func:`camscope.explain`."""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from camscope import postprocess
from camscope.errors import InputError
from camscope.methods.registry import get_method
from camscope.receptive import erf_sigmas

__all__ = ["Explanation"]


@dataclass(frozen=True)
class Explanation:
    """Maps for ``T`` targets of each of ``B`` samples, with what produced them.

    Attributes:
        maps: ``(B, T, *s)``: raw, signed maps at layer resolution unless ``steps`` says otherwise;
            ``(B, T, C_in, *S)`` at input resolution for input-space methods (``per_channel``).
        scores: ``(B, T)``: the explained scores ``y`` (logits for class targets).
        targets: ``(B, T)`` class indices, or ``None`` for a callable target (its name is
            ``target_label``; :attr:`labels` names every target either way).
        outputs: the model's output on the batch (detached), e.g. ``(B, K)`` logits.
        method: registry name of the method.
        layer: name of the layer the maps were taken at (the chosen default when none was given).
        input_size: spatial size ``S`` of the inputs, e.g. ``(H, W)`` or ``(D, H, W)``.
        steps: post-processing applied since :func:`explain`, in order (empty for raw maps).
        in_channels: channels of the inputs (with ``input_size``, the input shape).
        per_channel: maps keep an input-channel axis ``C_in`` after ``T`` (input-space methods
            until :meth:`reduce_channels`).
        extras: what the method reports beside the maps, e.g. Integrated Gradients'
            ``completeness_gap`` ``(B, T)`` or Kernel SHAP's ``segments``.
        layout: how the layer's output was read as a map (``"channels_first"``,
            ``"channels_last"``, ``"tokens(14×14, prefix=1)"``; ``"input"`` for input-space
            methods); see :mod:`camscope.layouts`.
        target_label: a callable target's name (its ``__name__``, ``"callable"`` for a lambda);
            empty for class targets.
    """

    maps: torch.Tensor
    scores: torch.Tensor
    targets: torch.Tensor | None
    outputs: Any
    method: str
    layer: str
    input_size: tuple[int, ...]
    steps: tuple[str, ...] = ()
    in_channels: int = 1
    per_channel: bool = False
    extras: dict[str, Any] = field(default_factory=dict, compare=False)
    layout: str = "channels_first"
    target_label: str = ""
    # A weak reference: an Explanation does not keep a model alive, but can reach it for
    # upsample(sigma="erf") while it exists.
    model_ref: weakref.ReferenceType[nn.Module] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def labels(self) -> list[str]:
        """Each target's name: ``class3`` when every sample's target in that place is class 3,
        ``target1`` when they differ, and a callable's name (``name1``, ``name2``, ... when it
        gives several scores)."""
        count = self.maps.shape[1]
        if self.targets is None:
            name = self.target_label or "callable"
            return [name] if count == 1 else [f"{name}{t}" for t in range(count)]
        first = self.targets[0]
        same = (self.targets == first).all(0)
        return [
            f"class{int(c)}" if s else f"target{t}"
            for t, (c, s) in enumerate(zip(first.tolist(), same.tolist(), strict=True))
        ]

    @property
    def is_raw(self) -> bool:
        """True when no post-processing was applied."""
        return not self.steps

    def _with(self, maps: torch.Tensor, step: str) -> Explanation:
        return dataclasses.replace(self, maps=maps, steps=(*self.steps, step))

    def reduce_channels(self, kind: Literal["max_abs", "sum", "mean"] | None = None) -> Explanation:
        """One map per target: reduce an input-space map's channel axis ``(B, T, C_in, *S)``.

        Args:
            kind: ``"max_abs"``: ``max_c |·|`` (the usual display of gradients, unsigned);
                ``"sum"``: keeps signs and the map's total (attributions); ``"mean"``. ``None``
                takes the method's documented default (``camscope methods`` lists it).

        Returns:
            A new Explanation with maps ``(B, T, *S)``; unchanged if there is no channel axis.
        """
        if not self.per_channel:
            return self
        if kind is None:
            kind = get_method(self.method.rpartition("(")[2].rstrip(")")).channel_reduction
        if kind == "max_abs":
            maps = self.maps.abs().amax(dim=2)
        elif kind == "sum":
            maps = self.maps.sum(dim=2)
        elif kind == "mean":
            maps = self.maps.mean(dim=2)
        else:
            raise InputError(f"channel reduction {kind!r} unknown; use 'max_abs', 'sum' or 'mean'")
        return dataclasses.replace(
            self, maps=maps, per_channel=False, steps=(*self.steps, f"reduce_channels({kind})")
        )

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
        mode: postprocess.UpsampleMode | None = None,
        sigma: float | Sequence[float] | Literal["erf"] | None = None,
        mass_preserving: bool = False,
        model: nn.Module | None = None,
    ) -> Explanation:
        """A new Explanation with maps resized, by default to the input's spatial size.

        Args:
            size: output spatial size; default the input's.
            mode: ``"nearest"``, ``"linear"`` or ``"gaussian"``; default: the method's own
                (``"gaussian"`` for Extended-CAM, which is defined with it; ``"linear"`` for the
                others; ``camscope methods`` lists it).
            sigma: Gaussian widths in output pixels, or ``"erf"`` (the default for Gaussian
                mode): from the effective receptive field of this explanation's layer.
            mass_preserving: Gaussian only: keep each map's total.
            model: the network, for ``sigma="erf"`` when the explanation's model is gone.
        """
        target = tuple(size) if size is not None else self.input_size
        if mode is None:
            mode = get_method(self.method.rpartition("(")[2].rstrip(")")).upsampling
        if mode == "gaussian" and sigma is None:
            sigma = "erf"
        if isinstance(sigma, str):
            if sigma != "erf":
                raise InputError(f"sigma {sigma!r} not understood; give numbers or 'erf'")
            if model is None and self.model_ref is not None:
                model = self.model_ref()
            if model is None:
                raise InputError(
                    "sigma='erf' needs the model, which is gone; pass model= (the network this "
                    "explanation came from)"
                )
            sigma = erf_sigmas(model, self.layer, (self.in_channels, *self.input_size), target)
        source = self.maps.flatten(1, 2) if self.per_channel else self.maps
        maps = postprocess.upsample(
            source, target, mode=mode, sigma=sigma, mass_preserving=mass_preserving
        )
        if self.per_channel:
            maps = maps.unflatten(1, self.maps.shape[1:3])
        return self._with(maps, f"upsample({mode})")

    def __repr__(self) -> str:
        targets = (
            f"callable {self.target_label or 'callable'!r}"
            if self.targets is None
            else f"classes {tuple(self.targets.shape)}"
        )
        channels = ", per input channel" if self.per_channel else ""
        return (
            f"Explanation(method={self.method!r}, layer={self.layer!r}{channels}, "
            f"maps={tuple(self.maps.shape)} {self.maps.dtype}, targets={targets}, "
            f"input_size={self.input_size}, steps={self.steps})"
        )
