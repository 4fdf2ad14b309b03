"""Input-space and perturbation methods against values derived by hand on tiny networks.

Linear models make every method's answer known in closed form (gradient = weights, Integrated
Gradients = (x - x') ⊙ w for any number of steps, occlusion = the occluded part of w·(x - x'),
Shapley values of an additive model = each segment's own term); a one-hidden-layer ReLU network
gives the three ReLU rules by hand; brute-force enumeration gives exact Shapley values.
"""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camscope
from camscope.methods.perturbation import occlusion_windows, segment, shapley_kernel_weights
from camscope.models import create_model
from tests.conftest import assert_close

INPUT_METHODS = [m for m in camscope.list_methods() if camscope.get_method(m).resolution == "input"]


class Linear(nn.Module):
    """``y = W · flatten(x) + b``: every attribution method has a closed form."""

    def __init__(self, shape: tuple[int, ...], classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(math.prod(shape), classes).double()

    def forward(self, x):
        return self.fc(x.flatten(1))


class OneHidden(nn.Module):
    """``y = V relu(W x)``, the ReLU written in one of several ways."""

    def __init__(self, size: int, hidden: int, classes: int, relu: str) -> None:
        super().__init__()
        self.w = nn.Linear(size, hidden, bias=True).double()
        self.v = nn.Linear(hidden, classes, bias=False).double()
        self.relu_kind = relu
        self.act = nn.ReLU(inplace=relu == "module_inplace")

    def forward(self, x):
        h = self.w(x.flatten(1))
        if self.relu_kind.startswith("module"):
            h = self.act(h)
        elif self.relu_kind == "F.relu":
            h = F.relu(h)
        elif self.relu_kind == "torch.relu":
            h = torch.relu(h)
        elif self.relu_kind == "Tensor.relu_":
            h = h * 1
            h.relu_()  # result ignored: in-place semantics must hold
        return self.v(h)


def _linear_case(spatial_dims: int, channels: int = 2, size: int = 4):
    shape = (channels, *([size] * spatial_dims))
    model = Linear(shape)
    x = torch.randn(2, *shape, dtype=torch.float64)
    weights = model.fc.weight.detach().view(3, *shape)  # (K, C, *S)
    return model, x, weights


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_saliency_of_linear_model_is_its_weights(spatial_dims):
    model, x, w = _linear_case(spatial_dims)
    e = camscope.explain(model, x, method="saliency", targets="all")
    assert e.per_channel and e.maps.shape == (2, 3, *x.shape[1:])
    assert_close(e.maps, w.expand(2, *w.shape))


@pytest.mark.parametrize("steps", [1, 7])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_integrated_gradients_of_linear_model(spatial_dims, steps):
    model, x, w = _linear_case(spatial_dims)
    baseline = torch.randn(x.shape[1:], dtype=torch.float64)
    e = camscope.explain(
        model, x, method="integrated_gradients", targets="all", steps=steps, baseline=baseline
    )
    assert_close(e.maps, (x - baseline).unsqueeze(1) * w)
    assert e.extras["completeness_gap"].max() < 1e-10


def test_integrated_gradients_completeness_gap_shrinks_with_steps():
    model = create_model("tiny2d", num_classes=3, input_size=8).double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    gaps = []
    for steps in (2, 16, 256):
        e = camscope.explain(model, x, method="integrated_gradients", targets="all", steps=steps)
        total = e.maps.flatten(2).sum(-1)
        expected = e.scores - e.extras["baseline_scores"]
        assert_close(e.extras["completeness_gap"], (total - expected).abs())
        gaps.append(float(e.extras["completeness_gap"].mean()))
    assert gaps[2] < gaps[1] < gaps[0]
    assert gaps[2] < 1e-2 * float(e.scores.abs().mean())


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gradient_shap_single_baseline_on_linear_model(spatial_dims):
    model, x, w = _linear_case(spatial_dims)
    e = camscope.explain(
        model, x, method="gradient_shap", targets="all", n_samples=5, baselines=0.5
    )
    assert_close(e.maps, (x - 0.5).unsqueeze(1) * w)
    assert e.extras["completeness_gap"].max() < 1e-10


def test_gradient_shap_converges_to_integrated_gradients():
    model = create_model("tiny2d", num_classes=3, input_size=8).double()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    ig = camscope.explain(model, x, method="integrated_gradients", targets="all", steps=400)
    shap = camscope.explain(model, x, method="gradient_shap", targets="all", n_samples=4000)
    error = (shap.maps - ig.maps).norm() / ig.maps.norm()
    assert error < 0.08
    again = camscope.explain(model, x, method="gradient_shap", targets="all", n_samples=4000)
    assert torch.equal(again.maps, shap.maps)  # seeded


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_occlusion_of_linear_model(spatial_dims):
    model, x, w = _linear_case(spatial_dims, size=6)
    window, stride = 3, 2  # overlapping, and the last window is cropped at the edge (6 = 0,2,4)
    e = camscope.explain(
        model, x, method="occlusion", targets="all", window=window, stride=stride, baseline=0.25
    )
    contribution = ((x - 0.25).unsqueeze(1) * w).sum(2)  # (B, K, *S), summed over channels
    starts = [range(0, 6, 2)] * spatial_dims
    expected = torch.zeros_like(contribution)
    coverage = torch.zeros(x.shape[2:], dtype=torch.float64)
    for corner in itertools.product(*starts):
        box = tuple(slice(c, c + window) for c in corner)
        drop = contribution[(..., *box)].flatten(2).sum(-1)  # score - occluded score
        expected[(..., *box)] += drop.view(*drop.shape, *([1] * spatial_dims))
        coverage[box] += 1
    expected = expected / coverage
    assert_close(e.maps, expected.unsqueeze(2).expand_as(e.maps))
    assert e.extras["windows"] == 3**spatial_dims


def test_occlusion_uses_three_d_patches():
    class OneVoxel(nn.Module):
        def forward(self, x):
            return x[:, :, 5, 2, 6] * torch.tensor([1.0, -2.0], dtype=x.dtype)

    x = torch.randn(1, 1, 8, 8, 8, dtype=torch.float64)
    e = camscope.explain(OneVoxel(), x, method="occlusion", targets="all", window=2)
    nonzero = e.maps[0, 0, 0] != 0
    expected = torch.zeros(8, 8, 8, dtype=torch.bool)
    expected[4:6, 2:4, 6:8] = True
    assert torch.equal(nonzero, expected)
    assert_close(e.maps[0, 1, 0, 4, 2, 6], -2 * x[0, 0, 5, 2, 6])


def test_occlusion_windows_follow_captum_counts():
    starts = occlusion_windows((11, 7), (4, 7), (3, 1))  # the last window is cropped
    assert [s.tolist() for s in starts] == [[0, 3, 6, 9], [0]]
    with pytest.raises(camscope.MethodError, match="larger than the input"):
        occlusion_windows((4,), (5,), (1,))
    with pytest.raises(camscope.MethodError, match="gaps"):
        occlusion_windows((10,), (2,), (3,))


# -- ReLU rules ---------------------------------------------------------------------------------


def _one_hidden_reference(model: OneHidden, x: torch.Tensor):
    w = model.w.weight.detach()  # (H, N)
    v = model.v.weight.detach()  # (K, H)
    active = (x.flatten(1) @ w.T + model.w.bias.detach()) > 0  # (B, H)
    gradient = torch.einsum("bh,kh,hn->bkn", active.double(), v, w)
    guided = torch.einsum("bh,kh,hn->bkn", active.double(), v.clamp_min(0), w)
    deconv = torch.einsum("kh,hn->kn", v.clamp_min(0), w).expand(x.shape[0], -1, -1)
    shape = (x.shape[0], v.shape[0], *x.shape[1:])
    return {
        "saliency": gradient.reshape(shape),
        "guided_backprop": guided.reshape(shape),
        "deconvnet": deconv.reshape(shape),
    }


@pytest.mark.parametrize(
    "relu", ["module", "module_inplace", "F.relu", "torch.relu", "Tensor.relu_"]
)
@pytest.mark.parametrize("method", ["saliency", "guided_backprop", "deconvnet"])
def test_relu_rules_by_hand_for_modules_and_functional_relus(method, relu):
    torch.manual_seed(3)
    model = OneHidden(16, 12, 3, relu)
    x = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    e = camscope.explain(model, x, method=method, targets="all")
    assert_close(e.maps, _one_hidden_reference(model, x)[method])


def test_rules_differ_from_each_other():
    torch.manual_seed(3)
    model = OneHidden(16, 12, 3, "module")
    x = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    maps = {
        m: camscope.explain(model, x, method=m, targets="all").maps
        for m in ("saliency", "guided_backprop", "deconvnet")
    }
    assert not torch.allclose(maps["saliency"], maps["guided_backprop"])
    assert not torch.allclose(maps["guided_backprop"], maps["deconvnet"])


def test_guided_grad_cam_is_guided_backprop_times_upsampled_grad_cam():
    model = create_model("tiny3d", num_classes=3, input_size=8).double()
    x = torch.randn(2, 1, 8, 8, 8, dtype=torch.float64)
    e = camscope.explain(model, x, method="guided_grad_cam", layer="pool2", targets="all")
    cam = camscope.explain(model, x, method="grad_cam", layer="pool2", targets="all")
    guided = camscope.explain(model, x, method="guided_backprop", targets="all")
    coarse = cam.relu().upsample(mode="linear").maps
    assert_close(e.maps, guided.maps * coarse.unsqueeze(2))
    assert_close(e.extras["grad_cam"], cam.maps)


# -- Feature visualisation ----------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
def test_feature_visualization_by_hand(rule, spatial_dims):
    torch.manual_seed(1)
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    transpose = F.conv_transpose2d if spatial_dims == 2 else F.conv_transpose3d
    conv1 = conv(1, 3, 3, padding=1).double()
    conv2 = conv(3, 4, 3, padding=1).double()
    model = nn.Sequential(conv1, nn.ReLU(), conv2, nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(2, 1, *([6] * spatial_dims), dtype=torch.float64)
    with torch.no_grad():
        pre1 = conv1(x)
        a2 = conv2(pre1.relu())
    k = 2
    seed = torch.zeros_like(a2)
    seed[:, k] = a2[:, k]
    h = transpose(seed, conv2.weight, padding=1)  # gradient at relu1's output
    if rule == "deconvnet":
        h = h.clamp_min(0)
    elif rule == "guided":
        h = h.clamp_min(0) * (pre1 > 0)
    else:
        h = h * (pre1 > 0)
    expected = transpose(h, conv1.weight, padding=1)
    got = camscope.methods.feature_visualization(model, x, layer="2", channels=[k, 0], rule=rule)
    assert got.shape == (2, 2, 1, *([6] * spatial_dims))
    assert_close(got[:, 0], expected)


def test_feature_visualization_default_channel_and_errors():
    model = create_model("tiny3d", num_classes=3, input_size=8).double()
    x = torch.randn(2, 1, 8, 8, 8, dtype=torch.float64)
    got = camscope.methods.feature_visualization(model, x, layer="conv2")
    assert got.shape == (2, 1, 1, 8, 8, 8)
    with pytest.raises(camscope.MethodError, match="channels must be in"):
        camscope.methods.feature_visualization(model, x, layer="conv2", channels=[99])
    with pytest.raises(camscope.LayerError):
        camscope.methods.feature_visualization(model, x, layer="nope")


# -- Kernel SHAP --------------------------------------------------------------------------------


def _exact_shapley(value, m: int) -> torch.Tensor:
    phi = [0.0] * m
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for size in range(m):
            for subset in itertools.combinations(others, size):
                weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
                phi[i] += weight * (value({*subset, i}) - value(set(subset)))
    return torch.tensor(phi, dtype=torch.float64)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_kernel_shap_is_exact_shapley_for_few_segments(spatial_dims):
    model = create_model(f"tiny{spatial_dims}d", num_classes=3, input_size=8).double().eval()
    x = torch.randn(1, 1, *([8] * spatial_dims), dtype=torch.float64)
    segments = torch.zeros([8] * spatial_dims, dtype=torch.long)
    segments[4:] += 1
    segments[:, 4:] += 2  # 4 quadrant segments
    e = camscope.explain(model, x, method="kernel_shap", targets=1, segments=segments, baseline=0.0)

    def value(kept: set[int]) -> float:
        keep = torch.zeros_like(x, dtype=torch.bool)
        for label in kept:
            keep |= (segments == label).expand_as(x)
        with torch.no_grad():
            return float(model(torch.where(keep, x, 0.0))[0, 1])

    expected = _exact_shapley(value, 4)
    assert_close(e.extras["shapley_values"][0][:, 0], expected)
    assert_close(e.maps[0, 0, 0], expected[segments])
    assert abs(float(expected.sum()) - (value({0, 1, 2, 3}) - value(set()))) < 1e-10


def test_kernel_shap_sampled_is_exact_on_additive_model_and_close_otherwise():
    model, x, w = _linear_case(2, channels=1, size=8)
    segments = torch.arange(64).view(8, 8) // 4  # 16 segments: 2^16 coalitions, so sampled
    e = camscope.explain(
        model, x, method="kernel_shap", targets="all", segments=segments, n_samples=200
    )
    per_pixel = (x.unsqueeze(1) * w).sum(2)  # (B, K, 8, 8)
    expected = torch.zeros(2, 3, 16, dtype=torch.float64).index_add_(
        2, segments.flatten(), per_pixel.flatten(2)
    )
    for b in range(2):
        assert_close(e.extras["shapley_values"][b].T, expected[b])


def test_shapley_kernel_weights():
    weights = shapley_kernel_weights(4, torch.tensor([1, 2, 3]))
    torch.testing.assert_close(weights, torch.tensor([3 / 12, 3 / 24, 3 / 12], dtype=torch.float64))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_slic_segments_cover_the_input(spatial_dims):
    x = torch.randn(2, 1, *([16] * spatial_dims))
    labels = segment(x, n_segments=20)
    assert labels.shape == (2, *([16] * spatial_dims))
    for row in labels:
        values = row.unique()
        assert values.tolist() == list(range(len(values))) and len(values) > 4


def test_slic_on_rgb_images():
    x = torch.rand(1, 3, 24, 24)
    assert len(segment(x, n_segments=16).unique()) > 4


# -- Score-CAM ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_score_cam_by_hand(spatial_dims):
    model = create_model(f"tiny{spatial_dims}d", num_classes=3, input_size=8).double().eval()
    x = torch.randn(2, 1, *([8] * spatial_dims), dtype=torch.float64)
    e = camscope.explain(model, x, method="score_cam", layer="relu2", targets="all", batch_size=5)
    trunk = nn.Sequential(model.conv1, model.relu1, model.pool1, model.conv2, nn.ReLU())
    with torch.no_grad():
        activations = trunk(x)
        mode = "bilinear" if spatial_dims == 2 else "trilinear"
        expected = torch.zeros(2, 3, *activations.shape[2:], dtype=torch.float64)
        for b in range(2):
            for k in range(activations.shape[1]):
                a = activations[b, k]
                up = F.interpolate(a[None, None], size=x.shape[2:], mode=mode)[0, 0]
                span = up.max() - up.min()
                mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
                probabilities = torch.softmax(model(x[b : b + 1] * mask), dim=1)[0]
                expected[b] += probabilities[:, None, None].view(3, *([1] * spatial_dims)) * a
    assert_close(e.maps, expected)


def test_score_cam_top_channels_approximation():
    model = create_model("tiny2d", num_classes=3, input_size=8).double().eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    full = camscope.explain(model, x, method="score_cam", layer="relu2", targets="all")
    every = camscope.explain(
        model, x, method="score_cam", layer="relu2", targets="all", top_channels=16
    )
    assert_close(every.maps, full.maps)
    few = camscope.explain(
        model, x, method="score_cam", layer="relu2", targets="all", top_channels=4
    )
    assert (few.extras["weights"] != 0).sum(-1).max() <= 4
    assert few.extras["forward_passes"] < full.extras["forward_passes"]


def test_score_cam_probability_needs_class_targets():
    model = create_model("tiny2d", num_classes=3, input_size=8).double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(camscope.MethodError, match="weighting='score'"):
        camscope.explain(model, x, method="score_cam", targets=lambda out: out[:, 0])
    e = camscope.explain(
        model, x, method="score_cam", targets=lambda out: out[:, 0], weighting="score"
    )
    assert e.maps.shape[:2] == (2, 1)


# -- Shared behaviour ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", INPUT_METHODS)
def test_two_d_equals_three_d_at_depth_one(method):
    torch.manual_seed(0)
    net2d = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 3)
    ).double()
    net3d = nn.Sequential(
        nn.Conv3d(2, 3, (1, 3, 3), padding=(0, 1, 1)), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 3)
    ).double()
    with torch.no_grad():
        net3d[0].weight.copy_(net2d[0].weight[:, :, None])
        net3d[0].bias.copy_(net2d[0].bias)
        net3d[3].load_state_dict(net2d[3].state_dict())
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    options: dict = {"layer": "0"} if camscope.get_method(method).needs_layer else {}
    if method == "occlusion":
        options = {"window": 2}
    if method == "kernel_shap":
        options = {"segments": torch.arange(36).view(6, 6) // 9}
    flat = camscope.explain(net2d, x, method=method, targets="all", **options)
    if method == "occlusion":
        options = {"window": (1, 2, 2)}
    if method == "kernel_shap":
        options = {"segments": options["segments"][None]}
    deep = camscope.explain(net3d, x[:, :, None], method=method, targets="all", **options)
    assert_close(deep.maps[:, :, :, 0], flat.maps)


def test_reduce_channels():
    model, x, w = _linear_case(2, channels=2)
    e = camscope.explain(model, x, method="saliency", targets="all")
    assert_close(e.reduce_channels().maps, w.abs().amax(1).expand(2, -1, -1, -1))
    assert_close(e.reduce_channels("sum").maps, w.sum(1).expand(2, -1, -1, -1))
    reduced = e.reduce_channels("mean")
    assert not reduced.per_channel and reduced.steps == ("reduce_channels(mean)",)
    assert reduced.reduce_channels() is reduced
    ig = camscope.explain(model, x, method="integrated_gradients", targets=0)
    assert ig.reduce_channels().steps == ("reduce_channels(sum)",)
    with pytest.raises(camscope.InputError, match="unknown"):
        e.reduce_channels("median")  # type: ignore[arg-type]


def test_upsample_and_normalize_keep_channel_axis():
    model, x, _ = _linear_case(2, channels=2)
    e = camscope.explain(model, x, method="saliency", targets="all")
    up = e.upsample((8, 8), mode="nearest")
    assert up.maps.shape == (2, 3, 2, 8, 8) and up.per_channel
    normalized = e.normalize()
    assert normalized.maps.flatten(2).amax(-1).max() == 1.0  # one scale per map, not per channel


@pytest.mark.parametrize(
    ("method", "options", "error", "message"),
    [
        ("saliency", {"steps": 3}, camscope.MethodError, "no option 'steps'"),
        ("saliency", {"layer": "pool2"}, camscope.MethodError, "takes no layer"),
        ("grad_cam", {"baseline": 0}, camscope.MethodError, "options: none"),
        ("integrated_gradients", {"steps": 0}, camscope.MethodError, "at least 1"),
        ("integrated_gradients", {"baseline": torch.zeros(3, 3)}, camscope.InputError, "broadcast"),
        ("occlusion", {"window": (2, 2, 2)}, camscope.MethodError, "2 positive entries"),
        ("occlusion", {"window": 99}, camscope.MethodError, "larger than the input"),
        ("kernel_shap", {"segments": torch.zeros(8, 8)}, camscope.InputError, "integer"),
        ("score_cam", {"weighting": "mean"}, camscope.MethodError, "weighting=.mean. must be"),
        ("gradient_shap", {"baselines": torch.zeros(2, 5, 5)}, camscope.InputError, "one input"),
    ],
)
def test_bad_options(method, options, error, message):
    model = create_model("tiny2d", num_classes=3, input_size=8).double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(error, match=message):
        camscope.explain(model, x, method=method, **options)


def test_method_options_are_listed():
    assert dict(camscope.get_method("integrated_gradients").options) == {
        "steps": 50,
        "baseline": 0.0,
        "batch_size": None,
    }
    assert dict(camscope.get_method("respond_cam").options) == {}


def test_progress_bar_only_for_long_runs(capsys, monkeypatch):
    from camscope.methods import context as method_context

    model = create_model("tiny2d", num_classes=3, input_size=8).double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    # a run shorter than the delay shows no bar (a delay no run reaches, so that a busy machine
    # cannot make this run "long")
    monkeypatch.setattr(method_context, "PROGRESS_DELAY", 1e6)
    camscope.explain(model, x, method="occlusion", targets="all", window=1, batch_size=4)
    assert "occlusion" not in capsys.readouterr().err
    monkeypatch.setattr(method_context, "PROGRESS_DELAY", 0.0)
    camscope.explain(model, x, method="occlusion", targets="all", window=1, batch_size=4)
    assert "occlusion" in capsys.readouterr().err
    camscope.explain(
        model, x, method="occlusion", targets="all", window=1, batch_size=4, progress=False
    )
    assert "occlusion" not in capsys.readouterr().err


def test_model_that_cannot_take_channels_last_still_works():
    class Viewing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 64, 2)
            self.layouts: list[bool] = []

        def forward(self, x):
            self.layouts.append(x.is_contiguous())
            flat = x.view(x.shape[0], -1)  # fails on a channels-last tensor
            return self.fc(self.conv(flat.view(x.shape[0], 3, 8, 8)).reshape(x.shape[0], -1))

    model = Viewing()
    x = torch.randn(2, 3, 8, 8)
    e = camscope.explain(model, x, method="occlusion", targets="all", window=4, batch_size=3)
    assert model.layouts[:2] == [True, False]  # explain's own pass, then the channels-last try
    assert all(model.layouts[2:]) and len(model.layouts) == 2 + 3  # 8 windows in 3 batches
    with torch.no_grad():
        occluded = x.clone()
        occluded[:, :, :4, :4] = 0
        drop = model(x) - model(occluded)
    torch.testing.assert_close(e.maps[:, :, 0, 0, 0], drop)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("occlusion", {"window": 4}),
        ("score_cam", {"layer": "relu2"}),
        ("kernel_shap", {"segments": torch.arange(256).view(16, 16) // 64}),
    ],
)
def test_bfloat16_precision_is_close_and_float32_is_exact(method, options):
    model = create_model("tiny2d", num_classes=3, input_size=16).eval()
    x = torch.randn(2, 1, 16, 16)
    exact = camscope.explain(model, x, method=method, targets="all", **options)
    fast = camscope.explain(model, x, method=method, targets="all", precision="bfloat16", **options)
    again = camscope.explain(model, x, method=method, targets="all", precision="float32", **options)
    assert torch.equal(again.maps, exact.maps)
    assert not torch.equal(fast.maps, exact.maps)  # really ran in bfloat16
    error = (fast.maps - exact.maps).norm() / exact.maps.norm()
    assert error < 0.05
    with pytest.raises(camscope.MethodError, match="precision must be"):
        camscope.explain(model, x, method=method, targets="all", precision="fp8", **options)


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("integrated_gradients", {"steps": "abc"}, "steps='abc' must be an integer"),
        ("occlusion", {"window": "abc"}, "window='abc' must be an integer or a list of integers"),
        ("occlusion", {"window": (2, "b")}, "must be an integer or a list of integers"),
        ("score_cam", {"weighting": "x"}, "must be 'probability' or 'score'"),
        ("kernel_shap", {"n_samples": 2.5}, "n_samples=2.5 must be an integer"),
    ],
)
def test_option_values_of_the_wrong_type_are_one_clear_error(method, options, message):
    model = create_model("tiny2d", num_classes=3)
    with pytest.raises(camscope.MethodError, match=re.escape(message)):
        camscope.explain(model, torch.randn(1, 1, 16, 16), method=method, **options)


def test_kernel_shap_with_one_segment_gives_the_whole_difference():
    model = create_model("tiny2d", num_classes=3).double()
    x = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    e = camscope.explain(
        model,
        x,
        method="kernel_shap",
        targets="all",
        segments=torch.zeros(16, 16, dtype=torch.long),
    )
    total = e.extras["shapley_values"][0][0]  # (T,): the one segment's value per target
    expected = e.scores[0] - e.extras["base_scores"][0]
    torch.testing.assert_close(total, expected)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("method", ["saliency", "deconvnet", "guided_backprop"])
@pytest.mark.parametrize("targets", [None, "all", [1, 0], lambda out: out[:, 2] - out[:, 0]])
def test_gradient_methods_run_the_model_once_and_equal_a_fresh_pass(method, targets, spatial_dims):
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d

    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                conv(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6**spatial_dims, 3)
            )
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return F.relu(self.net(x)) - 0.5 * self.net(x)

    torch.manual_seed(3)
    model = Counting().eval()
    x = torch.randn(2, 2, *(6,) * spatial_dims)
    e = camscope.explain(model, x, method=method, targets=targets)
    assert model.calls == 1  # no separate pass to fix the targets
    # the same maps as a fresh forward-and-backward under the method's rule
    from camscope.methods.rules import relu_rule

    rule = {"saliency": "gradient", "deconvnet": "deconvnet", "guided_backprop": "guided"}[method]
    for t in range(e.targets.shape[1] if e.targets is not None else 1):
        x_grad = x.clone().requires_grad_(True)
        with relu_rule(rule):
            out = model(x_grad)
        if callable(targets):
            score = targets(out).sum()
        else:
            score = out.gather(1, e.targets[:, t : t + 1]).sum()
        (expected,) = torch.autograd.grad(score, x_grad)
        torch.testing.assert_close(e.maps[:, t], expected, atol=1e-6, rtol=1e-5)
        score_rows = targets(out) if callable(targets) else out.gather(1, e.targets[:, t : t + 1])
        torch.testing.assert_close(e.scores[:, t], score_rows.reshape(-1), atol=1e-6, rtol=1e-5)
    assert not e.outputs.requires_grad
