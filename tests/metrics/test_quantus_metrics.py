"""The faithfulness, robustness, axiomatic and localisation metrics Quantus ships: equal to
Quantus (or pytorch-grad-cam) on the same arrays and model, closed forms on linear models, 2D
and 3D, bounded memory, the model untouched and bad options refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import camscope
from camscope import metrics
from camscope.errors import InputError


def _conv(spatial_dims: int = 2, classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    pool = nn.AdaptiveAvgPool2d(2) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(2)
    return nn.Sequential(
        conv(1, 4, 3, padding=1),
        nn.ReLU(),
        conv(4, 4, 3, padding=1),
        nn.ReLU(),
        pool,
        nn.Flatten(),
        nn.Linear(4 * 2**spatial_dims, classes),
    ).eval()


def _linear(spatial_dims: int = 2, side: int = 6, positive: bool = False):
    """A linear model on one-channel inputs, inputs in (0.5, 1.5), its exact maps ``w ⊙ x``."""
    torch.manual_seed(1)
    size = (side,) * spatial_dims
    positions = side**spatial_dims
    model = nn.Sequential(nn.Flatten(), nn.Linear(positions, 3)).double().eval()
    if positive:
        with torch.no_grad():
            model[1].weight.abs_()
    x = torch.rand(4, 1, *size, dtype=torch.float64) + 0.5
    y = torch.tensor([0, 1, 2, 0])
    exact = (model[1].weight[y].view(4, *size) * x[:, 0]).detach()
    return model, x, y, exact


@pytest.fixture(autouse=True)
def _numpy_trapz(monkeypatch):
    """Quantus 0.6 calls ``np.trapz``, which NumPy 2 removed."""
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


def _quantus(metric, model, x, y, a, **call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(
            metric(
                model=model,
                x_batch=x.numpy(),
                y_batch=y.numpy(),
                a_batch=a.numpy()[:, None],
                channel_first=True,
                **call,
            ),
            dtype=np.float64,
        )


@pytest.fixture(scope="module")
def case():
    model = _conv()
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    a = torch.randn(6, 16, 16, generator=torch.Generator().manual_seed(3))
    return model, x, y, a


def test_removal_curves_equal_quantus(case):
    import quantus

    model, x, y, a = case
    flipped = metrics.pixel_flipping(model, x, a, y, features_in_step=16)
    theirs = _quantus(
        quantus.PixelFlipping(features_in_step=16, disable_warnings=True),
        model,
        x,
        y,
        a,
        softmax=False,
    )
    np.testing.assert_allclose(flipped.curves[:, 1:].numpy(), theirs, atol=1e-5)
    np.testing.assert_allclose(flipped.curves[:, 0].numpy(), model(x)[range(6), y].detach())
    regions = metrics.region_perturbation(model, x, a, y, patch_size=4, regions=10)
    theirs = _quantus(
        quantus.RegionPerturbation(patch_size=4, regions_evaluation=10, disable_warnings=True),
        model,
        x,
        y,
        a,
        softmax=False,
    )
    drops = (regions.curves[:, :1] - regions.curves[:, 1:]).numpy()
    np.testing.assert_allclose(drops, theirs, atol=1e-5)
    np.testing.assert_allclose(
        regions.values.numpy(), (regions.curves[:, :1] - regions.curves).mean(1)
    )
    chosen = metrics.selectivity(model, x, a, y, patch_size=4)
    theirs = _quantus(
        quantus.Selectivity(patch_size=4, disable_warnings=True), model, x, y, a, softmax=False
    )
    np.testing.assert_allclose(chosen.curves[:, 1:].numpy(), theirs, atol=1e-5)
    assert chosen.curves.shape == (6, 17) and bool((chosen.removed[:, -1] == 1).all())


def test_irof_equals_quantus_on_the_same_segments(case, monkeypatch):
    import quantus
    import quantus.helpers.utils as quantus_utils

    model, x, y, a = case
    blocks = np.repeat(np.repeat(np.arange(16).reshape(4, 4), 4, 0), 4, 1)
    monkeypatch.setattr(quantus_utils, "get_superpixel_segments", lambda **_: blocks)
    ours = metrics.irof(
        model, x, a, y, segments=torch.from_numpy(blocks), softmax=True, baseline=0.0
    )
    theirs = _quantus(
        quantus.IROF(perturb_baseline=0.0, disable_warnings=True), model, x, y, a, softmax=True
    )
    # Quantus 0.6 returns the batch's mean
    np.testing.assert_allclose(ours.values.mean().item(), theirs.mean(), rtol=1e-5)
    assert ours.curves.shape == (6, 17)


def test_ranking_metrics_equal_quantus(case):
    import quantus

    model, x, y, a = case
    estimate = metrics.faithfulness_estimate(model, x, a, y, features_in_step=8).values
    theirs = _quantus(
        quantus.FaithfulnessEstimate(features_in_step=8, disable_warnings=True),
        model,
        x,
        y,
        a,
        softmax=False,
    )
    np.testing.assert_allclose(estimate.numpy(), theirs, atol=1e-5)
    sparse = a.clone()
    sparse[sparse.abs() < 0.8] = 0
    small = (x[:, :, :8, :8].contiguous(), sparse[:, :8, :8].contiguous())
    violations = metrics.non_sensitivity(model, small[0], small[1], y).values
    theirs = _quantus(
        quantus.NonSensitivity(normalise=False, disable_warnings=True),
        model,
        small[0],
        y,
        small[1],
        softmax=False,
    )
    np.testing.assert_array_equal(violations.numpy(), theirs)


def test_batch_metrics_equal_quantus(case):
    import quantus
    from quantus.functions.discretise_func import sign

    model, x, y, a = case
    signs = a.sign()
    signs[::2] = signs[0]  # samples 0, 2, 4 share one discretised map
    ours = metrics.consistency(model, x, signs, discretise="sign").values
    theirs = _quantus(
        quantus.Consistency(
            discretise_func=sign, abs=False, normalise=False, disable_warnings=True
        ),
        model,
        x,
        y,
        signs,
    )
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-6)
    assert ours[0] == 1.0 or ours[0] == 0.5 or ours[0] == 0.0
    clusters = torch.cat([a[:1].expand(3, -1, -1), -a[:1].expand(3, -1, -1)]) + 0.01 * a
    ours = metrics.sufficiency(model, x, clusters).values
    theirs = _quantus(quantus.Sufficiency(disable_warnings=True), model, x, y, clusters)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-6)


def test_focus_equals_quantus_and_mosaics_place_the_tiles():
    import quantus

    pool = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(4, 1, 1, 1).expand(4, 1, 3, 3).contiguous()
    mosaic, tiles = metrics.mosaics(pool, torch.tensor([0, 1, 0, 1]), 0, count=3)
    assert mosaic.shape == (3, 1, 6, 6) and tiles.sum(1).tolist() == [2, 2, 2]
    # the map is the image: 1 on the class-0 tiles, 0 elsewhere
    np.testing.assert_allclose(metrics.focus(mosaic[:, 0], tiles).values, 1.0, rtol=1e-6)
    np.testing.assert_allclose(metrics.focus(1 - mosaic[:, 0], tiles).values, 0.0, atol=1e-9)
    assert torch.equal(tiles[:, 0], mosaic[:, 0, 0, 0] == 1)
    a = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(0)) - 0.3
    theirs = quantus.Focus(normalise=False, disable_warnings=True)(
        model=nn.Sequential(nn.Flatten(), nn.Linear(36, 2)),
        x_batch=mosaic.numpy(),
        y_batch=np.zeros(3, dtype=int),
        a_batch=a.numpy()[:, None],
        custom_batch=tiles.numpy().astype(int),
        channel_first=True,
    )
    np.testing.assert_allclose(metrics.focus(a, tiles).values, theirs, rtol=1e-5)
    volumes = torch.arange(8.0).view(8, 1, 1, 1, 1).expand(8, 1, 2, 2, 2).contiguous()
    mosaic, tiles = metrics.mosaics(volumes, torch.arange(8) % 2, 1, count=2)
    assert mosaic.shape == (2, 1, 4, 4, 4) and tiles.shape == (2, 8)
    odd = (mosaic[:, 0] % 2 == 1).double()
    np.testing.assert_allclose(metrics.focus(odd, tiles).values, 1.0, rtol=1e-6)


def test_coherency_equals_pytorch_grad_cam():
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.metrics.arcc import Coherency, Complexity
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).eval()
    x = torch.rand(4, 3, 16, 16)
    y = model(x).argmax(1)
    cam = GradCAM(model, [model[2]])
    wanted = [ClassifierOutputTarget(int(c)) for c in y]
    shown = cam(x, wanted)
    theirs = Coherency()(x, shown, wanted, model, cam)
    ours = metrics.coherency(model, x, "grad_cam", y, options={"layer": "2"}).values
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)
    result = metrics.arcc(model, x, "grad_cam", y, options={"layer": "2"})
    np.testing.assert_allclose(result.complexity.numpy(), Complexity()(shown), atol=1e-5)
    parts = (result.coherency, 1 - result.complexity, result.road)
    harmonic = 3 / sum(1 / (p + 1e-8) for p in parts)
    torch.testing.assert_close(result.arcc, harmonic)
    assert set(result.summary()) >= {"arcc", "coherency", "complexity", "road"}


@pytest.mark.slow
def test_sensitivities_agree_with_quantus_in_expectation(case):
    import quantus

    model, x, _, _ = case
    y = model(x).argmax(1)

    def explain(model, inputs, targets, **_):
        e = camscope.explain(
            model,
            torch.as_tensor(inputs),
            method="saliency",
            targets=torch.as_tensor(targets),
            progress=False,
        )
        return e.reduce_channels().maps[:, 0].detach().numpy()[:, None]

    a = torch.from_numpy(explain(model, x, y)[:, 0])
    np.random.seed(0)  # noqa: NPY002 (Quantus draws from NumPy's global generator)
    average = metrics.avg_sensitivity(model, x, "saliency", y, n_samples=100).values
    theirs = _quantus(
        quantus.AvgSensitivity(nr_samples=100, lower_bound=0.2, disable_warnings=True),
        model,
        x,
        y,
        a,
        explain_func=explain,
    )
    np.testing.assert_allclose(average.numpy(), theirs, rtol=0.08)
    lipschitz = metrics.local_lipschitz_estimate(model, x, "saliency", y, n_samples=100).values
    theirs = _quantus(
        quantus.LocalLipschitzEstimate(nr_samples=100, normalise=False, disable_warnings=True),
        model,
        x,
        y,
        a,
        explain_func=explain,
    )
    np.testing.assert_allclose(lipschitz.numpy(), theirs, rtol=0.15)
    continuity = metrics.continuity(model, x, "saliency", y, normalise=False).values
    theirs = _quantus(
        quantus.Continuity(normalise=False, disable_warnings=True),
        model,
        x,
        y,
        a,
        explain_func=explain,
    )
    np.testing.assert_allclose(continuity.numpy(), theirs, rtol=1e-4)


def test_translation_moves_along_the_last_axis_and_fills():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(3, 1, 1, 4)
    fill = torch.full_like(x, -1.0)
    moved = metrics.stability.translated(x, torch.tensor([1, -2, 4]), fill)
    assert moved[:, 0, 0].tolist() == [[-1, 0, 1, 2], [2, 3, -1, -1], [-1, -1, -1, -1]]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_closed_forms_on_a_linear_model(spatial_dims):
    model, x, y, exact = _linear(spatial_dims, side=6 if spatial_dims == 2 else 4)
    logits = model(x)[range(4), y]
    flipped = metrics.pixel_flipping(model, x, exact, y, steps=4, baseline=0.0)
    # removing positions at value 0 takes their exact contributions off the logit
    order = exact.flatten(1).argsort(1, descending=True)
    positions = exact[0].numel()
    for k, count in enumerate([0, *[-(-i * positions // 4) for i in range(1, 5)]]):
        removed = exact.flatten(1).gather(1, order[:, :count]).sum(1)
        torch.testing.assert_close(flipped.curves[:, k], (logits - removed).detach())
    assert torch.allclose(
        metrics.faithfulness_estimate(model, x, exact, y, steps=8, baseline=0.0).values,
        torch.ones(4, dtype=torch.float64),
    )
    sensitivity = metrics.sensitivity_n(model, x, exact, y, baseline=0.0, runs=8).values
    torch.testing.assert_close(sensitivity, torch.ones_like(sensitivity))
    model, x, y, exact = _linear(spatial_dims, side=6 if spatial_dims == 2 else 4, positive=True)
    assert (
        metrics.monotonicity(model, x, exact, y, steps=6, baseline=0.0).values.tolist() == [1.0] * 4
    )
    # a linear model's input × gradient changes exactly as its input: RIS is 1
    stability = metrics.relative_input_stability(model, x, "input_x_gradient", y, n_samples=5)
    torch.testing.assert_close(stability.values, torch.ones(4, dtype=torch.float64))


def test_monotonicity_fails_where_a_contribution_is_negative():
    model, x, y, exact = _linear()  # mixed signs: putting back a negative contribution lowers y
    assert metrics.monotonicity(model, x, exact, y, steps=6, baseline=0.0).values.sum() == 0
    model, x, y, exact = _linear(positive=True)
    assert metrics.monotonicity(model, x, exact, y, steps=6, baseline=0.0).values.sum() == 4


def test_input_invariance_separates_gradients_from_input_times_gradient():
    model = _conv()
    x = torch.rand(3, 1, 12, 12)
    assert metrics.input_invariance(model, x, "saliency").values.tolist() == [1.0] * 3
    assert metrics.input_invariance(model, x, "input_x_gradient").values.tolist() == [0.0] * 3
    assert (
        metrics.input_invariance(model, x, "grad_cam", options={"layer": "2"}).values.tolist()
        == [1.0] * 3
    )
    assert not model._forward_pre_hooks


def test_every_model_metric_runs_on_volumes_and_leaves_the_model_alone():
    model = _conv(3)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 1, 8, 8, 8)
    y = torch.tensor([0, 1])
    a = torch.randn(2, 8, 8, 8)
    results = [
        metrics.pixel_flipping(model, x, a, y, steps=8),
        metrics.region_perturbation(model, x, a, y, patch_size=4, regions=None),
        metrics.selectivity(model, x, a, y, patch_size=4),
        metrics.irof(model, x, a, y, n_segments=8),
        metrics.faithfulness_estimate(model, x, a, y, steps=8),
        metrics.monotonicity(model, x, a, y, steps=8),
        metrics.monotonicity_correlation(model, x, a, y, steps=8, n_samples=3),
        metrics.sensitivity_n(model, x, a, y, sizes=[8, 64], runs=4),
        metrics.non_sensitivity(model, x, a, y, features_in_step=64),
        metrics.sufficiency(model, x, a),
        metrics.consistency(model, x, a),
        metrics.avg_sensitivity(model, x, "saliency", y, n_samples=3),
        metrics.local_lipschitz_estimate(model, x, "saliency", y, n_samples=3),
        metrics.relative_input_stability(model, x, "saliency", y, n_samples=3),
        metrics.relative_output_stability(model, x, "saliency", y, n_samples=3),
        metrics.relative_representation_stability(model, x, "saliency", y, n_samples=3),
        metrics.input_invariance(model, x, "saliency", y),
        metrics.continuity(model, x, "saliency", y, nr_steps=4),
        metrics.coherency(model, x, "grad_cam", y),
        metrics.arcc(model, x, "grad_cam", y),
    ]
    for result in results:
        summary = result.summary()
        assert summary and all(isinstance(v, float) for v in summary.values())
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert results[3].curves.shape[0] == 2 and results[7].values.shape == (2, 2)


def test_curves_do_not_depend_on_the_batch_size(case):
    model, x, y, a = case
    one = metrics.pixel_flipping(model, x, a, y, steps=10, batch_size=7)
    other = metrics.pixel_flipping(model, x, a, y, steps=10, batch_size=64)
    torch.testing.assert_close(one.curves, other.curves)
    lerf = metrics.pixel_flipping(model, x, a, y, steps=10, order="lerf")
    assert not torch.allclose(lerf.curves, one.curves)


def test_fill_values_by_name():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 5.0]]]])
    assert metrics.flipping.fill_values(x, "black").unique().item() == 0.0
    assert metrics.flipping.fill_values(x, "white").unique().item() == 5.0
    assert metrics.flipping.fill_values(x, "mean").unique().item() == 2.0
    noise = metrics.flipping.fill_values(x, "uniform", seed=1)
    assert (noise >= 0).all() and (noise <= 5).all() and noise.unique().numel() == 4
    assert torch.equal(noise, metrics.flipping.fill_values(x, "uniform", seed=1))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, x, y, a: metrics.pixel_flipping(m, x, a, y, steps=0), "steps must be"),
        (
            lambda m, x, y, a: metrics.pixel_flipping(m, x, a, y, features_in_step=0),
            "features_in_step",
        ),
        (
            lambda m, x, y, a: metrics.pixel_flipping(m, x, a, y, baseline="grey"),
            "baseline must be",
        ),
        (lambda m, x, y, a: metrics.region_perturbation(m, x, a, y, patch_size=(4,)), "patch_size"),
        (lambda m, x, y, a: metrics.region_perturbation(m, x, a, y, regions=999), "regions must"),
        (lambda m, x, y, a: metrics.region_perturbation(m, x, a, y, order="up"), "order must"),
        (
            lambda m, x, y, a: metrics.irof(
                m, x, a, y, segments=torch.zeros(3, 3, dtype=torch.long)
            ),
            "segments of shape",
        ),
        (lambda m, x, y, a: metrics.sensitivity_n(m, x, a, y, sizes=[0]), "sizes must"),
        (lambda m, x, y, a: metrics.consistency(m, x, a, discretise="bins"), "discretise must"),
        (lambda m, x, y, a: metrics.avg_sensitivity(m, x, "saliency", y, radius=0), "noise > 0"),
        (lambda m, x, y, a: metrics.monotonicity_correlation(m, x, a, y, n_samples=0), "n_samples"),
        (lambda m, x, y, a: metrics.focus(a, torch.ones(6, 3, dtype=torch.bool)), "tiles must be"),
    ],
)
def test_bad_options_are_one_clear_error(case, call, message):
    model, x, y, a = case
    with pytest.raises(InputError, match=message):
        call(model, x, y, a)


def test_sensitivity_n_by_step_equals_quantus(case):
    """Quantus's ``SensitivityN``: cumulative removal in the map's order, one correlation across
    the batch per step, the map's total of that step alone."""
    import quantus

    model, x, y, a = case
    ours = metrics.sensitivity_n_by_step(model, x, a, y, features_in_step=16)
    theirs = _quantus(
        quantus.SensitivityN(features_in_step=16, return_aggregate=False, disable_warnings=True),
        model,
        x,
        y,
        a,
        softmax=False,
    )
    assert ours.values.shape == (12,)  # int(0.8 · 256 // 16) steps
    np.testing.assert_allclose(ours.values.numpy(), theirs, atol=1e-5)
    torch.testing.assert_close(ours.removed, torch.arange(1, 13, dtype=torch.float64) / 16)
    assert ours.summary()["sensitivity_n_by_step"] == pytest.approx(float(theirs.mean()))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_sensitivity_n_by_step_is_one_for_a_linear_models_exact_maps(spatial_dims):
    """Removing positions at value 0 takes their exact contributions off the logit, so the drop
    after each step is the map's total over everything removed: correlation 1 across samples."""
    model, x, y, exact = _linear(spatial_dims, side=6 if spatial_dims == 2 else 4)
    removed = metrics.sensitivity_n_by_step(
        model, x, exact, y, features_in_step=2, baseline=0.0, totals="removed"
    )
    torch.testing.assert_close(removed.values, torch.ones_like(removed.values))
    step = metrics.sensitivity_n_by_step(model, x, exact, y, features_in_step=2, baseline=0.0)
    assert not torch.allclose(step.values, torch.ones_like(step.values))  # Quantus's pairing
    with pytest.raises(InputError, match="totals must be"):
        metrics.sensitivity_n_by_step(model, x, exact, y, totals="cumulative")
    with pytest.raises(InputError, match="at least two"):
        metrics.sensitivity_n_by_step(model, x[:1], exact[:1], y[:1])
    with pytest.raises(InputError, match="less than one step"):
        metrics.sensitivity_n_by_step(model, x, exact, y, n_max_percentage=0.01)


def _separated_groups(spatial_dims: int):
    """A linear model whose 8 groups of 8 positions (ranked by the map, ascending) have weights
    ``4^π(g)``: every group's expected noise variance is 16× the next one's, so any reasonable
    number of draws ranks the groups as ``π`` does, and the monotonicity correlation is exactly
    ``Spearman(g, π(g))``. Inputs are 0.5 except one 0 and one 1 (noise in [0, 1] for both
    libraries), so the noise is unbiased."""
    generator = torch.Generator().manual_seed(5)
    size = (8, 8) if spatial_dims == 2 else (4, 4, 4)
    a = torch.rand(3, *size, generator=generator) + 0.1
    x = torch.full((3, 1, *size), 0.5)
    x.view(3, -1)[:, 0], x.view(3, -1)[:, 1] = 0.0, 1.0
    group = torch.empty(3, 64, dtype=torch.long)
    group.scatter_(1, a.view(3, -1).argsort(1), (torch.arange(64) // 8).expand(3, 64).contiguous())
    order = torch.stack([torch.randperm(8, generator=generator) for _ in range(3)])
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    with torch.no_grad():
        model[1].weight.copy_(4.0 ** order.gather(1, group).float())
    return model, x, torch.tensor([0, 1, 2]), a, order


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_monotonicity_correlation_equals_the_closed_form_and_quantus(spatial_dims):
    import quantus
    from scipy.stats import spearmanr

    model, x, y, a, order = _separated_groups(spatial_dims)
    expected = [spearmanr(np.arange(8), o.numpy())[0] for o in order]
    for seed in (0, 1):
        ours = metrics.monotonicity_correlation(
            model, x, a, y, features_in_step=8, n_samples=50, seed=seed
        )
        np.testing.assert_allclose(ours.values.numpy(), expected, atol=1e-12)
    if spatial_dims == 2:
        np.random.seed(0)  # noqa: NPY002 (Quantus draws from NumPy's global generator)
        theirs = _quantus(
            quantus.MonotonicityCorrelation(
                nr_samples=50, features_in_step=8, disable_warnings=True
            ),
            model,
            x,
            y,
            a,
            softmax=False,
        )
        np.testing.assert_allclose(theirs, expected, atol=1e-12)
