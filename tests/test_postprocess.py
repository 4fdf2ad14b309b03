"""relu / normalize / upsample: explicit, non-mutating, exact."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import camscope
from camscope.errors import InputError
from camscope.postprocess import gaussian_upsampling_matrix
from tests.conftest import assert_close


def test_relu_and_normalize_do_not_mutate():
    maps = torch.randn(2, 3, 4, 5)
    copy = maps.clone()
    camscope.relu(maps)
    for kind in ("minmax", "maxabs", "none"):
        camscope.normalize(maps, kind=kind)
    assert torch.equal(maps, copy)


def test_normalize_kinds_per_sample_and_target():
    maps = torch.randn(2, 3, 4, 4, 4, dtype=torch.float64) * torch.arange(1, 7).reshape(
        2, 3, 1, 1, 1
    )
    minmax = camscope.normalize(maps, kind="minmax")
    flat = minmax.flatten(2)
    assert_close(flat.amin(-1), torch.zeros(2, 3, dtype=torch.float64))
    assert_close(flat.amax(-1), torch.ones(2, 3, dtype=torch.float64))
    maxabs = camscope.normalize(maps, kind="maxabs")
    assert_close(maxabs.abs().flatten(2).amax(-1), torch.ones(2, 3, dtype=torch.float64))
    assert torch.equal(torch.sign(maxabs), torch.sign(maps))


def test_normalize_constant_maps_become_zero():
    out = camscope.normalize(torch.full((1, 2, 3, 3), 5.0), kind="minmax")
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.equal(
        camscope.normalize(torch.zeros(1, 1, 3, 3), kind="maxabs"), torch.zeros(1, 1, 3, 3)
    )


def test_linear_and_nearest_upsampling():
    maps = torch.randn(2, 3, 4, 5)
    linear = camscope.upsample(maps, (8, 10))
    assert_close(linear, F.interpolate(maps, size=(8, 10), mode="bilinear", align_corners=False))
    volume = torch.randn(1, 2, 3, 4, 5)
    trilinear = camscope.upsample(volume, (6, 8, 10))
    assert trilinear.shape == (1, 2, 6, 8, 10)
    nearest = camscope.upsample(torch.arange(4.0).reshape(1, 1, 2, 2), (4, 4), mode="nearest")
    assert nearest[0, 0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]


def _brute_force(maps: torch.Tensor, size, sigma) -> torch.Tensor:
    """Σ over every cell q of L(q) Π_d exp(−(p_d − c_d(q_d))² / 2σ_d²), for every pixel p."""
    grid = maps.shape[2:]
    out = torch.zeros(*maps.shape[:2], *size, dtype=torch.float64)
    for p in itertools.product(*[range(n) for n in size]):
        for q in itertools.product(*[range(n) for n in grid]):
            weight = 1.0
            for d in range(len(size)):
                centre = (q[d] + 0.5) * size[d] / grid[d] - 0.5
                weight *= math.exp(-((p[d] - centre) ** 2) / (2 * sigma[d] ** 2))
            out[(slice(None), slice(None), *p)] += weight * maps[(slice(None), slice(None), *q)]
    return out


@pytest.mark.parametrize(
    ("grid", "size", "sigma"),
    [((3, 2), (7, 5), (1.5, 2.0)), ((2, 3, 2), (5, 6, 4), (1.0, 1.7, 0.8))],
    ids=["2d", "3d"],
)
def test_gaussian_upsampling_equals_brute_force_sum(grid, size, sigma):
    maps = torch.randn(2, 1, *grid, dtype=torch.float64)
    fast = camscope.upsample(maps, size, mode="gaussian", sigma=sigma)
    assert_close(fast, _brute_force(maps, size, sigma))


def test_gaussian_mass_preserving_and_centre():
    maps = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    maps[0, 0, 1, 2] = 3.0
    out = camscope.upsample(maps, (16, 16), mode="gaussian", sigma=2.0, mass_preserving=True)
    torch.testing.assert_close(out.sum(), torch.tensor(3.0, dtype=torch.float64))
    # cell (1, 2) of a 4-grid on 16 pixels is centred at ((1.5·4 − 0.5), (2.5·4 − 0.5)) = (5.5, 9.5)
    peak = out[0, 0]
    top = peak.max()
    rows, cols = torch.nonzero(peak == top, as_tuple=True)
    assert sorted(rows.tolist()) == [5, 5, 6, 6] and sorted(cols.tolist()) == [9, 9, 10, 10]


def test_gaussian_two_d_equals_three_d_at_depth_one():
    maps = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    flat = camscope.upsample(maps, (9, 8), mode="gaussian", sigma=(1.2, 2.0))
    deep = camscope.upsample(maps[:, :, None], (1, 9, 8), mode="gaussian", sigma=(1.0, 1.2, 2.0))
    assert_close(deep[:, :, 0], flat)


def test_gaussian_matrix_columns_sum_to_one_when_mass_preserving():
    matrix = gaussian_upsampling_matrix(7, 224, 31.0, mass_preserving=True, dtype=torch.float64)
    assert matrix.shape == (224, 7)
    assert_close(matrix.sum(0), torch.ones(7, dtype=torch.float64))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: camscope.upsample(m, (4,)), "2 positive entries"),
        (lambda m: camscope.upsample(m, (4, 4), mode="cubic"), "unknown"),
        (lambda m: camscope.upsample(m, (4, 4), mode="gaussian"), "needs sigma"),
        (lambda m: camscope.upsample(m, (4, 4), mode="gaussian", sigma=-1.0), "positive"),
        (lambda m: camscope.normalize(m, kind="zscore"), "unknown"),
        (lambda m: camscope.relu(m[0, 0]), r"\(B, T, \*s\)"),
    ],
)
def test_postprocess_errors(call, message):
    with pytest.raises(InputError, match=message):
        call(torch.randn(1, 1, 2, 2))


def test_explanation_upsample_defaults_to_input_size():
    net = camscope.models.create_model("tiny3d", num_classes=3)
    e = camscope.explain(net, torch.randn(2, 1, 16, 16, 16), method="respond_cam", targets="all")
    up = e.upsample()
    assert up.maps.shape == (2, 3, 16, 16, 16) and up.steps == ("upsample(linear)",)
    assert e.maps.shape == (2, 3, 4, 4, 4)
    gaussian = e.upsample(mode="gaussian", sigma=3.0, mass_preserving=True)
    torch.testing.assert_close(
        gaussian.maps.sum((2, 3, 4)), e.maps.sum((2, 3, 4)), rtol=1e-4, atol=1e-5
    )
