"""The default layer is the last feature map, never a resampler, an activation or the output."""

from __future__ import annotations

import pytest
import torch
import torchvision

import camscope
from camscope.layers import choose_layer


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("resnet18", "layer4"),
        ("vgg11", "features"),
        ("alexnet", "features.10"),  # at 64 px its features end in 1×1
        ("squeezenet1_0", "features"),
        ("mobilenet_v2", "features"),
        ("densenet121", "features"),
    ],
)
def test_torchvision_classifiers(name, layer):
    model = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    assert choose_layer(model, x) == layer
    # VGG at 64 px: a 2×2 map, not avgpool's 7×7 resampling of it
    e = camscope.explain(model, x, method="grad_cam")
    assert e.layer == layer


def test_torchvision_video_model():
    model = torchvision.models.video.r3d_18(weights=None).eval()
    assert choose_layer(model, torch.randn(1, 3, 8, 32, 32)) == "layer4"


def test_dense_output_networks_skip_the_output_itself():
    monai = pytest.importorskip("monai")
    net = monai.networks.nets.UNet(
        spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8, 16), strides=(2, 2)
    ).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    chosen = choose_layer(net, x)
    modules = dict(net.named_modules())
    with torch.no_grad():
        out = net(x)
    seen = {}
    handle = modules[chosen].register_forward_hook(lambda m, a, o: seen.setdefault("o", o))
    with torch.no_grad():
        net(x)
    handle.remove()
    assert seen["o"].shape != out.shape  # a feature map, not the segmentation


def test_padding_is_never_chosen():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.ZeroPad2d(2), torch.nn.Flatten()
    )
    assert choose_layer(net, torch.randn(1, 1, 8, 8)) == "0"
