"""safetensors + JSON checkpoints, and training that resumes exactly where it stopped."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import TensorDataset

import camscope.models.training as training
from camscope.io.checkpoints import CheckpointError, load_model, read_checkpoint, save_model
from camscope.models import create_model
from camscope.models.training import TrainingConfig, train_classifier


def _data(count: int = 24):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(count, 1, 8, 8, 8, generator=generator)
    y = torch.randint(0, 3, (count,), generator=generator)
    return TensorDataset(x, y)


def test_round_trip_with_a_dot_in_the_name(tmp_path):
    model = create_model("tiny3d", num_classes=3, input_size=8)
    stem = tmp_path / "models" / "tiny_snr-0.1"
    save_model(
        stem,
        model,
        architecture="tiny3d",
        options={"num_classes": 3, "input_size": 8},
        metadata={"accuracy": 0.5},
    )
    assert (tmp_path / "models" / "tiny_snr-0.1.safetensors").exists()
    loaded, saved = load_model(stem)
    assert saved.metadata == {"accuracy": 0.5} and not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    assert read_checkpoint(f"{stem}.json").architecture == "tiny3d"


def test_corrupted_or_missing_files_are_refused(tmp_path):
    model = create_model("tiny2d", num_classes=3)
    stem = tmp_path / "m"
    save_model(stem, model, architecture="tiny2d", options={"num_classes": 3})
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="does not match its description"):
        load_model(stem)
    with pytest.raises(CheckpointError, match="no saved model"):
        load_model(tmp_path / "absent")
    (tmp_path / "bad.json").write_text(json.dumps({"format": "pickle"}))
    with pytest.raises(CheckpointError, match="not a camscope checkpoint"):
        read_checkpoint(tmp_path / "bad")


def test_weights_that_do_not_fit_are_refused(tmp_path):
    save_model(
        tmp_path / "m",
        create_model("tiny2d", num_classes=3),
        architecture="tiny2d",
        options={"num_classes": 4},
    )
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "m")


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    config = TrainingConfig(epochs=3, batch_size=8, learning_rate=3e-3, seed=4)
    options = {"num_classes": 3, "input_size": 8}
    torch.manual_seed(0)
    straight = create_model("tiny3d", **options)
    train_classifier(
        straight,
        _data(),
        config=config,
        progress=False,
        checkpoint=tmp_path / "straight",
        architecture="tiny3d",
        options=options,
    )

    real_save = training.save_model
    calls = []

    def interrupt_after_first_epoch(*args, **kwargs):
        real_save(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_model", interrupt_after_first_epoch)
    torch.manual_seed(0)
    first = create_model("tiny3d", **options)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(
            first,
            _data(),
            config=config,
            progress=False,
            checkpoint=tmp_path / "resumed",
            architecture="tiny3d",
            options=options,
        )
    torch.manual_seed(123)  # a different initialisation: the checkpoint must override it
    second = create_model("tiny3d", **options)
    result = train_classifier(
        second,
        _data(),
        config=config,
        progress=False,
        checkpoint=tmp_path / "resumed",
        architecture="tiny3d",
        options=options,
    )
    assert result.resumed_from_epoch == 1 and len(result.losses) == 3
    for name, tensor in straight.state_dict().items():
        torch.testing.assert_close(second.state_dict()[name], tensor, rtol=0, atol=1e-6)
    # A finished checkpoint is reused: no epoch runs again.
    again = train_classifier(
        create_model("tiny3d", **options),
        _data(),
        config=config,
        progress=False,
        checkpoint=tmp_path / "resumed",
        architecture="tiny3d",
        options=options,
    )
    assert again.resumed_from_epoch == 3


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    options = {"num_classes": 3, "input_size": 8}
    model = create_model("tiny3d", **options)
    train_classifier(
        model,
        _data(),
        epochs=1,
        progress=False,
        checkpoint=tmp_path / "c",
        architecture="tiny3d",
        options=options,
    )
    with pytest.raises(CheckpointError, match="other settings"):
        train_classifier(
            model,
            _data(),
            epochs=2,
            progress=False,
            checkpoint=tmp_path / "c",
            architecture="tiny3d",
            options=options,
        )


def test_failed_atomic_write_leaves_nothing(tmp_path):
    from camscope.io.atomic import atomic_write

    with pytest.raises(RuntimeError), atomic_write(tmp_path / "out.bin") as handle:
        handle.write(b"partial")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
    with atomic_write(tmp_path / "out.bin") as handle:
        handle.write(b"whole")
    assert (tmp_path / "out.bin").read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_read_input_images_arrays_and_errors(tmp_path):
    import numpy as np
    from PIL import Image

    from camscope.errors import CamscopeError
    from camscope.io.inputs import read_input

    Image.fromarray(np.full((8, 6), 255, dtype=np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.zeros((8, 6, 3), dtype=np.uint8)).save(tmp_path / "rgb.jpg")
    grey, record = read_input(tmp_path / "grey.png")
    assert grey.shape == (1, 8, 6) and float(grey.max()) == 1.0 and record["mode"] == "L"
    assert read_input(tmp_path / "rgb.jpg")[0].shape == (3, 8, 6)
    np.save(tmp_path / "v.npy", np.zeros((4, 5, 6)))
    assert read_input(tmp_path / "v.npy")[0].shape == (1, 4, 5, 6)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(CamscopeError, match=r"cannot read .* as PNG"):
        read_input(tmp_path / "broken.png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CamscopeError, match=r"unsupported input type \.txt"):
        read_input(tmp_path / "notes.txt")
    with pytest.raises(CamscopeError, match="no such file or folder"):
        read_input(tmp_path / "missing.png")
