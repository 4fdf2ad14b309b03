"""The training loop's speed settings (channels-last, bfloat16), its device handling and its
refusal of a diverged run."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from camscope.errors import CamscopeError
from camscope.models import create_model
from camscope.models.training import TrainingConfig, evaluate_accuracy, train_classifier


def _separable(count: int = 48) -> TensorDataset:
    """Three classes told apart by which third of the volume is bright."""
    generator = torch.Generator().manual_seed(2)
    x = 0.3 * torch.randn(count, 1, 8, 8, 8, generator=generator)
    y = torch.arange(count) % 3
    for index, label in enumerate(y.tolist()):
        x[index, 0, :, :, 3 * label : 3 * label + 2] += 1.5
    return TensorDataset(x, y)


def _train(config: TrainingConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("tiny3d", num_classes=3, input_size=8)
    train_classifier(model, _separable(), config=config, progress=False)
    return model


@pytest.mark.parametrize(
    "settings",
    [
        {"precision": "float32", "channels_last": True},
        {"precision": "bfloat16", "channels_last": False},
        {"precision": "bfloat16", "channels_last": True},
    ],
)
@pytest.mark.slow
def test_speed_settings_learn_are_repeatable_and_leave_a_standard_model(settings):
    config = TrainingConfig(epochs=8, batch_size=8, learning_rate=1e-2, seed=1, **settings)
    model = _train(config)
    again = _train(config)
    for (name, tensor), other in zip(
        model.state_dict().items(), again.state_dict().values(), strict=True
    ):
        assert torch.equal(tensor, other), f"{name} differs between two identical runs"
        assert tensor.is_contiguous(), f"{name} left channels-last after training"
        assert tensor.dtype == torch.float32  # autocast never changes the stored weights
    assert evaluate_accuracy(model, _separable()) > 0.9


def test_channels_last_alone_changes_nothing_but_the_layout():
    plain = _train(TrainingConfig(epochs=2, batch_size=8, learning_rate=1e-2, seed=1))
    laid = _train(
        TrainingConfig(epochs=2, batch_size=8, learning_rate=1e-2, seed=1, channels_last=True)
    )
    for tensor, other in zip(plain.state_dict().values(), laid.state_dict().values(), strict=True):
        torch.testing.assert_close(tensor, other, rtol=1e-4, atol=1e-5)


def test_a_diverged_run_is_stopped_with_a_hint():
    data = _separable()
    data.tensors[0][5] = float("nan")
    model = create_model("tiny3d", num_classes=3, input_size=8)
    with pytest.raises(CamscopeError, match=r"diverged at epoch 1.*lower the learning rate"):
        train_classifier(model, data, epochs=1, batch_size=8, progress=False)
    assert all(p.is_contiguous() for p in model.parameters())


def test_batches_cover_every_sample_once_per_epoch():
    from camscope.models.training import _batches

    data = TensorDataset(torch.arange(10.0), torch.arange(10))
    seen = torch.cat([labels for _, labels in _batches(data, 4, torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    again = torch.cat([labels for _, labels in _batches(data, 4, torch.Generator().manual_seed(0))])
    assert torch.equal(seen, again)
