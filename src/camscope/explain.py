"""``explain()``: one call from a model and a batch to maps for any number of targets."""

from __future__ import annotations

import inspect
import weakref
from typing import Any

import torch
from torch import nn

from camscope.capture import Capture, ModelState, call_model
from camscope.checks import check_inputs
from camscope.errors import MethodError
from camscope.explanation import Explanation
from camscope.layers import default_layer, probe_layers, resolve_layer
from camscope.methods import MethodInfo, get_method
from camscope.methods.problem import Problem
from camscope.targets import TargetSpec, check_targets, select_targets

__all__ = ["check_inputs", "explain", "method_options"]


def method_options(info: MethodInfo) -> dict[str, Any]:
    """A method's keyword options and their defaults (empty for the CAM family)."""
    if info.kind == "layer":
        return {}
    parameters = list(inspect.signature(info.function).parameters.values())[1:]
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _check_options(info: MethodInfo, options: dict[str, Any]) -> None:
    accepted = method_options(info)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        known = ", ".join(accepted) if accepted else "none"
        raise MethodError(
            f"{info.name} has no option {', '.join(repr(u) for u in unknown)}; its options: {known}"
        )


def explain(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str,
    layer: str | nn.Module | None = None,
    targets: TargetSpec = None,
    eval_mode: bool = True,
    chunk_size: int | None = None,
    progress: bool = True,
    **options: Any,
) -> Explanation:
    """Explain what a network looks at, for every sample and every target, in one pass.

    Args:
        model: a network taking ``(B, C, H, W)`` images or ``(B, C, D, H, W)`` volumes.
        inputs: the batch, floating point, same dtype as the model.
        method: a registry name (see :func:`camscope.list_methods`), e.g. ``"respond_cam"``.
        layer: a name from ``model.named_modules()`` or the module itself; ``None`` takes the last
            layer with spatial extent (the result's ``layer`` says which).
        targets: ``None`` (predicted class), an int, one class per sample, a ``(B, T)`` tensor of
            classes, ``"all"``, or a callable ``output -> (B,)`` / ``(B, T)`` scores.
        eval_mode: run the model in eval mode (restored afterwards); ``False`` keeps its mode.
            Gradients of a batch are taken together, which assumes its samples do not interact:
            with ``False`` and batch-statistics layers (BatchNorm in train mode) above the layer,
            each sample's map also reflects the others.
        chunk_size: targets per batched backward pass; ``None`` fits a 1 GiB budget.
        progress: show a progress bar when a perturbation method runs for more than a few
            seconds.
        **options: the method's own keyword options (e.g. ``steps`` and ``baseline`` for
            ``integrated_gradients``, ``window`` and ``stride`` for ``occlusion``); see
            :func:`method_options` or ``camscope methods``. The CAM family has none.

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
    x = check_inputs(model, inputs)
    batch_size = x.shape[0]
    check_targets(targets, batch_size)
    with torch.inference_mode(False), ModelState(model, eval_mode=eval_mode):
        layer_name: str | None = None
        layer_module: nn.Module | None = None
        if info.needs_layer:
            if layer is None:
                layer = default_layer(probe_layers(model, x))
            layer_name, layer_module = resolve_layer(model, layer)
        elif layer is not None:
            raise MethodError(
                f"{info.name} works in input space and takes no layer; drop layer={layer!r}"
            )
        if info.kind == "layer":
            assert layer_name is not None and layer_module is not None
            return _layer_method(info, model, x, layer_name, layer_module, targets, chunk_size)
        with torch.no_grad():
            output = call_model(model, x)
            selected = select_targets(targets, output, batch_size)
        problem = Problem(
            model=model,
            inputs=x,
            output=output,
            scores=selected.scores.detach(),
            classes=selected.classes,
            target_fn=targets if callable(targets) else None,
            layer_name=layer_name,
            layer=layer_module,
            chunk_size=chunk_size,
            progress=progress,
        )
        result = info.function(problem, **options)
    return Explanation(
        maps=result.maps,
        scores=problem.scores,
        targets=selected.classes,
        outputs=output.detach() if isinstance(output, torch.Tensor) else output,
        method=info.name,
        layer=layer_name or "input",
        input_size=tuple(x.shape[2:]),
        in_channels=x.shape[1],
        model_ref=weakref.ref(model),
        per_channel=info.resolution == "input",
        extras=result.extras,
    )


def _layer_method(
    info: MethodInfo,
    model: nn.Module,
    x: torch.Tensor,
    layer_name: str,
    layer_module: nn.Module,
    targets: TargetSpec,
    chunk_size: int | None,
) -> Explanation:
    """The CAM family: one forward pass, one batched backward pass at the layer."""
    batch_size = x.shape[0]
    with Capture(model, layer_module, layer_name) as capture:
        output = capture.run(x)
        with torch.enable_grad():
            selected = select_targets(targets, output, batch_size)
        maps = capture.maps(selected.scores, info.function, chunk_size=chunk_size)
    return Explanation(
        maps=maps,
        scores=selected.scores.detach(),
        targets=selected.classes,
        outputs=output.detach() if isinstance(output, torch.Tensor) else output,
        method=info.name,
        layer=layer_name,
        input_size=tuple(x.shape[2:]),
        in_channels=x.shape[1],
        model_ref=weakref.ref(model),
    )
