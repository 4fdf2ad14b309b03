"""What new users met: default layers of dense networks that restate the output, maps that are
zero everywhere, callable targets without a name, NIfTI heatmaps of MRC scans without units,
exported models of a fixed size, and the tomogram showcase without a trained model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import camscope
from camscope.errors import CamscopeError, ModelError
from camscope.layers import choose_layer

monai = pytest.importorskip("monai")


def _unetr() -> nn.Module:
    from monai.networks.nets import UNETR

    torch.manual_seed(0)
    return UNETR(
        in_channels=1, out_channels=3, img_size=(32,) * 3, feature_size=8, hidden_size=96,
        mlp_dim=192, num_heads=4,
    ).eval()  # fmt: skip


@pytest.mark.slow
def test_dense_networks_default_to_a_layer_that_does_not_restate_the_output():
    from monai.networks.nets import SwinUNETR

    x = torch.randn(1, 1, 32, 32, 32)
    assert choose_layer(_unetr(), x) == "decoder3"  # not decoder2, under a 1×1×1 convolution
    torch.manual_seed(0)
    swin = SwinUNETR(in_channels=1, out_channels=3, feature_size=12).eval()
    assert choose_layer(swin, torch.randn(1, 1, 64, 64, 64)) == "decoder2"  # not decoder1


@pytest.mark.slow
def test_a_layer_under_only_pointwise_modules_is_recorded_to_restate_the_output():
    model, x = _unetr(), torch.randn(1, 1, 32, 32, 32)
    e = camscope.explain(model, x, method="grad_cam", targets=[1], layer="decoder2")
    assert e.extras["restates_output"] == ["out.conv.conv"]
    # at decoder2 Grad-CAM of a class is (up to a factor) that class's logit map: what the
    # warning is about
    logits = model(x)[0, 1]
    assert (
        np.corrcoef(e.maps[0, 0].flatten().numpy(), logits.detach().flatten().numpy())[0, 1] > 0.99
    )
    chosen = camscope.explain(model, x, method="grad_cam", targets=[1])
    assert chosen.layer == "decoder3" and "restates_output" not in chosen.extras


class _DeadHead(nn.Module):
    """A classifier whose head gives zero gradient to every input (its weights are zero)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)
        nn.init.zeros_(self.head.weight)
        nn.init.ones_(self.head.bias)  # outputs not zero: only the gradients are

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "occlusion"])
def test_input_space_maps_that_are_zero_everywhere_are_said(method):
    with pytest.warns(RuntimeWarning, match="exactly 0 everywhere"):
        camscope.explain(_DeadHead().eval(), torch.randn(2, 1, 12, 12), method=method, targets=0)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("method", ["deeplift", "integrated_gradients", "gradient_shap"])
def test_maps_that_are_zero_because_the_baseline_is_the_input_say_so(method, dims):
    conv = {2: nn.Conv2d, 3: nn.Conv3d}[dims]
    model = nn.Sequential(conv(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)).eval()
    x = torch.randn(2, 1, *[6] * dims)
    model(x)
    name = "baselines" if method == "gradient_shap" else "baseline"  # a distribution there
    if method != "gradient_shap":
        with pytest.warns(RuntimeWarning, match="because the baseline is the input itself"):
            camscope.explain(model, x, method=method, targets="all", baseline=x)
        with pytest.warns(RuntimeWarning, match="because the baseline is the input itself"):
            camscope.explain(model, x, method=method, targets=0, baseline=x[1])  # one for all
        assert camscope.explain(model, x, method=method, targets=0, baseline=x.flip(0)).maps.any()
    ones = torch.ones_like(x)
    with pytest.warns(RuntimeWarning, match="2 of 2 maps .* because the baseline is the input"):
        camscope.explain(model, ones, method=method, targets=0, **{name: 1.0})  # a number
    with pytest.warns(RuntimeWarning, match="1 of 2 maps .* because the baseline is the input"):
        camscope.explain(model, torch.stack([x[0], 0 * x[1]]), method=method, targets=0)


def test_a_callable_target_is_named_in_the_result():
    model = _DeadHead().eval()
    nn.init.normal_(model.head.weight)

    def tumour_score(output):
        return output[:, 1] - output[:, 0]

    e = camscope.explain(model, torch.randn(2, 1, 12, 12), method="saliency", targets=tumour_score)
    assert e.targets is None and e.target_label == "tumour_score" and e.labels == ["tumour_score"]
    pair = camscope.explain(
        model, torch.randn(2, 1, 12, 12), method="saliency", targets=lambda out: out[:, :2]
    )
    assert pair.labels == ["callable0", "callable1"]
    classes = camscope.explain(model, torch.randn(2, 1, 12, 12), method="saliency", targets="all")
    assert classes.labels == ["class0", "class1", "class2"]
    mixed = camscope.explain(model, torch.randn(2, 1, 12, 12), method="saliency", targets=[0, 2])
    assert mixed.labels == ["target0"]


def test_a_nifti_heatmap_of_an_mrc_scan_is_in_microns(tmp_path):
    import mrcfile
    import nibabel

    from camscope.io import read_image, write_heatmap

    with mrcfile.new(tmp_path / "t.mrc") as mrc:
        mrc.set_data(np.zeros((4, 5, 6), np.float32))
        mrc.voxel_size = 10.0  # Å
    scan = read_image(tmp_path / "t.mrc")
    write_heatmap(
        tmp_path / "h.nii.gz", np.ones((4, 5, 6), np.float32), scan, "nifti", signed=False
    )
    image = nibabel.load(tmp_path / "h.nii.gz")
    assert image.header.get_xyzt_units()[0] == "micron"
    np.testing.assert_allclose(np.diag(image.affine)[:3], [1e-3] * 3)  # 10 Å = 0.001 µm
    assert "µm" in image.header["descrip"].item().decode()


def test_an_export_of_a_fixed_spatial_size_says_how_to_export_it():
    model = nn.Sequential(
        nn.Conv3d(1, 2, 3, padding=1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(2, 3)
    ).eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        model, (torch.randn(2, 1, 12, 12, 12),), dynamic_shapes=({0: batch},)
    )
    with pytest.raises(ModelError, match="dynamic spatial dimensions") as raised:
        camscope.explain_scan(
            program, torch.randn(1, 20, 20, 20), method="saliency", roi_size=8, progress=False
        )
    assert "12 along axis 2" in str(raised.value)


@pytest.mark.slow
def test_the_tomogram_showcase_trains_a_small_classifier_when_none_is_there(tmp_path, monkeypatch):
    from camscope import reproduce
    from camscope.reproduce.respond_cam import ModelSpec, ReproduceConfig

    monkeypatch.chdir(tmp_path)  # no reproduction's model here
    tiny = ReproduceConfig(
        scale="showcase",
        models=(ModelSpec("CNN-2", "cnn2", {"input_size": 16}, per_class=2, epochs=1),),
        snrs=(math.inf,),
        test_per_class=1,
        size=16,
    )
    monkeypatch.setattr(reproduce, "_small_config", lambda snr: tiny)
    said: list[str] = []
    for name in (None, "cnn2", "CNN2"):  # a built-in name means the same network
        stem = reproduce.showcase_classifier(
            name, math.inf, tmp_path / "out", progress=False, log=said.append
        )
        assert stem.with_name(stem.name + ".json").exists()
    assert "training a small one" in said[0] and all("trained before" in s for s in said[1:])
    with pytest.raises(CamscopeError, match="reproduce respond-cam"):
        reproduce.showcase_classifier("cnn1", math.inf, tmp_path / "out", log=said.append)
    with pytest.raises(CamscopeError, match="no trained model"):
        reproduce.showcase_classifier("nothing.json", math.inf, tmp_path / "out")


def test_the_command_line_notes_a_layer_whose_maps_restate_the_output(tmp_path):
    from click.testing import CliRunner

    from camscope.cli.main import cli

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 2, 1),
    ).eval()  # fmt: skip
    program = torch.export.export(
        model, (torch.randn(2, 1, 16, 16),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(program, tmp_path / "net.pt2")
    np.save(tmp_path / "image.npy", np.random.default_rng(0).standard_normal((16, 16)))
    runner = CliRunner()
    command = ["explain", str(tmp_path / "net.pt2"), str(tmp_path / "image.npy"), "--method"]
    late = runner.invoke(
        cli,
        [
            *command,
            "layer-cam,grad-cam",
            "--layer",
            "3",
            "--targets",
            "1",
            "--out",
            str(tmp_path / "a"),
        ],
    )
    assert late.exit_code == 0, late.output
    assert late.output.count("maps restate the output") == 1 and "layer 3" in late.output
    manifest = (tmp_path / "a" / "manifest.json").read_text()
    assert '"restates_output"' in manifest
    early = runner.invoke(
        cli, [*command, "layer-cam", "--layer", "1", "--targets", "1", "--out", str(tmp_path / "b")]
    )
    assert early.exit_code == 0, early.output
    assert "restate" not in early.output


def test_the_output_layer_itself_is_recorded_to_restate_the_output():
    model, x = _unetr(), torch.randn(1, 1, 32, 32, 32)
    e = camscope.explain(model, x, method="grad_cam", targets=[1], layer="out")
    assert e.extras["restates_output"] == []  # nothing follows: it is the output


def test_a_zero_head_warning_is_not_given_for_maps_that_do_not_read_the_head():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    ).eval()  # its head is initialised to zero: every logit is 0
    x = torch.randn(1, 3, 32, 32)
    e = camscope.explain(model, x, method="attention_rollout")  # no warning: errors in tests
    assert e.maps.abs().amax() > 0
    with pytest.warns(RuntimeWarning, match="every output of the model is exactly 0"):
        camscope.explain(model, x, method="saliency")
