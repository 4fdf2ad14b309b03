"""Sparseness, complexity, effective complexity, top-k intersection, AUC and attribution
localisation: by hand on small maps, bounds and orderings, 2D and 3D, and equal to Quantus's
(2D only: Quantus refuses volumes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import camscope
from camscope import metrics

# -- by hand --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 2, 2), (1, 1, 2, 2)])
def test_complexity_family_by_hand(shape):
    one_hot = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(shape)
    uniform = torch.full(shape, -2.0)  # signs do not matter (absolute values)
    # Gini: uniform 0; one element of four: (2·4 − 4 − 1)·1 / (4 · 1) = 0.75 (up to the 1e-7)
    assert metrics.sparseness(uniform).values.item() == pytest.approx(0.0, abs=1e-6)
    assert metrics.sparseness(one_hot).values.item() == pytest.approx(0.75, abs=1e-6)
    assert metrics.complexity(uniform).values.item() == pytest.approx(math.log(4), abs=1e-9)
    assert metrics.complexity(one_hot).values.item() == pytest.approx(0.0, abs=1e-9)
    ramp = torch.tensor([0.05, 0.2, 0.5, 1.0]).view(shape)
    assert metrics.effective_complexity(ramp, eps=0.1).values.item() == 3
    assert metrics.effective_complexity(ramp * 10, eps=0.1).values.item() == 3  # per-sample scale


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_rank_metrics_by_hand(spatial_dims):
    shape = (1, 2, 2, 2) if spatial_dims == 3 else (1, 2, 4)
    values = torch.arange(8.0).view(shape)  # 0..7
    mask = (values >= 6).clone()  # the two largest
    assert metrics.top_k_intersection(values, mask, k=2).values.item() == 1.0
    assert metrics.top_k_intersection(values, mask, k=4).values.item() == 0.5
    assert metrics.auc(values, mask).values.item() == 1.0
    assert metrics.auc(-values, mask).values.item() == 0.0
    assert metrics.auc(torch.ones(shape), mask).values.item() == 0.5  # all tied: chance
    # |values| inside: 6 + 7 = 13 of 28
    share = metrics.attribution_localisation(values, mask).values.item()
    assert share == pytest.approx(13 / 28)
    weighted = metrics.attribution_localisation(values, mask, weighted=True).values.item()
    assert weighted == pytest.approx(13 / 28 * 2 / 8)
    assert math.isnan(metrics.auc(values, torch.zeros(shape, dtype=torch.bool)).values.item())


def test_a_perfect_map_beats_a_random_one():
    rng = np.random.default_rng(0)
    mask = torch.from_numpy(rng.random((6, 16, 16)) > 0.8)
    perfect = mask.double() + 0.01 * torch.from_numpy(rng.random((6, 16, 16)))
    noise = torch.from_numpy(rng.random((6, 16, 16)))
    for metric in (metrics.auc, metrics.attribution_localisation):
        assert bool((metric(perfect, mask).values > metric(noise, mask).values).all())
    assert bool((metrics.sparseness(perfect).values > metrics.sparseness(noise).values).all())
    with pytest.raises(camscope.InputError, match="k must be"):
        metrics.top_k_intersection(noise, mask, k=0)


# -- Quantus --------------------------------------------------------------------------------------


def test_equal_to_quantus_in_2d():
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 1, 12, 12)).astype(np.float32)
    x = rng.standard_normal((4, 1, 12, 12)).astype(np.float32)
    s = (rng.random((4, 1, 12, 12)) > 0.7).astype(np.float32)

    def theirs(metric, batch=slice(None)):
        values = metric(
            model=None, x_batch=x[batch], y_batch=np.zeros(len(x[batch]), int),
            a_batch=a[batch].copy(), s_batch=s[batch],
        )  # fmt: skip
        return np.asarray(values, dtype=np.float64)

    maps, masks = torch.from_numpy(a[:, 0]), torch.from_numpy(s[:, 0] > 0)
    quiet = {"disable_warnings": True}
    pairs = [
        (metrics.sparseness(maps), quantus.Sparseness(**quiet), 1e-6),
        (metrics.complexity(maps), quantus.Complexity(**quiet), 1e-6),
        (metrics.top_k_intersection(maps, masks, k=20), quantus.TopKIntersection(k=20, **quiet), 0),
        (metrics.auc(maps, masks), quantus.AUC(**quiet), 1e-12),
        (
            metrics.attribution_localisation(maps, masks),
            quantus.AttributionLocalisation(**quiet),
            1e-6,
        ),
    ]  # fmt: skip
    for ours, metric, tolerance in pairs:
        np.testing.assert_allclose(ours.values.numpy(), theirs(metric), atol=tolerance)
    # effective complexity: Quantus scales by the batch's maximum; one sample at a time agrees
    for b in range(4):
        ours = metrics.effective_complexity(maps[b : b + 1], eps=0.3).values.numpy()
        metric = quantus.EffectiveComplexity(eps=0.3, **quiet)
        np.testing.assert_array_equal(ours, theirs(metric, slice(b, b + 1)))
