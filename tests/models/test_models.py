"""Built-in models: the paper's layouts, names and sizes."""

from __future__ import annotations

import pytest
import torch

import camscope
from camscope.models import create_model, list_models


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry():
    assert {"cnn1", "cnn2", "tiny2d", "tiny3d", "tiny2d_gap", "tiny3d_gap"} <= set(list_models())
    with pytest.raises(camscope.CamscopeError, match="Did you mean 'cnn2'"):
        create_model("cnn_2x")


def test_cnn2_layout_matches_the_paper():
    model = create_model("cnn2")
    # CECT.md: 4.57 M parameters; 5³×64 at maxpool2
    assert abs(_parameters(model) - 4.57e6) / 4.57e6 < 0.01
    shapes = {
        info.name: info.output_shape
        for info in camscope.probe_layers(model, torch.zeros(1, 1, 40, 40, 40))
    }
    assert shapes["prepooling"] == (1, 20, 20, 20)
    assert shapes["conv2"] == (32, 20, 20, 20)
    assert shapes["maxpool2"] == (64, 5, 5, 5)
    assert shapes["fc3"] == (23,)


def test_cnn1_layout_matches_the_paper():
    model = create_model("cnn1")
    assert abs(_parameters(model) - 33.2e6) / 33.2e6 < 0.01
    smaller = create_model("cnn1", input_size=16)
    shapes = {
        info.name: info.output_shape
        for info in camscope.probe_layers(smaller, torch.zeros(1, 1, 16, 16, 16))
    }
    assert shapes["conv1"] == (32, 16, 16, 16) and shapes["maxpool2"] == (64, 4, 4, 4)


def test_glorot_init_zero_bias():
    model = create_model("cnn2")
    assert torch.count_nonzero(model.fc3.bias) == 0
    bound = (6 / (512 + 23)) ** 0.5
    assert model.fc3.weight.abs().max() <= bound


def test_bad_input_size():
    with pytest.raises(ValueError, match="divisible"):
        create_model("cnn2", input_size=36)
