"""How a layer lays out its feature map, so that every layer method sees ``(B, C, *s)``.

Convolutional layers output ``(B, C, *s)`` (channels first). Other layers do not:

* ``"channels_last"``: ``(B, *s, C)``: Swin stages, ConvNeXt blocks, MONAI's Swin blocks;
* :func:`tokens`: a token sequence ``(B, N, C)`` whose first ``prefix`` tokens are not patches
  (class, distillation and register tokens) and whose other ``N - prefix`` tokens are a row-major
  patch grid of shape ``grid`` (2D or 3D): ViT, DeiT, UNETR's encoder.

The engine turns the layer's output into ``(B, C, *grid)`` when it records it and hands the model
the same values in the layer's own layout. The rearrangement is linear, so gradients at the layer
come out laid out the same way and every layer method (the CAM family, Score-CAM, Extended-CAM)
works unchanged. Gradients reach only the patch tokens: a class token's activations are not a
place in the input, and are left out of the map.

With ``layout=None`` the layout is inferred:

* from the model where it states its geometry: torchvision's ``VisionTransformer`` and
  ``SwinTransformer``, timm's ViT, DeiT and Swin families, MONAI's ``ViT`` (also inside
  ``UNETR``) and ``SwinUNETR``: the patch size and the number of prefix tokens give the grid;
* from the shape for a layer with one axis per input axis plus a channel axis: channels first
  when its spatial sizes follow the input's proportions (today's convolutional maps), channels
  last when only the last axis breaks them (``(B, 7, 7, 768)`` of a 224² image).

Anything else is refused with a :class:`~camscope.errors.LayerError` that names ``layout=`` and
the shape seen: a map with a wrong axis is never made.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from camscope.errors import LayerError

__all__ = [
    "CHANNELS_FIRST",
    "CHANNELS_LAST",
    "Layout",
    "LayoutResolver",
    "LayoutSpec",
    "as_layout",
    "model_geometry",
    "parse_layout",
    "tokens",
]

LayoutKind = Literal["channels_first", "channels_last", "tokens"]


@dataclass(frozen=True)
class Layout:
    """One layer's layout: ``channels_first``, ``channels_last`` or ``tokens`` over ``grid``.

    Attributes:
        kind: the layout.
        grid: for tokens, the patch grid (``(h, w)`` or ``(d, h, w)``); ``None`` otherwise.
        prefix: for tokens, how many tokens before the patches are not patches.
    """

    kind: LayoutKind
    grid: tuple[int, ...] | None = None
    prefix: int = 0

    def __str__(self) -> str:
        if self.kind != "tokens":
            return self.kind
        grid = "×".join(str(size) for size in self.grid or ())
        return f"tokens({grid}, prefix={self.prefix})"

    @property
    def text(self) -> str:
        """The text form :func:`parse_layout` reads back (``tokens:14x14:1``)."""
        if self.kind != "tokens":
            return self.kind
        return f"tokens:{'x'.join(str(size) for size in self.grid or ())}:{self.prefix}"

    def check(self, shape: Sequence[int], spatial_dims: int, name: str) -> None:
        """Raise a :class:`LayerError` unless an output of ``shape`` (with the batch axis) fits.

        Args:
            shape: the layer's output shape.
            spatial_dims: the input's number of spatial axes (2 or 3).
            name: the layer's name, for the message.
        """
        seen = tuple(int(size) for size in shape)
        if self.kind == "tokens":
            grid = self.grid or ()
            if len(seen) != 3:
                raise LayerError(
                    f"layer {name!r} outputs {seen}, not a token sequence (B, N, C); choose "
                    "another layout= (channels_first, channels_last) or another layer"
                )
            if len(grid) != spatial_dims:
                raise LayerError(
                    f"layout {self} has a {len(grid)}D grid but the inputs have {spatial_dims} "
                    f"spatial axes; give camscope.tokens(grid) with {spatial_dims} sizes"
                )
            patches = seen[1] - self.prefix
            if patches != math.prod(grid):
                raise LayerError(
                    f"layer {name!r} outputs {seen[1]} tokens, but layout {self} needs "
                    f"{self.prefix} + {math.prod(grid)}; check the grid (input size / patch "
                    "size) and the prefix (class, distillation and register tokens)"
                )
            return
        if len(seen) != spatial_dims + 2:
            raise LayerError(
                f"layer {name!r} outputs {seen}, which is not (B, C, *s) or (B, *s, C) with "
                f"{spatial_dims} spatial axes like the inputs; for a token sequence (B, N, C) "
                "pass layout=camscope.tokens(grid, prefix=...)"
            )

    def to_maps(self, output: torch.Tensor) -> torch.Tensor:
        """The layer's output as a channels-first map ``(B, C, *s)`` (a view where possible)."""
        if self.kind == "channels_first":
            return output
        if self.kind == "channels_last":
            return output.movedim(-1, 1)
        grid = self.grid or ()
        return output[:, self.prefix :].transpose(1, 2).unflatten(2, grid)

    def from_maps(self, maps: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """``maps`` ``(B, C, *s)`` back in the layer's layout, a new tensor the model may change
        in place; ``output`` supplies the prefix tokens (they carry no gradient)."""
        if self.kind == "channels_first":
            return maps.clone()
        if self.kind == "channels_last":
            return maps.movedim(1, -1).clone(memory_format=torch.contiguous_format)
        patches = maps.flatten(2).transpose(1, 2)
        return torch.cat([output[:, : self.prefix].detach(), patches], dim=1)


#: ``(B, C, *s)``, the layout of convolutional layers.
CHANNELS_FIRST = Layout("channels_first")
#: ``(B, *s, C)``.
CHANNELS_LAST = Layout("channels_last")

#: What ``layout=`` takes: ``None`` (inferred), ``"channels_first"``, ``"channels_last"``,
#: ``"tokens"`` (the grid inferred from the model) or :func:`tokens`.
LayoutSpec = Layout | str | None


def tokens(grid: int | Sequence[int], prefix: int = 0) -> Layout:
    """A token-sequence layout ``(B, N, C)``: ``prefix`` non-patch tokens, then a patch grid.

    Args:
        grid: the patch grid, row-major: ``(h, w)`` for images, ``(d, h, w)`` for volumes.
        prefix: leading tokens that are not patches (1 for a class token, 2 for DeiT's class and
            distillation tokens, 1 + registers for register ViTs).

    Raises:
        LayerError: a grid size or prefix that is not a positive (resp. non-negative) integer.

    Example:
        >>> str(tokens((14, 14), prefix=1))
        'tokens(14×14, prefix=1)'
    """
    sizes = (grid,) if isinstance(grid, int) else tuple(grid)
    if not sizes or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes
    ):
        raise LayerError(f"tokens(grid) needs positive integer sizes, got {grid!r}")
    if not isinstance(prefix, int) or isinstance(prefix, bool) or prefix < 0:
        raise LayerError(f"tokens(prefix=) must be a non-negative integer, got {prefix!r}")
    return Layout("tokens", sizes, prefix)


def as_layout(spec: LayoutSpec) -> Layout | str | None:
    """Check a ``layout=`` value: a :class:`Layout`, ``None``, one of the layout names, or the
    text form ``"tokens:GRID[:PREFIX]"`` (see :func:`parse_layout`)."""
    if spec is None or isinstance(spec, Layout):
        return spec
    if isinstance(spec, str) and spec.strip().startswith("tokens:"):
        return parse_layout(spec)
    if isinstance(spec, str):
        name = spec.replace("-", "_")
        if name == "channels_first":
            return CHANNELS_FIRST
        if name == "channels_last":
            return CHANNELS_LAST
        if name == "tokens":
            return "tokens"
    raise LayerError(
        f"layout must be None, 'channels_first', 'channels_last', 'tokens', "
        f"'tokens:GRID[:PREFIX]' or camscope.tokens(grid, prefix=...), not {spec!r}"
    )


def layout_text(spec: LayoutSpec) -> str | None:
    """A ``layout=`` value as text (for settings written to disk), checked."""
    checked = as_layout(spec)
    return checked.text if isinstance(checked, Layout) else checked


def parse_layout(text: str | None) -> Layout | str | None:
    """A ``--layout`` value: ``channels_first``, ``channels_last``, ``tokens`` (the grid from
    the model) or ``tokens:GRID[:PREFIX]`` with ``GRID`` like ``14x14`` or ``4x4x4``.

    Example:
        >>> str(parse_layout("tokens:14x14:1"))
        'tokens(14×14, prefix=1)'
    """
    if text is None:
        return None
    name, colon, rest = text.strip().partition(":")
    if name.replace("-", "_") != "tokens" or not colon:
        return as_layout(text.strip())
    if not rest:
        raise LayerError(f"--layout {text!r}: expected tokens:GRID[:PREFIX], e.g. tokens:14x14:1")
    grid_text, _, prefix_text = rest.partition(":")
    try:
        grid = tuple(int(size) for size in grid_text.lower().replace("×", "x").split("x"))
        prefix = int(prefix_text) if prefix_text else 0
    except ValueError:
        raise LayerError(
            f"--layout {text!r}: expected tokens:GRID[:PREFIX], e.g. tokens:14x14:1"
        ) from None
    return tokens(grid, prefix)


@dataclass(frozen=True)
class Geometry:
    """What a transformer states about its layers' layout.

    Attributes:
        family: e.g. ``"torchvision ViT"``, for messages.
        patch: the patch size per spatial axis, or ``None`` (no token layers).
        prefix: non-patch tokens before the patches.
        channels_last: whether its spatial (non-token) layers are channels last.
        class_token: whether its head reads the first prefix token (``None``: not stated).
    """

    family: str
    patch: tuple[int, ...] | None = None
    prefix: int = 0
    channels_last: bool = False
    class_token: bool | None = None


def _sizes(value: object, rank: int) -> tuple[int, ...] | None:
    if isinstance(value, int):
        return (value,) * rank
    if (
        isinstance(value, Sequence)
        and len(value) == rank
        and all(isinstance(v, int) for v in value)
    ):
        return tuple(int(v) for v in value)
    return None


def _monai_patch(embedding: object, spatial_dims: int) -> tuple[int, ...] | None:
    """A MONAI ``PatchEmbeddingBlock``'s patch size: its convolution's kernel, or the sizes its
    perceptron's rearrangement names."""
    patches = getattr(embedding, "patch_embeddings", None)
    if isinstance(patches, nn.Sequential) and len(patches) > 0:
        lengths = getattr(patches[0], "axes_lengths", None)
        if isinstance(lengths, dict):
            sizes = [lengths.get(f"p{axis + 1}") for axis in range(spatial_dims)]
            return _sizes(sizes, spatial_dims)
    return _sizes(getattr(patches, "kernel_size", None), spatial_dims)


def model_geometry(model: nn.Module, spatial_dims: int) -> Geometry | None:
    """The layout facts a known transformer states, or ``None`` for any other model.

    Looks at the model and its submodules (a ViT inside a UNETR, a backbone inside a wrapper).
    """
    for module in model.modules():
        cls = type(module)
        kind, origin = cls.__name__, cls.__module__
        if origin.startswith("torchvision.models.vision_transformer") and kind == (
            "VisionTransformer"
        ):
            patch = _sizes(getattr(module, "patch_size", None), spatial_dims)
            return Geometry("torchvision ViT", patch, 1, class_token=True)
        if origin.startswith("torchvision.models.swin_transformer") and kind == "SwinTransformer":
            return Geometry("torchvision Swin", channels_last=True)
        if origin.startswith("timm.models"):
            embed = getattr(module, "patch_embed", None)
            if hasattr(module, "num_prefix_tokens") and embed is not None:
                # feat_ratio: the whole reduction (a hybrid's backbone stride × its patch)
                ratio = embed.feat_ratio(as_scalar=False) if hasattr(embed, "feat_ratio") else None
                patch = _sizes(ratio if ratio is not None else embed.patch_size, spatial_dims)
                reads = getattr(module, "cls_token", None) is not None and (
                    getattr(module, "global_pool", "token") == "token"
                )
                prefix = int(getattr(module, "num_prefix_tokens", 0))
                return Geometry(f"timm {kind}", patch, prefix, class_token=reads)
            if "swin" in origin.rpartition(".")[2]:
                return Geometry(f"timm {kind}", channels_last=True)
        if origin.startswith("camscope.models.vit") and kind == "VisionTransformer":
            patch = _sizes(getattr(module, "patch_size", None), spatial_dims)
            return Geometry("camscope ViT", patch, 1, class_token=True)
        if origin.startswith("monai.networks") and kind == "ViT":
            patch = _monai_patch(getattr(module, "patch_embedding", None), spatial_dims)
            classifies = bool(getattr(module, "classification", False))
            return Geometry("MONAI ViT", patch, int(classifies), class_token=classifies)
        if origin.startswith("monai.networks") and kind == "SwinUNETR":
            return Geometry("MONAI SwinUNETR")
    return None


def _spread(sizes: Sequence[int], input_size: Sequence[int]) -> float:
    """How far layer sizes are from the input's proportions: the largest over the smallest
    per-axis downsampling factor (1.0: one factor for every axis; ``inf``: another rank)."""
    if len(sizes) != len(input_size) or any(s < 1 for s in sizes):
        return math.inf
    factors = [size / int(s) for s, size in zip(sizes, input_size, strict=True)]
    return max(factors) / min(factors)


#: How much more a given channels-first/last reading may stray from the inputs' proportions than
#: the other reading before it counts as read the wrong way round.
FLIP_MARGIN = 0.1

#: Layers that work on their last axis: on a tie, their output is read as channels last.
LAST_AXIS_KINDS = frozenset({"Linear", "LayerNorm", "Permute", "Mlp"})

#: Spread up to which a layer's axes count as following the input's (strided maps of odd sizes,
#: valid convolutions, 1-position axes of small inputs).
PROPORTIONAL = 2.5


class LayoutResolver:
    """Decides a recorded layer's layout from ``layout=``, the model and the output's shape.

    Args:
        spec: the user's ``layout=`` (see :data:`LayoutSpec`).
        input_size: the inputs' spatial size ``S``.
        geometry: :func:`model_geometry` of the model, or ``None``.
    """

    def __init__(
        self,
        spec: LayoutSpec,
        input_size: Sequence[int],
        geometry: Geometry | None = None,
        batch: int | None = None,
    ) -> None:
        self.batch = batch
        self.spec = as_layout(spec)
        self.input_size = tuple(int(size) for size in input_size)
        self.geometry = geometry

    @classmethod
    def of(cls, model: nn.Module, inputs: torch.Tensor, spec: LayoutSpec = None) -> LayoutResolver:
        """The resolver for ``model`` explained on ``inputs`` ``(B, C, *S)``."""
        return cls(
            spec, inputs.shape[2:], model_geometry(model, inputs.ndim - 2), int(inputs.shape[0])
        )

    def for_batch(self, batch: int) -> LayoutResolver:
        """The same resolver for a batch of another size (e.g. points on a path)."""
        other = copy.copy(self)
        other.batch = int(batch)
        return other

    def check_batch(self, name: str, shape: Sequence[int]) -> None:
        """Refuse an output whose first axis is not the batch (Swin's windows, attention heads
        folded into the batch): its maps would be one per window, shown as samples."""
        if self.batch is not None and int(shape[0]) != self.batch:
            raise LayerError(
                f"layer {name!r} outputs {tuple(int(v) for v in shape)}, whose first axis is not "
                f"the batch of {self.batch} (e.g. attention windows folded into it); choose a "
                "layer outside the attention, such as the block itself"
            )

    @property
    def spatial_dims(self) -> int:
        """Spatial axes of the grid (2 or 3)."""
        return len(self.input_size)

    def _model_grid(self) -> tuple[int, ...] | None:
        geometry = self.geometry
        if geometry is None or geometry.patch is None:
            return None
        grid = tuple(s // p for s, p in zip(self.input_size, geometry.patch, strict=True))
        return tuple(max(g, 1) for g in grid)

    def _token_layout(self, name: str, shape: tuple[int, ...]) -> Layout:
        grid = self._model_grid()
        if grid is not None:
            assert self.geometry is not None
            prefix = self.geometry.prefix
            if len(shape) == 3 and shape[1] == math.prod(grid):
                prefix = 0  # the patch embedding's tokens, before the prefix tokens join
            layout = tokens(grid, prefix)
            layout.check(shape, self.spatial_dims, name)
            return layout
        raise LayerError(
            f"layer {name!r} outputs {shape}: a token sequence (B, N, C) whose patch grid this "
            "model does not state; pass layout=camscope.tokens(grid, prefix=...) (CLI: --layout "
            "tokens:GRID[:PREFIX], e.g. tokens:14x14:1), or choose a layer with a spatial map"
        )

    def _check_given(self, layout: Layout, name: str, shape: tuple[int, ...]) -> None:
        """A given layout must not read the layer against the inputs' proportions where the other
        reading follows them better, nor tokens against a known model's patch grid and prefix,
        nor the inside of an attention block: never a map with a wrong axis."""
        layout.check(shape, self.spatial_dims, name)
        self._refuse_attention_internals(name, shape)
        if layout.kind == "tokens":
            self._check_given_tokens(layout, name, shape)
            grid = layout.grid or ()
            if _spread(grid, self.input_size) <= PROPORTIONAL:
                return
            other = None
        else:
            first, last = shape[2:], shape[1:-1]
            grid, other = (first, last) if layout.kind == "channels_first" else (last, first)
            given, flipped = _spread(grid, self.input_size), _spread(other, self.input_size)
            # Said explicitly, a layer that fits no reading is the user's call; one that the
            # other reading fits better is almost surely read the wrong way round.
            if flipped > PROPORTIONAL or given <= flipped + FLIP_MARGIN:
                return
        raise LayerError(
            f"layout {layout} reads layer {name!r} {shape} as a grid "
            f"{tuple(grid)}, which does not follow the inputs' {self.input_size}"
            + (f" (the other way round it is {tuple(other)}, which does)" if other else "")
            + "; drop layout= or choose another layer"
        )

    def _check_given_tokens(self, layout: Layout, name: str, shape: tuple[int, ...]) -> None:
        """Tokens of a model that states its grid: the grid and the prefix must be its own."""
        known = self._model_grid()
        if known is None or self.geometry is None:
            return
        patches = math.prod(known)
        expected = {self.geometry.prefix + patches: self.geometry.prefix, patches: 0}
        prefix = expected.get(shape[1])
        if prefix is None:  # the model's geometry does not explain this layer: the user's call
            return
        if tuple(layout.grid or ()) != known or layout.prefix != prefix:
            raise LayerError(
                f"layout {layout} does not match this model's {shape[1]} tokens at {name!r}: "
                f"patch grid {'×'.join(map(str, known))} (input {self.input_size} / patch) after "
                f"{prefix} prefix tokens; drop layout= or give camscope.tokens({known}, {prefix})"
            )

    def _refuse_attention_internals(self, name: str, shape: tuple[int, ...]) -> None:
        """Queries, keys, values or attention scores inside a block of a known token model
        (``(B, heads, N, d)``: the token count right before the last axis) are no map. With no
        prefix tokens the count is a square or cube that a map's axis can have too: then only
        an output that is no map over the inputs' axes either is refused."""
        grid = self._model_grid()
        if grid is None or self.geometry is None or len(shape) < 4:
            return
        count = self.geometry.prefix + math.prod(grid)
        if shape[-2] != count or count <= max(grid):
            return
        if self.geometry.prefix == 0 and _spread(shape[2:], self.input_size) <= PROPORTIONAL:
            return
        raise LayerError(
            f"layer {name!r} outputs {shape}: (B, heads, tokens, dim) inside an attention "
            "block, not a map; choose the block, its norm or its MLP instead"
        )

    def resolve(self, name: str, shape: Sequence[int], kind: str | None = None) -> Layout:
        """The layout of a layer that output ``shape`` (with the batch axis).

        Args:
            name: the layer's name, for messages.
            shape: its output's shape.
            kind: its class name, which breaks a tie between channels first and last
                (``Linear``, ``LayerNorm`` and ``Permute`` work on the last axis).

        Raises:
            LayerError: the output cannot be laid out as a map over the inputs' axes.
        """
        seen = tuple(int(size) for size in shape)
        rank = self.spatial_dims
        if isinstance(self.spec, Layout):
            self._check_given(self.spec, name, seen)
            return self.spec
        if self.spec == "tokens" or (len(seen) == 3 and rank > 1):
            return self._token_layout(name, seen)
        if len(seen) != rank + 2:
            CHANNELS_FIRST.check(seen, rank, name)  # raises: wrong number of axes
        self._refuse_attention_internals(name, seen)
        first = _spread(seen[2:], self.input_size)
        last = _spread(seen[1:-1], self.input_size)
        if min(first, last) <= PROPORTIONAL:
            if math.isclose(first, last):  # e.g. (B, 7, 7, 7): the model's own convention
                prefers_last = (self.geometry is not None and self.geometry.channels_last) or (
                    kind in LAST_AXIS_KINDS
                )
                return CHANNELS_LAST if prefers_last else CHANNELS_FIRST
            return CHANNELS_FIRST if first < last else CHANNELS_LAST
        raise LayerError(
            f"layer {name!r} outputs {seen}, whose axes do not follow the inputs' "
            f"{self.input_size} as channels first (B, C, *s) or channels last (B, *s, C); "
            "pass layout='channels_first' or 'channels_last' if it is one, or choose another layer"
        )

    def fits(self, name: str, shape: Sequence[int], kind: str | None = None) -> Layout | None:
        """:meth:`resolve`, or ``None`` where the layer cannot be laid out."""
        try:
            return self.resolve(name, shape, kind)
        except LayerError:
            return None
