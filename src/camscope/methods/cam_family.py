"""The CAM family: maps at layer resolution computed from activations and their gradients.

Every function here is pure and dimension-free:

    (activations (B, C, *s), gradients (B, C, *s)) -> cam (B, *s)

``*s`` is any number of spatial axes (2 for images, 3 for volumes). The channel axis is the one
right before the spatial axes, and every axis before it broadcasts, so the engine can pass
activations ``(B, 1, C, *s)`` with gradients ``(B, T, C, *s)`` (all targets of a sample share its
activations) together with ``spatial_dims=len(s)`` and get ``(B, T, *s)`` without copying the
activations ``T`` times.

All maps are raw: signed, unnormalised, at layer resolution. Each function's docstring
gives its formula and reference.
"""

from __future__ import annotations

import torch

from camscope.errors import InputError, MethodError
from camscope.methods.registry import method

__all__ = [
    "cam",
    "counterfactual_grad_cam",
    "extended_cam",
    "grad_cam",
    "grad_cam_elementwise",
    "grad_cam_pp",
    "layer_cam",
    "pixelwise_cam",
    "respond_cam",
    "weighted_sum",
    "xgrad_cam",
]

#: Respond-CAM's per-position stabiliser in the denominator (Zhao et al. 2018).
RESPOND_EPSILON = 1e-10


def _axes(
    activations: torch.Tensor, gradients: torch.Tensor, spatial_dims: int | None
) -> tuple[int, tuple[int, ...]]:
    """Channel axis and spatial axes (negative indices) for a broadcastable pair."""
    if spatial_dims is None:
        spatial_dims = gradients.ndim - 2
    if spatial_dims < 1:
        raise InputError(
            f"layer maps need activations (B, C, *s) with at least one spatial axis; got "
            f"gradients of shape {tuple(gradients.shape)}"
        )
    if activations.ndim < spatial_dims + 1 or gradients.ndim < spatial_dims + 1:
        raise InputError(
            f"activations {tuple(activations.shape)} and gradients {tuple(gradients.shape)} "
            f"do not both have a channel axis and {spatial_dims} spatial axes"
        )
    tail_a = activations.shape[-(spatial_dims + 1) :]
    tail_g = gradients.shape[-(spatial_dims + 1) :]
    if tail_a != tail_g:
        raise InputError(
            f"activations {tuple(activations.shape)} and gradients {tuple(gradients.shape)} "
            "differ in their channel or spatial axes"
        )
    spatial = tuple(range(-spatial_dims, 0))
    return -(spatial_dims + 1), spatial


def weighted_sum(
    weights: torch.Tensor, activations: torch.Tensor, *, spatial_dims: int
) -> torch.Tensor:
    """``L = Σ_k w_k A^k``: channel weights ``(..., C)`` times activations ``(..., C, *s)``.

    Done as one batched matrix product over flattened positions, so no ``(…, C, *s)``-sized
    temporary is made.
    """
    spatial_shape = activations.shape[-spatial_dims:]
    flat = activations.flatten(start_dim=-spatial_dims)  # (..., C, Z)
    maps = torch.matmul(weights.unsqueeze(-2), flat).squeeze(-2)  # (..., Z)
    return maps.unflatten(-1, spatial_shape)


@method(
    kind="cam",
    summary="class activation map; needs global average pooling → linear after the layer",
    signed=False,
)
def cam(
    activations: torch.Tensor, gradients: torch.Tensor, *, spatial_dims: int | None = None
) -> torch.Tensor:
    """CAM (Zhou et al. 2016): ``L^c = Σ_k W[c, k] A^k``.

    For a layer followed by global average pooling and a Linear layer, ``∂y_c/∂A^k_s = W[c,k]/Z``
    at every position, so ``W[c, k] = Σ_s G^k_s``: the weights are read from the gradients and
    ``Σ_s L^c / Z + b_c = y_c`` holds exactly.

    Raises:
        MethodError: the gradients are not constant over positions, i.e. the layer is not followed
            by global average pooling then a linear map; use ``grad_cam`` or ``respond_cam``.

    References:
        Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016.
    """
    _channel, spatial = _axes(activations, gradients, spatial_dims)
    mean = gradients.mean(dim=spatial, keepdim=True)
    scale = gradients.abs().amax().clamp_min(torch.finfo(gradients.dtype).tiny)
    deviation = (gradients - mean).abs().amax() / scale
    if deviation > 1e3 * torch.finfo(gradients.dtype).eps:
        raise MethodError(
            "CAM needs the layer to be followed by global average pooling and a linear layer "
            f"(its gradients vary over positions by {float(deviation):.2e} of their size); use "
            "'grad_cam', 'respond_cam' or 'pixelwise_cam', or pick the layer right before the "
            "global pooling"
        )
    weights = gradients.sum(dim=spatial)
    return weighted_sum(weights, activations, spatial_dims=len(spatial))


@method(
    kind="cam",
    summary="gradient-weighted CAM, channel weight = mean gradient",
)
def grad_cam(
    activations: torch.Tensor, gradients: torch.Tensor, *, spatial_dims: int | None = None
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): ``α_k = (1/Z) Σ_s G^k_s``, ``L = Σ_k α_k A^k``.

    Raw: the ReLU the paper applies for display is a separate step (:func:`camscope.relu`).

    References:
        Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
        Localization", ICCV 2017.
    """
    _, spatial = _axes(activations, gradients, spatial_dims)
    weights = gradients.mean(dim=spatial)
    return weighted_sum(weights, activations, spatial_dims=len(spatial))


@method(
    kind="cam",
    summary="element-wise Grad-CAM: Σ_k ReLU(G ⊙ A), the positive products summed",
    signed=False,
)
def grad_cam_elementwise(
    activations: torch.Tensor, gradients: torch.Tensor, *, spatial_dims: int | None = None
) -> torch.Tensor:
    """Element-wise Grad-CAM: ``L = Σ_k ReLU(G^k ⊙ A^k)``.

    HiResCAM's products, each clipped at zero before the channel sum (pytorch-grad-cam's
    ``GradCAMElementWise``): non-negative by construction, so unlike HiResCAM it no longer sums
    to a Taylor term of the score.
    """
    channel, _ = _axes(activations, gradients, spatial_dims)
    return torch.relu(gradients * activations).sum(dim=channel)


@method(
    kind="cam",
    summary="Grad-CAM with negated gradients: evidence against the target",
)
def counterfactual_grad_cam(
    activations: torch.Tensor, gradients: torch.Tensor, *, spatial_dims: int | None = None
) -> torch.Tensor:
    """Counterfactual Grad-CAM: Grad-CAM with negated gradients (evidence *against* the target).

    References:
        Selvaraju et al. 2017, section "Counterfactual Explanations".
    """
    return grad_cam(activations, -gradients, spatial_dims=spatial_dims)


@method(
    kind="cam",
    summary="Grad-CAM++ (eq. 19, exponential trick)",
)
def grad_cam_pp(
    activations: torch.Tensor, gradients: torch.Tensor, *, spatial_dims: int | None = None
) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018), eq. 19 with the exponential trick.

    ``a_ks = g² / (2 g² + (Σ_s' A^k_s') g³)`` with ``g = G^k_s`` and ``a = 0`` where the
    denominator is 0; ``w_k = Σ_s a_ks ReLU(g_ks)``; ``L = Σ_k w_k A^k``. The common factor
    ``exp(y)`` is dropped. Note the sum of activations over *positions* in the denominator
    (some peers sum ``A·g³`` instead, or never divide).

    References:
        Chattopadhay et al., "Grad-CAM++: Generalized Gradient-Based Visual Explanations for Deep
        Convolutional Networks", WACV 2018.
    """
    _, spatial = _axes(activations, gradients, spatial_dims)
    g2 = gradients.square()
    g3 = g2 * gradients
    activation_sums = activations.sum(dim=spatial, keepdim=True)
    denominator = 2.0 * g2 + activation_sums * g3
    nonzero = denominator != 0
    alpha = torch.where(nonzero, g2 / torch.where(nonzero, denominator, 1.0), 0.0)
    weights = (alpha * torch.relu(gradients)).sum(dim=spatial)
    return weighted_sum(weights, activations, spatial_dims=len(spatial))


def _response_weights(
    activations: torch.Tensor,
    gradients: torch.Tensor,
    spatial: tuple[int, ...],
    epsilon: float,
) -> torch.Tensor:
    """``Σ_s(A G) / Σ_s(A + ε)``, and 0 where the denominator is ~0 (cancelled to rounding)."""
    numerator = (activations * gradients).sum(dim=spatial)
    positions = 1
    for axis in spatial:
        positions *= activations.shape[axis]
    denominator = activations.sum(dim=spatial) + positions * epsilon
    # ~0: no larger than the rounding error of summing |A| (signed activations that cancel out).
    magnitude = activations.abs().sum(dim=spatial)
    degenerate = denominator.abs() <= 4 * torch.finfo(activations.dtype).eps * magnitude
    degenerate = degenerate | (denominator == 0)
    safe = torch.where(degenerate, 1.0, denominator)
    return torch.where(degenerate, 0.0, numerator / safe)


@method(
    kind="cam",
    summary="Respond-CAM: response-weighted, sums to score − bias for a linear head",
)
def respond_cam(
    activations: torch.Tensor, gradients: torch.Tensor, *, spatial_dims: int | None = None
) -> torch.Tensor:
    """Respond-CAM (Zhao et al. 2018): ``α_k = Σ_s(A^k G^k) / Σ_s(A^k + ε)``, ``L = Σ_k α_k A^k``.

    ``ε = 1e-10`` per position; ``α_k = 0`` where the denominator is ~0. No ReLU, no
    normalisation. Sum-to-score: when the layer is followed by Flatten → Linear,
    ``Σ_s L = y - b`` (up to ``ε``).

    References:
        Zhao, Zhou, Wang, Jiang, Xu, "Respond-CAM: Analyzing Deep Models for 3D Imaging Data by
        Visualizations", MICCAI 2018.
    """
    _, spatial = _axes(activations, gradients, spatial_dims)
    weights = _response_weights(activations, gradients, spatial, RESPOND_EPSILON)
    return weighted_sum(weights, activations, spatial_dims=len(spatial))


@method(
    kind="cam",
    summary="XGrad-CAM: Respond-CAM's weight without ε",
)
def xgrad_cam(
    activations: torch.Tensor, gradients: torch.Tensor, *, spatial_dims: int | None = None
) -> torch.Tensor:
    """XGrad-CAM (Fu et al. 2020): Respond-CAM's weight without ``ε``.

    References:
        Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of
        CNNs", BMVC 2020.
    """
    _, spatial = _axes(activations, gradients, spatial_dims)
    weights = _response_weights(activations, gradients, spatial, 0.0)
    return weighted_sum(weights, activations, spatial_dims=len(spatial))


@method(
    kind="cam",
    summary="pixel-wise gradient × activation summed over channels (HiResCAM)",
)
def pixelwise_cam(
    activations: torch.Tensor, gradients: torch.Tensor, *, spatial_dims: int | None = None
) -> torch.Tensor:
    """Pixel-wise gradient CAM (HiResCAM, Draelos & Carin 2020): ``L = Σ_k G^k ⊙ A^k``.

    References:
        Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
        convolutional neural networks", 2020.
    """
    channel, _ = _axes(activations, gradients, spatial_dims)
    return (gradients * activations).sum(dim=channel)


@method(
    kind="cam",
    summary="pixel-wise CAM with positive gradients only (LayerCAM)",
    signed=False,
)
def layer_cam(
    activations: torch.Tensor, gradients: torch.Tensor, *, spatial_dims: int | None = None
) -> torch.Tensor:
    """Guided pixel-wise CAM (LayerCAM): ``L = Σ_k ReLU(G^k) ⊙ A^k``.

    References:
        Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
        IEEE TIP 2021.
    """
    channel, _ = _axes(activations, gradients, spatial_dims)
    return (torch.relu(gradients) * activations).sum(dim=channel)


@method(
    kind="cam",
    summary="Extended-CAM grid map (gradient × activation); Gaussian upsampling after",
    upsampling="gaussian",
)
def extended_cam(
    activations: torch.Tensor, gradients: torch.Tensor, *, spatial_dims: int | None = None
) -> torch.Tensor:
    """Extended-CAM's grid map (Kim et al. 2020): ``L = Σ_k G^k ⊙ A^k``, no ReLU.

    A first-order Taylor term: ``Σ_s L ≈ y`` for piecewise-linear heads. Extended-CAM proper
    then upsamples this grid with Gaussian upsampling (a separate, explicit step).

    References:
        Kim et al., "Extending Class Activation Mapping Using Gaussian Receptive Field", 2020.
    """
    return pixelwise_cam(activations, gradients, spatial_dims=spatial_dims)
