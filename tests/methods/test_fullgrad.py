"""FullGrad: equal to pytorch-grad-cam's on a Conv2d/BatchNorm2d network, and by hand in 3D."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import camscope
from camscope.methods.fullgrad import bias_of


def _conv_bn_net(stride: int = 1) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 5, 3, stride=stride, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4),
    )  # fmt: skip
    for module in model:
        if isinstance(module, nn.BatchNorm2d):  # statistics that make the folded bias matter
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_()
            module.bias.data.normal_()
    return model.eval()


@pytest.mark.parametrize("stride", [1, 2])
def test_full_grad_equals_pytorch_grad_cam(stride):
    """Also where a layer's grid is coarser than the input's (``stride=2``): each channel is
    scaled on its own grid, then resized (bilinear), as the peer does."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    model_targets = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    model = _conv_bn_net(stride)
    x = torch.randn(2, 3, 16, 16)
    e = camscope.explain(model, x, method="full_grad", targets=[1, 3])
    assert e.extras["layers"] == ["0", "1", "3", "4"] and e.layer == "input and biases"
    ours = e.maps[:, 0].numpy()
    ours = ours - ours.min(axis=(1, 2), keepdims=True)
    ours = ours / (1e-7 + ours.max(axis=(1, 2), keepdims=True))  # its final scaling
    peer = pgc.FullGrad(model, [])
    theirs = peer(x, targets=[model_targets.ClassifierOutputTarget(c) for c in (1, 3)])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_a_batch_norm_bias_has_its_statistics_folded_in():
    norm = _conv_bn_net()[1]
    expected = norm.bias - norm.running_mean * norm.weight / torch.sqrt(norm.running_var + 1e-5)
    torch.testing.assert_close(bias_of(norm), expected)
    assert bias_of(norm.train()) is None


def test_full_grad_in_3d_by_hand():
    """``y_t = Σ_{c,s} W[t,c,s] (a_c x_s + b_c) + d_t`` (a 1×1×1 convolution, then linear):
    ``∂y_t/∂x_s = Σ_c W[t,c,s] a_c`` and the bias part of channel ``c`` is ``|W[t,c,s] b_c|``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 2, 1), nn.Flatten(), nn.Linear(2 * 27, 3)).double().eval()
    x = torch.randn(2, 1, 3, 3, 3, dtype=torch.float64)
    e = camscope.explain(model, x, method="full_grad", targets="all", rescale=False)
    a, b = model[0].weight.view(2), model[0].bias
    w = model[2].weight.view(3, 2, 3, 3, 3)
    gradient = torch.einsum("tcdhw,c->tdhw", w, a)
    expected = (x * gradient[None]).abs() + (w * b.view(1, 2, 1, 1, 1)).abs().sum(1)[None]
    torch.testing.assert_close(e.maps, expected)


def test_an_in_place_relu_after_a_layer_does_not_change_the_map():
    """torchvision's CNNs run ``ReLU(inplace=True)`` right after each batch norm: the gradient
    read at the batch norm's output must be the one before the ReLU, as with ``inplace=False``
    (pytorch-grad-cam reads it after the ReLU there)."""
    x = torch.randn(2, 3, 16, 16)
    maps = []
    for inplace in (False, True):
        model = _conv_bn_net(stride=2)
        for index, module in enumerate(model):
            if isinstance(module, nn.ReLU):
                model[index] = nn.ReLU(inplace=inplace)
        maps.append(camscope.explain(model, x, method="full_grad", targets="all").maps)
    torch.testing.assert_close(maps[1], maps[0])


def test_exported_and_torchscript_models_are_refused():
    import warnings

    from camscope.errors import MethodError

    model = _conv_bn_net()
    x = torch.randn(1, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        scripted = torch.jit.script(model)
    for compiled in (scripted, torch.export.export(model, (x,)).module()):
        with pytest.raises(MethodError, match="FullGrad reads the gradient at every convolution"):
            camscope.explain(compiled, x, method="full_grad")
