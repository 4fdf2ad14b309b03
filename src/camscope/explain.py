"""``explain()``: one call from a model and a batch to maps for any number of targets."""

from __future__ import annotations

import weakref

import torch
from torch import nn

from camscope.capture import Capture, ModelState
from camscope.errors import InputError
from camscope.explanation import Explanation
from camscope.layers import default_layer, probe_layers, resolve_layer
from camscope.methods import get_method
from camscope.targets import TargetSpec, check_targets, select_targets

__all__ = ["explain"]


def _model_placement(model: nn.Module) -> tuple[torch.device | None, torch.dtype | None]:
    for parameter in model.parameters():
        return parameter.device, parameter.dtype
    for buffer in model.buffers():
        if buffer.is_floating_point():
            return buffer.device, buffer.dtype
    return None, None


def check_inputs(model: nn.Module, inputs: object) -> torch.Tensor:
    """Validate a batch and place it on the model's device.

    Returns:
        The batch, detached, on the model's device (a copy only when it had to move).

    Raises:
        InputError: not a tensor, wrong rank, not floating point, dtype different from the model's,
            empty, or containing NaN/Inf.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    if not isinstance(inputs, torch.Tensor):
        hint = " (convert with torch.from_numpy)" if type(inputs).__module__ == "numpy" else ""
        raise InputError(f"inputs must be a torch.Tensor, not {type(inputs).__name__}{hint}")
    if inputs.ndim not in (4, 5):
        raise InputError(
            f"inputs must be images (B, C, H, W) or volumes (B, C, D, H, W), got shape "
            f"{tuple(inputs.shape)}; add a batch axis with x[None] or a channel axis with "
            "x[:, None]"
        )
    if inputs.shape[0] == 0:
        raise InputError("inputs hold no sample (batch size 0)")
    if not inputs.is_floating_point():
        raise InputError(
            f"inputs must be floating point, got {inputs.dtype}; convert with x.float() "
            "(and scale as the model expects)"
        )
    device, dtype = _model_placement(model)
    if dtype is not None and inputs.dtype != dtype:
        raise InputError(
            f"inputs are {inputs.dtype} but the model's parameters are {dtype}; convert one to "
            "the other (x.to(dtype) or model.to(dtype))"
        )
    if inputs.is_inference():
        with torch.inference_mode(False):
            inputs = inputs.clone()
    inputs = inputs.detach()
    if device is not None and inputs.device != device:
        inputs = inputs.to(device)
    finite = torch.isfinite(inputs)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise InputError(
            f"inputs contain {bad} NaN or infinite value(s); clean or mask them before explaining"
        )
    return inputs


def explain(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str,
    layer: str | nn.Module | None = None,
    targets: TargetSpec = None,
    eval_mode: bool = True,
    chunk_size: int | None = None,
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

    Returns:
        A frozen :class:`Explanation` with raw maps ``(B, T, *s)`` at layer resolution.

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
    x = check_inputs(model, inputs)
    batch_size = x.shape[0]
    check_targets(targets, batch_size)
    with torch.inference_mode(False), ModelState(model, eval_mode=eval_mode):
        if layer is None:
            layer_name, layer_module = resolve_layer(model, default_layer(probe_layers(model, x)))
        else:
            layer_name, layer_module = resolve_layer(model, layer)
        with Capture(model, layer_module, layer_name) as capture:
            output = capture.run(x)
            with torch.enable_grad():
                selected = select_targets(targets, output, batch_size)
            activations = capture.activations
            assert activations is not None  # run() raises otherwise
            spatial_dims = activations.ndim - 2
            shared = activations.detach().unsqueeze(1)  # (B, 1, C, *s): shared by all targets
            pieces = []
            for _, _, gradients in capture.gradients(selected.scores, chunk_size=chunk_size):
                with torch.no_grad():
                    pieces.append(info.function(shared, gradients, spatial_dims=spatial_dims))
        maps = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
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
