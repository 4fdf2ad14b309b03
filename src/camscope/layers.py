"""Find layers by name or module, list candidate layers, and pick a sensible default.

Layer names are those of ``model.named_modules()`` (e.g. ``"layer4"``, ``"features.29"``,
``"maxpool2"``). A *spatial* layer is one whose output is a tensor ``(B, C, *s)`` with at least one
spatial axis and more than one position: the layers a class activation map can be taken at.

The default layer (:func:`default_layer`) is the last module to finish whose output is a spatial
feature map, leaving out

* modules that run more than once in a forward pass (shared modules);
* modules that only reshape or re-weight a map: activations, padding, dropout, adaptive pooling
  and upsampling (VGG's ``avgpool`` resamples 2×2 to 7×7; SqueezeNet's ``classifier.2`` is a ReLU);
* modules inside a head, a container whose output is not spatial because it pools globally
  (SqueezeNet's ``classifier``: a per-class convolution, then adaptive pooling), so the choice is
  the last stage of the feature extractor;
* normalisation of tokens and stages (``LayerNorm``) and pure reorderings (``Permute``), and a
  container whose output is such a module's (torchvision ViT's ``encoder`` ends in ``ln``);
* layers that are no map over the inputs' axes (:mod:`camscope.layouts`): a token sequence
  counts only where the model states its patch grid;
* for networks with a dense output (segmentation: the output is a map of the input's size),
  the modules producing the output itself, and the layers after which only pointwise modules
  follow (1×1 convolutions, activations, norms: :func:`pointwise_tail`) and the modules inside
  them, whose maps restate the output position by position; the choice is the last decoder
  stage before the block that feeds the output head (MONAI's UNETR: ``decoder3``, SwinUNETR:
  ``decoder2``, not the last full-resolution block before the 1×1×1 output convolution).

ResNet: ``layer4``; VGG and AlexNet: ``features``; SqueezeNet: ``features``; the paper's CNN-1 and
CNN-2: ``maxpool2`` (the paper's layer: fixed-window pooling is kept, it is a stage of the
network, not a resampling to a fixed size). Transformers: the last block's output, the input to
the final norm (timm ViT/DeiT ``blocks`` with global average pooling); where the head reads a class
token, only that token leaves the last block, so the default is the last block's first norm, as
the peers recommend (timm ``blocks.<last>.norm1``, torchvision ViT
``encoder.layers.encoder_layer_<last>.ln_1``, MONAI ViT ``blocks.<last>.norm1``); Swin: the last
stage (torchvision ``features``, timm ``layers``), channels last.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from camscope.engine.capture import trace_modules
from camscope.errors import LayerError, unknown_name
from camscope.layouts import LayoutResolver

__all__ = [
    "LayerInfo",
    "choose_layer",
    "default_layer",
    "is_pointwise",
    "pointwise_tail",
    "probe_layers",
    "resolve_layer",
    "trace_layers",
]

#: Module classes never chosen as the default layer (matched on the class name).
SKIPPED_KINDS = re.compile(
    r"(ReLU\d*|LeakyReLU|PReLU|RReLU|ELU|CELU|SELU|GELU|SiLU|Swish|MemoryEfficientSwish|Mish|"
    r"Hardswish|Hardsigmoid|Hardtanh|Sigmoid|Tanh|Softmax|LogSoftmax|Identity|Flatten|"
    r"Dropout\dd|Dropout|AlphaDropout|.*Pad\dd|Adaptive(Avg|Max)Pool\dd|Upsample|"
    r"UpsamplingNearest2d|UpsamplingBilinear2d|LayerNorm|Permute)"
)


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
    same_as: str | None = None
    #: For a module without children: whether it acts on each position alone (a 1×1
    #: convolution, an activation, a norm; see :func:`is_pointwise`); ``None`` for containers.
    pointwise: bool | None = None

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


def module_name(modules: dict[str, nn.Module], name: str) -> str | None:
    """The name in ``modules`` (a model's ``named_modules()``) that ``name`` stands for: itself,
    or, in a submodule compiled in place (``model.part = torch.compile(model.part)``), whose
    layers sit under ``_orig_mod``, the layer it named before (``part.1.conv`` is
    ``part._orig_mod.1.conv``); ``None`` for no layer."""
    if name in modules:
        return name
    compiled = {key.replace("._orig_mod", ""): key for key in modules if "._orig_mod" in key}
    return compiled.get(name)


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
                        + ", ".join(_available_names(model)[:40])
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
    name = module_name(modules, layer) if layer else None
    if name is not None:
        return name, modules[name]
    raise LayerError(unknown_name("layer", layer, _available_names(model), cutoff=0.6))


def trace_layers(
    model: nn.Module, inputs: torch.Tensor
) -> tuple[list[LayerInfo], tuple[int, ...] | None]:
    """:func:`probe_layers` and the model's output shape (without the batch axis; ``None`` when
    the output is not one tensor), from one forward pass."""
    traces = trace_modules(model, inputs)
    modules = dict(model.named_modules())
    infos = [
        LayerInfo(
            t.name,
            t.kind,
            t.output_shape,
            t.calls,
            t.order,
            t.same_as,
            _leaf_pointwise(modules, t.name, t.kind),
        )
        for t in traces
    ]
    root = [info.output_shape for info in infos if not info.name]
    return [info for info in infos if info.name], (root[0] if root else None)


#: Modules that act on each position alone, whatever their settings (matched on the class name).
POINTWISE_KINDS = re.compile(
    r"(ReLU\d*|LeakyReLU|PReLU|RReLU|ELU|CELU|SELU|GELU|SiLU|Swish|Mish|Hardswish|Hardsigmoid|"
    r"Hardtanh|Sigmoid|Tanh|Softmax|LogSoftmax|Identity|Dropout\dd|Dropout|AlphaDropout|"
    r"BatchNorm\dd|InstanceNorm\dd|GroupNorm|LayerNorm|Linear)"
)


def is_pointwise(module: nn.Module, kind: str | None = None) -> bool:
    """Whether ``module`` maps each position's vector on its own: activations, norms, dropout,
    and convolutions whose kernel and stride are 1 in every axis (MONAI's output blocks).

    ``kind`` is the class name the module was made from, for a ``torch.export`` program's
    submodule (whose convolution is then read from its graph)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return all(k == 1 for k in module.kernel_size) and all(s == 1 for s in module.stride)
    kind = kind or type(module).__name__
    if kind.startswith("Conv") and getattr(module, "graph", None) is not None:
        return _exported_conv_is_pointwise(module)
    return bool(POINTWISE_KINDS.fullmatch(kind))


def _exported_conv_is_pointwise(module: nn.Module) -> bool:
    """An exported convolution's kernel and stride, read from its graph's convolution node."""
    for node in module.graph.nodes:  # type: ignore[union-attr]
        if node.op != "call_function" or "conv" not in str(node.target):
            continue
        weight = node.args[1].meta.get("val") if len(node.args) > 1 else None
        stride = node.args[3] if len(node.args) > 3 else [1]
        if weight is None:
            return False
        return all(int(k) == 1 for k in weight.shape[2:]) and all(int(v) == 1 for v in stride)
    return False


def _leaf_pointwise(modules: dict[str, nn.Module], name: str, kind: str) -> bool | None:
    module = modules.get(name)
    if module is None or next(module.children(), None) is not None:
        return None
    return is_pointwise(module, kind)


def pointwise_tail(infos: Sequence[LayerInfo], name: str) -> list[str] | None:
    """The modules after layer ``name`` when every one of them acts on each position alone (its
    maps then restate the output, position by position): ``[]`` when nothing follows (the layer
    gives the output itself); ``None`` when some module after it mixes positions."""
    order = next((info.order for info in infos if info.name == name), None)
    if order is None:
        return None
    later = [info for info in infos if info.order > order and info.pointwise is not None]
    if not all(info.pointwise for info in later):
        return None
    return [info.name for info in later]


def probe_layers(model: nn.Module, inputs: torch.Tensor) -> list[LayerInfo]:
    """Run one gradient-free forward pass and report every submodule's output shape.

    The model's state is not changed (hooks are removed even when the model raises). Every sample
    of ``inputs`` is used (pass ``x[:1]`` for a cheaper probe where the samples do not interact).

    Returns:
        One :class:`LayerInfo` per submodule that ran, in the order they finished.

    Raises:
        ModelError: the model raised during the forward pass; LayerError: TorchScript.
    """
    return trace_layers(model, inputs)[0]


def default_layer(
    infos: Sequence[LayerInfo],
    *,
    output_shape: tuple[int, ...] | None = None,
    layout: LayoutResolver | None = None,
) -> str:
    """The default layer among probed ones (the rule is in this module's docstring).

    Args:
        infos: from :func:`probe_layers`.
        output_shape: the model's output shape without the batch axis, when known: a dense
            output skips the modules that produce it.
        layout: when given, only layers it can lay out as a map over the inputs' axes count
            (token sequences of a known transformer, channels-last stages).

    Raises:
        LayerError: no submodule produces a usable spatial output.
    """
    heads = [
        info.name
        for info in infos
        if info.output_shape is not None
        and not info.is_spatial
        and any(  # a global pooling among its own children
            other.name.rpartition(".")[0] == info.name and other.kind.startswith("Adaptive")
            for other in infos
        )
    ]
    dense = output_shape is not None and len(output_shape) >= 2 and _positions(output_shape) > 1

    kinds = {info.name: info.kind for info in infos}
    restating = (
        [info.name for info in infos if pointwise_tail(infos, info.name)]  # a tail: not the end
        if dense
        else []
    )

    def skipped(info: LayerInfo) -> bool:
        # A container whose output is a skipped child's (ViT's encoder ends in its LayerNorm).
        return bool(
            SKIPPED_KINDS.fullmatch(info.kind)
            or (info.same_as is not None and SKIPPED_KINDS.fullmatch(kinds.get(info.same_as, "")))
        )

    def usable(info: LayerInfo, heads: Sequence[str]) -> bool:
        if not info.is_spatial or info.calls != 1 or skipped(info):
            return False
        shape = info.output_shape or ()
        if layout is not None and layout.fits(info.name, (1, *shape), info.kind) is None:
            return False
        if any(info.name.startswith(f"{head}.") for head in heads):
            return False
        if dense and info.output_shape == tuple(output_shape or ()):
            return False
        # a dense network's layer followed only by pointwise modules (UNETR's last decoder block
        # before its 1×1×1 output convolution), or inside such a block, restates the output
        return not (
            dense and any(info.name == r or info.name.startswith(f"{r}.") for r in restating)
        )

    # Without any map outside the non-spatial containers (AlexNet's features at 64 px end
    # in 1×1), the last map inside them is the best there is.
    candidates = [info for info in infos if usable(info, heads)] or [
        info for info in infos if usable(info, ())
    ]
    if not candidates:
        raise LayerError(
            "no layer of the model produces a spatial feature map (B, C, *s) with more than one "
            "position (or a token sequence whose patch grid the model states); pass layer= "
            "explicitly, with layout= for a token or channels-last layer "
            "(camscope.probe_layers lists every layer)"
        )
    chosen = max(candidates, key=lambda info: info.order)
    return _class_token_block_input(chosen, infos, layout) or chosen.name


def _class_token_block_input(
    chosen: LayerInfo, infos: Sequence[LayerInfo], layout: LayoutResolver | None
) -> str | None:
    """For a ViT whose head reads its class token: the last block's first normalisation.

    After the last block only the prefix tokens reach the head, so gradients at the block's
    output are zero on every patch. The last block's input (its first norm, which the peers
    use: timm's ``norm1``, torchvision's ``ln_1``) still reaches the class token through that
    block's attention. ``None`` when this does not apply.
    """
    shape = chosen.output_shape or ()
    laid = None if layout is None else layout.fits(chosen.name, (1, *shape), chosen.kind)
    if laid is None or laid.kind != "tokens" or laid.prefix == 0:
        return None
    geometry = None if layout is None else layout.geometry
    if geometry is not None and geometry.class_token is False:  # an average-pooled head
        return None
    by_name = {info.name: info for info in infos}
    block = chosen
    while block.same_as is not None and block.same_as in by_name:  # blocks → blocks.11
        block = by_name[block.same_as]
    norms = [
        info
        for info in infos
        if info.name.startswith(f"{block.name}.")
        and "Norm" in info.kind
        and info.output_shape == chosen.output_shape
        and info.calls == 1
    ]
    return min(norms, key=lambda info: info.order).name if norms else None


def _positions(shape: Sequence[int]) -> int:
    count = 1
    for size in shape[1:]:
        count *= int(size)
    return count


def choose_layer(
    model: nn.Module, inputs: torch.Tensor, layout: LayoutResolver | None = None
) -> str:
    """Probe ``model`` on ``inputs`` and return :func:`default_layer`'s choice.

    Args:
        model: the network.
        inputs: ``(B, C, *S)``.
        layout: the layouts a layer may have (default: inferred for ``model`` on ``inputs``).
    """
    infos, output_shape = trace_layers(model, inputs)
    if layout is None:
        layout = LayoutResolver.of(model, inputs)
    return default_layer(infos, output_shape=output_shape, layout=layout)
