"""The ReLU backward rules (guided backpropagation, Deconvnet) and the models they refuse."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "guided_grad_cam"])
def test_a_model_without_relu_is_refused_by_the_relu_rules(method):
    """MONAI's UNet uses PReLU: guided backprop would silently equal the gradient there."""
    import camscope
    from camscope.errors import MethodError

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.PReLU(), torch.nn.Conv2d(3, 2, 1),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    ).eval()  # fmt: skip
    x = torch.randn(2, 1, 8, 8)
    layer = {"layer": "0"} if method == "guided_grad_cam" else {}
    with pytest.raises(MethodError, match=r"ran none \(its activations: PReLU\)"):
        camscope.explain(model, x, method=method, targets=1, **layer)
    camscope.explain(model, x, method="saliency", targets=1)  # the plain gradient is fine
