"""CAM variants that project the layer onto its principal component: EigenCAM, Eigen-Grad-CAM and
Kernel-PCA CAM.

Like the rest of the CAM family these are pure, dimension-free functions

    (activations (…, C, *s), gradients (…, C, *s)) -> cam (…, *s)

The matrix decomposed is, per sample and target, ``M`` of shape ``(Z, C)``: one row per position
(``Z = ∏ s``), one column per channel, centred over positions. The map is the positions'
coordinates on the first principal component. All samples and targets are decomposed in one
batched call.

**Sign.** A principal component has no sign of its own (``v`` and ``-v`` are both first singular
vectors; pytorch-grad-cam leaves it to LAPACK). camscope fixes it: the map is flipped so that it
correlates positively with the channel sum of the decomposed matrix (``Σ_k A^k`` for EigenCAM,
``Σ_k G^k ⊙ A^k`` for Eigen-Grad-CAM: the sign of HiResCAM's map). A map that does not correlate
with that sum at all is left as decomposed.
"""

from __future__ import annotations

import torch

from camscope.methods.cam_family import _axes
from camscope.methods.registry import method

__all__ = ["eigen_cam", "eigen_grad_cam", "first_component", "kpca_cam"]


def _positions_by_channels(values: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """``(…, C, *s)`` → ``(…, Z, C)``, centred over positions, NaN set to 0 (as the peers)."""
    flat = torch.nan_to_num(values.flatten(start_dim=-spatial_dims), nan=0.0)  # (..., C, Z)
    matrix = flat.transpose(-1, -2)  # (..., Z, C)
    return matrix - matrix.mean(dim=-2, keepdim=True)


def _oriented(projection: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Flip each projection ``(…, Z)`` whose correlation with ``reference`` (…, Z) is negative."""
    centred = reference - reference.mean(dim=-1, keepdim=True)
    agreement = (projection * centred).sum(dim=-1, keepdim=True)
    return torch.where(agreement < 0, -projection, projection)


def first_component(values: torch.Tensor, *, spatial_dims: int) -> torch.Tensor:
    """Each position's coordinate on the first principal component of ``values (…, C, *s)``.

    ``M v₁`` with ``M`` the ``(Z, C)`` matrix centred over positions and ``v₁`` its first right
    singular vector (from the top eigenvector of ``MᵀM`` or ``M Mᵀ``, whichever is smaller, in
    float64), oriented to correlate positively with ``Σ_k values^k``.

    Shape:
        ``(…, C, *s)`` → ``(…, *s)``.
    """
    spatial_shape = values.shape[-spatial_dims:]
    matrix = _positions_by_channels(values, spatial_dims).double()  # (..., Z, C)
    # The top eigenvector of the smaller Gram matrix (batched eigh: several times faster than a
    # batched SVD on CPU): M v₁ from MᵀM's, or σ₁ u₁ from M Mᵀ's; the same up to sign.
    if matrix.shape[-1] <= matrix.shape[-2]:
        _, vectors = torch.linalg.eigh(matrix.transpose(-1, -2) @ matrix)
        projection = (matrix @ vectors[..., -1:]).squeeze(-1)
    else:
        values_, vectors = torch.linalg.eigh(matrix @ matrix.transpose(-1, -2))
        projection = vectors[..., -1] * values_[..., -1:].clamp_min(0).sqrt()
    projection = projection.to(values.dtype)  # (..., Z)
    reference = torch.nan_to_num(values, nan=0.0).sum(dim=-(spatial_dims + 1))
    return _oriented(projection, reference.flatten(start_dim=-spatial_dims)).unflatten(
        -1, spatial_shape
    )


@method(
    kind="cam",
    summary="EigenCAM: first principal component of the activations (target-blind)",
    target_blind=True,
)
def eigen_cam(
    activations: torch.Tensor, gradients: torch.Tensor, *, spatial_dims: int | None = None
) -> torch.Tensor:
    """EigenCAM (Muhammad & Yeasin 2020): ``L = M v₁``, the activations' first principal component.

    ``M`` is ``(Z, C)``: the activations at each position, centred over positions; ``v₁`` its first
    right singular vector. It uses no gradient, so every target of a sample gets the same map
    (a display of what the layer holds most, not of a class). Signed; oriented as the module
    docstring says.

    References:
        Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN
        2020.
    """
    _, spatial = _axes(activations, gradients, spatial_dims)
    maps = first_component(activations, spatial_dims=len(spatial))  # (B, 1, *s)
    target_axes = gradients.shape[: gradients.ndim - len(spatial) - 1]
    return maps.expand(*target_axes, *maps.shape[-len(spatial) :]).contiguous()


@method(
    kind="cam",
    summary="Eigen-Grad-CAM: first principal component of gradients ⊙ activations",
)
def eigen_grad_cam(
    activations: torch.Tensor, gradients: torch.Tensor, *, spatial_dims: int | None = None
) -> torch.Tensor:
    """Eigen-Grad-CAM: ``L = M v₁`` with ``M`` the ``(Z, C)`` matrix of ``G ⊙ A``, centred over
    positions (pytorch-grad-cam's ``EigenGradCAM``); oriented to correlate positively with
    HiResCAM's map ``Σ_k G^k ⊙ A^k``.

    References:
        Muhammad & Yeasin 2020 (Eigen-CAM), applied to the gradient-weighted activations.
    """
    _, spatial = _axes(activations, gradients, spatial_dims)
    return first_component(gradients * activations, spatial_dims=len(spatial))


@method(
    kind="cam",
    summary="Kernel-PCA CAM: first kernel principal component of the activations (sigmoid kernel)",
    target_blind=True,
)
def kpca_cam(
    activations: torch.Tensor, gradients: torch.Tensor, *, spatial_dims: int | None = None
) -> torch.Tensor:
    """KPCA-CAM (Karmani et al. 2024): EigenCAM with kernel PCA over positions.

    With ``M`` the ``(Z, C)`` activations centred over positions, the kernel is
    ``K = tanh(γ M Mᵀ + 1)`` with ``γ = 1/C`` (scikit-learn's sigmoid kernel and defaults), centred
    in feature space (``K̃ = H K H``, ``H = I − 1/Z``); the map is ``√λ₁ u₁``, the positions'
    coordinates on the first kernel component (what ``KernelPCA(n_components=1,
    kernel="sigmoid").fit_transform(M)`` returns). Target-blind as EigenCAM; oriented as the
    module docstring says.

    References:
        Karmani, Nadeem, Bakhsh, Akhtar, "KPCA-CAM: Visual Explainability of Deep Computer Vision
        Models using Kernel PCA", 2024.
    """
    _, spatial = _axes(activations, gradients, spatial_dims)
    dims = len(spatial)
    spatial_shape = activations.shape[-dims:]
    matrix = _positions_by_channels(activations, dims).double()  # (B, 1, Z, C)
    gamma = 1.0 / matrix.shape[-1]
    kernel = torch.tanh(gamma * (matrix @ matrix.transpose(-1, -2)) + 1.0)
    kernel = kernel - kernel.mean(dim=-1, keepdim=True)
    kernel = kernel - kernel.mean(dim=-2, keepdim=True)
    values, vectors = torch.linalg.eigh(kernel)  # ascending
    top = vectors[..., -1] * values[..., -1:].clamp_min(0).sqrt()  # (B, 1, Z)
    reference = torch.nan_to_num(activations, nan=0.0).sum(dim=-(dims + 1)).flatten(-dims)
    maps = _oriented(top.to(activations.dtype), reference).unflatten(-1, spatial_shape)
    target_axes = gradients.shape[: gradients.ndim - dims - 1]
    return maps.expand(*target_axes, *maps.shape[-dims:]).contiguous()
