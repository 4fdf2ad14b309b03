"""LRP: equal to zennit for every composite (2D, 3D, a ResNet), rules by hand, conservation."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camscope
from camscope.errors import MethodError
from camscope.methods.layerwise_relevance import COMPOSITES


def _conv_bn_net(dims: int) -> nn.Module:
    torch.manual_seed(0)
    conv = {2: nn.Conv2d, 3: nn.Conv3d}[dims]
    norm = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
    pool = {2: nn.MaxPool2d, 3: nn.MaxPool3d}[dims]
    average = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[dims]
    model = nn.Sequential(
        conv(3, 8, 3, padding=1), norm(8), nn.ReLU(), pool(2),
        conv(8, 8, 3, padding=1), norm(8), nn.ReLU(), average(2), nn.Flatten(),
        nn.Linear(8 * 2**dims, 16), nn.ReLU(), nn.Linear(16, 5),
    )  # fmt: skip
    for module in model.modules():
        if isinstance(module, norm):  # statistics that make the folding matter (some scales < 0)
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(-1.0, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


def _zennit_maps(model: nn.Module, x: torch.Tensor, name: str, canonizer: object, classes: int):
    composites = pytest.importorskip("zennit.composites")
    attribution = pytest.importorskip("zennit.attribution")
    cls = {
        "epsilon_plus": composites.EpsilonPlus,
        "epsilon_plus_flat": composites.EpsilonPlusFlat,
        "epsilon_gamma_box": composites.EpsilonGammaBox,
        "epsilon_alpha2_beta1": composites.EpsilonAlpha2Beta1,
        "epsilon_alpha2_beta1_flat": composites.EpsilonAlpha2Beta1Flat,
        "excitation_backprop": composites.ExcitationBackprop,
    }[name]
    bounds = {"low": float(x.min()), "high": float(x.max())} if name == "epsilon_gamma_box" else {}
    composite = cls(canonizers=[canonizer], **bounds)
    maps = []
    with attribution.Gradient(model, composite) as attributor:
        for c in range(classes):
            output = model(x)
            relevance = torch.zeros_like(output)
            relevance[:, c] = output[:, c]  # the score as the output's relevance
            maps.append(attributor(x, relevance)[1])
    return torch.stack(maps, 1)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_every_composite_equals_zennit(name, dims):
    canonizers = pytest.importorskip("zennit.canonizers")
    model = _conv_bn_net(dims).double()
    x = torch.randn(2, 3, *[12] * dims, dtype=torch.float64)
    theirs = _zennit_maps(model, x, name, canonizers.SequentialMergeBatchNorm(), 5)
    bounds = {"low": float(x.min()), "high": float(x.max())} if "box" in name else {}
    ours = camscope.explain(model, x, method="lrp", targets="all", composite=name, **bounds).maps
    scale = theirs.abs().max()
    assert scale > 0
    # In float64 the only difference left is zennit's: its merged batch norms still divide by
    # √(1 + ε) (ε = 1e-5), so its activations above each norm are smaller by that factor (~5e-6).
    # Without batch norms the two agree to 1e-15.
    torch.testing.assert_close(ours / scale, theirs / scale, atol=2.5e-5, rtol=0)


@pytest.mark.slow
def test_resnet18_with_residual_additions_equals_zennit():
    torchvision = pytest.importorskip("torchvision")
    zennit_torchvision = pytest.importorskip("zennit.torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).double().eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.2, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(2, 3, 48, 48, dtype=torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for name in ("epsilon_plus", "epsilon_gamma_box"):
        canonizer = zennit_torchvision.ResNetCanonizer()
        theirs = _zennit_maps(model, x, name, canonizer, 4)
        bounds = {"low": float(x.min()), "high": float(x.max())} if "box" in name else {}
        ours = camscope.explain(
            model, x, method="lrp", targets="all", composite=name, **bounds
        ).maps
        scale = theirs.abs().max()
        # zennit's merged batch norms each still divide by √(1 + 1e-5); through ResNet-18's depth
        # its canonized model's output is 4e-5 (relative) off the model's, and its maps ~6e-4.
        torch.testing.assert_close(ours / scale, theirs / scale, atol=1e-3, rtol=0)
        sums = ours.flatten(2).sum(-1), theirs.flatten(2).sum(-1)
        torch.testing.assert_close(*sums, rtol=0, atol=2e-4 * float(sums[1].abs().max()))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def _bias_free_relu_net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, bias=False), nn.ReLU(), nn.Conv2d(4, 4, 3, bias=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 3, bias=False),
    ).eval()  # fmt: skip


def test_lrp_zero_is_gradient_times_input_and_conserves():
    """With ε = 0 on a bias-free ReLU network every layer conserves exactly and the rule is
    ``x ⊙ ∂y/∂x`` (Bach et al. 2015; Euler's theorem): the map sums to the score."""
    model = _bias_free_relu_net().double()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    e = camscope.explain(model, x, method="lrp", targets="all", rule="epsilon", epsilon=0.0)
    reference = camscope.explain(model, x, method="input_x_gradient", targets="all")
    torch.testing.assert_close(e.maps, reference.maps)
    torch.testing.assert_close(e.extras["relevance_sum"], e.scores)
    assert float(e.extras["conservation_gap"].max()) < 1e-10


def test_zplus_on_one_dense_layer_by_hand():
    """``R_i = (x_i⁺ w_i⁺ + x_i⁻ w_i⁻) · y / z⁺`` with ``z⁺ = Σ_i (x_i⁺ w_i⁺ + x_i⁻ w_i⁻) + b⁺``."""
    layer = nn.Linear(4, 1).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 3.0]]))
        layer.bias.fill_(0.25)
    model = nn.Sequential(nn.Flatten(), layer).eval()
    x = torch.tensor([[1.0, 2.0, -1.0, -0.5]], dtype=torch.float64).view(1, 1, 1, 4)
    e = camscope.explain(model, x, method="lrp", targets=[0], rule="zplus", stabilizer=0.0)
    w, v = layer.weight[0].detach(), x.view(4)
    contributions = v.clamp(min=0) * w.clamp(min=0) + v.clamp(max=0) * w.clamp(max=0)
    with torch.no_grad():
        y = float(model(x)[0, 0])
    expected = contributions * y / (contributions.sum() + 0.25)
    torch.testing.assert_close(e.maps.view(4), expected)


def test_alpha_beta_on_one_dense_layer_by_hand():
    layer = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0, -1.0, 1.0]]))
    model = nn.Sequential(nn.Flatten(), layer).eval()
    x = torch.tensor([[1.0, 1.0, -3.0]], dtype=torch.float64).view(1, 1, 1, 3)
    e = camscope.explain(
        model, x, method="lrp", targets=[0], rule="alpha_beta", stabilizer=0.0, alpha=2, beta=1
    )
    with torch.no_grad():
        y = float(model(x)[0, 0])  # 2 - 1 - 3 = -2
    positive = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)  # x⁺w⁺ + x⁻w⁻
    negative = torch.tensor([0.0, -1.0, -3.0], dtype=torch.float64)  # x⁺w⁻ + x⁻w⁺
    expected = 2 * positive * y / positive.sum() - 1 * negative * y / negative.sum()
    torch.testing.assert_close(e.maps.view(3), expected)


class _Functional(nn.Module):
    """The same network as two modules, run through torch.nn.functional."""

    def __init__(self, model: nn.Sequential) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv1, _, conv2, _, _, dense = self.model
        x = F.relu(F.conv2d(x, conv1.weight, None))
        x = torch.relu(F.conv2d(x, conv2.weight, None))
        return F.linear(x.flatten(1), dense.weight)


def test_functional_layers_get_the_rules_too():
    model = _bias_free_relu_net()
    x = torch.randn(2, 2, 8, 8)
    modules = camscope.explain(model, x, method="lrp", targets="all", composite="epsilon_plus")
    functional = camscope.explain(
        _Functional(model).eval(), x, method="lrp", targets="all", composite="epsilon_plus"
    )
    torch.testing.assert_close(functional.maps, modules.maps)
    plain = camscope.explain(model, x, method="input_x_gradient", targets="all")
    assert not torch.allclose(modules.maps, plain.maps, atol=1e-4)  # z⁺ is not x ⊙ ∂y/∂x here


def test_batch_norm_folding_changes_the_map_and_can_be_turned_off():
    model = _conv_bn_net(2)
    x = torch.randn(1, 3, 12, 12)
    folded = camscope.explain(model, x, method="lrp", targets=[1])
    passed = camscope.explain(model, x, method="lrp", targets=[1], fold_batch_norm=False)
    assert not torch.allclose(folded.maps, passed.maps)


def test_bad_options_are_refused():
    model = _bias_free_relu_net()
    x = torch.randn(1, 2, 8, 8)
    for options, words in (
        ({"composite": "epsilon_pluss"}, "unknown LRP composite"),
        ({"rule": "w_square"}, "unknown LRP rule"),
        ({"rule": "alpha_beta", "alpha": 2, "beta": 2}, "alpha - beta = 1"),
        ({"epsilon": -1.0}, "epsilon must be"),
        ({"composite": "epsilon_gamma_box", "rule": "gamma"}, "not both"),
        ({"composite": "epsilon_gamma_box", "low": torch.zeros(5)}, "do not broadcast"),
    ):
        with pytest.raises(MethodError, match=words):
            camscope.explain(model, x, method="lrp", **options)


def test_torchscript_is_refused_with_what_to_do():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        model = torch.jit.script(_bias_free_relu_net())
    with pytest.raises(MethodError, match="TorchScript"):
        camscope.explain(model, torch.randn(1, 2, 8, 8), method="lrp")


def test_z_box_bounds_are_each_inputs_own_and_composites_take_kebab_case():
    model = _conv_bn_net(2)
    x = torch.randn(3, 3, 12, 12)
    x[2] *= 5  # a batch-mate with a much wider range
    batch = camscope.explain(model, x, method="lrp", targets="all", composite="epsilon-gamma-box")
    alone = camscope.explain(
        model, x[:1], method="lrp", targets="all", composite="epsilon_gamma_box"
    )
    torch.testing.assert_close(batch.maps[:1], alone.maps)
    with pytest.raises(MethodError, match="low must not exceed high"):
        camscope.explain(model, x, method="lrp", composite="epsilon_gamma_box", low=3.0, high=-3.0)


class _Gated(nn.Module):
    """A convolution whose output is gated by a squeeze-excitation product (two activations),
    scaled by a learned layer scale (a weight times an activation: linear, with a rule)."""

    def __init__(self, dims: int, norm: bool) -> None:
        super().__init__()
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[dims]
        self.conv = conv(1, 4, 3)
        self.act = nn.PReLU() if norm else nn.ReLU()
        self.norm = nn.LayerNorm(4) if norm else nn.Identity()
        self.scale = nn.Parameter(torch.full((4,), 0.5))
        self.gate = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv(x)).flatten(2).mean(-1)  # (B, 4)
        h = self.norm(h) * self.scale
        return self.head(h * torch.sigmoid(self.gate(h)))


class _Normalised(nn.Module):
    """A hand-written normalisation (a division by an activation) and a cosine head."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.conv = {2: nn.Conv2d, 3: nn.Conv3d}[dims](1, 4, 3)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).flatten(2).mean(-1)
        h = (h - h.mean(1, keepdim=True)) / (h.std(1, keepdim=True) + 1e-5)
        return self.head(F.normalize(h, dim=1))


@pytest.mark.parametrize("dims", [2, 3])
def test_calls_without_a_rule_are_named_in_a_warning(dims):
    torch.manual_seed(0)
    x = torch.randn(2, 1, *[6] * dims)
    named = r"no rule for prelu \(×1\), layer_norm \(×1\), product of two activations \(×1\) in "
    with pytest.warns(RuntimeWarning, match=named) as record:
        camscope.explain(_Gated(dims, norm=True).eval(), x, method="lrp", targets="all")
    assert "chefer" not in str(record[0].message)  # a layer norm alone is no transformer
    assert [w.filename for w in record] == [__file__]  # said at the caller's line
    with pytest.warns(RuntimeWarning, match=r"no rule for product of two activations \(×1\) in "):
        camscope.explain(_Gated(dims, norm=False).eval(), x, method="lrp", targets="all")
    with pytest.warns(RuntimeWarning, match=r"division by an activation \(×1\), normalize \(×1\)"):
        camscope.explain(_Normalised(dims).eval(), x, method="lrp", targets="all")
    with warnings.catch_warnings():  # a residual sum, batch norms, pools: rules apply
        warnings.simplefilter("error")
        camscope.explain(_conv_bn_net(dims), torch.randn(2, 3, *[8] * dims), method="lrp")
