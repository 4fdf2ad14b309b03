"""ShapleyCAM: by hand on a quadratic head, equal to pytorch-grad-cam's, Grad-CAM on ReLU heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import camscope
from camscope.errors import MethodError, TargetError


class _Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


def test_shapley_cam_by_hand_on_a_quadratic_head():
    """``y_t = Σ W[t,k,s] A_k(s)²``: ``G = 2 W A`` and ``H A = 2 W A``, so the weight is
    ``mean_s W[t,k,s] A_k(s)`` (Grad-CAM's would be twice that)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 1), _Square(), nn.Flatten(), nn.Linear(2 * 9, 3, bias=False)
    ).double().eval()  # fmt: skip
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    e = camscope.explain(
        model, x, method="shapley_cam", layer="0", targets="all", objective="logit"
    )
    with torch.no_grad():
        a = model[0](x)  # (B, 2, 3, 3)
    w = model[3].weight.detach().view(3, 2, 3, 3)
    weights = (w[None] * a[:, None]).mean(dim=(3, 4))  # (B, T, K)
    torch.testing.assert_close(e.extras["weights"], weights)
    torch.testing.assert_close(e.maps, (weights[..., None, None] * a[:, None]).sum(2))


def test_shapley_cam_is_grad_cam_on_a_relu_head_with_logits():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    ).eval()  # fmt: skip
    x = torch.randn(2, 3, 8, 8)
    ours = camscope.explain(
        model, x, method="shapley_cam", layer="2", targets="all", objective="logit"
    )
    grad = camscope.explain(model, x, method="grad_cam", layer="2", targets="all")
    torch.testing.assert_close(ours.maps, grad.maps)


@pytest.mark.parametrize("objective", ["rest", "logit"])
def test_shapley_cam_equals_pytorch_grad_cam(objective):
    pgc = pytest.importorskip("pytorch_grad_cam")
    model_targets = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.GELU(),
        nn.Conv2d(8, 6, 1), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 5),
    ).double().eval()  # fmt: skip
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    e = camscope.explain(
        model, x, method="shapley_cam", layer="2", targets=[1, 3], objective=objective
    )
    grad = camscope.explain(model, x, method="grad_cam", layer="2", targets=[1, 3])
    assert (e.maps - grad.maps).abs().max() > 0.05 * grad.maps.abs().max()  # H·A matters here
    target = {
        "rest": model_targets.ClassifierOutputReST,
        "logit": model_targets.ClassifierOutputTarget,
    }[objective]
    peer = pgc.ShapleyCAM(model, [model[2]])
    seen = {}
    weights_of = peer.get_cam_weights

    def keep(*args, **kwargs):
        seen["weights"] = weights_of(*args, **kwargs)
        return seen["weights"]

    peer.get_cam_weights = keep
    peer(x, targets=[target(1), target(3)])
    theirs = seen["weights"]  # (B, C) for each sample's target
    ours = e.extras["weights"][:, 0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12 * np.abs(theirs).max())


def test_shapley_cam_refuses_bad_objectives():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 36, 3)).eval()
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(MethodError, match="objective must be one of"):
        camscope.explain(model, x, method="shapley_cam", layer="0", objective="ce")
    with pytest.raises(TargetError, match="objective='logit'"):
        camscope.explain(model, x, method="shapley_cam", layer="0", targets=lambda out: out.sum(1))
