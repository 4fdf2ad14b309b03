"""Trust metrics: noisy linear imputation and ROAD, relevance mass/rank, the energy pointing
game, and the randomisation tests (MPRT, eMPRT, random logit); hand-derived references, 2D and
3D, and agreement with Quantus."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import camscope
from camscope import metrics
from camscope.models import create_model

RNG = np.random.default_rng(0)


def test_imputation_by_hand_2d_and_3d():
    x = torch.arange(9, dtype=torch.float64).view(1, 1, 3, 3) ** 2
    mask = torch.zeros(1, 3, 3, dtype=torch.bool)
    mask[0, 1, 1] = True
    out = metrics.noisy_linear_imputation(x, mask, noise=0)
    v = x[0, 0]
    edges = v[0, 1] + v[1, 0] + v[1, 2] + v[2, 1]
    corners = v[0, 0] + v[0, 2] + v[2, 0] + v[2, 2]
    assert float(out[0, 0, 1, 1]) == pytest.approx(float(edges / 6 + corners / 12))
    assert torch.equal(out[~mask[:, None].expand_as(out)], x[~mask[:, None].expand_as(x)])
    cube = torch.rand(1, 2, 3, 3, 3, dtype=torch.float64)
    hole = torch.zeros(1, 3, 3, 3, dtype=torch.bool)
    hole[0, 1, 1, 1] = True
    filled = metrics.noisy_linear_imputation(cube, hole, noise=0)
    weights = torch.zeros(3, 3, 3, dtype=torch.float64)
    for offset in np.ndindex(3, 3, 3):
        distance = sum((o - 1) ** 2 for o in offset)
        if distance:
            weights[offset] = {1: 3 / 44, 2: 3 / 88, 3: 1 / 44}[distance]
    assert float(weights.sum()) == pytest.approx(1.0)
    expected = (cube[0] * weights).sum(dim=(1, 2, 3))
    torch.testing.assert_close(filled[0, :, 1, 1, 1], expected)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_imputation_is_exact_on_linear_fields_and_seeded(spatial_dims):
    size = (12,) * spatial_dims
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in size], indexing="ij")
    field = sum((0.3 * (axis + 1) - 0.5) * grid for axis, grid in enumerate(grids))
    x = torch.stack([field, 2 * field + 1])[None]
    mask = torch.zeros(1, *size, dtype=torch.bool)
    mask[(0, *[slice(3, 9)] * spatial_dims)] = True
    torch.testing.assert_close(metrics.noisy_linear_imputation(x, mask, noise=0), x)
    a = metrics.noisy_linear_imputation(x, mask, noise=0.1, seed=3)
    b = metrics.noisy_linear_imputation(x, mask, noise=0.1, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert torch.equal(a[:, :, ~mask[0]], x[:, :, ~mask[0]])  # known values untouched


def test_imputation_takes_a_channel_axis_mask_and_refuses_bad_input():
    x = torch.randn(2, 3, 8, 8)
    mask = torch.rand(2, 8, 8) < 0.3
    same = metrics.noisy_linear_imputation(x, mask[:, None], noise=0)
    torch.testing.assert_close(same, metrics.noisy_linear_imputation(x, mask, noise=0))
    with pytest.raises(camscope.InputError, match="floating point"):
        metrics.noisy_linear_imputation((x * 50).to(torch.uint8), mask)
    with pytest.raises(camscope.InputError, match="non-negative"):
        metrics.noisy_linear_imputation(x, mask, noise=-1)
    with pytest.raises(camscope.InputError, match="boolean"):
        metrics.noisy_linear_imputation(x, mask.float())


def test_imputation_equals_quantus_with_no_noise():
    from quantus.functions.perturb_func import noisy_linear_imputation as theirs

    x = RNG.standard_normal((3, 2, 15, 17))
    mask = RNG.random((3, 15, 17)) < 0.4
    ours = metrics.noisy_linear_imputation(torch.from_numpy(x), torch.from_numpy(mask), noise=0)
    for b in range(3):
        reference = theirs(x[b], np.flatnonzero(mask[b]), noise=0.0)
        np.testing.assert_allclose(ours[b].numpy(), reference, rtol=1e-10, atol=1e-12)


class _Region(nn.Module):
    """Class 1's logit is the pattern energy ``Σ (x − ½)²`` inside a known region; class 0's a
    constant of half the region's energy: removing the pattern flips the prediction."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.double())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = ((x[:, 0] - 0.5) ** 2 * self.region).flatten(1).sum(1)
        constant = torch.full_like(inside, float(self.region.sum()) / 2)
        return torch.stack([constant, inside], dim=1)


def _road_case(spatial_dims: int, batch: int, dtype: torch.dtype = torch.float64):
    size = (10,) * spatial_dims
    region = torch.zeros(size)
    region[tuple(slice(2, 6) for _ in size)] = 1.0
    grids = torch.meshgrid(*[torch.arange(s) for s in size], indexing="ij")
    checker = (sum(grids) % 2 * 2 - 1).to(dtype)  # ±1: a pattern only the pixel itself holds
    x = (0.5 + checker * region + 0.05 * torch.rand(batch, *size, dtype=dtype))[:, None]
    model = _Region(region).to(dtype).eval()
    faithful = region.expand(batch, *size) + 0.01 * torch.rand(batch, *size)
    return model, x.to(dtype), torch.ones(batch, dtype=torch.long), faithful.to(dtype)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_road_ranks_a_faithful_map_above_a_random_one(spatial_dims):
    model, x, targets, faithful = _road_case(spatial_dims, 4)
    random = torch.rand(faithful.shape, dtype=torch.float64)
    good = metrics.road(model, x, faithful, targets)
    bad = metrics.road(model, x, random, targets)
    assert (good.gap > bad.gap).all() and (good.morf_area < bad.morf_area).all()
    assert good.morf_probability.shape == (4, 9)
    assert set(good.summary()) >= {"morf_area", "lerf_area", "gap"}


def test_road_accuracy_agrees_with_quantus_in_expectation():
    import quantus

    model, x, targets, maps = _road_case(2, 6, torch.float32)
    percentages = [5, 10, 20, 40]
    ours = metrics.road(model, x, maps, targets, percentages=percentages, noise=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = quantus.ROAD(
            percentages=percentages,
            noise=0.01,
            display_progressbar=False,
            disable_warnings=True,
            normalise=False,
            abs=False,
        )(
            model=model,
            x_batch=x.numpy(),
            y_batch=targets.numpy(),
            a_batch=maps[:, None].numpy(),
            device="cpu",
        )
    expected = np.array([theirs[p] for p in percentages])
    assert expected.max() == 1.0 and expected.min() == 0.0  # the curve falls within the range
    np.testing.assert_allclose(ours.morf_accuracy.mean(0).numpy(), expected, atol=0.2)


def test_relevance_mass_and_rank_in_3d_by_formula():
    a = torch.rand(3, 5, 6, 7, dtype=torch.float64)
    s = torch.rand(3, 5, 6, 7) < 0.3
    mass = metrics.relevance_mass_accuracy(a, s).values
    torch.testing.assert_close(mass, (a * s).flatten(1).sum(1) / a.flatten(1).sum(1))
    rank = metrics.relevance_rank_accuracy(a, s).values
    for b in range(3):
        k = int(s[b].sum())
        top = a[b].flatten().argsort(descending=True)[:k]
        assert float(rank[b]) == pytest.approx(float(s[b].flatten()[top].double().mean()))


def test_relevance_mass_rank_and_energy_by_hand():
    saliency = torch.tensor([[[4.0, 1.0], [2.0, -1.0]]])
    mask = torch.tensor([[[True, False], [False, False]]])
    assert float(metrics.relevance_mass_accuracy(saliency, mask).values[0]) == pytest.approx(4 / 6)
    assert float(metrics.relevance_rank_accuracy(saliency, mask).values[0]) == 1.0
    assert float(metrics.relevance_rank_accuracy(-saliency, mask).values[0]) == 0.0
    box = torch.tensor([[0, 0, 1, 2]])  # the first row
    energy = metrics.energy_pointing_game(saliency, box).values[0]
    assert float(energy) == pytest.approx(5 / 7)
    empty = metrics.relevance_mass_accuracy(saliency, torch.zeros_like(mask)).values[0]
    assert torch.isnan(empty)


def test_relevance_mass_and_rank_equal_quantus():
    import quantus

    size = (8, 8)
    a = RNG.random((4, 1, *size))
    s = RNG.random((4, 1, *size)) < 0.3
    model = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(size)), 3))
    x = RNG.standard_normal((4, 1, *size)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    for theirs, ours in (
        (quantus.RelevanceMassAccuracy, metrics.relevance_mass_accuracy),
        (quantus.RelevanceRankAccuracy, metrics.relevance_rank_accuracy),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = theirs(
                disable_warnings=True, normalise=False, abs=False, display_progressbar=False
            )(model=model, x_batch=x, y_batch=y, a_batch=a, s_batch=s.astype(float), device="cpu")
        mine = ours(torch.from_numpy(a[:, 0]), torch.from_numpy(s[:, 0])).values.numpy()
        np.testing.assert_allclose(mine, np.array(reference), rtol=1e-12)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_mprt_leaves_the_model_alone_and_separates_methods(spatial_dims):
    torch.manual_seed(0)
    name = "tiny2d" if spatial_dims == 2 else "tiny3d"
    model = create_model(name, num_classes=3, input_size=16).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 1, *[16] * spatial_dims)
    gradient = metrics.mprt(model, x, method="saliency")
    guided = metrics.mprt(model, x, method="guided_backprop")
    again = metrics.mprt(model, x, method="saliency")
    assert gradient.layers == ["fc", "conv2", "conv1"] and gradient.similarity.shape == (4, 3)
    assert torch.equal(gradient.similarity, again.similarity)  # seeded
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # Adebayo et al.: guided backpropagation keeps much of its map as layers are randomised
    assert float(guided.similarity.mean()) > float(gradient.similarity.mean()) + 0.2
    independent = metrics.mprt(model, x, method="saliency", order="independent")
    assert independent.similarity.shape == (4, 3)
    assert independent.summary().keys() >= {"last", "average"}


def test_mprt_by_blocks_redraws_every_layer_of_a_block():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    x = torch.randn(1, 3, 32, 32)
    blocks = metrics.randomizable_blocks(model, x)
    assert blocks == ["fc", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1"]
    assert len(metrics.randomizable_layers(model, x)) == 41  # 20 convolutions, 20 norms, fc
    wrapped = nn.Sequential(model)  # a lone wrapper is looked through
    assert metrics.randomizable_blocks(wrapped, x) == [f"0.{name}" for name in blocks]
    # a block named in ``layers`` is re-drawn whole (a container has no parameters of its own)
    small = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)),
        nn.Flatten(),
        nn.Linear(64, 2),
    )
    y = torch.randn(2, 1, 8, 8)
    before = [p.clone() for p in small.parameters()]
    result = metrics.mprt(small, y, method="saliency", layers=["0"], targets=0, keep_maps=True)
    assert result.layers == ["0"] and result.similarity.shape == (2, 1)
    assert all(torch.equal(a, b) for a, b in zip(before, small.parameters(), strict=True))
    by_blocks = metrics.mprt(small, y, method="saliency", layers="blocks", targets=0)
    assert by_blocks.layers == ["2", "0"]
    # the block step changes the map: both convolutions were re-drawn, not neither
    assert not torch.allclose(result.maps[0], result.original)
    with pytest.raises(camscope.InputError, match="no parameters to randomise"):
        metrics.mprt(small, y, method="saliency", layers=["1"], targets=0)
    with pytest.raises(camscope.InputError, match="'layers', 'blocks' or a list"):
        metrics.mprt(small, y, method="saliency", layers="block", targets=0)


def test_mprt_on_a_linear_model_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).double()
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    result = metrics.mprt(model, x, method="saliency", targets=0, similarity="pearson")
    # the saliency of a linear model is its weight row: after re-drawing the weights the map is
    # the new row, whatever the input
    redrawn = nn.Linear(16, 2).double()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        redrawn.reset_parameters()
    original = model[1].weight[0].detach().abs()
    new = redrawn.weight[0].detach().abs()
    expected = float(np.corrcoef(original.numpy(), new.numpy())[0, 1])
    torch.testing.assert_close(
        result.similarity[:, 0], torch.full((3,), expected, dtype=torch.float64)
    )


def test_random_logit_and_efficient_mprt():
    torch.manual_seed(0)
    model = create_model("tiny2d", num_classes=4, input_size=16).eval()
    x = torch.randn(3, 1, 16, 16)
    similar = metrics.random_logit(model, x, method="grad_cam").values
    assert similar.shape == (3,) and torch.all(similar.abs() <= 1)
    ratio = metrics.efficient_mprt(model, x, method="saliency").values
    assert ratio.shape == (3,) and torch.all(ratio > 0)
    with pytest.raises(ValueError, match="similarity 'cosine' unknown"):
        metrics.map_similarity(x[:, 0], x[:, 0], "cosine")  # type: ignore[arg-type]


def _linear(spatial_dims: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    size = (6,) * spatial_dims
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 6**spatial_dims, 3)).double().eval()
    return model, torch.randn(3, 2, *size, dtype=torch.float64), torch.tensor([0, 2, 1])


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_correlation_metrics_are_perfect_for_exact_maps_of_a_linear_model(spatial_dims):
    import camscope

    model, x, y = _linear(spatial_dims)
    # gradient × input summed over channels is exactly each position's share of the logit
    gradients = camscope.explain(model, x, method="saliency", targets=y).maps[:, 0]
    exact = (gradients * x).sum(1)
    correlation = metrics.faithfulness_correlation(model, x, exact, y, runs=30).values
    torch.testing.assert_close(correlation, torch.ones(3, dtype=torch.float64))
    wrong = metrics.faithfulness_correlation(model, x, -exact, y, runs=30).values
    torch.testing.assert_close(wrong, -torch.ones(3, dtype=torch.float64))
    # infidelity: Σ I ⊙ grad predicts f(x) − f(x − I) exactly when channels share the gradient
    single = x[:, :1]
    one = nn.Sequential(nn.Flatten(), nn.Linear(6**spatial_dims, 3)).double().eval()
    gradient = camscope.explain(one, single, method="saliency", targets=y).maps[:, 0, 0]
    assert float(metrics.infidelity(one, single, gradient, y).values.max()) < 1e-20
    assert float(metrics.infidelity(one, single, -gradient, y).values.min()) > 1e-3


def test_infidelity_equals_captum():
    from captum.metrics import infidelity as captum_infidelity

    torch.manual_seed(0)
    model = (
        nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 36, 4))
        .double()
        .eval()
    )
    x = torch.randn(3, 1, 6, 6, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    maps = torch.randn(3, 6, 6, dtype=torch.float64)
    ours = metrics.infidelity(model, x, maps, y, samples=10, noise_std=0.1, seed=0).values
    noise = (
        torch.randn(
            (3, 10, 1, 6, 6), generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
        * 0.1
    )

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = noise.flatten(0, 1)
        return flat, inputs - flat

    theirs = captum_infidelity(model, perturb, x, maps[:, None], target=y, n_perturb_samples=10)
    torch.testing.assert_close(ours, theirs)


def test_faithfulness_correlation_agrees_with_quantus_on_a_linear_model():
    import quantus

    import camscope

    model, x, y = _linear(2)
    x = x[:, :1].contiguous()
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3)).double().eval()
    exact = camscope.explain(model, x, method="saliency", targets=y).maps[:, 0, 0] * x[:, 0]
    ours = metrics.faithfulness_correlation(model, x, exact, y, subset_size=8, runs=20).values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = quantus.FaithfulnessCorrelation(
            nr_runs=20,
            subset_size=8,
            perturb_baseline=0.0,
            display_progressbar=False,
            disable_warnings=True,
            normalise=False,
            abs=False,
            return_aggregate=False,
        )(
            model=model.float(),
            x_batch=x.float().numpy(),
            y_batch=y.numpy(),
            a_batch=exact[:, None].float().numpy(),
            device="cpu",
            softmax=False,
        )
    np.testing.assert_allclose(ours.numpy(), np.array(theirs), atol=1e-5)


def test_occlusion_agreement_is_one_for_the_occlusion_map_itself():
    import camscope

    model = create_model("tiny2d", num_classes=3, input_size=16).double().eval()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    y = torch.tensor([0, 1])
    occluded = camscope.explain(model, x, method="occlusion", targets=y, window=4)
    same = metrics.occlusion_agreement(model, x, occluded, window=4).values
    torch.testing.assert_close(same, torch.ones(2, dtype=torch.float64))
    other = metrics.occlusion_agreement(model, x, torch.rand(2, 16, 16), y, window=4).values
    assert torch.all(other < 0.9)


def test_smooth_mprt_compares_smoothgrad_maps():
    torch.manual_seed(0)
    model = create_model("tiny2d", num_classes=3, input_size=16).eval()
    x = torch.randn(2, 1, 16, 16)
    result = metrics.mprt(model, x, method="saliency", noise_samples=4, keep_maps=True)
    import camscope

    expected = camscope.smooth(model, x, method="saliency", noise_samples=4)
    torch.testing.assert_close(result.original, expected.reduce_channels().maps[:, 0])
    assert result.maps is not None and result.maps.shape == (3, 2, 16, 16)


def test_3d_imputation_by_conjugate_gradients_equals_the_exact_solve(monkeypatch):
    import sys

    road_module = sys.modules["camscope.metrics.road"]
    x = torch.randn(1, 2, 9, 10, 11, dtype=torch.float64)
    mask = torch.rand(1, 9, 10, 11) < 0.6
    iterative = metrics.noisy_linear_imputation(x, mask, noise=0)
    from scipy.sparse.linalg import spsolve

    monkeypatch.setattr(road_module, "_solve", lambda system, rhs, *where: spsolve(system, rhs))
    exact = metrics.noisy_linear_imputation(x, mask, noise=0)
    torch.testing.assert_close(iterative, exact, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("holes", ["scattered", "one blob"])
def test_3d_imputation_with_the_multigrid_preconditioner_equals_the_exact_solve(monkeypatch, holes):
    """From MULTIGRID_FROM unknowns (here: all), conjugate gradients take an aggregation
    multigrid V-cycle as preconditioner: the same imputation as a direct solve, for scattered
    holes and for one large hole (ROAD's MoRF case, where Jacobi needs hundreds of steps)."""
    import sys

    road_module = sys.modules["camscope.metrics.road"]
    torch.manual_seed(0)
    x = torch.randn(2, 2, 20, 18, 22, dtype=torch.float64)
    if holes == "scattered":
        mask = torch.rand(2, 20, 18, 22) < 0.6
    else:
        grid = torch.stack(torch.meshgrid(*[torch.arange(n) for n in (20, 18, 22)], indexing="ij"))
        centre = torch.tensor([9.0, 8.0, 11.0])[:, None, None, None]
        mask = (
            ((grid - centre) ** 2).sum(0).sqrt().lt(torch.tensor([8.0, 12.0])[:, None, None, None])
        )
    monkeypatch.setattr(road_module, "MULTIGRID_FROM", 0)
    calls = []
    cycle = road_module._v_cycle
    monkeypatch.setattr(road_module, "_v_cycle", lambda *a: calls.append(1) or cycle(*a))
    iterative = metrics.noisy_linear_imputation(x, mask, noise=0)
    assert 0 < len(calls) < 2 * 2 * 40  # the multigrid ran, and needed few steps
    from scipy.sparse.linalg import spsolve

    monkeypatch.setattr(road_module, "_solve", lambda system, rhs, *where: spsolve(system, rhs))
    exact = metrics.noisy_linear_imputation(x, mask, noise=0)
    torch.testing.assert_close(iterative, exact, rtol=1e-7, atol=1e-8)


def test_2d_imputation_in_dissection_order_equals_a_plain_sparse_solve(monkeypatch):
    import sys

    from scipy.sparse.linalg import spsolve

    road_module = sys.modules["camscope.metrics.road"]
    rank = road_module._dissection_rank((23, 31))
    assert sorted(rank.tolist()) == list(range(23 * 31))  # an ordering of every position
    x = torch.randn(4, 3, 23, 31, dtype=torch.float64)
    mask = torch.rand(4, 23, 31) < torch.linspace(0.05, 0.95, 4)[:, None, None]
    mask[3, 5:20, 2:30] = True  # one large hole as well
    ordered = metrics.noisy_linear_imputation(x, mask, noise=0)
    monkeypatch.setattr(road_module, "_solve", lambda system, rhs, *where: spsolve(system, rhs))
    plain = metrics.noisy_linear_imputation(x, mask, noise=0)
    torch.testing.assert_close(ordered, plain, rtol=1e-10, atol=1e-12)
    assert not torch.equal(ordered[mask[:, None].expand_as(x)], x[mask[:, None].expand_as(x)])


def test_bad_arguments_of_the_trust_metrics_are_one_clear_error():
    model = create_model("tiny2d", num_classes=3, input_size=16).eval()
    x = torch.randn(2, 1, 16, 16)
    maps = torch.rand(2, 16, 16)
    y = torch.tensor([0, 1])
    bad = [
        (lambda: metrics.road(model, x, maps, torch.tensor([5, 7])), "out of range"),
        (lambda: metrics.road(model, x, maps, y, percentages=[150]), "0–100"),
        (lambda: metrics.road(model, x, maps, y, noise=-1), "non-negative"),
        (lambda: metrics.faithfulness_correlation(model, x, maps, y, runs=1), "at least 2"),
        (lambda: metrics.faithfulness_correlation(model, x, maps, y, subset_size=0), "1..256"),
        (lambda: metrics.infidelity(model, x, maps, y, samples=0), "samples must be"),
        (lambda: metrics.mprt(model, x, method="saliency", noise_samples=-1), "0 \\(plain"),
        (lambda: metrics.relevance_mass_accuracy(maps, torch.ones(2, 3)), "boxes must be"),
        (lambda: metrics.energy_pointing_game(maps, torch.ones(2, 5)), "got shape \\(2, 5\\)"),
        (lambda: metrics.road(model, (x * 9).to(torch.uint8), maps, y), "floating point"),
        (lambda: metrics.road(model, x.numpy(), maps, y), "torch.from_numpy"),
        (lambda: metrics.road(model, x, maps, "cat"), "class indices, an int or one per"),
        (lambda: metrics.road(model, x, maps, torch.tensor([0.0, 1.0])), "integer class"),
        (lambda: metrics.deletion(model, x, maps, 0.5), "integer class"),
    ]
    for call, message in bad:
        with pytest.raises(camscope.CamscopeError, match=message):
            call()
    assert (
        "faithfulness_correlation"
        in metrics.faithfulness_correlation(model, x, maps, y, runs=3).summary()
    )
    # a 0-d tensor is one class for every sample, as an int is
    torch.testing.assert_close(
        metrics.road(model, x, maps, torch.tensor(1), percentages=[50]).gap,
        metrics.road(model, x, maps, 1, percentages=[50]).gap,
    )


def test_localisation_metrics_take_explanations_and_float_masks_in_3d():
    import camscope

    model = create_model("tiny3d", num_classes=3, input_size=16).eval()
    x = torch.randn(2, 1, 16, 16, 16)
    e = camscope.explain(model, x, method="grad_cam", targets=[0, 1])
    masks = torch.zeros(2, 16, 16, 16)
    masks[:, 4:10, 4:10, 4:10] = 1.0
    shown = e.upsample().maps[:, 0]
    expected = metrics.relevance_mass_accuracy(shown, masks.bool()).values
    torch.testing.assert_close(metrics.relevance_mass_accuracy(e, masks).values, expected)
    torch.testing.assert_close(
        metrics.relevance_mass_accuracy(e.upsample().maps, masks).values, expected
    )
