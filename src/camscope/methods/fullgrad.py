"""FullGrad: the input gradient and the bias gradients of every convolution and batch norm.

A ReLU network's output is exactly ``∇_x f · x + Σ_b ∇_b f · b`` (the bias gradients account for
what the input gradient misses). FullGrad shows both parts: ``ψ(∇_x f ⊙ x)`` and, for every
channel ``c`` of every layer with a bias, ``ψ(∇_{h_c} f ⊙ b_c)`` (the gradient at the layer's
output times the channel's bias), all brought to the input grid and summed. All layers and all
targets come from one forward pass and one batched backward pass.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from camscope.engine import call_model, chunked_vjp
from camscope.engine.capture import attach_hook
from camscope.engine.state import is_exported
from camscope.engine.vjp import chunk_for_bytes
from camscope.errors import MethodError
from camscope.methods.context import MethodContext, MethodResult
from camscope.methods.registry import method

__all__ = ["bias_of", "full_grad"]

_BIASED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def bias_of(module: nn.Module) -> torch.Tensor | None:
    """The bias a module adds per output channel: a convolution's own; a batch norm's (in eval
    mode) ``β − γ μ / √(σ² + ε)``, its running statistics folded in (its bias with a
    batch-statistics norm in training mode is not one constant, so it has none here)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.training or module.running_mean is None or module.running_var is None:
            return None
        scale = module.weight if module.weight is not None else 1.0
        shift = module.bias if module.bias is not None else 0.0
        return shift - module.running_mean * scale / torch.sqrt(module.running_var + module.eps)
    bias = getattr(module, "bias", None)
    return bias if isinstance(bias, torch.Tensor) else None


def _psi(values: torch.Tensor, size: tuple[int, ...], rescale: bool) -> torch.Tensor:
    """``Σ_c ψ(values_c)``: the absolute value, (``rescale``) min-max scaling to ``[0, 1]`` of
    each channel's map on its own grid, the sum over channels, and (bi/tri)linear upsampling to
    ``size``. ``values`` ``(N, K, *s)`` → ``(N, *size)``.

    Upsampling is linear, so the channels are summed first and one map per row is upsampled
    (the same values as upsampling each channel, ``K`` times less work)."""
    maps = values.abs().flatten(2)  # (N, K, Z)
    if rescale:
        # Σ_c (m_c − low_c) / (high_c − low_c + ε): the division as a weighted sum over channels
        low, high = torch.aminmax(maps, dim=-1, keepdim=True)
        weight = 1.0 / (high - low + 1e-7)  # (N, K, 1)
        total = (weight.transpose(1, 2) @ (maps - low)).squeeze(1)
    else:
        total = maps.sum(dim=1)
    total = total.view(values.shape[0], *values.shape[2:])
    if tuple(total.shape[1:]) != size:
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
        total = F.interpolate(total.unsqueeze(1), size=size, mode=mode, align_corners=False)[:, 0]
    return total


@method(
    kind="layer",
    summary="FullGrad: input gradient × input plus every conv/BN bias gradient, all layers",
    needs_layer=False,
    signed=False,
)
def full_grad(context: MethodContext, *, rescale: bool = True) -> MethodResult:
    """FullGrad (Srinivas & Fleuret 2019): ``ψ(∇_x f ⊙ x) + Σ_l Σ_c ψ(∇_{h_{l,c}} f ⊙ b_{l,c})``.

    ``ψ`` takes the absolute value, min-max scales each channel's map to ``[0, 1]`` on its layer's
    grid and upsamples it (bi/trilinear) to the input grid (the paper's post-processing, in
    pytorch-grad-cam's order: each channel scaled, then resized; its 3D resizing is a cubic
    spline, camscope's trilinear). The input part is one map per input channel; the bias
    part covers every convolution (1D, 2D, 3D) and batch norm (running statistics folded into its
    bias) that has a bias and an output on the input's grid axes. The map lives on the input grid;
    its sum over layers is not normalised (an explicit step).

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        rescale: apply ψ's ``[0, 1]`` scaling to each channel's map (``False``: absolute values
            only, so layers with large bias gradients weigh more).

    Extras:
        ``layers``: the names of the layers whose biases were used.

    References:
        Srinivas & Fleuret, "Full-Gradient Representation for Neural Network Visualization",
        NeurIPS 2019.
    """
    if is_exported(context.model) or isinstance(context.model, torch.jit.ScriptModule):
        kind = "TorchScript" if isinstance(context.model, torch.jit.ScriptModule) else "exported"
        raise MethodError(
            f"FullGrad reads the gradient at every convolution's and batch norm's output through "
            f"module hooks, and this {kind} model has no such modules to hook (its map would "
            "hold the input gradient alone): load the model as a module (its weights with "
            "--architecture, or the nn.Module)"
        )
    x = context.inputs
    size = tuple(x.shape[2:])
    layers = [
        (name, module, bias)
        for name, module in context.model.named_modules()
        if isinstance(module, _BIASED) and (bias := bias_of(module)) is not None
    ]
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Any:
        def hook(module: nn.Module, args: object, output: Any) -> Any:
            if isinstance(output, torch.Tensor) and output.ndim == x.ndim:
                outputs[name] = output
                # the network goes on with a copy: an in-place ReLU after the layer (torchvision's
                # CNNs) would otherwise overwrite the tensor whose gradient is read
                return output.clone()
            return None

        return hook

    handles = [attach_hook(module, name, keep(name)) for name, module, _ in layers]
    inputs = x.detach().requires_grad_(True)
    try:
        with torch.enable_grad():
            output = call_model(context.model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    if not context.fixed:
        context.fix_targets(output)
    rows = torch.arange(context.batch_size, device=x.device)
    with torch.enable_grad():
        scores = context.target_scores(output, rows)
    used = [(name, bias) for name, _, bias in layers if name in outputs]
    wrt = (inputs, *[outputs[name] for name, _ in used])
    per_target = sum(t.numel() * t.element_size() for t in wrt) * 3
    chunk = context.chunk_size or chunk_for_bytes(scores.shape[1], per_target)
    pieces = []
    for _, _, grads in chunked_vjp(
        scores, wrt, chunk_size=chunk, missing=_independent, automatic=True
    ):
        with torch.no_grad():
            products = grads[0] * x.unsqueeze(1)  # (B, t, C_in, *S)
            n, t = products.shape[:2]
            total = _psi(products.flatten(0, 1), size, rescale).view(n, t, *size)
            for (_, bias), gradient in zip(used, grads[1:], strict=True):
                weighted = gradient * bias.detach().view(-1, *[1] * (x.ndim - 2))
                total = total + _psi(weighted.flatten(0, 1), size, rescale).view(n, t, *size)
            pieces.append(total)
    maps = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
    return MethodResult(
        maps.to(x.dtype), {"layers": [name for name, _ in used]}, layer="input and biases"
    )


def _independent() -> MethodError:
    return MethodError("the target scores do not depend on the input, so there is no gradient")
