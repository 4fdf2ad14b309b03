"""Input × gradient, feature ablation and Shapley value sampling: against Captum on the same
model, inputs and segments (2D and 3D), and against values derived by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camscope
from camscope.models import create_model
from tests.conftest import assert_close

captum = pytest.importorskip("captum.attr")


def _quadrants(spatial_dims: int, edge: int = 16) -> torch.Tensor:
    """2^d equal boxes, labelled 0..2^d − 1."""
    grids = torch.meshgrid(*[torch.arange(edge) // (edge // 2)] * spatial_dims, indexing="ij")
    labels = torch.zeros_like(grids[0])
    for grid in grids:
        labels = labels * 2 + grid
    return labels


def _setup(spatial_dims: int):
    model = create_model(f"tiny{spatial_dims}d", num_classes=4).double().eval()
    x = torch.randn(2, 1, *[16] * spatial_dims, dtype=torch.float64)
    return model, x


def _per_target(attribution, x, targets, **options):
    """Captum, one call per sample and target (it takes one target per row)."""
    return torch.stack(
        [
            torch.cat([attribution.attribute(x[b : b + 1], target=int(t), **options) for t in row])
            for b, row in enumerate(targets)
        ]
    )


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_input_x_gradient_equals_captum(spatial_dims):
    model, x = _setup(spatial_dims)
    e = camscope.explain(model, x, method="input_x_gradient", targets="all")
    reference = _per_target(captum.InputXGradient(model), x.clone().requires_grad_(), e.targets)
    assert_close(e.maps, reference)


def test_input_x_gradient_of_a_bias_free_relu_network_sums_to_the_score():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * 36, 3, bias=False),
    ).double().eval()  # fmt: skip
    x = torch.randn(3, 1, 6, 6, dtype=torch.float64)
    e = camscope.explain(model, x, method="input_x_gradient", targets="all")
    assert_close(e.maps.flatten(2).sum(-1), e.scores)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_feature_ablation_equals_captum(spatial_dims):
    model, x = _setup(spatial_dims)
    labels = _quadrants(spatial_dims)
    e = camscope.explain(
        model, x, method="feature_ablation", segments=labels, targets="all", batch_size=3
    )
    mask = labels[None, None]
    reference = _per_target(captum.FeatureAblation(model), x, e.targets, feature_mask=mask)
    assert_close(e.maps, reference)
    # each segment's value is the score drop when it alone goes to the baseline
    assert e.extras["values"].shape == (2, 2**spatial_dims, 4)


def _linear(spatial_dims: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16**spatial_dims, 3)).double().eval()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_shapley_value_sampling_of_an_additive_model_is_exact_and_equals_captum(spatial_dims):
    """``y = w·x + b``: every order gives segment ``i`` the gain ``Σ_{s∈i} w_s (x_s − x'_s)``."""
    model = _linear(spatial_dims)
    x = torch.randn(2, 1, *[16] * spatial_dims, dtype=torch.float64)
    labels = _quadrants(spatial_dims)
    e = camscope.explain(
        model, x, method="shapley_value_sampling", segments=labels, targets="all", n_samples=3,
        baseline=0.5,
    )  # fmt: skip
    w = model[1].weight  # (K, Z)
    gains = w[None] * (x.flatten(1) - 0.5)[:, None, :]  # (B, K, Z)
    by_hand = torch.stack(
        [gains[..., labels.flatten() == i].sum(-1) for i in range(2**spatial_dims)], dim=-1
    )  # (B, K, M)
    assert_close(e.extras["values"], by_hand.transpose(1, 2))
    reference = _per_target(
        captum.ShapleyValueSampling(model), x, e.targets, feature_mask=labels[None, None],
        baselines=0.5, n_samples=3,
    )  # fmt: skip
    torch.testing.assert_close(e.maps, reference.double(), rtol=1e-5, atol=1e-6)  # Captum: f32


@pytest.mark.slow
def test_shapley_value_sampling_approaches_the_exact_values_as_captum_does():
    """Four segments: Kernel SHAP evaluates all 14 coalitions (exact Shapley values); sampling
    200 orders lands within a few percent of them, as Captum's sampler does."""
    model, x = _setup(2)
    labels = _quadrants(2)
    exact = camscope.explain(
        model, x, method="kernel_shap", segments=labels, targets=[1, 3], n_samples=14
    )
    sampled = camscope.explain(
        model, x, method="shapley_value_sampling", segments=labels, targets=[1, 3], n_samples=200
    )
    scale = exact.maps.abs().amax()
    assert (sampled.maps - exact.maps).abs().amax() < 0.05 * scale
    torch.manual_seed(1)
    theirs = captum.ShapleyValueSampling(model).attribute(
        x[:1], target=1, feature_mask=labels[None, None], n_samples=100
    )
    assert (theirs.double() - exact.maps[:1, 0]).abs().amax() < 0.05 * scale
    # efficiency: the values add up to y(x) − y(baseline) whatever the orders
    values = sampled.extras["values"].sum(1)
    assert_close(values, sampled.scores - sampled.extras["base_scores"])


def test_segment_methods_refuse_bad_options():
    model, x = _setup(2)
    with pytest.raises(camscope.InputError, match="integer tensor"):
        camscope.explain(model, x, method="feature_ablation", segments=torch.rand(16, 16))
    with pytest.raises(camscope.InputError, match="spatial shape"):
        camscope.explain(model, x, method="feature_ablation", segments=torch.zeros(8, 8).long())
    with pytest.raises(camscope.MethodError, match="n_samples"):
        camscope.explain(model, x, method="shapley_value_sampling", n_samples=0)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_lime_equals_captum_on_the_same_draws(spatial_dims):
    """Captum's ``Lime`` with its defaults (Lasso α = 0.01, cosine exponential kernel of width 1),
    handed camscope's draws one by one: the same weighted fit, so the same coefficients."""
    model, x = _setup(spatial_dims)
    labels = _quadrants(spatial_dims)
    e = camscope.explain(
        model, x, method="lime", segments=labels, targets=[1, 3], n_samples=40, seed=3
    )
    for b, target in enumerate([1, 3]):
        rows = iter(e.extras["samples"][b].long())

        def draws(original, rows=rows, **kwargs):
            return next(rows)[None]

        lime = captum.Lime(model, perturb_func=draws)
        reference = lime.attribute(
            x[b : b + 1], target=target, feature_mask=labels[None, None], n_samples=40
        )
        torch.testing.assert_close(e.maps[b, 0], reference[0].double(), rtol=1e-4, atol=1e-6)


def test_lime_of_an_additive_model_recovers_its_segment_effects():
    """``y = Σ_i a_i 1[segment i kept] + c`` is linear in the draws: with α = 0 the weighted fit
    is exact, so the coefficients are the segments' effects ``Σ_{s∈i} w_s x_s``."""
    model = _linear(2)
    x = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    labels = _quadrants(2)
    e = camscope.explain(model, x, method="lime", segments=labels, targets=[0], alpha=0.0)
    effects = model[1].weight[0] * x.flatten()
    expected = torch.stack([effects[labels.flatten() == i].sum() for i in range(4)])
    torch.testing.assert_close(e.extras["values"][0, :, 0], expected, rtol=1e-6, atol=1e-8)


def test_lime_counts_the_lasso_fits_that_did_not_converge_in_one_warning():
    """scikit-learn warns once per unconverged fit (a flood over a batch); camscope says it once
    per call, with the count, and ``max_iter`` reaches the Lasso."""
    model, x = _setup(2)
    labels = _quadrants(2)
    options = {"segments": labels, "targets": [1, 3], "n_samples": 40, "alpha": 1e-4}
    unconverged = r"stopped before converging for 2 of 2 samples \(max_iter=1\)"
    with pytest.warns(RuntimeWarning, match=unconverged) as record:
        rough = camscope.explain(model, x, method="lime", max_iter=1, **options)
    assert [w.filename for w in record] == [__file__]  # said once, at the caller's line
    fine = camscope.explain(model, x, method="lime", **options)  # filterwarnings=error: silent
    assert not torch.allclose(rough.maps, fine.maps)
    with pytest.raises(camscope.MethodError, match="max_iter must be at least 1"):
        camscope.explain(model, x, method="lime", max_iter=0, **options)
