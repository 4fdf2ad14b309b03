"""Effective receptive field: closed-form check, fit, cache, and Gaussian upsampling with it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import camscope
from camscope.errors import CamscopeError, InputError
from camscope.receptive import cached_receptive_field, fit_gaussian


def _box_stack(n: int, spatial_dims: int) -> nn.Sequential:
    """n linear 3×3(×3) convolutions with equal weights: the ERF is the n-fold box convolution."""
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    layers = []
    for _ in range(n):
        layer = conv(1, 1, 3, padding=1, bias=False)
        nn.init.constant_(layer.weight, 1 / 3**spatial_dims)
        layers.append(layer)
    return nn.Sequential(*layers).double()


@pytest.mark.parametrize(("spatial_dims", "n", "size"), [(2, 8, 41), (3, 6, 25)])
def test_sigma_matches_closed_form(spatial_dims, n, size):
    # Per axis the ERF is the distribution of a sum of n uniform {−1, 0, 1}: variance 2n/3.
    erf = camscope.effective_receptive_field(
        _box_stack(n, spatial_dims), str(n - 1), input_shape=(1, *[size] * spatial_dims)
    )
    expected = math.sqrt(2 * n / 3)
    assert erf.r2 > 0.98
    for sigma in erf.sigma:
        assert sigma == pytest.approx(expected, rel=0.05)
    assert erf.center == pytest.approx([size // 2] * spatial_dims, abs=1e-6)
    assert erf.position == (size // 2,) * spatial_dims
    assert erf.map.shape == (size,) * spatial_dims


def test_fit_recovers_a_sampled_gaussian_exactly():
    grid = torch.meshgrid(torch.arange(30.0), torch.arange(24.0), indexing="ij")
    values = (
        3 * torch.exp(-((grid[0] - 13.2) ** 2) / (2 * 4.0**2) - (grid[1] - 9.5) ** 2 / 18) + 0.5
    )
    sigma, center, amplitude, offset, r2 = fit_gaussian(values.double().numpy())
    assert sigma == pytest.approx((4.0, 3.0), rel=1e-6)
    assert center == pytest.approx((13.2, 9.5), rel=1e-6)
    assert (amplitude, offset) == pytest.approx((3.0, 0.5), rel=1e-6)
    assert r2 == pytest.approx(1.0)


def test_off_centre_position_and_real_inputs():
    net = _box_stack(3, 2)
    x = torch.rand(3, 1, 21, 21, dtype=torch.float64)
    erf = camscope.effective_receptive_field(net, "2", x, position=(4, 15))
    assert erf.center == pytest.approx((4, 15), abs=1e-3) and erf.n_inputs == 3
    with pytest.raises(InputError, match="not inside"):
        camscope.effective_receptive_field(net, "2", x, position=(4, 40))
    with pytest.raises(InputError, match="input_shape"):
        camscope.effective_receptive_field(net, "2")


def test_model_left_as_it_was():
    net = camscope.models.create_model("tiny2d", num_classes=3, input_size=32).train()
    net.pool1.eval()
    camscope.effective_receptive_field(net, "pool2", input_shape=(1, 32, 32))
    assert net.training and not net.pool1.training
    assert all(p.grad is None for p in net.parameters())
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_flat_field_is_an_error():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()).double()
    nn.init.zeros_(net[0].weight)
    with pytest.raises(CamscopeError, match="flat"):
        camscope.effective_receptive_field(net, "1", input_shape=(1, 12, 12))


def test_cache_reuses_until_weights_change():
    net = camscope.models.create_model("tiny2d", num_classes=3, input_size=32)
    first = cached_receptive_field(net, "pool2", (1, 32, 32))
    assert cached_receptive_field(net, "pool2", (1, 32, 32)) is first
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    net(torch.randn(2, 1, 32, 32)).sum().backward()
    optimizer.step()
    assert cached_receptive_field(net, "pool2", (1, 32, 32)) is not first


def test_extended_cam_end_to_end_uses_gaussian_with_erf_widths():
    net = camscope.models.create_model("tiny2d", num_classes=3, input_size=32).double()
    x = torch.randn(2, 1, 32, 32, dtype=torch.float64)
    e = camscope.explain(net, x, method="extended_cam", targets="all")
    up = e.upsample()
    assert up.steps == ("upsample(gaussian)",) and up.maps.shape == (2, 3, 32, 32)
    sigma = cached_receptive_field(net, "pool2", (1, 32, 32)).sigma
    explicit = camscope.upsample(e.maps, (32, 32), mode="gaussian", sigma=sigma)
    torch.testing.assert_close(up.maps, explicit)
    assert (up.maps < 0).any()  # no ReLU anywhere: negative evidence is kept and smoothed
    # At another size the widths are rescaled from input pixels to output pixels.
    half = e.upsample((16, 16))
    rescaled = camscope.upsample(e.maps, (16, 16), mode="gaussian", sigma=[s / 2 for s in sigma])
    torch.testing.assert_close(half.maps, rescaled)


def test_erf_sigma_needs_model_information():
    with pytest.raises(InputError, match="needs the model"):
        camscope.upsample(torch.randn(1, 1, 4, 4), (8, 8), mode="gaussian", sigma="erf")


def test_plot_writes_png(tmp_path):
    erf = camscope.effective_receptive_field(_box_stack(3, 3), "2", input_shape=(1, 15, 15, 15))
    erf.plot(tmp_path / "erf.png")
    assert (tmp_path / "erf.png").read_bytes()[:4] == b"\x89PNG"


def _high_frequency_fraction(images: torch.Tensor) -> float:
    """Energy of the discrete Laplacian over the energy of the image (per map, averaged)."""
    centred = images - images.mean(dim=(-2, -1), keepdim=True)
    laplacian = (
        centred[..., 1:-1, :-2]
        + centred[..., 1:-1, 2:]
        + centred[..., :-2, 1:-1]
        + centred[..., 2:, 1:-1]
        - 4 * centred[..., 1:-1, 1:-1]
    )
    return float((laplacian.square().sum((-2, -1)) / centred.square().sum((-2, -1))).mean())


def test_gaussian_upsampling_removes_bilinear_crease_artefacts():
    """Kim et al. 2020's claim: bilinear upsampling of a coarse map leaves creases along cell lines
    (the cross/rhombus artefacts); Gaussian upsampling with receptive-field widths does not."""
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(4, 3, 7, 7, generator=generator, dtype=torch.float64)
    bilinear = camscope.upsample(maps, (224, 224), mode="linear")
    gaussian = camscope.upsample(maps, (224, 224), mode="gaussian", sigma=32.0)
    assert _high_frequency_fraction(gaussian) < 0.05 * _high_frequency_fraction(bilinear)
