"""Transformer methods: the attention read is the attention applied; rollout, Chefer and LeGrad
against hand derivations, independent per-target references and torch-cam; 2D and 3D; refusals.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import timm
import torch
from monai.networks import nets as monai_nets
from torch import nn
from torchvision.models import VisionTransformer
from torchvision.models.swin_transformer import SwinTransformer

import camscope
from camscope.engine.attention import AttentionTap, attention_blocks
from tests.nets import TinyViT


def _torchvision_vit(layers: int = 3) -> nn.Module:
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=layers,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=5,
    )
    nn.init.normal_(model.heads.head.weight)  # torchvision initialises the head to zero
    return model.double().eval()


def _timm_vit(**options) -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, depth=3, num_classes=5, **options
    )
    return model.double().eval()


def _monai_vit() -> nn.Module:
    return TinyViT(3, num_classes=3, size=16).eval()


def _qk_reference(block, tokens: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ · scale) per head, computed here from the block's own projections."""
    module, kind = block.module, block.kind
    batch, count, _ = tokens.shape
    if kind == "mha":
        dim, heads = module.embed_dim, module.num_heads
        qkv = nn.functional.linear(tokens, module.in_proj_weight, module.in_proj_bias)
        scale = (dim // heads) ** -0.5
    else:
        heads = module.num_heads
        qkv = module.qkv(tokens)
        scale = module.scale
    q, k, _ = qkv.view(batch, count, 3, heads, -1).permute(2, 0, 3, 1, 4)
    if kind == "timm":
        q, k = module.q_norm(q), module.k_norm(k)
    return torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1)


MODELS = {
    "torchvision": (_torchvision_vit, (2, 3, 32, 32)),
    "timm": (_timm_vit, (2, 3, 32, 32)),
    "timm_registers": (
        lambda: _timm_vit(reg_tokens=2, class_token=False, global_pool="avg"),
        (2, 3, 32, 32),
    ),
    "monai_3d": (_monai_vit, (2, 1, 16, 16, 16)),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("grad", [False, True])
def test_the_attention_read_is_the_attention_the_block_applied(name, grad):
    build, shape = MODELS[name]
    model = build()
    x = torch.randn(*shape, dtype=torch.float64)
    blocks = attention_blocks(model)
    inputs: dict[str, torch.Tensor] = {}
    handles = [
        b.module.register_forward_pre_hook(
            lambda m, args, b=b: inputs.__setitem__(b.name, args[0].detach())
        )
        for b in blocks
    ]
    with torch.no_grad():
        fused = model(x)  # the model's own (fused) attention
    flags = {b.name: dict(vars(b.module)).get("fused_attn") for b in blocks}
    with torch.set_grad_enabled(grad), AttentionTap(model, blocks) as tap:
        tapped = tap.run(x.requires_grad_(grad))
    for handle in handles:
        handle.remove()
    torch.testing.assert_close(tapped, fused)  # the output is the model's
    assert tap.order == [b.name for b in blocks]
    for block, attention in zip(blocks, tap.attentions, strict=True):
        expected = _qk_reference(block, inputs[block.name])
        torch.testing.assert_close(attention.detach(), expected)
        assert attention.requires_grad == grad
    # everything put back: no hook, the same fused flags
    assert {b.name: dict(vars(b.module)).get("fused_attn") for b in blocks} == flags
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_rollout_of_uniform_attention_by_hand():
    """q = k = 0 makes every head uniform (1/N); then ``Â = 0.5·U + 0.5·I`` and
    ``Â^L = 0.5^L·I + (1 − 0.5^L)·U``, so the class token's row is ``(1 − 0.5^L)/N`` on every
    patch."""
    layers = 3
    model = _torchvision_vit(layers)
    with torch.no_grad():
        for block in model.encoder.layers:
            dim = block.self_attention.embed_dim
            block.self_attention.in_proj_weight[: 2 * dim] = 0
            block.self_attention.in_proj_bias[: 2 * dim] = 0
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    e = camscope.explain(model, x, method="attention_rollout", targets="all")
    count = 1 + 16
    expected = torch.full((2, 5, 4, 4), (1 - 0.5**layers) / count, dtype=torch.float64)
    torch.testing.assert_close(e.maps, expected)
    assert e.layer == "attention" and e.layout == "tokens(4×4, prefix=1)"
    assert e.extras["readout"] == "class token"


def _rollout_reference(attentions, fusion: str, discard: float, prefix: int, grid, cls=True):
    """One sample at a time, the formula as written."""
    maps = []
    for b in range(attentions[0].shape[0]):
        count = attentions[0].shape[-1]
        result = torch.eye(count, dtype=torch.float64)
        for attention in attentions:
            heads = attention[b]
            fused = {"mean": heads.mean(0), "max": heads.max(0).values, "min": heads.min(0).values}[
                fusion
            ].clone()
            flat = fused.flatten()
            drop = int(flat.numel() * discard)
            if drop:
                order = flat.argsort()[:drop]
                order = order[order != 0]
                flat[order] = 0
            step = 0.5 * flat.view(count, count) + 0.5 * torch.eye(count, dtype=torch.float64)
            step = step / step.sum(-1, keepdim=True)
            result = step @ result
        row = result[0] if cls else result[prefix:].mean(0)
        maps.append(row[prefix:].view(grid))
    return torch.stack(maps)


@pytest.mark.parametrize("name", ["timm", "timm_registers", "monai_3d"])
@pytest.mark.parametrize(("fusion", "discard"), [("mean", 0.0), ("max", 0.5), ("min", 0.2)])
def test_rollout_equals_the_formula_sample_by_sample(name, fusion, discard):
    build, shape = MODELS[name]
    model = build()
    x = torch.randn(*shape, dtype=torch.float64)
    e = camscope.explain(
        model, x, method="attention_rollout", head_fusion=fusion, discard_ratio=discard
    )
    with torch.no_grad(), AttentionTap(model, attention_blocks(model)) as tap:
        tap.run(x)
    prefix = {"timm": 1, "timm_registers": 2, "monai_3d": 1}[name]
    cls = name != "timm_registers"  # registers, no class token, an average-pooled head
    grid = e.maps.shape[2:]
    expected = _rollout_reference(tap.attentions, fusion, discard, prefix, grid, cls)
    torch.testing.assert_close(e.maps[:, 0], expected)
    assert e.extras["readout"] == ("class token" if cls else "mean over patch tokens")


def _explicit_attention(model):
    """A copy of a timm ViT on its own explicit attention path, keeping each block's attention
    (with its gradient) and output tokens in the order they run: independent of camscope's tap."""
    twin = copy.deepcopy(model)
    kept: list[torch.Tensor] = []
    tokens: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        output.retain_grad()
        kept.append(output)

    for block in twin.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(keep)
        block.register_forward_hook(lambda m, i, o: tokens.append(o))
    return twin, kept, tokens


def _per_target_attention_grads(model, x, target):
    """Each block's attention and d(score)/d(attention), one backward pass for one target."""
    twin, kept, _ = _explicit_attention(model)
    out = twin(x)
    out[torch.arange(x.shape[0]), target].sum().backward()
    return [a.detach() for a in kept], [a.grad for a in kept]


@pytest.mark.slow
def test_chefer_equals_its_formula_target_by_target():
    model = _timm_vit()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    e = camscope.explain(model, x, method="chefer", targets="all")
    assert e.maps.shape == (2, 5, 4, 4)
    for target in range(5):
        attentions, grads = _per_target_attention_grads(model, x, torch.full((2,), target))
        count = attentions[0].shape[-1]
        relevance = torch.eye(count, dtype=torch.float64).expand(2, count, count)
        for attention, grad in zip(attentions, grads, strict=True):
            weighted = (grad * attention).clamp(min=0).mean(1)
            relevance = relevance + weighted @ relevance
        torch.testing.assert_close(e.maps[:, target], relevance[:, 0, 1:].reshape(2, 4, 4))
    assert not torch.allclose(e.maps[:, 0], e.maps[:, 1])  # it depends on the target


def test_legrad_agrees_with_torch_cam_on_a_torchvision_vit():
    from torchcam.methods import LeGrad

    model = _torchvision_vit().float()
    x = torch.randn(2, 3, 32, 32)
    classes = [1, 3]
    e = camscope.explain(model, x, method="legrad", targets=torch.tensor(classes), readout="mean")
    blocks = list(model.encoder.layers)
    with LeGrad(model, blocks) as extractor:
        scores = model(x)
        (theirs,) = extractor(classes, scores, normalized=False)
    torch.testing.assert_close(e.maps[:, 0], theirs, rtol=1e-4, atol=1e-7)
    # the last two blocks only
    e2 = camscope.explain(
        model, x, method="legrad", targets=torch.tensor(classes), readout="mean", blocks=2
    )
    with LeGrad(model, blocks[-2:]) as extractor:
        scores = model(x)
        (last_two,) = extractor(classes, scores, normalized=False)
    torch.testing.assert_close(e2.maps[:, 0], last_two, rtol=1e-4, atol=1e-7)
    assert e2.extras["blocks"] == [
        f"encoder.layers.encoder_layer_{i}.self_attention" for i in (1, 2)
    ]


def test_legrad_with_the_model_readout_equals_block_by_block_gradients():
    """``readout="model"``: each block's tokens through the model's own norm and head."""
    model = _timm_vit()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    e = camscope.explain(model, x, method="legrad", targets=2)
    twin, kept, tokens = _explicit_attention(model)
    twin(x)
    total = 0
    for attention, token in zip(kept, tokens, strict=True):
        score = twin.forward_head(twin.norm(token))[:, 2].sum()
        (grad,) = torch.autograd.grad(score, attention, retain_graph=True)
        total = total + grad.clamp(min=0).mean(dim=(1, 2))[:, 1:]
    torch.testing.assert_close(e.maps[:, 0], (total / 3).view(2, 4, 4))


@pytest.mark.slow
def test_chefer_in_3d_on_unetr_with_a_region_target():
    from camscope.targets import RegionTarget

    torch.manual_seed(0)
    unetr = monai_nets.UNETR(
        in_channels=1,
        out_channels=2,
        img_size=32,
        feature_size=4,
        hidden_size=32,
        mlp_dim=64,
        num_heads=2,
    ).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    mask = torch.zeros(32, 32, 32, dtype=torch.bool)
    mask[8:16, 8:16, 8:16] = True
    e = camscope.explain(unetr, x, method="chefer", targets=RegionTarget(1, mask))
    assert e.maps.shape == (1, 1, 2, 2, 2) and e.layout == "tokens(2×2×2, prefix=0)"
    assert e.extras["readout"] == "mean over patch tokens"
    assert torch.isfinite(e.maps).all() and e.maps.std() > 0
    rollout = camscope.explain(unetr, x, method="attention_rollout", targets=RegionTarget(1, mask))
    assert rollout.maps.shape == (1, 1, 2, 2, 2)
    assert math.isclose(float(rollout.maps.sum()), 1.0, rel_tol=1e-5)  # mean of rows summing to 1
    with pytest.raises(camscope.MethodError, match=r"legrad .* no head of UNETR"):
        camscope.explain(unetr, x, method="legrad", targets=RegionTarget(1, mask))


def test_refusals_are_one_line_and_say_what_to_do():
    x = torch.randn(1, 3, 32, 32)
    swin = SwinTransformer(
        patch_size=[4, 4],
        embed_dim=8,
        depths=[1, 1],
        num_heads=[1, 1],
        window_size=[4, 4],
        num_classes=3,
    ).eval()
    with pytest.raises(camscope.LayerError, match=r"within windows .*grad_cam"):
        camscope.explain(swin, x, method="attention_rollout")
    cnn = camscope.models.create_model("tiny2d", num_classes=3)
    with pytest.raises(camscope.LayerError, match="no self-attention block"):
        camscope.explain(cnn, torch.randn(1, 1, 16, 16), method="chefer")
    vit = _torchvision_vit()
    with pytest.raises(camscope.MethodError, match="reads the model itself and takes no layer"):
        camscope.explain(vit, x.double(), method="chefer", layer="encoder")
    with pytest.raises(camscope.MethodError, match="readout='mean' is torchvision"):
        camscope.explain(_timm_vit(), x.double(), method="legrad", readout="mean")
    with pytest.raises(camscope.MethodError, match="blocks must be between 1 and 3"):
        camscope.explain(vit, x.double(), method="legrad", blocks=4)
    with pytest.raises(camscope.MethodError, match="head_fusion"):
        camscope.explain(vit, x.double(), method="attention_rollout", head_fusion="median")


def test_an_unknown_token_model_takes_its_grid_from_layout():
    """A ViT whose geometry camscope does not know: the attention is over 17 tokens, read with
    ``layout=tokens((4, 4), prefix=1)``; without it, a clear refusal."""

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            inner = _torchvision_vit()
            self.embed = nn.Sequential(inner.conv_proj)
            self.cls = inner.class_token
            self.encoder = inner.encoder
            self.head = inner.heads

        def forward(self, x):
            tokens = self.embed(x).flatten(2).transpose(1, 2)
            tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
            return self.head(self.encoder(tokens)[:, 0])

    model = Wrapped().double().eval()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with pytest.raises(camscope.LayerError, match=r"layout=camscope\.tokens"):
        camscope.explain(model, x, method="attention_rollout")
    e = camscope.explain(model, x, method="attention_rollout", layout=camscope.tokens((4, 4), 1))
    reference = camscope.explain(_torchvision_vit(), x, method="attention_rollout")
    torch.testing.assert_close(e.maps, reference.maps)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("stem", [False, True])
def test_camscope_vit_states_its_geometry_and_takes_every_method(spatial_dims, stem):
    torch.manual_seed(0)
    name = "vit2d" if spatial_dims == 2 else "vit3d"
    model = camscope.models.create_model(
        name,
        input_size=16,
        patch=8 if stem else 4,
        num_classes=3,
        width=16,
        depth=2,
        heads=2,
        stem=stem,
    ).eval()
    x = torch.randn(2, 1, *(16,) * spatial_dims)
    grid = (16 // (8 if stem else 4),) * spatial_dims
    for method in ("grad_cam", "respond_cam", "attention_rollout", "chefer", "legrad"):
        e = camscope.explain(model, x, method=method, targets="all")
        assert e.maps.shape == (2, 3, *grid), method
        assert e.layout == f"tokens({'×'.join(map(str, grid))}, prefix=1)"
        assert torch.isfinite(e.maps).all() and e.maps.abs().amax() > 0
    assert camscope.explain(model, x, method="grad_cam").layer == "blocks.1.norm1"


def test_a_map_that_is_zero_although_its_target_scores_warns():
    """After a class-token readout only the class token carries gradient: Grad-CAM at the last
    block's output is zero on every patch. Said, not shown as a blank map in silence."""
    vit = _torchvision_vit()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="score but have zero gradient at every position"):
        camscope.explain(vit, x, method="grad_cam", layer="encoder.layers.encoder_layer_2")
    camscope.explain(vit, x, method="grad_cam")  # the default layer: no warning


def test_chefer_without_a_class_token_reads_what_the_attention_added():
    """Average-pooled head: the mean of the patch rows of ``R − I`` (the identity is a flat
    offset there), by the formula."""
    build, shape = MODELS["timm_registers"]
    model = build()
    x = torch.randn(*shape, dtype=torch.float64)
    e = camscope.explain(model, x, method="chefer", targets=1)
    twin, kept, _ = _explicit_attention(model)
    twin(x)[:, 1].sum().backward()
    count = kept[0].shape[-1]
    relevance = torch.eye(count, dtype=torch.float64).expand(2, count, count)
    for attention in kept:
        weighted = (attention.grad * attention.detach()).clamp(min=0).mean(1)
        relevance = relevance + weighted @ relevance
    added = relevance - torch.eye(count, dtype=torch.float64)
    expected = added[:, 2:, 2:].mean(1).reshape(2, 4, 4)
    torch.testing.assert_close(e.maps[:, 0], expected)


def test_an_all_zero_classifier_output_is_said():
    """torchvision's ViT initialises its head to zero: every logit is 0, every map empty."""
    vit = _torchvision_vit()
    nn.init.zeros_(vit.heads.head.weight)
    nn.init.zeros_(vit.heads.head.bias)
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    for method in ("grad_cam", "chefer", "saliency"):
        with pytest.warns(RuntimeWarning, match="every output of the model is exactly 0"):
            camscope.explain(vit, x, method=method)


def test_the_helpers_misreadings_are_refused():
    vit = _torchvision_vit()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    # a token grid with another prefix, though the model states 1 + 4×4
    with pytest.raises(camscope.LayerError, match=r"camscope.tokens\(\(4, 4\), 1\)"):
        camscope.explain(
            vit,
            x,
            method="grad_cam",
            layer="encoder.layers.encoder_layer_0",
            layout=camscope.tokens((3, 5), 2),
        )
    # a Swin stage read channels first: the other reading follows the input better
    swin = timm.create_model(
        "swin_tiny_patch4_window7_224",
        img_size=64,
        window_size=4,
        embed_dim=24,
        depths=(1, 1),
        num_heads=(2, 2),
        num_classes=5,
    ).eval()
    with pytest.raises(camscope.LayerError, match="the other way round"):
        camscope.explain(
            swin,
            torch.randn(1, 3, 64, 64),
            method="grad_cam",
            layer="layers.0",
            layout="channels_first",
        )
    # inside attention, said explicitly
    timm_vit = _timm_vit(qk_norm=True)
    with pytest.raises(camscope.LayerError, match="inside an attention block"):
        camscope.explain(
            timm_vit, x, method="grad_cam", layer="blocks.0.attn.q_norm", layout="channels_first"
        )
    with pytest.raises(camscope.LayerError, match="expected tokens:GRID"):
        camscope.explain(vit, x, method="grad_cam", layout="tokens:")
    with pytest.raises(camscope.MethodError, match="chunk_size must be a positive integer"):
        camscope.explain(vit, x, method="grad_cam", chunk_size=0)
    with pytest.raises(camscope.MethodError, match="takes no layer, so no list"):
        camscope.explain(vit, x, method="chefer", layer=["encoder", "conv_proj"])


def test_scripted_and_exported_models_are_refused_for_attention_methods_compiled_works():
    vit = _torchvision_vit().float()
    x = torch.randn(2, 3, 32, 32)
    eager = camscope.explain(vit, x, method="chefer", targets=1)
    compiled = camscope.explain(torch.compile(vit), x, method="chefer", targets=1)
    torch.testing.assert_close(compiled.maps, eager.maps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated; tracing warns of constants
        traced = torch.jit.trace(vit, x, check_trace=False)
    with pytest.raises(camscope.LayerError, match="TorchScript, whose attention blocks"):
        camscope.explain(traced, x, method="attention_rollout")
    batch = torch.export.Dim("batch")
    program = torch.export.export(vit, (x,), dynamic_shapes=({0: batch},))
    with pytest.raises(camscope.LayerError, match="an exported program, whose attention"):
        camscope.explain(program, x, method="attention_rollout")
