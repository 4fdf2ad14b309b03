"""The default layer is the last feature map, never a resampler, an activation or the output."""

from __future__ import annotations

import pytest
import torch
import torchvision

import camscope
from camscope.layers import SKIPPED_KINDS, choose_layer, trace_layers


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("resnet18", "layer4"),
        pytest.param("vgg11", "features", marks=pytest.mark.slow),
        ("alexnet", "features.10"),  # at 64 px its features end in 1×1
        ("squeezenet1_0", "features"),
        ("mobilenet_v2", "features"),
        pytest.param("densenet121", "features", marks=pytest.mark.slow),
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


MONAI_NETWORKS = {
    # name: (constructor keywords, input edge, expected default layer)
    "UNet": (
        {
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 2,
            "channels": (4, 8, 16),
            "strides": (2, 2),
        },
        16,
        "model.1",  # the decoder's features before the output convolution
    ),
    "BasicUNet": (
        {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "features": (4, 4, 8, 16, 32, 4)},
        32,
        # upcat_1 (the last decoder stage) feeds only the 1×1×1 output convolution, where maps
        # restate the output; the stage before it
        "upcat_2",
    ),
    "SegResNet": (
        {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "init_filters": 8},
        16,
        # conv_final is norm → act → 1×1×1 convolution and up_layers.2 feeds only it (maps that
        # restate the output); the last upsampling block's convolution before them
        "up_samples.2.0",
    ),
    "DenseNet121": ({"spatial_dims": 3, "in_channels": 1, "out_channels": 3}, 32, None),
    "EfficientNetBN": (
        {
            "model_name": "efficientnet-b0",
            "spatial_dims": 3,
            "in_channels": 1,
            "num_classes": 3,
            "pretrained": False,
        },
        32,
        "_blocks.4",  # the last block with spatial extent at 32³ (not the stem, not a pad)
    ),
}


@pytest.mark.parametrize("name", list(MONAI_NETWORKS))
def test_monai_networks(name):
    monai = pytest.importorskip("monai")
    options, edge, expected = MONAI_NETWORKS[name]
    net = getattr(monai.networks.nets, name)(**options).eval()
    x = torch.randn(1, 1, edge, edge, edge)
    infos, output_shape = trace_layers(net, x)
    chosen = choose_layer(net, x)
    info = next(i for i in infos if i.name == chosen)
    assert info.output_shape != output_shape  # never the segmentation itself
    assert not SKIPPED_KINDS.fullmatch(info.kind) and info.is_spatial
    if expected is not None:
        assert chosen == expected
    e = camscope.explain(net, x, method="grad_cam", targets=lambda out: out.flatten(1).sum(1))
    assert e.layer == chosen and torch.isfinite(e.maps).all()


def test_padding_is_never_chosen():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.ZeroPad2d(2), torch.nn.Flatten()
    )
    assert choose_layer(net, torch.randn(1, 1, 8, 8)) == "0"
