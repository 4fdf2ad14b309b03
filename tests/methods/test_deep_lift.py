"""DeepLIFT and DeepLIFT-SHAP: summation to delta, Captum's maps, 2D and 3D, bad options."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import camscope
from camscope.errors import InputError, MethodError


def _net(dims: int, pool: bool = True) -> nn.Module:
    torch.manual_seed(0)
    conv = {2: nn.Conv2d, 3: nn.Conv3d}[dims]
    down = (
        {2: nn.MaxPool2d, 3: nn.MaxPool3d}[dims]
        if pool
        else {2: nn.AvgPool2d, 3: nn.AvgPool3d}[dims]
    )
    return nn.Sequential(
        conv(2, 6, 3, padding=1), nn.ReLU(), down(2),
        conv(6, 6, 3, padding=1), nn.Sigmoid(), down(2), nn.Flatten(),
        nn.Linear(6 * 2**dims, 8), nn.Tanh(), nn.Linear(8, 4),
    ).double().eval()  # fmt: skip


def _captum(cls_name: str, model: nn.Module, x: torch.Tensor, **options: object) -> torch.Tensor:
    attr = pytest.importorskip("captum.attr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns that it sets hooks
        explainer = getattr(attr, cls_name)(model)
        return torch.stack([explainer.attribute(x, target=c, **options) for c in range(4)], 1)


@pytest.mark.parametrize("dims", [2, 3])
def test_deeplift_sums_to_the_score_difference_with_max_pooling(dims):
    """DeepLIFT's summation-to-delta: ``Σ map = y(x) − y(x')`` for every target."""
    model = _net(dims)
    x = torch.randn(3, 2, *[8] * dims, dtype=torch.float64)
    reference = 0.3 * torch.randn_like(x)
    e = camscope.explain(model, x, method="deeplift", targets="all", baseline=reference)
    with torch.no_grad():
        expected = model(x) - model(reference)
    torch.testing.assert_close(e.maps.flatten(2).sum(-1), expected)
    assert float(e.extras["delta_gap"].max()) < 1e-12


@pytest.mark.parametrize("dims", [2, 3])
def test_deeplift_equals_captum(dims):
    """Without max-pooling the two agree exactly; with it, Captum 0.9 gives max-pooling its plain
    gradient, which ``max_pool="gradient"`` reproduces (and which misses summation to delta)."""
    x = torch.randn(3, 2, *[8] * dims, dtype=torch.float64)
    reference = 0.3 * torch.randn_like(x)
    model = _net(dims, pool=False)
    ours = camscope.explain(model, x, method="deeplift", targets="all", baseline=reference)
    theirs = _captum("DeepLift", model, x, baselines=reference)
    torch.testing.assert_close(ours.maps, theirs)
    model = _net(dims)
    ours = camscope.explain(
        model, x, method="deeplift", targets="all", baseline=reference, max_pool="gradient"
    )
    theirs = _captum("DeepLift", model, x, baselines=reference)
    torch.testing.assert_close(ours.maps, theirs)
    assert float(ours.extras["delta_gap"].max()) > 1e-3  # what that rule gives up


@pytest.mark.parametrize("dims", [2, 3])
def test_deeplift_shap_equals_captum(dims):
    x = torch.randn(2, 2, *[8] * dims, dtype=torch.float64)
    background = torch.randn(5, 2, *[8] * dims, dtype=torch.float64)
    model = _net(dims, pool=False)
    ours = camscope.explain(model, x, method="deeplift_shap", targets="all", baselines=background)
    theirs = _captum("DeepLiftShap", model, x, baselines=background)
    torch.testing.assert_close(ours.maps, theirs)
    with torch.no_grad():
        expected = model(x) - model(background).mean(0)
    torch.testing.assert_close(ours.maps.flatten(2).sum(-1), expected)
    per_input = camscope.explain(
        model,
        x,
        method="deeplift_shap",
        targets="all",
        baselines=background[None].repeat(2, 1, 1, *[1] * dims),
    )
    torch.testing.assert_close(per_input.maps, ours.maps)


def test_deeplift_by_hand_on_one_relu():
    """``y = relu(w·x)``: multiplier = ``(relu(w x) − relu(w x')) / (w x − w x')``."""
    layer = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0]]))
    model = nn.Sequential(nn.Flatten(), layer, nn.ReLU()).eval()
    x = torch.tensor([1.0, 1.0], dtype=torch.float64).view(1, 1, 1, 2)  # w·x = 3
    reference = torch.tensor([-1.0, -1.0], dtype=torch.float64).view(1, 1, 1, 2)  # w·x' = -3
    e = camscope.explain(model, x, method="deeplift", targets=0, baseline=reference)
    secant = (3.0 - 0.0) / (3.0 - -3.0)
    expected = torch.tensor([2.0 * 1.0, 2.0 * 2.0], dtype=torch.float64) * secant
    torch.testing.assert_close(e.maps.view(2), expected)


def test_functional_and_reused_relus_are_caught():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3)
            self.relu = nn.ReLU()  # used twice: Captum cannot take this
            self.dense = nn.Linear(4 * 36, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.relu(self.conv(x))
            h = torch.nn.functional.max_pool2d(self.relu(h - 0.1), 1)
            return self.dense(h.flatten(1))

    torch.manual_seed(0)
    model = Functional().double().eval()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    e = camscope.explain(model, x, method="deeplift", targets="all")
    with torch.no_grad():
        expected = model(x) - model(torch.zeros_like(x))
    torch.testing.assert_close(e.maps.flatten(2).sum(-1), expected)


def test_bad_options_are_refused():
    model = _net(2).float()
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(MethodError, match="max_pool must be"):
        camscope.explain(model, x, method="deeplift", max_pool="switch")
    with pytest.raises(MethodError, match="eps must be"):
        camscope.explain(model, x, method="deeplift", eps=-1.0)
    with pytest.raises(InputError, match="n_samples must be"):
        camscope.explain(model, x, method="deeplift_shap", n_samples=0)
    with pytest.raises(InputError, match="references for every input"):
        camscope.explain(model, x, method="deeplift_shap", baselines=torch.zeros(3, 1, 8, 8))
    linear = nn.Sequential(nn.Flatten(), nn.Linear(128, 2)).eval()
    with pytest.raises(MethodError, match="no nonlinearity") as raised:
        camscope.explain(linear, x, method="deeplift")
    assert "its activations are" not in str(raised.value)
    prelu = nn.Sequential(nn.Conv2d(2, 3, 3), nn.PReLU(), nn.Flatten(), nn.Linear(108, 2)).eval()
    with pytest.raises(MethodError, match="its activations are PReLU; use integrated_gradients"):
        camscope.explain(prelu, x, method="deeplift")


def test_deeplift_on_a_dense_output_sums_to_the_change_over_the_inputs_region():
    """A segmentation class is scored over the region the input predicts; the reference's score
    (and so ``delta_gap``) is taken over that same region."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2), nn.Conv3d(4, 3, 1),
        nn.Upsample(scale_factor=2),
    ).double().eval()  # fmt: skip
    x = torch.randn(2, 1, 8, 8, 8, dtype=torch.float64)
    reference = 0.5 * torch.randn_like(x)
    e = camscope.explain(model, x, method="deeplift", targets=1, baseline=reference)
    with torch.no_grad():
        out, ref = model(x), model(reference)
    region = out.argmax(1) == 1
    expected = ((out[:, 1] - ref[:, 1]) * region).flatten(1).sum(1)
    torch.testing.assert_close(e.maps.flatten(2).sum(-1)[:, 0], expected)
    assert float(e.extras["delta_gap"].max()) < 1e-10


def test_a_residual_addition_into_a_relus_output_keeps_summation_to_delta():
    """The reference's pass records copies: a later in-place write into a nonlinearity's output
    (a residual block's ``out += identity``) must not change the secants."""

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(2, 2, 3, padding=1)
            self.conv2 = nn.Conv2d(2, 2, 3, padding=1)
            self.dense = nn.Linear(2 * 64, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.relu(self.conv1(x))
            identity = out
            out = torch.tanh(self.conv2(out))
            out += identity
            out = torch.relu(out)
            return self.dense(out.flatten(1))

    torch.manual_seed(0)
    model = Residual().double().eval()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    reference = 0.3 * torch.randn_like(x)
    e = camscope.explain(model, x, method="deeplift", targets="all", baseline=reference)
    with torch.no_grad():
        expected = model(x) - model(reference)
    torch.testing.assert_close(e.maps.flatten(2).sum(-1), expected)


def test_a_model_that_runs_other_operations_on_the_reference_is_refused():
    class Branching(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense = nn.Linear(8, 2)
            self.mode = "extra"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            positive = bool(x.sum() > 0)  # data-dependent control flow: 0 for the reference
            if self.mode == "swap":
                h = torch.relu(x.flatten(1)) if positive else torch.sigmoid(x.flatten(1))
            else:
                h = torch.relu(x.flatten(1))
                if positive == (self.mode == "extra"):
                    h = torch.sigmoid(h)
            return self.dense(h)

    model = Branching().eval()
    x = torch.ones(1, 2, 2, 2)
    # the input's pass takes one more nonlinearity than the zero reference's
    with pytest.raises(MethodError, match=r"nonlinearity 2 is sigmoid of shape \(1, 8\) where"):
        camscope.explain(model, x, method="deeplift")
    model.mode = "fewer"  # the reference's pass takes one more
    with pytest.raises(MethodError, match="the input's met 1 nonlinearities, the reference's 2"):
        camscope.explain(model, x, method="deeplift")
    model.mode = "swap"  # as many calls, of the same shapes, of other functions
    with pytest.raises(MethodError, match=r"is relu of shape \(1, 8\) where the reference's pass "
                       r"had sigmoid of shape \(1, 8\)"):  # fmt: skip
        camscope.explain(model, x, method="deeplift")


def test_max_pooling_with_other_options_on_the_reference_is_refused():
    class Pooling(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if bool(x.sum() > 0):
                h = torch.nn.functional.max_pool2d(x, 2)
            else:  # the same output shape from another window
                h = torch.nn.functional.max_pool2d(x, 3, stride=2, padding=1)
            return torch.relu(h).flatten(1).sum(1, keepdim=True)

    refused = r"is max_pool2d\(.*kernel_size=2.* where .*kernel_size=3"
    with pytest.raises(MethodError, match=refused):
        camscope.explain(Pooling(), torch.rand(1, 1, 8, 8) + 0.1, method="deeplift")


@pytest.mark.parametrize("activation", [nn.LeakyReLU(0.1, inplace=True), nn.ELU(inplace=True)])
def test_in_place_activations_that_keep_their_input_keep_summation_to_delta(activation):
    """Where input and reference agree (``|Δa| < eps``) such an activation keeps its own
    derivative, whose backward pass needs its input: the write into it must not spoil that."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), activation, nn.Flatten(), nn.Linear(4 * 64, 3)
    ).double().eval()  # fmt: skip
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    reference = x.clone()
    reference[..., :4] = 0.0  # the right half unchanged
    e = camscope.explain(model, x, method="deeplift", targets="all", baseline=reference)
    with torch.no_grad():
        expected = model(x) - model(reference)
    torch.testing.assert_close(e.maps.flatten(2).sum(-1), expected)


@pytest.mark.parametrize("dims", [2, 3])
def test_maps_that_miss_their_sum_are_said_to(dims):
    """A layer norm has no rescale rule: the maps miss ``y(x) − y(x')``, and a warning says so
    (with the rule's own networks, the tests above run under filterwarnings=error: silent)."""
    torch.manual_seed(0)
    conv = {2: nn.Conv2d, 3: nn.Conv3d}[dims]
    model = nn.Sequential(
        conv(1, 4, 3), nn.Flatten(), nn.LayerNorm(4 * 2**dims), nn.ReLU(),
        nn.Linear(4 * 2**dims, 3),
    ).double().eval()  # fmt: skip
    x = torch.randn(2, 1, *[4] * dims, dtype=torch.float64)
    for name in ("deeplift", "deeplift_shap"):
        # max_pool="gradient" misses the sum by design, but this model has no max-pool
        for options in ({}, {"max_pool": "gradient"}):
            with pytest.warns(RuntimeWarning, match=rf"{name}: \d of 6 maps .* miss their sum"):
                e = camscope.explain(model, x, method=name, targets="all", **options)
            assert float(e.extras["delta_gap"].max()) > 1e-3
    with pytest.warns(RuntimeWarning, match="miss their sum") as record:
        camscope.explain(model, x, method="deeplift")
    assert [w.filename for w in record] == [__file__]  # said at the caller's line
    pooled = _net(dims)  # max-pools with their own gradient: silent (filterwarnings=error)
    camscope.explain(pooled, torch.randn(2, 2, *[8] * dims).double(), method="deeplift",
                     targets="all", max_pool="gradient")  # fmt: skip
