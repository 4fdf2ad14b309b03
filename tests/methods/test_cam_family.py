"""CAM-family functions against values worked out by hand and against loop references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from camscope import methods
from camscope.errors import InputError, MethodError
from tests.conftest import assert_close

# One sample, two channels, a 2×2 grid. Every expected value below is worked out by hand in the
# comments, from the formulas in camscope.methods.cam_family's docstrings.
A = torch.tensor([[[[1.0, 2.0], [3.0, 0.0]], [[0.0, 1.0], [1.0, 2.0]]]], dtype=torch.float64)
G = torch.tensor([[[[1.0, -1.0], [2.0, 0.0]], [[0.5, 0.5], [-1.0, 1.0]]]], dtype=torch.float64)


def test_grad_cam_by_hand():
    # α1 = (1 − 1 + 2 + 0)/4 = 0.5, α2 = (0.5 + 0.5 − 1 + 1)/4 = 0.25; L = 0.5 A1 + 0.25 A2
    expected = torch.tensor([[[0.5, 1.25], [1.75, 0.5]]], dtype=torch.float64)
    assert_close(methods.grad_cam(A, G), expected)
    assert_close(methods.counterfactual_grad_cam(A, G), -expected)


def test_respond_and_xgrad_cam_by_hand():
    # α1 = Σ A1·G1 / Σ A1 = (1 − 2 + 6 + 0)/6 = 5/6; α2 = (0 + 0.5 − 1 + 2)/4 = 0.375
    a1, a2 = 5 / 6, 0.375
    expected = torch.tensor([[[a1, 2 * a1 + a2], [3 * a1 + a2, 2 * a2]]], dtype=torch.float64)
    assert_close(methods.xgrad_cam(A, G), expected)
    # ε = 1e-10 per position moves the result by ~1e-10 relative only.
    torch.testing.assert_close(methods.respond_cam(A, G), expected, rtol=1e-9, atol=0)


def test_pixelwise_and_layer_cam_by_hand():
    # Σ_k G⊙A: [1·1 + 0·0.5, 2·(−1) + 1·0.5; 3·2 + 1·(−1), 0·0 + 2·1]
    assert_close(
        methods.pixelwise_cam(A, G), torch.tensor([[[1.0, -1.5], [5.0, 2.0]]], dtype=torch.float64)
    )
    assert_close(
        methods.extended_cam(A, G), torch.tensor([[[1.0, -1.5], [5.0, 2.0]]], dtype=torch.float64)
    )
    # Σ_k ReLU(G)⊙A: [1 + 0, 0 + 0.5; 6 + 0, 0 + 2]
    assert_close(
        methods.layer_cam(A, G), torch.tensor([[[1.0, 0.5], [6.0, 2.0]]], dtype=torch.float64)
    )


def test_grad_cam_pp_by_hand():
    # Channel 1, Σ A1 = 6: g=1 → a = 1/(2+6) = 1/8, ·ReLU(1) = 1/8; g=−1 → ReLU = 0;
    #   g=2 → a = 4/(8+48) = 1/14, ·2 = 1/7; g=0 → a = 0.  w1 = 1/8 + 1/7.
    # Channel 2, Σ A2 = 4: g=0.5 → a = 0.25/(0.5+0.5) = 1/4, ·0.5 = 1/8 (twice);
    #   g=−1 → 0; g=1 → a = 1/(2+4) = 1/6.  w2 = 1/4 + 1/6.
    w1, w2 = 1 / 8 + 1 / 7, 1 / 4 + 1 / 6
    expected = torch.tensor([[[w1, 2 * w1 + w2], [3 * w1 + w2, 2 * w2]]], dtype=torch.float64)
    assert_close(methods.grad_cam_pp(A, G), expected)


def test_cam_by_hand_and_refuses_non_gap_heads():
    # A GAP → Linear head with W = [1, −2] over Z = 4 positions gives G = W/4 everywhere.
    gradients = torch.stack([torch.full((2, 2), 0.25), torch.full((2, 2), -0.5)])[None].double()
    expected = A[:, 0] - 2 * A[:, 1]  # Σ_k W_k A^k
    assert_close(methods.cam(A, gradients), expected)
    with pytest.raises(MethodError, match="global average pooling"):
        methods.cam(A, G)


# ---------------------------------------------------------------------------------------------
# Loop references, written independently of the vectorised code, element by element.


def _reference(name: str, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """One sample: a, g of shape (C, *s) → (*s), by explicit loops over channels and positions."""
    channels = a.shape[0]
    positions = list(itertools.product(*[range(n) for n in a.shape[1:]]))
    z = len(positions)
    out = np.zeros(a.shape[1:])
    for k in range(channels):
        if name in ("pixelwise_cam", "extended_cam", "layer_cam"):
            for p in positions:
                gk = max(g[k][p], 0.0) if name == "layer_cam" else g[k][p]
                out[p] += gk * a[k][p]
            continue
        if name == "grad_cam":
            weight = sum(g[k][p] for p in positions) / z
        elif name == "counterfactual_grad_cam":
            weight = -sum(g[k][p] for p in positions) / z
        elif name in ("respond_cam", "xgrad_cam"):
            eps = 1e-10 if name == "respond_cam" else 0.0
            numerator = sum(a[k][p] * g[k][p] for p in positions)
            denominator = sum(a[k][p] + eps for p in positions)
            weight = numerator / denominator if denominator != 0 else 0.0
        elif name == "grad_cam_pp":
            total = sum(a[k][p] for p in positions)
            weight = 0.0
            for p in positions:
                gp = g[k][p]
                denominator = 2 * gp**2 + total * gp**3
                alpha = gp**2 / denominator if denominator != 0 else 0.0
                weight += alpha * max(gp, 0.0)
        else:
            raise AssertionError(name)
        for p in positions:
            out[p] += weight * a[k][p]
    return out


LOOP_METHODS = [
    "grad_cam",
    "counterfactual_grad_cam",
    "grad_cam_pp",
    "respond_cam",
    "xgrad_cam",
    "pixelwise_cam",
    "layer_cam",
    "extended_cam",
]


@pytest.mark.parametrize("name", LOOP_METHODS)
@pytest.mark.parametrize("spatial", [(5, 4), (3, 4, 2)], ids=["2d", "3d"])
def test_matches_loop_reference(name, spatial):
    generator = torch.Generator().manual_seed(1)
    activations = torch.rand(3, 4, *spatial, generator=generator, dtype=torch.float64)
    activations[0, 1] = 0.0  # an all-zero channel: Respond-CAM's α must be 0, not NaN
    gradients = torch.randn(3, 4, *spatial, generator=generator, dtype=torch.float64)
    maps = getattr(methods, name)(activations, gradients)
    expected = np.stack(
        [_reference(name, activations[b].numpy(), gradients[b].numpy()) for b in range(3)]
    )
    assert maps.shape == (3, *spatial)
    np.testing.assert_allclose(maps.numpy(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", [*LOOP_METHODS, "cam"])
def test_two_d_equals_three_d_at_depth_one(name):
    activations = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    gradients = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    if name == "cam":
        gradients = gradients.mean(dim=(2, 3), keepdim=True).expand_as(gradients)
    function = getattr(methods, name)
    flat = function(activations, gradients)
    deep = function(activations[:, :, None], gradients[:, :, None])
    assert_close(deep[:, 0], flat)


@pytest.mark.parametrize("name", LOOP_METHODS)
def test_broadcast_targets_equal_per_target_calls(name):
    """Activations (B, 1, C, *s) against gradients (B, T, C, *s), as the engine calls them."""
    activations = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    gradients = torch.randn(2, 5, 3, 4, 4, dtype=torch.float64)
    function = getattr(methods, name)
    together = function(activations[:, None], gradients, spatial_dims=2)
    apart = torch.stack([function(activations, gradients[:, t]) for t in range(5)], dim=1)
    assert together.shape == (2, 5, 4, 4)
    assert_close(together, apart)


def test_respond_cam_degenerate_denominator_gives_zero_weight():
    # Signed activations that cancel exactly: Σ A = 0, so α must be 0 rather than huge.
    activations = torch.tensor([[[[1.0, -1.0], [2.0, -2.0]]]], dtype=torch.float64)
    gradients = torch.ones_like(activations)
    assert torch.count_nonzero(methods.xgrad_cam(activations, gradients)) == 0
    assert torch.count_nonzero(methods.respond_cam(activations, gradients)) == 0


def test_mismatched_shapes_are_refused():
    with pytest.raises(InputError, match="differ"):
        methods.grad_cam(torch.rand(1, 2, 3, 3), torch.rand(1, 3, 3, 3))
    with pytest.raises(InputError, match="spatial"):
        methods.grad_cam(torch.rand(4, 2), torch.rand(4, 2))


# ---------------------------------------------------------------------------------------------
# Grad-CAM++ against eq. 19 of Chattopadhay et al. with the real higher derivatives of exp(y).


@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_grad_cam_pp_matches_eq19_with_autograd_derivatives(scale):
    """Eq. 19: α = ∂²Y/∂A² / (2 ∂²Y/∂A² + Σ_ab A_ab ∂³Y/∂A³), Y = exp(S), w = Σ α ReLU(∂Y/∂A).

    The derivatives of Y are taken by autograd, element by element (no g², g³ shortcut), on a
    piecewise-linear head, so this checks the closed form the library uses. The library drops the
    common factor exp(S).
    """
    generator = torch.Generator().manual_seed(3)
    channels, size = 2, (3, 3)
    activations = torch.rand(channels, *size, generator=generator, dtype=torch.float64)
    weight = scale * torch.randn(channels * 9, generator=generator, dtype=torch.float64)

    def score(a: torch.Tensor) -> torch.Tensor:  # linear head: S = w · flatten(A) + 0.3
        return weight @ a.reshape(-1) + 0.3

    flat = activations.reshape(-1)
    first, second, third = (torch.zeros_like(flat) for _ in range(3))
    for index in range(flat.numel()):
        element = flat[index].clone().requires_grad_(True)

        def exp_score(value, index=index):
            a = flat.clone()
            a[index] = value
            return torch.exp(score(a.reshape(activations.shape)))

        y = exp_score(element)
        (d1,) = torch.autograd.grad(y, element, create_graph=True)
        (d2,) = torch.autograd.grad(d1, element, create_graph=True)
        (d3,) = torch.autograd.grad(d2, element)
        first[index], second[index], third[index] = d1, d2, d3
    first, second, third = (t.reshape(activations.shape) for t in (first, second, third))
    sums = activations.sum(dim=(1, 2), keepdim=True)
    alpha = second / (2 * second + sums * third)
    weights = (alpha * torch.relu(first)).sum(dim=(1, 2))
    expected = (weights[:, None, None] * activations).sum(0)
    gradients = weight.reshape(activations.shape)
    scale = torch.exp(score(activations)).detach()
    actual = methods.grad_cam_pp(activations[None], gradients[None])[0] * scale
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-12)
