"""The CAM variants the peers ship: element-wise Grad-CAM, EigenCAM, Eigen-Grad-CAM, KPCA-CAM,
Ablation-CAM and Finer-CAM, against hand-derived values, loops written out, and the peers'
own implementations (pytorch-grad-cam, torch-cam) on the same activations and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import camscope
from camscope.methods import eigen_cam, grad_cam_elementwise
from camscope.models import create_model
from tests.conftest import assert_close
from tests.nets import Tokens

# -- pure formulas, by hand -----------------------------------------------------------------------


def test_grad_cam_elementwise_clips_each_product_before_the_channel_sum():
    a = torch.tensor([[[[1.0, 2.0]], [[3.0, -1.0]]]])  # (1, C=2, 1, 2)
    g = torch.tensor([[[[2.0, -1.0]], [[-1.0, -4.0]]]])
    # position 0: ReLU(2) + ReLU(-3) = 2; position 1: ReLU(-2) + ReLU(4) = 4
    torch.testing.assert_close(grad_cam_elementwise(a, g), torch.tensor([[[2.0, 4.0]]]))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_eigen_cam_of_rank_one_activations_is_the_spatial_factor(spatial_dims):
    """``A^k_s = u_s c_k`` with ``u`` centred: ``M = u cᵀ``, ``v₁ = ±c/‖c‖`` and ``M v₁ = ±u ‖c‖``;
    the sign rule picks ``+`` when ``Σ_k c_k > 0`` (the map then correlates with ``Σ_k A^k``)."""
    shape = (3, 4, 2)[:spatial_dims]
    u = torch.randn(*shape, dtype=torch.float64)
    u = u - u.mean()
    c = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    a = (c.view(3, *[1] * spatial_dims) * u)[None]  # (1, 3, *s)
    g = torch.randn(1, 2, 3, *shape, dtype=torch.float64)  # two targets: the same map
    maps = eigen_cam(a[:, None], g, spatial_dims=spatial_dims)
    assert maps.shape == (1, 2, *shape)
    for t in range(2):
        assert_close(maps[0, t], u * c.norm())
    assert_close(eigen_cam(-a[:, None], g, spatial_dims=spatial_dims)[0, 0], -u * c.norm())


# -- peers: pytorch-grad-cam on the same activations and gradients --------------------------------


def _resnet_activations_and_gradients(targets):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(len(targets), 3, 64, 64)
    seen = {}
    handle = model.layer4.register_forward_hook(lambda m, i, o: seen.__setitem__("a", o))
    out = model(x)
    handle.remove()
    a = seen["a"]
    g = torch.stack(
        [torch.autograd.grad(out[b, t], a, retain_graph=True)[0][b] for b, t in enumerate(targets)]
    )
    return model, x, a.detach(), g


@pytest.mark.parametrize(
    ("ours", "theirs", "up_to_sign"),
    [
        ("eigen_cam", "EigenCAM", True),
        ("eigen_grad_cam", "EigenGradCAM", True),
        ("grad_cam_elementwise", "GradCAMElementWise", False),
        ("kpca_cam", "KPCA_CAM", True),
    ],
)
def test_projections_equal_pytorch_grad_cam(ours, theirs, up_to_sign):
    pgc = pytest.importorskip("pytorch_grad_cam")
    model_targets = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    targets = [3, 7]
    model, x, a, g = _resnet_activations_and_gradients(targets)
    peer = getattr(pgc, theirs)(model, [model.layer4])
    try:
        reference = peer.get_cam_image(
            x,
            model.layer4,
            [model_targets.ClassifierOutputTarget(t) for t in targets],
            a.numpy(),
            g.numpy(),
            False,
        )
    finally:
        peer.activations_and_grads.release()
    reference = np.asarray(reference, dtype=np.float64)
    e = camscope.explain(model, x, method=ours, layer="layer4", targets=targets, progress=False)
    maps = e.maps[:, 0].double().numpy()
    if up_to_sign:  # the peer's sign is LAPACK's; camscope's follows its rule
        reference = reference * np.sign((maps * reference).sum(axis=(1, 2), keepdims=True))
    np.testing.assert_allclose(maps, reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())


def test_eigen_cam_in_3d_equals_pytorch_grad_cam_projection():
    svd = pytest.importorskip("pytorch_grad_cam.utils.svd_on_activations")
    model = create_model("tiny3d", num_classes=4).double().eval()
    x = torch.randn(2, 1, 16, 16, 16, dtype=torch.float64)
    e = camscope.explain(model, x, method="eigen_cam", layer="pool2", targets=[0, 1])
    with torch.no_grad():
        seen = {}
        handle = model.pool2.register_forward_hook(lambda m, i, o: seen.__setitem__("a", o))
        model(x)
        handle.remove()
    reference = svd.get_2d_projection(seen["a"].numpy()).astype(np.float64)
    maps = e.maps[:, 0].numpy()
    reference = reference * np.sign((maps * reference).sum(axis=(1, 2, 3), keepdims=True))
    np.testing.assert_allclose(maps, reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())


def _pgc_ablation_weights(model, layer, x, a, targets):
    ablation = pytest.importorskip("pytorch_grad_cam.ablation_cam")
    model_targets = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    peer = ablation.AblationCAM(model, [layer])
    try:
        return peer.get_cam_weights(
            x, layer, [model_targets.ClassifierOutputTarget(t) for t in targets], a, None
        )
    finally:
        peer.activations_and_grads.release()


def test_ablation_cam_weights_equal_pytorch_grad_cam():
    model = create_model("tiny2d", num_classes=4).eval()
    x = torch.randn(3, 1, 16, 16)
    targets = [1, 3, 0]
    e = camscope.explain(model, x, method="ablation_cam", layer="relu2", targets=targets)
    with torch.no_grad():
        seen = {}
        handle = model.relu2.register_forward_hook(lambda m, i, o: seen.__setitem__("a", o))
        model(x)
        handle.remove()
    weights = _pgc_ablation_weights(model, model.relu2, x, seen["a"].numpy(), targets)
    torch.testing.assert_close(
        e.extras["weights"][:, 0], torch.from_numpy(weights), rtol=1e-4, atol=1e-6
    )


@pytest.mark.slow
def test_ablation_cam_weights_equal_pytorch_grad_cam_on_resnet18():
    targets = [3, 7]
    model, x, a, _ = _resnet_activations_and_gradients(targets)
    weights = _pgc_ablation_weights(model, model.layer4, x, a.numpy(), targets)
    e = camscope.explain(
        model, x, method="ablation_cam", layer="layer4", targets=targets, progress=False
    )
    assert e.extras["head_only"]  # layer4 → pooling → fc: the trunk ran once per chunk
    torch.testing.assert_close(
        e.extras["weights"][:, 0], torch.from_numpy(weights), rtol=1e-4, atol=1e-6
    )


# -- Ablation-CAM by hand and by loops ------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_ablation_cam_of_a_pooled_linear_head_by_hand(spatial_dims):
    """``y = b + Σ_k W_k mean_s(A^k)``: zeroing channel ``k`` drops ``W_k mean(A^k)``, so
    ``w_k = W_k mean(A^k) / y``."""
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    pool = nn.AdaptiveAvgPool2d if spatial_dims == 2 else nn.AdaptiveAvgPool3d
    model = nn.Sequential(
        conv(1, 5, 3, padding=1), nn.ReLU(), pool(1), nn.Flatten(), nn.Linear(5, 3)
    ).double().eval()  # fmt: skip
    x = torch.randn(2, 1, *[6] * spatial_dims, dtype=torch.float64)
    e = camscope.explain(model, x, method="ablation_cam", layer="1", targets="all", batch_size=2)
    with torch.no_grad():
        a = model[1](model[0](x))
        y = model(x)
    means = a.flatten(2).mean(-1)  # (B, C)
    w = model[4].weight  # (K, C)
    expected_weights = w[None] * means[:, None, :] / y[..., None]  # (B, K, C)
    assert_close(e.extras["weights"], expected_weights)
    assert_close(e.maps, torch.einsum("bkc,bc...->bk...", expected_weights, a))


class _SkipConcat(nn.Module):
    """A head that concatenates the layer's output with a tensor from below it (a U-Net's skip):
    the head alone cannot take ablated copies, so the whole model runs on each."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(7, 3))

    def forward(self, x):
        skip = self.stem(x)
        return self.head(torch.cat([self.block(skip), skip], dim=1))


def _ablation_loop(model, x, layer, targets):
    """Ablation weights one sample, one channel, one forward pass of the whole model at a time."""
    with torch.no_grad():
        y = model(x).gather(1, targets)
        seen = {}
        handle = layer.register_forward_hook(lambda m, i, o: seen.__setitem__("a", o))
        model(x)
        handle.remove()
        channels = seen["a"].shape[1]
        weights = torch.zeros(len(x), targets.shape[1], channels, dtype=x.dtype)
        for b in range(len(x)):
            for k in range(channels):

                def zero(m, i, o, k=k):
                    o = o.clone()
                    o[:, k] = 0
                    return o

                handle = layer.register_forward_hook(zero)
                out = model(x[b : b + 1])
                handle.remove()
                weights[b, :, k] = (y[b] - out[0, targets[b]]) / y[b]
    return weights


def test_ablation_cam_runs_the_whole_model_where_the_head_takes_a_skip_connection():
    model = _SkipConcat().double().eval()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    e = camscope.explain(model, x, method="ablation_cam", layer="block", targets="all")
    assert e.extras["head_only"] is False
    expected = _ablation_loop(model, x, model.block, e.targets)
    assert_close(e.extras["weights"], expected)


def test_ablation_cam_of_a_token_layer_ablates_the_patch_tokens_only():
    torch.manual_seed(0)
    model = Tokens().double().eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    layout = camscope.tokens((2, 2), prefix=1)
    e = camscope.explain(
        model, x, method="ablation_cam", layer="block", layout=layout, targets=[0, 2]
    )
    with torch.no_grad():
        y = model(x).gather(1, e.targets)
        for k in (0, 5):

            def zero(m, i, o, k=k):
                o = o.clone()
                o[:, 1:, k] = 0  # the class token stays as it was
                return o

            handle = model.block.register_forward_hook(zero)
            out = model(x).gather(1, e.targets)
            handle.remove()
            assert_close(e.extras["weights"][:, :, k], (y - out) / y)


# -- Finer-CAM -----------------------------------------------------------------------------------


def test_finer_cam_is_its_base_on_the_contrastive_score():
    model = create_model("tiny2d", num_classes=6).double().eval()
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    e = camscope.explain(
        model, x, method="finer_cam", layer="pool2", targets=[0, 4, 2], base="respond_cam"
    )
    refs = e.extras["references"]  # (B, 1, 3): the nearest scores, the target excluded
    with torch.no_grad():
        out = model(x)
    for b in range(3):
        distance = (out[b] - out[b, e.targets[b, 0]]).abs()
        distance[e.targets[b, 0]] = float("inf")
        assert refs[b, 0].tolist() == distance.argsort()[:3].tolist()

    def contrast(output):
        rows = torch.arange(3)
        chosen = output[rows, e.targets[:, 0]]
        return chosen - 0.6 * output.gather(1, refs[:, 0]).mean(1)

    direct = camscope.explain(model, x, method="respond_cam", layer="pool2", targets=contrast)
    assert_close(e.maps, direct.maps)
    plain = camscope.explain(model, x, method="finer_cam", layer="pool2", targets="all", gamma=0.0)
    base = camscope.explain(model, x, method="grad_cam", layer="pool2", targets="all")
    assert_close(plain.maps, base.maps)


@pytest.mark.parametrize(("base", "theirs"), [("grad_cam", "GradCAM"), ("layer_cam", "LayerCAM")])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_finer_cam_equals_torchcam_after_relu(base, theirs, spatial_dims):
    methods = pytest.importorskip("torchcam.methods")
    model = create_model(f"tiny{spatial_dims}d", num_classes=6).double().eval()
    x = torch.randn(3, 1, *[16] * spatial_dims, dtype=torch.float64)
    targets = [0, 3, 1]
    ours = camscope.explain(model, x, method="finer_cam", layer="pool2", targets=targets, base=base)
    extractor = methods.FinerCAM(
        model, "pool2", input_shape=x.shape[1:], base_method=getattr(methods, theirs)
    )
    try:
        with torch.enable_grad():
            (reference,) = extractor(class_idx=targets, scores=model(x), normalized=False)
    finally:
        extractor.remove_hooks()
    torch.testing.assert_close(ours.relu().maps[:, 0], reference, rtol=1e-6, atol=1e-9)


def test_finer_cam_refuses_what_it_cannot_contrast():
    model = create_model("tiny2d", num_classes=4).eval()
    x = torch.randn(1, 1, 16, 16)
    with pytest.raises(camscope.MethodError, match="CAM-family"):
        camscope.explain(model, x, method="finer_cam", base="saliency")
    with pytest.raises(camscope.MethodError, match="gamma"):
        camscope.explain(model, x, method="finer_cam", gamma=-1.0)
    with pytest.raises(camscope.MethodError, match="its own references"):
        camscope.explain(model, x, method="finer_cam", targets=1, references=[1, 2])
    with pytest.raises(camscope.TargetError, match="callable"):
        camscope.explain(model, x, method="finer_cam", targets=lambda out: out[:, 0])


# -- SS-CAM and IS-CAM ----------------------------------------------------------------------------


def _torchcam(extractor_name, model, x, targets, **options):
    methods = pytest.importorskip("torchcam.methods")
    extractor = getattr(methods, extractor_name)(model, "relu1", input_shape=x.shape[1:], **options)
    try:
        with torch.no_grad():
            model(x)
            (maps,) = extractor(class_idx=targets, normalized=False)
    finally:
        extractor.remove_hooks()
    return maps


def test_is_cam_equals_torchcam():
    """At a layer of input resolution (no upsampling, where torch-cam scales before and camscope
    after it) the two agree to its ε = 1e-8 in the scaling."""
    model = create_model("tiny2d", num_classes=4).double().eval()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    ours = camscope.explain(
        model, x, method="is_cam", layer="relu1", targets=[1, 3], weighting="channel_softmax"
    )
    reference = _torchcam("ISCAM", model, x, [1, 3])
    torch.testing.assert_close(ours.relu().maps[:, 0], reference, rtol=1e-6, atol=1e-8)


def test_is_cam_is_a_mean_of_score_cams_over_the_scaled_masks():
    """``n_samples = 1``: the one mask is scaled by ``c_1 = 1``: Score-CAM itself."""
    model = create_model("tiny2d", num_classes=4).double().eval()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    one = camscope.explain(model, x, method="is_cam", layer="relu2", targets="all", n_samples=1)
    score = camscope.explain(model, x, method="score_cam", layer="relu2", targets="all")
    assert_close(one.maps, score.maps)


def test_ss_cam_without_noise_is_score_cam_and_its_noise_is_seeded():
    model = create_model("tiny2d", num_classes=4).double().eval()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    quiet = camscope.explain(
        model, x, method="ss_cam", layer="relu2", targets="all", std=0.0, n_samples=3
    )
    score = camscope.explain(model, x, method="score_cam", layer="relu2", targets="all")
    assert_close(quiet.maps, score.maps)
    noisy = [
        camscope.explain(
            model, x, method="ss_cam", layer="relu2", targets=[1, 2], n_samples=4, seed=seed
        ).maps
        for seed in (0, 0, 1)
    ]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], noisy[2])


@pytest.mark.slow
def test_ss_cam_agrees_with_torchcam_in_expectation():
    """Noise of σ = 0.3 in every mask: with 300 draws the channel weights of both (a softmax over
    channels of the mean score) agree within a few percent."""
    model = create_model("tiny2d", num_classes=4).double().eval()
    x = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    ours = camscope.explain(
        model, x, method="ss_cam", layer="relu1", targets=[2], weighting="channel_softmax",
        std=0.3, n_samples=300,
    )  # fmt: skip
    reference = _torchcam("SSCAM", model, x, [2], std=0.3, num_samples=300)
    mine = ours.relu().maps[:, 0]
    assert (mine - reference).abs().amax() < 0.05 * reference.abs().amax()
