"""Layer layouts: token sequences and channels-last stages read as maps, or refused.

The reference for every layout is camscope's channels-first path on the same network with a
module inserted after the layer that lays its output out as ``(B, C, *grid)`` (and one that puts
it back), so the model computes the same function and the maps must be equal.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import camscope
from camscope.errors import LayerError, MethodError
from camscope.layouts import CHANNELS_LAST, parse_layout, tokens
from tests.nets import Tokens

timm = pytest.importorskip("timm")
monai_nets = pytest.importorskip("monai.networks.nets")
pytest.importorskip("einops")
from torchvision.models import VisionTransformer  # noqa: E402
from torchvision.models.swin_transformer import SwinTransformer  # noqa: E402

LAYER_METHODS = ("grad_cam", "layer_cam", "respond_cam", "grad_cam_pp", "score_cam")


class ToGrid(nn.Module):
    """Tokens ``(B, N, C)`` → ``(B, C, *grid)``, keeping the prefix tokens for :class:`FromGrid`;
    or channels last → channels first."""

    def __init__(self, grid: tuple[int, ...] | None, prefix: int = 0) -> None:
        super().__init__()
        self.grid, self.prefix = grid, prefix
        self.kept: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grid is None:
            return x.movedim(-1, 1)
        self.kept = x[:, : self.prefix]
        return x[:, self.prefix :].transpose(1, 2).unflatten(2, self.grid)


class FromGrid(nn.Module):
    def __init__(self, to_grid: ToGrid) -> None:
        super().__init__()
        self.to_grid = [to_grid]  # not a submodule: it must not run twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        source = self.to_grid[0]
        if source.grid is None:
            return x.movedim(1, -1)
        assert source.kept is not None
        return torch.cat([source.kept, x.flatten(2).transpose(1, 2)], dim=1)


class Wrapped(nn.Module):
    """``original`` (any arguments), then ToGrid and FromGrid, as children "0", "1", "2"."""

    def __init__(self, original: nn.Module, to_grid: ToGrid) -> None:
        super().__init__()
        self.add_module("0", original)
        self.add_module("1", to_grid)
        self.add_module("2", FromGrid(to_grid))

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        modules = list(self.children())
        return modules[2](modules[1](modules[0](*args)))


def _with_grid(model: nn.Module, layer: str, grid: tuple[int, ...] | None, prefix: int):
    """A copy of ``model`` whose ``layer`` is followed by ToGrid and FromGrid."""
    import copy

    reference = copy.deepcopy(model)
    parent_name, _, child = layer.rpartition(".")
    parent = reference.get_submodule(parent_name) if parent_name else reference
    original = getattr(parent, child) if not child.isdigit() else parent[int(child)]
    to_grid = ToGrid(grid, prefix)
    wrapped = Wrapped(original, to_grid)
    if child.isdigit():
        parent[int(child)] = wrapped
    else:
        setattr(parent, child, wrapped)
    return reference, f"{layer}.1"


class FirstOutput(nn.Module):
    """MONAI's ViT returns (logits, hidden states): explain the logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


def _torchvision_vit() -> nn.Module:
    model = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=5,
    )
    nn.init.normal_(model.heads.head.weight)  # torchvision initialises the head to zero
    return model


def _models():
    torch.manual_seed(0)
    vit_kwargs = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}
    return {
        "timm_vit": (
            timm.create_model("vit_tiny_patch16_224", num_classes=5, **vit_kwargs),
            (3, 32, 32),
            "blocks.1.norm1",
            (4, 4),
            1,
        ),
        "timm_deit_distilled": (
            timm.create_model("deit_tiny_distilled_patch16_224", num_classes=5, **vit_kwargs),
            (3, 32, 32),
            "blocks.1.norm1",
            (4, 4),
            2,
        ),
        "timm_registers": (
            timm.create_model("vit_tiny_patch16_224", num_classes=5, reg_tokens=4, **vit_kwargs),
            (3, 32, 32),
            "blocks.1.norm1",
            (4, 4),
            5,
        ),
        "torchvision_vit": (
            _torchvision_vit(),
            (3, 32, 32),
            "encoder.layers.encoder_layer_1.ln_1",
            (4, 4),
            1,
        ),
        "timm_vit_average_pooled": (
            timm.create_model(
                "vit_tiny_patch16_224",
                num_classes=5,
                global_pool="avg",
                class_token=False,
                **vit_kwargs,
            ),
            (3, 32, 32),
            "blocks",
            (4, 4),
            0,
        ),
        "torchvision_swin": (
            SwinTransformer(
                patch_size=[4, 4],
                embed_dim=16,
                depths=[2, 2],
                num_heads=[2, 2],
                window_size=[4, 4],
                num_classes=5,
            ),
            (3, 32, 32),
            "features",
            None,
            0,
        ),
        "monai_vit_3d": (
            FirstOutput(
                monai_nets.ViT(
                    in_channels=1,
                    img_size=16,
                    patch_size=4,
                    hidden_size=32,
                    mlp_dim=64,
                    num_layers=2,
                    num_heads=2,
                    classification=True,
                    num_classes=3,
                )
            ),
            (1, 16, 16, 16),
            "model.blocks.1.norm1",
            (4, 4, 4),
            1,
        ),
    }


MODELS = _models()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_default_layer_and_layout(name):
    model, shape, layer, grid, prefix = MODELS[name]
    x = torch.randn(2, *shape)
    e = camscope.explain(model.eval(), x, method="grad_cam", targets="all")
    assert e.layer == layer
    expected = "channels_last" if grid is None else str(tokens(grid, prefix))
    assert e.layout == expected
    spatial = grid or tuple(s // 4 // 2 for s in shape[1:])  # Swin: patch 4, one merging
    assert tuple(e.maps.shape) == (2, e.scores.shape[1], *spatial)


@pytest.mark.parametrize("method", LAYER_METHODS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_layer_maps_equal_the_inserted_reshape_reference(name, method):
    model, shape, layer, grid, prefix = MODELS[name]
    model.eval()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    reference, reference_layer = _with_grid(model, layer, grid, prefix)
    with torch.no_grad():
        torch.testing.assert_close(reference.eval()(x), model(x))  # the same function
    ours = camscope.explain(model, x, method=method, layer=layer, targets=[[0, 2], [1, 0]])
    theirs = camscope.explain(
        reference, x, method=method, layer=reference_layer, targets=[[0, 2], [1, 0]]
    )
    assert theirs.layout == "channels_first"
    torch.testing.assert_close(ours.maps, theirs.maps, rtol=1e-4, atol=1e-6)
    assert ours.maps.abs().sum() > 0


def _unetr(size: int) -> nn.Module:
    return monai_nets.UNETR(
        in_channels=1,
        out_channels=2,
        img_size=size,
        feature_size=4,
        hidden_size=32,
        mlp_dim=64,
        num_heads=2,
    ).eval()


def _swin_unetr() -> nn.Module:
    return monai_nets.SwinUNETR(
        in_channels=1,
        out_channels=2,
        feature_size=12,
        depths=(1, 1, 1, 1),
        num_heads=(3, 3, 3, 3),
    ).eval()


def test_unetr_encoder_tokens_in_3d():
    torch.manual_seed(0)
    model = _unetr(16)
    x = torch.randn(1, 1, 16, 16, 16)
    target = lambda output: output[:, 1].mean(dim=(1, 2, 3))  # noqa: E731
    e = camscope.explain(model, x, method="grad_cam", layer="vit.blocks.11", targets=target)
    assert e.layout == "tokens(1×1×1, prefix=0)"  # UNETR's patch is 16: one token
    reference, name = _with_grid(model, "vit.blocks.11", (1, 1, 1), 0)
    theirs = camscope.explain(reference.eval(), x, method="grad_cam", layer=name, targets=target)
    torch.testing.assert_close(e.maps, theirs.maps)


@pytest.mark.slow
def test_swin_unetr_channels_last_blocks_in_3d():
    torch.manual_seed(0)
    model = _swin_unetr()
    x = torch.randn(1, 1, 64, 64, 64)
    layer = "swinViT.layers2.0.blocks.0"
    target = lambda output: output[:, 1].mean(dim=(1, 2, 3))  # noqa: E731
    e = camscope.explain(model, x, method="layer_cam", layer=layer, targets=target)
    assert e.layout == "channels_last"
    assert tuple(e.maps.shape) == (1, 1, 16, 16, 16)
    reference, name = _with_grid(model, layer, None, 0)
    theirs = camscope.explain(reference.eval(), x, method="layer_cam", layer=name, targets=target)
    torch.testing.assert_close(e.maps, theirs.maps, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_unknown_token_layer_is_refused_then_explained_with_its_layout(spatial_dims):
    model = Tokens(spatial_dims).eval()
    x = torch.randn(2, 1, *(8,) * spatial_dims)
    with pytest.raises(LayerError, match=r"layout=camscope.tokens\(grid, prefix=...\)"):
        camscope.explain(model, x, method="grad_cam", layer="block")
    grid = (2,) * spatial_dims
    e = camscope.explain(
        model, x, method="grad_cam", layer="block", layout=camscope.tokens(grid, prefix=1)
    )
    assert tuple(e.maps.shape) == (2, 1, *grid)
    wrong = tokens((3,) * spatial_dims, 1)
    with pytest.raises(LayerError, match=r"needs 1 \+ (9|27)"):
        camscope.explain(model, x, method="grad_cam", layer="block", layout=wrong)
    with pytest.raises(LayerError, match="spatial axes"):
        camscope.explain(model, x, method="grad_cam", layer="block", layout=tokens((4,), 1))


def test_unknown_token_default_layer_is_the_patch_embedding():
    """Without a stated grid, the token layers are not candidates: the default is the last
    layer that is a map (the patch embedding), never a token layer read as channels."""
    model = Tokens(2).eval()
    e = camscope.explain(model, torch.randn(1, 1, 8, 8), method="grad_cam")
    assert e.layer == "embed" and e.layout == "channels_first"


def test_hand_derived_token_grad_cam():
    """A linear token model: score = Σ_n w_n · (v · t_n), so Grad-CAM's weights are known."""

    class Linear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = x.flatten(2).transpose(1, 2)  # (B, 4, C): a 2×2 grid of 1-pixel patches
            t = torch.cat([torch.ones_like(t[:, :1]) * 100.0, t], dim=1)  # a "class token"
            t = self.block(t)
            v = torch.tensor([1.0, -2.0])
            return (t[:, 1:] @ v).sum(1, keepdim=True) + t[:, 0].sum(1, keepdim=True)

    x = torch.arange(8.0).view(1, 2, 2, 2)
    e = camscope.explain(
        Linear(), x, method="grad_cam", layer="block", layout=tokens((2, 2), 1), targets=0
    )
    # gradients at every patch are v; Grad-CAM weight of channel k is v_k; map = Σ_k v_k x_k.
    expected = x[0, 0] * 1.0 + x[0, 1] * -2.0
    torch.testing.assert_close(e.maps[0, 0], expected)


def test_channels_last_stage_read_from_its_shape_and_refused_when_it_fits_neither():
    class Last(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, width, 4, stride=4)
            self.stage = nn.Identity()
            self.head = nn.Linear(width, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.stage(self.conv(x).permute(0, 2, 3, 1)).mean((1, 2)))

    x = torch.randn(1, 1, 32, 32)
    e = camscope.explain(Last(48).eval(), x, method="grad_cam", layer="stage")
    assert e.layout == "channels_last" and tuple(e.maps.shape) == (1, 1, 8, 8)
    forced = camscope.explain(
        Last(48).eval(), x, method="grad_cam", layer="stage", layout="channels_last"
    )
    assert forced.layout == str(CHANNELS_LAST)


class Neither(nn.Module):
    """A stage whose axes follow the input's as neither channels first nor channels last."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 48, 4, stride=4)
        self.stage = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stage(self.conv(x).permute(0, 2, 1, 3)[..., :3])  # (B, 8, 48, 3)
        return y.mean((1, 2, 3))[:, None]


def test_a_layer_that_fits_no_layout_is_refused():
    x = torch.randn(1, 1, 32, 32)
    with pytest.raises(LayerError, match="do not follow the inputs"):
        camscope.explain(Neither().eval(), x, method="grad_cam", layer="stage", targets=0)
    # Said explicitly, it is the user's call (channels first: 8 channels over 48×3).
    e = camscope.explain(
        Neither().eval(), x, method="grad_cam", layer="stage", layout="channels_first", targets=0
    )
    assert tuple(e.maps.shape) == (1, 1, 48, 3)


def test_wrong_rank_layer_is_refused():
    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv3d(1, 4, 3, padding=1)
            self.fold = nn.Identity()
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.fold(self.conv(x).flatten(3))  # (B, C, D, H·W): 3 axes for a 3D input
            return self.head(y.mean((2, 3)))

    with pytest.raises(LayerError, match="3 spatial axes"):
        camscope.explain(Flat().eval(), torch.randn(1, 1, 4, 4, 4), method="grad_cam", layer="fold")


def test_layout_errors_are_one_line():
    with pytest.raises(LayerError, match="layout must be"):
        camscope.explain(Tokens().eval(), torch.randn(1, 1, 8, 8), method="grad_cam", layout="nhwc")
    with pytest.raises(MethodError, match="drop layout="):
        camscope.explain(
            Tokens().eval(), torch.randn(1, 1, 8, 8), method="saliency", layout="channels_last"
        )
    with pytest.raises(LayerError, match="positive integer"):
        tokens((0, 4))
    assert parse_layout("tokens:4x4x4:1") == tokens((4, 4, 4), 1)
    assert parse_layout("channels-last") == CHANNELS_LAST
    assert parse_layout("tokens") == "tokens"
    with pytest.raises(LayerError, match="tokens:GRID"):
        parse_layout("tokens:ax4")


def test_torchvision_vit_agrees_with_pytorch_grad_cam_reshape_transform():
    grad_cam_module = pytest.importorskip("pytorch_grad_cam")
    targets_module = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    model, shape, _, grid, prefix = MODELS["timm_vit"]
    model.eval()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(3))

    def reshape(t: torch.Tensor) -> torch.Tensor:
        return t[:, prefix:].reshape(t.shape[0], *grid, t.shape[2]).permute(0, 3, 1, 2)

    peer = grad_cam_module.GradCAM(
        model=model, target_layers=[model.blocks[-1].norm1], reshape_transform=reshape
    )
    try:
        theirs = peer(x, targets=[targets_module.ClassifierOutputTarget(c) for c in (1, 3)])
    finally:
        peer.activations_and_grads.release()
    e = camscope.explain(model, x, method="grad_cam", layer="blocks.1.norm1", targets=[1, 3])
    ours = e.relu().upsample(mode="linear").normalize()
    torch.testing.assert_close(
        ours.maps[:, 0].float(), torch.from_numpy(theirs).float(), rtol=0, atol=2e-3
    )
    assert math.isfinite(float(ours.maps.sum()))


@pytest.mark.slow
def test_explain_scan_over_unetr_and_swin_unetr_with_a_region_target():
    """The 3D medical transformer workflow: a region's logits explained window by window at a
    token layer (UNETR's encoder) and a channels-last block (SwinUNETR); one window equals
    explain() on it."""
    from camscope.targets import RegionTarget

    torch.manual_seed(0)
    unetr = _unetr(32)
    swin = _swin_unetr()
    for model, layer, roi, layout in (
        (unetr, "vit.blocks.11", 32, "tokens(2×2×2, prefix=0)"),
        (swin, "swinViT.layers2.0.blocks.0", 64, "channels_last"),
    ):
        scan = torch.randn(1, roi, roi, roi)
        mask = torch.zeros(roi, roi, roi, dtype=torch.bool)
        mask[roi // 4 : roi // 2, roi // 4 : roi // 2, roi // 4 : roi // 2] = True
        target = RegionTarget(1, mask)
        whole = camscope.explain_scan(
            model,
            scan,
            method="grad_cam",
            roi_size=roi,
            layer=layer,
            targets=target,
            progress=False,
        )
        single = camscope.explain(model, scan[None], method="grad_cam", layer=layer, targets=target)
        assert single.layout == layout
        upsampled = single.upsample(size=(roi,) * 3, mode="linear").maps[0]
        torch.testing.assert_close(whole.maps, upsampled, rtol=1e-4, atol=1e-6)


def test_several_layers_fused_on_the_finest_grid():
    from camscope.models import create_model

    model = create_model("tiny2d", num_classes=3).eval()
    x = torch.randn(2, 1, 16, 16)
    fine = camscope.explain(model, x, method="grad_cam", layer="relu1", targets="all")
    coarse = camscope.explain(model, x, method="grad_cam", layer="pool2", targets="all")
    brought = camscope.upsample(coarse.maps, fine.maps.shape[2:], mode="linear")
    for rule, expected in (
        ("mean", (fine.maps + brought) / 2),
        ("max", torch.maximum(fine.maps, brought)),
        ("product", fine.maps * brought),
    ):
        e = camscope.explain(
            model, x, method="grad_cam", layer=["pool2", "relu1"], fuse=rule, targets="all"
        )
        torch.testing.assert_close(e.maps, expected)
        assert e.layer == "pool2+relu1" and e.extras["fused"]["rule"] == rule
    with pytest.raises(MethodError, match="fuse must be one of"):
        camscope.explain(model, x, method="grad_cam", layer=["pool2", "relu1"], fuse="sum")
    with pytest.raises(MethodError, match="several layers"):
        camscope.explain(model, x, method="grad_cam", layer="pool2", fuse="max")
    with pytest.raises(MethodError, match="two or more"):
        camscope.explain(model, x, method="grad_cam", layer=["pool2"])
    with pytest.raises(LayerError, match="twice"):
        camscope.explain(model, x, method="grad_cam", layer=["pool2", model.pool2])


class Windows(nn.Module):
    """Window attention's shape: tokens regrouped as (B·windows, N, C) around one layer."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(1, 8, 2, stride=2)
        self.attn = nn.Identity()
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)  # (B, 16, 8)
        w = self.attn(t.reshape(-1, 4, 8))  # (B·4, 4, 8)
        return self.head(w.reshape(len(x), 16, 8).mean(1))


def test_windows_folded_into_the_batch_are_refused():
    """Never one map per window shown as a sample."""
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(LayerError, match="not the batch of 1"):
        camscope.explain(
            Windows().eval(), x, method="grad_cam", layer="attn", layout=tokens((2, 2))
        )


def test_attention_internals_of_a_known_vit_are_refused():
    """``(B, heads, N, d)`` inside an attention block fits a 2D input's rank and roughly its
    proportions; it is no map."""
    model = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=3
    ).eval()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(camscope.LayerError, match=r"\(B, heads, tokens, dim\) inside an attention"):
        camscope.explain(model, x, method="grad_cam", layer="blocks.1.attn.q_norm")


def test_a_given_layout_that_reads_a_layer_against_its_proportions_is_refused():
    vit = _torchvision_vit().eval()
    x = torch.randn(1, 3, 32, 32)
    # conv_proj is (B, 32, 4, 4): read channels last it would be a 32×4 grid of 4 channels
    with pytest.raises(camscope.LayerError, match="does not follow the inputs"):
        camscope.explain(vit, x, method="grad_cam", layer="conv_proj", layout="channels_last")
    with pytest.raises(camscope.LayerError, match="no layer of the model"):
        camscope.explain(vit, x, method="grad_cam", layout="channels_last")  # no default either
    # tokens with the right count but the wrong grid
    wrong_grid = r"does not match this model's 17 tokens.*patch grid 4×4"
    with pytest.raises(camscope.LayerError, match=wrong_grid):
        camscope.explain(
            vit,
            x,
            method="grad_cam",
            layer="encoder.layers.encoder_layer_1.ln_1",
            layout=camscope.tokens((2, 8), prefix=1),
        )


def test_a_wrong_token_grid_of_an_unknown_model_is_refused_by_its_proportions():
    model = Tokens(2).eval()
    x = torch.randn(1, 1, 16, 16)
    wrong = camscope.tokens((1, 16), prefix=1)
    with pytest.raises(camscope.LayerError, match=r"grid \(1, 16\), which does not follow"):
        camscope.explain(model, x, method="grad_cam", layer="block", layout=wrong)
    right = camscope.tokens((4, 4), prefix=1)
    e = camscope.explain(model, x, method="grad_cam", layer="block", layout=right)
    assert e.maps.shape == (1, 1, 4, 4)


def test_a_tie_is_broken_by_a_layer_that_works_on_its_last_axis():
    """``(B, 8, 8, 8)`` after a LayerNorm over the last axis of an unknown model: channels last
    (a convolution's output of that shape stays channels first)."""
    from torchvision.ops.misc import Permute

    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1),
        Permute([0, 2, 3, 1]),
        nn.LayerNorm(8),
        Permute([0, 3, 1, 2]),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 3),
    ).eval()
    x = torch.randn(1, 1, 16, 16)
    assert camscope.explain(model, x, method="grad_cam", layer="2").layout == "channels_last"
    assert camscope.explain(model, x, method="grad_cam", layer="0").layout == "channels_first"


def test_a_hybrid_vit_grid_counts_its_backbone_stride():
    model = timm.create_model("vit_tiny_r_s16_p8_224", img_size=64, num_classes=3).eval()
    e = camscope.explain(model, torch.randn(1, 3, 64, 64), method="grad_cam")
    assert e.layout == "tokens(2×2, prefix=1)" and e.maps.shape == (1, 1, 2, 2)


def test_an_average_pooled_vit_defaults_to_its_last_block_and_patch_tokens_have_no_prefix():
    """With register tokens and an average-pooled head, the patches reach the head from the
    last block's output (no class-token rule); the patch embedding's tokens come before the
    prefix tokens are joined (prefix 0)."""
    model = timm.create_model(
        "vit_tiny_patch16_224",
        img_size=32,
        patch_size=8,
        depth=2,
        num_classes=3,
        reg_tokens=2,
        class_token=False,
        global_pool="avg",
    ).eval()
    x = torch.randn(1, 3, 32, 32)
    e = camscope.explain(model, x, method="grad_cam")
    assert e.layer == "blocks" and e.layout == "tokens(4×4, prefix=2)"  # = blocks.1's output
    assert e.maps.abs().amax() > 0
    embed = camscope.explain(model, x, method="grad_cam", layer="patch_embed")
    assert embed.layout == "tokens(4×4, prefix=0)" and embed.maps.shape == (1, 1, 4, 4)


def test_fused_layers_record_each_layout():
    vit = _torchvision_vit().eval()
    x = torch.randn(1, 3, 32, 32)
    e = camscope.explain(
        vit, x, method="grad_cam", layer=["conv_proj", "encoder.layers.encoder_layer_1.ln_1"]
    )
    assert e.layout == "channels_first+tokens(4×4, prefix=1)"
