"""explain(): invariants, target forms, layer choice and errors on small networks."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import camscope
from camscope import (
    CamscopeError,
    InputError,
    LayerError,
    MethodError,
    ModelError,
    TargetError,
)
from camscope.models import create_model
from tests.conftest import assert_close
from tests.nets import ATTENTION_METHODS, Paired2D3D, SharedReLU, SideBranch, TinyViT

GRADIENT_METHODS = [m for m in camscope.list_methods() if m != "cam"]

#: Methods that make many passes per call (perturbations, samples, paths): their volume cases of
#: the registry-wide invariants are slow tests; the quick loop keeps their image cases.
MANY_PASSES = {
    "deeplift_shap", "feature_ablation", "gradient_shap", "integrated_gradients",
    "internal_influence", "is_cam", "kernel_shap", "layer_conductance",
    "layer_integrated_gradients", "lime", "lrp", "occlusion", "score_cam",
    "shapley_value_sampling", "smooth_grad_cam_pp", "ss_cam",
}  # fmt: skip


def _by_cost(methods, spatial_dims, *, with_dims=False):
    """``methods`` as parameters (with ``spatial_dims`` first if ``with_dims``), the many-pass
    ones marked slow in 3D (Shapley sampling in 2D as well: one pass per feature and sample)."""
    slow = MANY_PASSES if spatial_dims == 3 else {"shapley_value_sampling"}
    return [
        pytest.param(
            *((spatial_dims,) if with_dims else ()),
            m,
            marks=[pytest.mark.slow] if m in slow else [],
        )
        for m in methods
    ]


LAYER_METHODS = [m for m in GRADIENT_METHODS if camscope.get_method(m).kind == "cam"]


def _net(name: str, dtype=torch.float64, **options):
    return create_model(name, num_classes=5, **options).to(dtype)


def _input(spatial_dims: int, batch: int = 3, dtype=torch.float64, size: int = 16):
    return torch.randn(batch, 1, *([size] * spatial_dims), dtype=dtype)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_respond_cam_sums_to_logit_minus_bias(spatial_dims, dtype):
    net = _net(f"tiny{spatial_dims}d", dtype)
    x = _input(spatial_dims, dtype=dtype)
    e = camscope.explain(net, x, method="respond_cam", targets="all")
    sums = e.maps.sum(dim=tuple(range(2, e.maps.ndim)))
    expected = e.scores - net.fc.bias.detach()
    rtol, atol = (1e-4, 1e-5) if dtype == torch.float32 else (1e-9, 1e-10)
    torch.testing.assert_close(sums, expected, rtol=rtol, atol=atol)
    # Grad-CAM does not have this property on the same network (the reason Respond-CAM exists).
    g = camscope.explain(net, x, method="grad_cam", targets="all")
    assert not torch.allclose(g.maps.sum(dim=tuple(range(2, g.maps.ndim))), expected, atol=1e-3)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_cam_sums_to_score_on_gap_head(spatial_dims):
    net = _net(f"tiny{spatial_dims}d_gap")
    e = camscope.explain(net, _input(spatial_dims), method="cam", targets="all")
    positions = e.maps[0, 0].numel()
    sums = e.maps.sum(dim=tuple(range(2, e.maps.ndim)))
    torch.testing.assert_close(sums / positions + net.fc.bias.detach(), e.scores)
    # and equals Σ_k W[c,k] A^k with the Linear weights read directly
    assert e.layer == "pool2"


def test_cam_with_explicit_weights():
    net = _net("tiny2d_gap")
    x = _input(2)
    e = camscope.explain(net, x, method="cam", targets="all")
    trunk = nn.Sequential(*list(net.children())[:6])
    activations = trunk(x).detach()
    expected = torch.einsum("kc,bchw->bkhw", net.fc.weight.detach(), activations)
    assert_close(e.maps, expected)


@pytest.mark.parametrize(
    ("spatial_dims", "method"),
    [
        *_by_cost(camscope.list_methods(), 2, with_dims=True),
        *_by_cost(camscope.list_methods(), 3, with_dims=True),
    ],
)
def test_all_targets_equal_loop_of_single_calls(spatial_dims, method):
    name = f"tiny{spatial_dims}d_gap" if method == "cam" else f"tiny{spatial_dims}d"
    net = TinyViT(spatial_dims, num_classes=5) if method in ATTENTION_METHODS else _net(name)
    x = _input(spatial_dims, size=8 if method in ATTENTION_METHODS else 16)
    together = camscope.explain(net, x, method=method, targets="all")
    for cls in range(5):
        single = camscope.explain(net, x, method=method, targets=cls)
        assert_close(together.maps[:, cls], single.maps[:, 0])
        assert_close(together.scores[:, cls], single.scores[:, 0])
    assert together.targets.tolist() == [list(range(5))] * 3


@pytest.mark.parametrize("method", _by_cost(GRADIENT_METHODS, 3))
def test_samples_are_independent(method):
    net = TinyViT(3, num_classes=5) if method in ATTENTION_METHODS else _net("tiny3d")
    x = _input(3, batch=4, size=8 if method in ATTENTION_METHODS else 16)
    batch = camscope.explain(net, x, method=method, targets="all")
    for b in range(4):
        alone = camscope.explain(net, x[b : b + 1], method=method, targets="all")
        assert_close(batch.maps[b], alone.maps[0])


@pytest.mark.parametrize("method", LAYER_METHODS)
def test_two_d_equals_three_d_at_depth_one(method):
    pair = Paired2D3D()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    flat = camscope.explain(pair.net2d, x, method=method, layer="2", targets="all")
    deep = camscope.explain(pair.net3d, x[:, :, None], method=method, layer="2", targets="all")
    assert deep.maps.shape == (2, 4, 1, 4, 4)
    assert_close(deep.maps[:, :, 0], flat.maps)
    assert_close(deep.scores, flat.scores)


@pytest.mark.parametrize("method", LAYER_METHODS)
def test_in_place_relu_after_layer_does_not_corrupt(method):
    net = _net("tiny2d")  # conv2 is followed by ReLU(inplace=True)
    clean = copy.deepcopy(net)
    clean.relu2 = nn.ReLU(inplace=False)
    x = _input(2)
    a = camscope.explain(net, x, method=method, layer="conv2", targets="all")
    b = camscope.explain(clean, x, method=method, layer="conv2", targets="all")
    assert_close(a.maps, b.maps)
    assert (a.maps != 0).any()
    # Recorded activations are pre-ReLU: conv2's output is signed, so Grad-CAM sees negatives.
    assert net.relu2.inplace


def test_maps_are_raw_and_signed():
    net = _net("tiny2d")
    e = camscope.explain(net, _input(2), method="grad_cam", targets="all")
    assert (e.maps < 0).any() and (e.maps > 0).any()
    assert e.is_raw and e.steps == ()
    processed = e.relu().normalize()
    assert processed.steps == ("relu", "normalize(minmax)")
    assert (e.maps < 0).any()  # the original is untouched


def test_target_forms(dtype):
    net = _net("tiny2d", dtype)
    x = _input(2, dtype=dtype)
    logits = net.eval()(x)
    predicted = camscope.explain(net, x, method="grad_cam")
    assert predicted.targets.tolist() == logits.argmax(1, keepdim=True).tolist()
    assert predicted.maps.shape == (3, 1, 4, 4)
    assert_close(predicted.scores, logits.gather(1, predicted.targets).detach())
    fixed = camscope.explain(net, x, method="grad_cam", targets=2)
    assert fixed.targets.tolist() == [[2], [2], [2]]
    per_sample = camscope.explain(net, x, method="grad_cam", targets=[0, 4, 1])
    assert per_sample.targets.tolist() == [[0], [4], [1]]
    as_tensor = camscope.explain(net, x, method="grad_cam", targets=torch.tensor([0, 4, 1]))
    assert_close(as_tensor.maps, per_sample.maps)
    pairs = camscope.explain(net, x, method="grad_cam", targets=torch.tensor([[1, 3]] * 3))
    assert pairs.maps.shape == (3, 2, 4, 4)
    assert_close(
        pairs.maps[:, 1], camscope.explain(net, x, method="grad_cam", targets=3).maps[:, 0]
    )


def test_callable_targets():
    net = _net("tiny2d")
    x = _input(2)
    difference = camscope.explain(
        net, x, method="respond_cam", targets=lambda out: out[:, 1] - out[:, 2]
    )
    assert difference.targets is None
    one = camscope.explain(net, x, method="respond_cam", targets=1).maps
    two = camscope.explain(net, x, method="respond_cam", targets=2).maps
    # Respond-CAM weights are linear in the gradient, so the map of a difference is the difference.
    assert_close(difference.maps, one - two)
    several = camscope.explain(net, x, method="grad_cam", targets=lambda out: out[:, :2] * 2)
    assert several.maps.shape == (3, 2, 4, 4)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 100])
def test_chunking_does_not_change_maps(chunk_size):
    net = _net("tiny3d")
    x = _input(3)
    reference = camscope.explain(net, x, method="respond_cam", targets="all")
    chunked = camscope.explain(net, x, method="respond_cam", targets="all", chunk_size=chunk_size)
    assert_close(chunked.maps, reference.maps)


def test_fallback_when_batched_gradients_fail(monkeypatch):
    net = _net("tiny2d")
    x = _input(2)
    reference = camscope.explain(net, x, method="grad_cam", targets="all")
    original = torch.autograd.grad

    def no_batching(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("Batching rule not implemented for aten::something")
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_batching)
    with pytest.warns(RuntimeWarning, match="one backward pass per target"):
        fallback = camscope.explain(net, x, method="grad_cam", targets="all")
    assert_close(fallback.maps, reference.maps)


def test_default_layer_is_last_spatial_layer():
    assert camscope.explain(_net("tiny2d"), _input(2), method="grad_cam").layer == "pool2"
    cnn2 = create_model("cnn2", num_classes=23)
    x = torch.randn(1, 1, 40, 40, 40)
    e = camscope.explain(cnn2, x, method="respond_cam", targets="all")
    assert e.layer == "maxpool2" and e.maps.shape == (1, 23, 5, 5, 5)


def test_default_layer_on_torchvision_resnet():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet18(weights=None, num_classes=10)
    e = camscope.explain(net, torch.randn(2, 3, 64, 64), method="grad_cam")
    assert e.layer == "layer4" and e.maps.shape == (2, 1, 2, 2)


def test_layer_as_module_and_name_agree():
    net = _net("tiny2d")
    x = _input(2)
    by_module = camscope.explain(net, x, method="grad_cam_pp", layer=net.conv1)
    by_name = camscope.explain(net, x, method="grad_cam_pp", layer="conv1")
    assert by_module.layer == "conv1"
    assert_close(by_module.maps, by_name.maps)


def test_works_under_no_grad_and_inference_mode():
    net = _net("tiny2d")
    x = _input(2)
    reference = camscope.explain(net, x, method="respond_cam", targets="all")
    with torch.no_grad():
        inside = camscope.explain(net, x, method="respond_cam", targets="all")
        assert not torch.is_grad_enabled()
    assert_close(inside.maps, reference.maps)
    with torch.inference_mode():
        frozen_x = x.clone()
        inside = camscope.explain(net, frozen_x, method="respond_cam", targets="all")
        assert torch.is_inference_mode_enabled()
    assert_close(inside.maps, reference.maps)


def test_eval_mode_by_default_and_optional():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Dropout(0.9), nn.Flatten(), nn.Linear(4 * 64, 3)
    ).double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    net.train()
    first = camscope.explain(net, x, method="grad_cam", layer="0", targets="all")
    second = camscope.explain(net, x, method="grad_cam", layer="0", targets="all")
    assert_close(first.maps, second.maps)  # eval: dropout off, deterministic
    assert net.training
    noisy = camscope.explain(net, x, method="grad_cam", layer="0", targets="all", eval_mode=False)
    assert not torch.allclose(noisy.maps, first.maps)


def test_float32_model_keeps_float32():
    net = _net("tiny3d", torch.float32)
    e = camscope.explain(net, _input(3, dtype=torch.float32), method="grad_cam")
    assert e.maps.dtype == torch.float32 and e.scores.dtype == torch.float32


def test_inputs_requires_grad_flag_untouched():
    net = _net("tiny2d")
    x = _input(2).requires_grad_(True)
    camscope.explain(net, x, method="grad_cam")
    assert x.requires_grad and x.grad is None


# ---------------------------------------------------------------------------------------------
# Errors: a CamscopeError that says what to do.


def test_unknown_layer_lists_names():
    with pytest.raises(LayerError, match=r"Did you mean 'conv2'.*Available: conv1, relu1"):
        camscope.explain(_net("tiny2d"), _input(2), method="grad_cam", layer="conv_2")


def test_foreign_module_as_layer():
    with pytest.raises(LayerError, match="not a submodule"):
        camscope.explain(_net("tiny2d"), _input(2), method="grad_cam", layer=nn.ReLU())


def test_unknown_method_lists_names():
    with pytest.raises(MethodError, match=r"Did you mean 'grad_cam'.*Available"):
        camscope.explain(_net("tiny2d"), _input(2), method="gradcam")


def test_kebab_case_method_names():
    e = camscope.explain(_net("tiny2d"), _input(2), method="Grad-CAM-PP")
    assert e.method == "grad_cam_pp"


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([0, 1], "2 targets were given for a batch of 3"),
        (torch.zeros(2, 2, dtype=torch.long), "do not match a batch of 3"),
        (7, r"class index 7 out of range: the model has 5 classes"),
        ([0, 1, 9], "out of range"),
        (-1, "negative"),
        ("every", "strings accepted are 'all' and 'predicted'"),
        (torch.tensor([0.5, 1.0, 2.0]), "must be integers"),
        (True, "not a bool"),
        (lambda out: out[..., None], r"returned shape \(3, 5, 1\); expected \(B,\) or \(B, T\)"),
        (lambda out: 3.0, "must return a tensor"),
    ],
)
def test_bad_targets(targets, message):
    with pytest.raises(TargetError, match=message):
        camscope.explain(_net("tiny2d"), _input(2), method="grad_cam", targets=targets)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (torch.randn(1, 16, 16, dtype=torch.float64), r"images \(B, C, H, W\)"),
        (torch.randn(1, 1, 1, 16, 16, 16, dtype=torch.float64), "or volumes"),
        (torch.ones(1, 1, 16, 16, dtype=torch.uint8), "floating point"),
        (torch.randn(1, 1, 16, 16, dtype=torch.float32), "float32 but the model's"),
        (torch.full((1, 1, 16, 16), float("nan"), dtype=torch.float64), "256 NaN or infinite"),
        (torch.zeros(0, 1, 16, 16, dtype=torch.float64), "batch size 0"),
        ([[1.0]], "must be a torch.Tensor"),
    ],
)
def test_bad_inputs(inputs, message):
    with pytest.raises(InputError, match=message):
        camscope.explain(_net("tiny2d"), inputs, method="grad_cam")


def test_infinite_input():
    x = _input(2)
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(InputError, match="1 NaN or infinite"):
        camscope.explain(_net("tiny2d"), x, method="grad_cam")


def test_layer_the_target_does_not_depend_on():
    net = SideBranch().double()
    with pytest.raises(LayerError, match="do not depend on layer 'side'"):
        camscope.explain(net, torch.randn(2, 1, 8, 8).double(), method="grad_cam", layer="side")


def test_layer_that_does_not_run():
    net = SideBranch().double()
    with pytest.raises(LayerError, match="'unused' did not run"):
        camscope.explain(net, torch.randn(2, 1, 8, 8).double(), method="grad_cam", layer="unused")


def test_layer_that_runs_twice():
    net = SharedReLU().double()
    with pytest.raises(LayerError, match="runs more than once"):
        camscope.explain(net, torch.randn(2, 1, 8, 8).double(), method="grad_cam", layer="relu")


def test_layer_without_spatial_axes():
    with pytest.raises(LayerError, match="no spatial"):
        camscope.explain(_net("tiny2d"), _input(2), method="grad_cam", layer="fc")


def test_cam_on_flatten_head_is_refused():
    with pytest.raises(MethodError, match="global average pooling"):
        camscope.explain(_net("tiny2d"), _input(2), method="cam")


def test_model_failure_is_wrapped_with_cause():
    net = _net("tiny2d")
    with pytest.raises(ModelError, match="mat1 and mat2") as info:
        camscope.explain(net, _input(2, size=12), method="grad_cam", layer="conv1")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "the inputs' size (12, 12) does not fit" in str(info.value)  # and what to do
    assert "input_size" in str(info.value)


def test_dense_outputs_take_class_targets_summed_over_their_predicted_region():
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 2, 1)).double()
    x = _input(2)
    e = camscope.explain(net, x, method="grad_cam", layer="0")  # default: every class
    with torch.no_grad():
        out = net(x)
    predicted = out.argmax(1)
    by_hand = torch.stack([(out[:, c] * (predicted == c)).flatten(1).sum(1) for c in (0, 1)], 1)
    torch.testing.assert_close(e.scores, by_hand)
    assert e.targets.tolist() == [[0, 1]] * 3
    one = camscope.explain(net, x, method="saliency", targets=1)
    torch.testing.assert_close(one.scores[:, 0], by_hand[:, 1])
    with pytest.raises(TargetError, match="one per position"):
        camscope.explain(net, x, method="grad_cam", layer="0", targets="predicted")
    region = torch.zeros(16, 16, dtype=torch.bool)
    region[4:9, 2:7] = True
    mine = camscope.explain(
        net, x, method="grad_cam", layer="0", targets=camscope.targets.region_target(1, region)
    )
    torch.testing.assert_close(mine.scores[:, 0], (out[:, 1] * region).flatten(1).sum(1))
    voxel = camscope.explain(
        net, x, method="saliency", targets=camscope.targets.voxel_target(0, (3, 5))
    )
    torch.testing.assert_close(voxel.scores[:, 0], out[:, 0, 3, 5])


class _DictOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.conv(x)}


def test_class_targets_need_logits():
    net = _DictOutput().double()
    with pytest.raises(TargetError, match="callable target"):
        camscope.explain(net, _input(2), method="grad_cam", layer="conv")
    # a segmentation-style callable target works
    e = camscope.explain(
        net,
        _input(2),
        method="grad_cam",
        layer="conv",
        targets=lambda out: out["out"][:, 1].mean((1, 2)),
    )
    assert e.maps.shape == (3, 1, 16, 16)


def test_every_kind_of_bad_call_raises_its_own_camscope_error():
    net, x = _net("tiny2d"), _input(2)

    class Broken(nn.Module):
        def forward(self, inputs):
            raise RuntimeError("boom")

    bad_calls = [
        (InputError, lambda: camscope.explain(net, x * float("nan"), method="saliency")),
        (LayerError, lambda: camscope.explain(net, x, method="grad_cam", layer="nowhere")),
        (TargetError, lambda: camscope.explain(net, x, method="grad_cam", targets=99)),
        (MethodError, lambda: camscope.explain(net, x, method="no_such_method")),
        (ModelError, lambda: camscope.explain(Broken(), x, method="saliency")),
    ]
    for expected, call in bad_calls:
        with pytest.raises(CamscopeError) as caught:  # one except clause catches them all
            call()
        assert type(caught.value) is expected, (expected, caught.value)
        assert str(caught.value)  # and each says what went wrong


def test_no_warnings_on_normal_use():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        camscope.explain(_net("tiny3d"), _input(3), method="respond_cam", targets="all")


@pytest.mark.parametrize("method", camscope.list_methods())
def test_every_method_takes_dense_class_targets(method):
    if method == "cam":
        pytest.skip("CAM needs global average pooling then a linear layer")
    if method in ATTENTION_METHODS:
        pytest.skip(
            "a convolutional net has no attention (chefer on UNETR's dense output: "
            "tests/methods/test_attention.py)"
        )
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 1)).double()
    x = _input(2)[:, :, :8, :8].contiguous()
    info = camscope.get_method(method)
    options: dict = {"layer": "0"} if info.needs_layer else {}
    if method in ("score_cam", "ss_cam", "is_cam"):  # probabilities need (B, K) logits
        options["weighting"] = "score"
    if method == "ss_cam":
        options["n_samples"] = 2
    if method == "kernel_shap":
        options["n_samples"] = 16
    e = camscope.explain(net, x, method=method, targets=1, **options)
    with torch.no_grad():
        out = net(x)
    expected = (out[:, 1] * (out.argmax(1) == 1)).flatten(1).sum(1)
    torch.testing.assert_close(e.scores[:, 0], expected)
    assert torch.isfinite(e.maps).all()
