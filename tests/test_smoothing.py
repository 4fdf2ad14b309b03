"""SmoothGrad and VarGrad around any method."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camscope
from camscope.errors import InputError
from camscope.models import create_model


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_linear_model_smoothgrad_is_its_gradient_and_vargrad_zero(spatial_dims):
    size = (5,) * spatial_dims
    model = nn.Sequential(nn.Flatten(), nn.Linear(5**spatial_dims, 3)).double()
    x = torch.randn(2, 1, *size, dtype=torch.float64)
    plain = camscope.explain(model, x, method="saliency", targets="all")
    smoothed = camscope.smooth(model, x, method="saliency", targets="all", noise_samples=6)
    torch.testing.assert_close(smoothed.maps, plain.maps)
    assert smoothed.method == "smoothgrad(saliency)" and smoothed.per_channel
    spread = camscope.smooth(model, x, method="saliency", kind="vargrad", noise_samples=6)
    assert float(spread.maps.abs().max()) < 1e-20


def test_mean_of_the_noisy_copies_by_hand_chunked_or_not_and_batch_independent():
    torch.manual_seed(0)
    model = create_model("tiny2d", num_classes=3).double().eval()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    whole = camscope.smooth(model, x, method="grad_cam", targets=[0, 2], noise_samples=5)
    chunked = camscope.smooth(
        model, x, method="grad_cam", targets=[0, 2], noise_samples=5, budget=3 * 256
    )
    assert chunked.extras["chunks"] == 4
    torch.testing.assert_close(whole.maps, chunked.maps)
    alone = camscope.smooth(model, x[1:], method="grad_cam", targets=[2], noise_samples=5)
    torch.testing.assert_close(whole.maps[1:], alone.maps)
    noise = torch.randn(
        (5, 1, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    span = float(x[0].max() - x[0].min())
    copies = x[0] + noise * 0.15 * span
    by_hand = camscope.explain(model, copies, method="grad_cam", targets=0).maps.mean(0)
    torch.testing.assert_close(whole.maps[0], by_hand)
    vargrad = camscope.smooth(model, x, method="grad_cam", kind="vargrad", noise_samples=5)
    assert float(vargrad.maps.min()) >= 0
    assert vargrad.upsample().maps.shape == (2, 1, 16, 16)


def test_bad_arguments():
    model = create_model("tiny2d", num_classes=3)
    x = torch.randn(1, 1, 16, 16)
    with pytest.raises(camscope.InputError, match="noise_samples"):
        camscope.smooth(model, x, method="saliency", noise_samples=0)
    with pytest.raises(camscope.InputError, match="kind"):
        camscope.smooth(model, x, method="saliency", kind="median")  # type: ignore[arg-type]


def test_smooth_grad_cam_pp_without_noise_is_grad_cam_pp():
    model = create_model("tiny2d", num_classes=3, input_size=16).eval()
    x = torch.randn(2, 1, 16, 16)
    plain = camscope.explain(model, x, method="grad_cam_pp", targets="all")
    smoothed = camscope.smooth(
        model, x, method="grad_cam_pp", target="gradients", noise_std=0.0, targets="all"
    )
    assert smoothed.method == "smooth_grad_cam_pp"
    torch.testing.assert_close(smoothed.maps, plain.maps, rtol=1e-5, atol=1e-6)


def test_smooth_grad_cam_pp_averages_the_gradient_moments_of_the_noisy_copies():
    """The moments ``mean_i G_i^p`` by hand, one noisy copy at a time, with the same draws."""
    model = create_model("tiny3d", num_classes=3, input_size=16).double().eval()
    x = torch.randn(2, 1, 16, 16, 16, dtype=torch.float64)
    count, std = 3, 0.2
    e = camscope.explain(
        model, x, method="smooth_grad_cam_pp", targets=[0, 2], noise_samples=count,
        noise_std=std, seed=5, batch_size=2,
    )  # fmt: skip
    layer = e.layer
    noise = torch.randn((count, *x.shape[1:]), generator=torch.Generator().manual_seed(5))
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(-1, 1, 1, 1, 1)
    module = dict(model.named_modules())[layer]
    seen = {}
    handle = module.register_forward_hook(lambda m, i, o: seen.__setitem__("a", o))
    moments = [0.0, 0.0, 0.0]
    for i in range(count):
        noisy = x + noise[i].double() * std * span
        out = model(noisy)
        (g,) = torch.autograd.grad(out[[0, 1], [0, 2]].sum(), seen["a"])
        moments = [m + g**p / count for m, p in zip(moments, (1, 2, 3), strict=True)]
    with torch.no_grad():
        model(x)
    handle.remove()
    a = seen["a"].detach()
    d1, d2, d3 = moments
    alpha = d2 / (2 * d2 + a.sum(dim=(2, 3, 4), keepdim=True) * d3)
    alpha = torch.nan_to_num(alpha)
    weights = (alpha * torch.relu(d1)).sum(dim=(2, 3, 4))
    expected = (weights[..., None, None, None] * a).sum(1)
    torch.testing.assert_close(e.maps[:, 0], expected)


def test_smooth_of_gradients_refuses_other_methods():
    model = create_model("tiny2d", num_classes=3, input_size=16).eval()
    with pytest.raises(InputError, match="Grad-CAM"):
        camscope.smooth(model, torch.randn(1, 1, 16, 16), method="grad_cam", target="gradients")


def test_smooth_takes_progress_as_explain_does():
    model = create_model("tiny2d", num_classes=3).eval()
    x = torch.randn(2, 1, 16, 16)
    quiet = camscope.smooth(model, x, method="saliency", noise_samples=3, progress=False)
    loud = camscope.smooth(model, x, method="saliency", noise_samples=3)
    torch.testing.assert_close(quiet.maps, loud.maps)
