"""``explain()``: one call from a model and a batch to maps for any number of targets."""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence
from typing import Any, Literal, cast

import torch
from torch import nn

from camscope import postprocess
from camscope.checks import check_inputs
from camscope.engine import ModelState, detached, eager_model, is_exported, is_exported_graph
from camscope.engine.capture import torchscript_error
from camscope.engine.relay import said_once, warn
from camscope.errors import InputError, LayerError, MethodError
from camscope.explanation import Explanation
from camscope.layers import choose_layer, pointwise_tail, resolve_layer, trace_layers
from camscope.layouts import LayoutResolver, LayoutSpec
from camscope.methods import MethodContext, MethodInfo, get_method
from camscope.methods.gradients import resolve_baseline
from camscope.methods.registry import check_option
from camscope.targets import TargetSpec, check_targets

__all__ = ["explain"]


def _check_options(info: MethodInfo, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        known = ", ".join(info.options) if info.options else "none"
        raise MethodError(
            f"{info.name} has no option {', '.join(repr(u) for u in unknown)}; its options: {known}"
        )
    for name, value in options.items():
        check_option(info, name, value)


@said_once
def explain(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str,
    layer: str | nn.Module | Sequence[str | nn.Module] | None = None,
    targets: TargetSpec = None,
    layout: LayoutSpec = None,
    fuse: Fuse | None = None,
    eval_mode: bool = True,
    chunk_size: int | None = None,
    progress: bool = True,
    **options: Any,
) -> Explanation:
    """Explain what a network looks at, for every sample and every target, in one pass.

    Args:
        model: a network taking ``(B, C, H, W)`` images or ``(B, C, D, H, W)`` volumes; a
            model from ``torch.compile`` is explained through the module it compiled, a
            ``torch.export`` program through its unflattened module (see
            :func:`camscope.io.load_model_spec`).
        inputs: the batch, floating point, same dtype as the model.
        method: a registry name (see :func:`camscope.list_methods`), e.g. ``"respond_cam"``.
        layer: a name from ``model.named_modules()`` or the module itself; ``None`` takes the
            default layer (:func:`camscope.layers.default_layer`; the result's ``layer`` says
            which); a list of layers explains each and fuses their maps (``fuse``).
        fuse: with a list of layers: ``"mean"`` (default; pytorch-grad-cam averages its target
            layers), ``"max"`` (torch-cam) or ``"product"`` (RefineCAM) of the raw maps, each
            first brought to the finest layer's grid by linear interpolation. The result's
            ``layer`` joins the names with ``+``; ``extras["fused"]`` records the layers, their
            grids and the rule.
        targets: ``None`` or ``"predicted"`` (predicted class), an int, one class per sample, a
            ``(B, T)`` tensor of classes, ``"all"``, or a callable ``output -> (B,)`` /
            ``(B, T)`` scores (the result's ``targets`` is then ``None``; ``target_label`` and
            ``labels`` name it). On a dense output (segmentation) a class means its logits
            summed over the voxels predicted as it, ``None`` and ``"all"`` explain every class,
            and ``"predicted"`` is refused (:mod:`camscope.targets`).
        layout: how the layer lays out its map (:mod:`camscope.layouts`): ``None`` infers it
            (from a known transformer's patch grid, else from the shape, refusing what is no
            map over the inputs' axes), ``"channels_first"`` ``(B, C, *s)``,
            ``"channels_last"`` ``(B, *s, C)``, or :func:`camscope.tokens` ``(grid, prefix)``
            for a token sequence ``(B, N, C)``. The result's ``layout`` says which was used.
        eval_mode: run the model in eval mode (restored afterwards); ``False`` keeps its mode
            (batch-norm buffers are restored afterwards all the same). Gradients of a batch are
            taken together, which assumes its samples do not interact: with ``False`` and
            batch-statistics layers above the layer, each sample's map also reflects the others.
        chunk_size: targets per batched backward pass; ``None`` fits a 1 GiB budget.
        progress: show a progress bar when a perturbation method runs for more than a few
            seconds.
        **options: the method's own keyword options (e.g. ``steps`` and ``baseline`` for
            ``integrated_gradients``, ``window`` and ``stride`` for ``occlusion``); see
            ``get_method(name).options`` or ``camscope methods``. The CAM family has none.

    Returns:
        A frozen :class:`Explanation` with raw maps: ``(B, T, *s)`` at layer resolution for the
        CAM family and Score-CAM, ``(B, T, C_in, *S)`` at input resolution, per input channel,
        for input-space methods (``per_channel``; reduce with ``.reduce_channels()``).

    Raises:
        InputError, LayerError, TargetError, MethodError, ModelError: all subclasses of
            :class:`camscope.CamscopeError`, with a message saying what to do.

    Shape:
        inputs ``(B, C, *S)`` → maps ``(B, T, *s)``, scores ``(B, T)``, targets ``(B, T)``.

    Example:
        >>> import camscope
        >>> from camscope.models import create_model
        >>> net = create_model("tiny3d", num_classes=4)
        >>> x = torch.randn(2, 1, 16, 16, 16)
        >>> e = camscope.explain(net, x, method="respond_cam", targets="all")
        >>> tuple(e.maps.shape)
        (2, 4, 4, 4, 4)
    """
    info = get_method(method)
    _check_options(info, options)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise MethodError(f"chunk_size must be a positive integer or None, not {chunk_size!r}")
    if isinstance(layer, list | tuple):
        return _fused(
            model,
            inputs,
            list(layer),
            fuse,
            method=method,
            targets=targets,
            layout=layout,
            eval_mode=eval_mode,
            chunk_size=chunk_size,
            progress=progress,
            **options,
        )
    if fuse is not None:
        raise MethodError(
            f"fuse={fuse!r} combines several layers; pass layer=[...] with two or more"
        )
    model = eager_model(model)
    x = check_inputs(model, inputs)
    check_targets(targets, x.shape[0])
    resolver = LayoutResolver.of(model, x, layout)
    single_layer = cast(str | nn.Module | None, layer)  # lists went to _fused
    with torch.inference_mode(False), ModelState(model, eval_mode=eval_mode):
        layer_name, layer_module = _method_layer(
            info, model, x, single_layer, layout, resolver, eval_mode
        )
        context = MethodContext(
            model=model,
            inputs=x,
            targets=targets,
            layer_name=layer_name,
            layer=layer_module,
            chunk_size=chunk_size,
            progress=progress,
            gradient_rule=info.gradient_rule,
            layout=resolver,
        )
        result = info.run(context, **options)
        context.graph = None
    # layer methods say so per layer, at the gradient (engine); input-space methods here
    zero_output = not info.target_blind and _warn_if_output_is_zero(context.output)
    if not zero_output and info.kind == "input":
        name = "baseline" if "baseline" in info.options else "baselines"  # GradientSHAP's
        baseline = options.get(name, info.options.get(name))
        _warn_if_maps_are_zero(result.maps, context.scores, info, context, baseline)
    extras = dict(result.extras)
    if info.needs_layer and single_layer is not None and layer_name is not None:
        tail = _restating_tail(model, x, layer_name, context.output)
        if tail is not None:  # [] when the layer gives the output itself
            extras["restates_output"] = tail
    if info.needs_layer:
        read_as = str(context.laid_out)
    else:
        read_as = "input" if info.kind == "input" else str(context.laid_out)
    return Explanation(
        maps=result.maps,
        scores=context.scores,
        targets=context.classes,
        outputs=detached(context.output),
        method=info.name,
        layer=result.layer or layer_name or "input",
        input_size=tuple(x.shape[2:]),
        in_channels=x.shape[1],
        model_ref=weakref.ref(model),
        per_channel=info.resolution == "input",
        extras=extras,
        layout=result.layout or read_as,
        target_label=_callable_label(targets),
    )


def _callable_label(targets: Any) -> str:
    """A callable target's name for the result (``""`` for class targets)."""
    if not callable(targets):
        return ""
    name = getattr(targets, "__name__", type(targets).__name__)
    return "callable" if name == "<lambda>" else str(name)


def _warn_if_output_is_zero(output: Any) -> bool:
    """A classifier whose logits are all exactly zero (torchvision's ViT initialises its head to
    zero) gives maps of zeros for every target: say so instead of showing them in silence."""
    if isinstance(output, torch.Tensor) and output.ndim == 2 and not bool(output.detach().any()):
        warn(
            "camscope: every output of the model is exactly 0 (an untrained head initialised to "
            "zero, as torchvision's ViT does?), so every map is empty; train or load the head"
        )
        return True
    return False


def _is_the_input(context: MethodContext, baseline: Any) -> torch.Tensor | None:
    """Which samples a ``baseline`` option equals, ``(B,)``; ``None`` when there is none (or it
    is a set of references rather than one baseline)."""
    if baseline is None:
        return None
    try:
        reference = resolve_baseline(context, baseline)
    except InputError:
        return None
    return (reference == context.inputs.detach()).flatten(1).all(1)


def _warn_if_maps_are_zero(
    maps: torch.Tensor,
    scores: torch.Tensor,
    info: MethodInfo,
    context: MethodContext | None = None,
    baseline: Any = None,
) -> None:
    """An input-space map exactly 0 everywhere for a target that scores something: the score
    does not change with the input (a zero head, dead ReLUs, a saturated output): said, not shown
    in silence. A target that scores exactly 0 (a class absent from a dense output, a region
    outside a scan window) has an empty map by right; so do methods whose maps can be empty
    while the score depends on the input (``may_be_empty``: Deconvnet, guided backpropagation,
    LIME)."""
    if info.may_be_empty or not isinstance(maps, torch.Tensor) or maps.ndim < 3:
        return
    if maps.numel() == 0 or tuple(scores.shape) != tuple(maps.shape[:2]):
        return
    silent = ~maps.detach().flatten(2).any(-1) & (scores.detach() != 0)  # (B, T)
    same = torch.zeros_like(silent)
    if bool(silent.any()) and context is not None:
        equal = _is_the_input(context, baseline)  # an empty map by right: nothing to attribute
        if equal is not None:
            same = silent & equal.to(silent.device)[:, None]
            silent = silent & ~same
    if bool(same.any()):
        warn(
            f"camscope: {info.name}: {int(same.sum())} of {same.numel()} maps (sample × "
            "target) are exactly 0 because the baseline is the input itself: the score does not "
            "change between the two, so there is nothing to attribute; give a reference that "
            "lacks what the maps should show (0, a blurred or mean input)",
            key=(info.name, "maps are 0: the baseline is the input"),
        )
    if bool(silent.any()):
        warn(
            f"camscope: {info.name}: {int(silent.sum())} of {silent.numel()} maps (sample × "
            "target) are exactly 0 everywhere though their target scores: the score does not "
            "change with the input (a zero head, dead ReLUs, a saturated output?); check the "
            "model and the targets",
            key=(info.name, "maps are 0 though their targets score"),
        )


def _restating_tail(model: nn.Module, x: torch.Tensor, layer: str, output: Any) -> list[str] | None:
    """For a dense output: the pointwise modules that alone follow ``layer`` (its maps then
    restate the output: each class's logits, position by position), recorded in the result's
    ``extras["restates_output"]``; ``None`` otherwise."""
    if not isinstance(output, torch.Tensor) or tuple(output.shape[2:]) != tuple(x.shape[2:]):
        return None
    try:
        infos, _ = trace_layers(model, x[:1])
    except LayerError:  # a model whose modules cannot be traced: nothing to say
        return None
    return pointwise_tail(infos, layer)


def _method_layer(
    info: MethodInfo,
    model: nn.Module,
    x: torch.Tensor,
    layer: str | nn.Module | None,
    layout: LayoutSpec,
    resolver: LayoutResolver,
    eval_mode: bool,
) -> tuple[str | None, nn.Module | None]:
    """The layer a method reads (the default one when ``layer`` is ``None``), or ``(None, None)``
    for a method that takes none."""
    if not info.needs_layer:
        if layer is not None or (layout is not None and info.kind == "input"):
            given = f"layer={layer!r}" if layer is not None else f"layout={layout!r}"
            where = "works in input space" if info.kind == "input" else "reads the model itself"
            raise MethodError(f"{info.name} {where} and takes no layer; drop {given}")
        return None, None
    if isinstance(model, torch.jit.ScriptModule):
        raise torchscript_error()
    if is_exported_graph(model):
        raise LayerError(
            "this is an exported program's .module(): one graph whose layers do not run "
            "as modules, so layer methods cannot record them; pass the ExportedProgram "
            "itself, or torch.export.unflatten(program)"
        )
    if layer is None:
        # One sample is enough to see the shapes, unless batch statistics need the batch
        # or the model is an exported program with a fixed batch size.
        single = eval_mode and not is_exported(model)
        layer = choose_layer(model, x[:1] if single else x, resolver)
    return resolve_layer(model, layer)


#: How maps of several layers are combined (see :func:`explain`'s ``fuse``).
Fuse = Literal["mean", "max", "product"]
FUSE_RULES: tuple[str, ...] = ("mean", "max", "product")


def _fused(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: list[str | nn.Module],
    fuse: Fuse | None,
    **settings: Any,
) -> Explanation:
    """Maps of several layers, each at its own layer, fused on the finest layer's grid."""
    rule = fuse or "mean"
    if rule not in FUSE_RULES:
        raise MethodError(f"fuse must be one of {', '.join(FUSE_RULES)}, not {fuse!r}")
    if len(layers) < 2:
        raise MethodError("layer=[...] fuses two or more layers; give one layer as a name")
    if not get_method(settings["method"]).needs_layer:
        raise MethodError(f"{settings['method']} takes no layer, so no list of layers to fuse")
    parts = [explain(model, inputs, layer=layer, **settings) for layer in layers]
    names = [part.layer for part in parts]
    if len(set(names)) != len(names):
        raise LayerError(f"layer=[...] names a layer twice: {', '.join(names)}")
    finest = max(parts, key=lambda part: part.maps[0, 0].numel())
    size = tuple(finest.maps.shape[2:])
    brought = [
        part.maps
        if tuple(part.maps.shape[2:]) == size or part.per_channel
        else postprocess.upsample(part.maps, size, mode="linear")
        for part in parts
    ]
    stacked = torch.stack(brought)
    if rule == "mean":
        maps = stacked.mean(0)
    elif rule == "max":
        maps = stacked.amax(0)
    else:
        maps = stacked.prod(0)
    fused = {
        "layers": names,
        "grids": [tuple(part.maps.shape[2:]) for part in parts],
        "layouts": [part.layout for part in parts],
        "rule": rule,
    }
    return dataclasses.replace(
        finest,
        maps=maps,
        layer="+".join(names),
        layout="+".join(part.layout for part in parts),
        extras={**finest.extras, "fused": fused},
    )
