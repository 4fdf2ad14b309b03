"""Agreement with peer libraries where both apply, and the documented places where they differ.

Captum and torch-cam compute Grad-CAM the same way camscope does (up to the ReLU they apply).
For Grad-CAM++ the peers differ from eq. 19 of Chattopadhay et al. (docs: peers.md):
torch-cam never divides (α stays g²) and sums A·g³ over positions; pytorch-grad-cam adds ε = 1e-6
to the denominator, which changes α wherever g² is not much larger than 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import camscope
from camscope.models import create_model
from tests.conftest import assert_close

captum_layer = pytest.importorskip("captum.attr")
torchcam_methods = pytest.importorskip("torchcam.methods")
gradcam_pp = pytest.importorskip("pytorch_grad_cam.grad_cam_plusplus")


def _setup(spatial_dims: int):
    model = create_model(f"tiny{spatial_dims}d", num_classes=4).double().eval()
    x = torch.randn(3, 1, *([16] * spatial_dims), dtype=torch.float64)
    targets = [0, 3, 1]
    return model, x, targets


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_grad_cam_equals_captum_layer_grad_cam(spatial_dims):
    model, x, targets = _setup(spatial_dims)
    ours = camscope.explain(model, x, method="grad_cam", layer="pool2", targets=targets)
    theirs = captum_layer.LayerGradCam(model, model.pool2).attribute(
        x, target=targets, relu_attributions=False
    )
    assert_close(ours.maps, theirs)


@pytest.mark.parametrize(
    ("ours_name", "theirs_name"),
    [("grad_cam", "GradCAM"), ("xgrad_cam", "XGradCAM"), ("layer_cam", "LayerCAM")],
)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_equals_torchcam_after_relu(ours_name, theirs_name, spatial_dims):
    model, x, targets = _setup(spatial_dims)
    ours = camscope.explain(model, x, method=ours_name, layer="pool2", targets=targets)
    extractor = getattr(torchcam_methods, theirs_name)(model, target_layer="pool2")
    try:
        with torch.enable_grad():
            scores = model(x)
            (theirs,) = extractor(class_idx=targets, scores=scores, normalized=False)
    finally:
        extractor.remove_hooks()
    # torch-cam uses ε = 1e-7 in XGrad-CAM's denominator; sums here are O(1), so 1e-6 is plenty.
    torch.testing.assert_close(ours.relu().maps[:, 0], theirs, rtol=1e-6, atol=1e-9)


def _activations_and_gradients(scale: float):
    generator = torch.Generator().manual_seed(5)
    activations = torch.rand(2, 6, 5, 5, generator=generator, dtype=torch.float64)
    gradients = scale * torch.randn(2, 6, 5, 5, generator=generator, dtype=torch.float64)
    return activations, gradients


def test_torchcam_grad_cam_pp_never_divides():
    activations, gradients = _activations_and_gradients(1.0)
    extractor = torchcam_methods.GradCAMpp(torch.nn.Sequential(torch.nn.Identity()), "0")
    extractor.remove_hooks()
    extractor.hook_a, extractor.hook_g = [activations], [gradients.clone()]
    extractor._backprop = lambda *args, **kwargs: None  # use the tensors set above
    (weights,) = extractor._get_weights(0, None)
    never_divided = (gradients.square() * torch.relu(gradients)).sum(dim=(2, 3))
    assert_close(weights, never_divided)
    ours = camscope.methods.grad_cam_pp(activations, gradients)
    theirs = camscope.methods.cam_family.weighted_sum(weights, activations, spatial_dims=2)
    assert not torch.allclose(ours, theirs, rtol=0.05)


def _pytorch_grad_cam_pp(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    weights = gradcam_pp.GradCAMPlusPlus.get_cam_weights(
        None, None, None, None, activations.numpy(), gradients.numpy()
    )
    return camscope.methods.cam_family.weighted_sum(
        torch.from_numpy(np.asarray(weights)), activations, spatial_dims=2
    )


def test_pytorch_grad_cam_pp_agrees_only_for_large_gradients():
    activations, gradients = _activations_and_gradients(1.0)
    torch.testing.assert_close(
        _pytorch_grad_cam_pp(activations, gradients),
        camscope.methods.grad_cam_pp(activations, gradients),
        rtol=1e-4,
        atol=1e-6,
    )
    # Gradients of order 1e-3 are common (e.g. at the last block of a classifier): ε then
    # dominates 2g² and the peer's α is far from eq. 19. camscope's value at this scale is checked
    # against eq. 19 with autograd derivatives in tests/methods/test_cam_family.py.
    small_a, small_g = _activations_and_gradients(1e-3)
    ours = camscope.methods.grad_cam_pp(small_a, small_g)
    assert not torch.allclose(_pytorch_grad_cam_pp(small_a, small_g), ours, rtol=0.05)


# -- Input-space methods (Captum) and Score-CAM (pytorch-grad-cam) ------------------------------


class _FunctionalNet(torch.nn.Module):
    """tiny2d/tiny3d's structure with functional ReLUs; Captum's module hooks never see them."""

    def __init__(self, modular: torch.nn.Module) -> None:
        super().__init__()
        self.inner = modular

    def forward(self, x):
        m = self.inner
        h = m.pool1(torch.nn.functional.relu(m.conv1(x)))
        h = m.pool2(torch.relu(m.conv2(h)))
        return m.fc(m.flatten(h))


def _captum_per_target(attribution, x, targets, **options):
    x = x.clone().requires_grad_(True)  # else Captum warns that it set the flag
    return torch.stack(
        [attribution.attribute(x, target=[t] * len(x), **options) for t in targets], dim=1
    ).detach()


CAPTUM_RELU_HOOKS = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")


@CAPTUM_RELU_HOOKS
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("saliency", "Saliency"),
        ("deconvnet", "Deconvolution"),
        ("guided_backprop", "GuidedBackprop"),
    ],
)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gradient_rules_equal_captum(ours, theirs, spatial_dims):
    model, x, _ = _setup(spatial_dims)
    e = camscope.explain(model, x, method=ours, targets="all")
    options = {"abs": False} if theirs == "Saliency" else {}
    reference = _captum_per_target(getattr(captum_layer, theirs)(model), x, range(4), **options)
    assert_close(e.maps, reference)


@CAPTUM_RELU_HOOKS
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_guided_rules_catch_functional_relus_where_captum_does_not(spatial_dims):
    model, x, _ = _setup(spatial_dims)
    functional = _FunctionalNet(model)
    for ours, theirs in (("guided_backprop", "GuidedBackprop"), ("deconvnet", "Deconvolution")):
        with_modules = camscope.explain(model, x, method=ours, targets="all")
        with_functions = camscope.explain(functional, x, method=ours, targets="all")
        assert_close(with_functions.maps, with_modules.maps)
        captum_functional = _captum_per_target(
            getattr(captum_layer, theirs)(functional), x, range(4)
        )
        plain = camscope.explain(functional, x, method="saliency", targets="all")
        assert_close(captum_functional, plain.maps)  # Captum silently fell back to gradients
        assert not torch.allclose(captum_functional, with_modules.maps)


@CAPTUM_RELU_HOOKS
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_guided_grad_cam_equals_captum(spatial_dims):
    model, x, _ = _setup(spatial_dims)
    e = camscope.explain(
        model, x, method="guided_grad_cam", layer="pool2", targets="all", upsample_mode="nearest"
    )
    reference = _captum_per_target(captum_layer.GuidedGradCam(model, model.pool2), x, range(4))
    assert_close(e.maps, reference)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_integrated_gradients_equals_captum_riemann_right(spatial_dims):
    model, x, _ = _setup(spatial_dims)
    baseline = torch.full_like(x[:1], 0.3)
    e = camscope.explain(
        model,
        x,
        method="integrated_gradients",
        targets="all",
        steps=20,
        baseline=baseline,
        batch_size=7,
    )
    ig = captum_layer.IntegratedGradients(model)
    maps, deltas = [], []
    for t in range(4):
        attribution, delta = ig.attribute(
            x.clone().requires_grad_(True),
            baselines=baseline.expand_as(x),
            target=[t] * len(x),
            n_steps=20,
            method="riemann_right",
            return_convergence_delta=True,
        )
        maps.append(attribution)
        deltas.append(delta)
    # Captum builds the path's α in float32, so agreement is to ~1e-8 relative, not 1e-10.
    torch.testing.assert_close(e.maps, torch.stack(maps, dim=1).detach(), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(
        e.extras["completeness_gap"], torch.stack(deltas, dim=1).abs(), rtol=1e-4, atol=1e-7
    )


@pytest.mark.parametrize("spatial_dims", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_occlusion_equals_captum(spatial_dims):
    model, x, _ = _setup(spatial_dims)
    window, stride = (3,) * spatial_dims, (2,) * spatial_dims  # 16 = 0..14 step 2, last cropped
    e = camscope.explain(
        model,
        x,
        method="occlusion",
        targets="all",
        window=window,
        stride=stride,
        baseline=0.1,
        batch_size=50,
    )
    reference = _captum_per_target(
        captum_layer.Occlusion(model),
        x,
        range(4),
        sliding_window_shapes=(1, *window),
        strides=(1, *stride),
        baselines=0.1,
        perturbations_per_eval=50,
    )
    # Captum divides by its window counts in float32.
    torch.testing.assert_close(e.maps, reference.double(), rtol=1e-6, atol=1e-9)


def test_score_cam_weights_equal_pytorch_grad_cam():
    score_cam_module = pytest.importorskip("pytorch_grad_cam.score_cam")
    targets_module = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    model = create_model("tiny2d", num_classes=4).eval()
    x = torch.randn(2, 1, 16, 16)
    e = camscope.explain(
        model,
        x,
        method="score_cam",
        layer="relu2",
        targets=[1, 3],
        weighting="channel_softmax",
        align_corners=True,
    )
    peer = score_cam_module.ScoreCAM(model=model, target_layers=[model.relu2])
    try:
        with torch.no_grad():
            activations = model.relu2.inplace and None
            trunk = torch.nn.Sequential(model.conv1, model.relu1, model.pool1, model.conv2)
            activations = torch.relu(trunk(x)).numpy()
        weights = peer.get_cam_weights(
            x,
            model.relu2,
            [targets_module.ClassifierOutputTarget(c) for c in (1, 3)],
            activations,
            None,
        )
    finally:
        peer.activations_and_grads.release()
    torch.testing.assert_close(
        e.extras["weights"][:, 0], torch.from_numpy(weights), rtol=1e-4, atol=1e-6
    )


@pytest.mark.slow
def test_kernel_shap_agrees_with_captum():
    """camscope enumerates the 14 coalitions of 4 segments (exact Shapley values); Captum samples
    coalitions from the Shapley kernel, so it agrees up to its sampling error."""
    model, x, _ = _setup(2)
    x = x[:1]
    segments = torch.zeros(16, 16, dtype=torch.long)
    segments[8:] += 1
    segments[:, 8:] += 2
    ours = camscope.explain(model, x, method="kernel_shap", targets=2, segments=segments)
    torch.manual_seed(0)
    theirs = captum_layer.KernelShap(model).attribute(
        x, target=2, feature_mask=segments[None, None], n_samples=3000, baselines=0.0
    )
    scale = ours.maps.abs().max()
    torch.testing.assert_close(
        ours.maps[0, 0], theirs[0].double(), rtol=0, atol=float(0.05 * scale)
    )


@pytest.mark.slow
def test_gradient_shap_agrees_with_captum_in_expectation():
    """Both average gradients at random points of the path from a zero baseline; with many draws
    both approach the same expectation (Integrated Gradients' integral)."""
    model, x, _ = _setup(2)
    x = x[:1]
    ours = camscope.explain(model, x, method="gradient_shap", targets=1, n_samples=3000)
    torch.manual_seed(0)
    theirs = (
        captum_layer.GradientShap(model)
        .attribute(
            x.clone().requires_grad_(True), baselines=torch.zeros_like(x), target=1, n_samples=3000
        )
        .detach()
    )
    error = (ours.maps[0, 0] - theirs[0]).norm() / theirs.norm()
    assert error < 0.1


@CAPTUM_RELU_HOOKS
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_guided_grad_cam_nearest_equals_captum_at_non_integer_ratios(spatial_dims):
    conv = torch.nn.Conv2d if spatial_dims == 2 else torch.nn.Conv3d
    pool = torch.nn.MaxPool2d if spatial_dims == 2 else torch.nn.MaxPool3d
    model = (
        torch.nn.Sequential(
            conv(1, 4, 3, padding=1),
            torch.nn.ReLU(),
            pool(2),  # 14 → 7
            conv(4, 4, 3),  # 7 → 5: 14 / 5 = 2.8 input pixels per cell
            torch.nn.ReLU(),
            torch.nn.Flatten(),
            torch.nn.Linear(4 * 5**spatial_dims, 3),
        )
        .double()
        .eval()
    )
    x = torch.randn(2, 1, *([14] * spatial_dims), dtype=torch.float64)
    e = camscope.explain(
        model, x, method="guided_grad_cam", layer="3", targets="all", upsample_mode="nearest"
    )
    reference = _captum_per_target(captum_layer.GuidedGradCam(model, model[3]), x, range(3))
    assert (e.maps != 0).float().mean() > 0.05  # a map to compare, not zeros
    assert_close(e.maps, reference)
