"""Contract generated from the method registry: explain() leaves the user's model as it was.

Every method × {2D, 3D} × {normal call, bad target, raising layer}: no hook left behind, the same
train/eval flags, parameters' ``.grad`` and ``requires_grad`` untouched, no ``inplace`` flag
rewritten, the same weights, and the global autograd mode unchanged.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camscope
from camscope.models import create_model
from tests.nets import ATTENTION_METHODS, Raising, TinyViT

HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


def _snapshot(model: nn.Module) -> dict:
    return {
        "hooks": {
            name: tuple(len(getattr(module, attr)) for attr in HOOK_DICTS)
            for name, module in model.named_modules()
        },
        "training": {name: module.training for name, module in model.named_modules()},
        "inplace": {
            name: module.inplace
            for name, module in model.named_modules()
            if hasattr(module, "inplace")
        },
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        "grad": {
            name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()
        },
        "weights": {name: t.clone() for name, t in model.state_dict().items()},
        "grad_enabled": torch.is_grad_enabled(),
        "global_hooks": len(torch.nn.modules.module._global_forward_hooks),
        "function_modes": torch._C._len_torch_function_stack(),
    }


def _assert_same(before: dict, after: dict) -> None:
    keys = ("hooks", "training", "inplace", "requires_grad", "grad_enabled", "global_hooks")
    for key in (*keys, "function_modes"):
        assert before[key] == after[key], key
    for name, grad in before["grad"].items():
        if grad is None:
            assert after["grad"][name] is None, name
        else:
            torch.testing.assert_close(after["grad"][name], grad, rtol=0, atol=0)
    for name, tensor in before["weights"].items():
        torch.testing.assert_close(after["weights"][name], tensor, rtol=0, atol=0)


def _model(method: str, spatial_dims: int) -> nn.Module:
    if method in ATTENTION_METHODS:  # a transformer, in the same kind of state
        vit = TinyViT(spatial_dims, dtype=torch.float32)
        vit.train()
        vit.vit.blocks[0].eval()
        vit.vit.norm.bias.requires_grad_(False)
        head = vit.vit.classification_head
        head.weight.grad = torch.full_like(head.weight, 0.5)
        return vit
    name = f"tiny{spatial_dims}d" + ("_gap" if method == "cam" else "")
    model = create_model(name, num_classes=4, input_size=8)
    # A state worth preserving: mixed train/eval flags, a frozen parameter, an existing .grad.
    model.train()
    model.pool1.eval()
    model.conv1.bias.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 0.5)
    return model


@pytest.mark.parametrize("case", ["ok", "bad_target", "raising_layer"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("method", camscope.list_methods())
def test_model_left_exactly_as_it_was(method, spatial_dims, case):
    model = _model(method, spatial_dims)
    x = torch.randn(2, 1, *([8] * spatial_dims))
    layer = "pool2"
    targets: object = "all"
    if case == "bad_target":
        targets = 99
    if case == "raising_layer" and method in ATTENTION_METHODS:
        model.vit.blocks[1].mlp = Raising()  # the last block raises mid-forward
    elif case == "raising_layer":
        model.relu2 = Raising()  # the chosen layer's input path raises mid-forward
        layer = "relu2"
    info = camscope.get_method(method)
    options = {"layer": layer} if info.needs_layer else {}
    before = _snapshot(model)
    if case == "ok":
        e = camscope.explain(model, x, method=method, targets=targets, **options)
        if info.resolution == "input":
            assert e.maps.shape == (2, 4, 1, *([8] * spatial_dims))
        elif method == "full_grad":  # all layers' bias gradients, on the input grid
            assert e.maps.shape == (2, 4, *([8] * spatial_dims))
        else:
            assert e.maps.shape == (2, 4, *([2] * spatial_dims))
        assert torch.isfinite(e.maps).all()
    else:
        expected = camscope.TargetError if case == "bad_target" else camscope.ModelError
        with pytest.raises(expected):
            camscope.explain(model, x, method=method, targets=targets, **options)
    _assert_same(before, _snapshot(model))


@pytest.mark.parametrize("method", camscope.list_methods())
def test_registry_entries_are_complete(method):
    info = camscope.get_method(method)
    assert info.name == method and info.kind in ("cam", "layer", "input") and info.summary
    assert info.resolution in ("layer", "input") and info.channel_reduction in ("max_abs", "sum")
    assert callable(info.function)
    assert getattr(camscope.methods, method) is info.function
