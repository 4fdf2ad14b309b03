"""A small, seeded, resumable training loop for classifiers, with a progress bar.

AdamW with a one-cycle learning-rate schedule (plain Adam at a constant rate is available too).
The shuffling of epoch ``e`` depends only on ``(seed, e)``, so a run resumed from a checkpoint
continues exactly as an uninterrupted one would, and two runs on the same machine give the same
weights bit for bit (the arithmetic of CPU kernels can differ between machines).

Two speed settings, off by default and measured in ``benchmarks/bench_training.py``:
``channels_last`` (the weights of 2D/3D convolutions laid out channels-last during training, the
layout oneDNN's convolutions prefer; restored afterwards) and ``precision="bfloat16"`` (autocast
of the forward pass; the weights, the optimizer and the loss stay float32). On a CPU with AMX or
AVX-512 BF16 the two together train CNN-2 about 3× faster at the same accuracy. Batches follow
the model's device, so the same loop runs on a GPU. With ``checkpoint`` set, the model, optimizer
and schedule are saved after every epoch (safetensors + JSON, see :mod:`camscope.io.checkpoints`)
and an existing checkpoint of the same settings is resumed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset, default_collate
from tqdm.auto import tqdm

from camscope.errors import CamscopeError
from camscope.io.checkpoints import CheckpointError, read_checkpoint, save_model

__all__ = [
    "TrainingConfig",
    "TrainingResult",
    "evaluate_accuracy",
    "train_classifier",
    "train_small_2d",
]


@dataclass(frozen=True)
class TrainingConfig:
    """Training settings (part of a checkpoint's identity)."""

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    schedule: Literal["onecycle", "constant"] = "onecycle"
    seed: int = 0
    precision: Literal["float32", "bfloat16"] = "float32"
    channels_last: bool = False


@dataclass(frozen=True)
class TrainingResult:
    """Per-epoch mean training loss and the final accuracy on the evaluation set (if given)."""

    losses: tuple[float, ...]
    accuracy: float | None
    resumed_from_epoch: int = 0
    replaced_checkpoint: bool = False


def evaluate_accuracy(model: nn.Module, data: Dataset, *, batch_size: int = 32) -> float:
    """Fraction of samples whose arg-max logit is the label (model put in eval mode, restored)."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    correct = total = 0
    try:
        with torch.no_grad():
            for inputs, labels in DataLoader(data, batch_size=batch_size):
                predicted = model(inputs.to(device)).argmax(1).cpu()
                correct += int((predicted == labels).sum())
                total += int(labels.numel())
    finally:
        model.train(was_training)
    return correct / max(total, 1)


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _layout(model: nn.Module, channels_last: bool) -> None:
    """Lay the 4D/5D weights out channels-last (True) or back to the standard layout (False).

    ``.data`` is replaced, so the parameters (and an optimizer holding them) stay the same
    objects; values are unchanged.
    """
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.dim() in formats:
            layout = formats[tensor.dim()] if channels_last else torch.contiguous_format
            tensor.data = tensor.data.contiguous(memory_format=layout)


def _batches(
    train: Dataset, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled batches in an order set by ``generator`` alone, whatever the data set's kind: a
    :class:`TensorDataset` is gathered a batch at a time (one indexing op per tensor instead of
    one per item and a stack); any other data set item by item (a lazily simulated one gives
    the same batches as the same data held in memory)."""
    order = torch.randperm(len(train), generator=generator)  # type: ignore[arg-type]
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        if isinstance(train, TensorDataset):
            inputs, labels = (tensor[chosen] for tensor in train.tensors[:2])
        else:
            inputs, labels = default_collate([train[int(i)] for i in chosen])[:2]
        yield inputs, labels


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig, steps: int) -> Any:
    if config.schedule == "onecycle" and steps >= 4:  # each phase needs at least one step
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.learning_rate,
            total_steps=steps,
            pct_start=max(0.25, 2.0 / steps),
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def train_classifier(
    model: nn.Module,
    train: Dataset,
    *,
    config: TrainingConfig | None = None,
    evaluate_on: Dataset | None = None,
    progress: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
    architecture: str | None = None,
    options: dict[str, Any] | None = None,
    description: str = "",
    identity: dict[str, Any] | None = None,
    replace_mismatched: bool = False,
    **overrides: Any,
) -> TrainingResult:
    """Train ``model`` in place with cross-entropy, deterministically for a seed.

    Args:
        model: the classifier.
        train: items ``(input, label)``.
        config: settings; keyword ``overrides`` (e.g. ``epochs=5``) change single fields.
        evaluate_on: a test set for the final accuracy.
        progress: show progress bars.
        checkpoint: file stem to save after every epoch and to resume from.
        architecture: the registered name that rebuilds ``model`` (stored in the checkpoint,
            required with ``checkpoint``).
        options: the options that rebuild it with ``architecture``.
        description: a label for the progress bar.
        identity: what else defines the run (e.g. the data set's settings); a checkpoint is
            resumed or reused only when this, the training settings and the data size match.
        replace_mismatched: train from scratch over a checkpoint of other settings instead of
            raising (the result says so).
        **overrides: single fields of :class:`TrainingConfig` (``epochs=5``, ``seed=1``, ...).

    Raises:
        CheckpointError: a checkpoint exists at ``checkpoint`` with other settings.
    """
    settings = config or TrainingConfig()
    if overrides:
        settings = TrainingConfig(**{**asdict(settings), **overrides})
    if checkpoint is not None and architecture is None:
        raise CheckpointError("checkpoint= needs architecture= (and options=) to be reloadable")
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)  # type: ignore[arg-type]
    scheduler = _scheduler(optimizer, settings, settings.epochs * steps_per_epoch)
    losses: list[float] = []
    start = 0
    replaced = False
    run_identity = {
        "training": asdict(settings),
        "n_train": len(train),  # type: ignore[arg-type]
        **(identity or {}),
    }
    if checkpoint is not None and os.path.exists(f"{checkpoint}.json"):
        saved = read_checkpoint(checkpoint)
        if saved.metadata.get("identity") != run_identity:
            if not replace_mismatched:
                raise CheckpointError(
                    f"{checkpoint}.json holds a run with other settings "
                    f"({saved.metadata.get('identity')}); use another path or delete it"
                )
            replaced = True
        else:
            model.load_state_dict(saved.state_dict)
            if saved.optimizer_state is not None:
                optimizer.load_state_dict(saved.optimizer_state)
            if saved.scheduler_state is not None:
                scheduler.load_state_dict(saved.scheduler_state)
            start = int(saved.epoch or 0)
            losses = list(saved.metadata.get("losses", []))
    loss_function = nn.CrossEntropyLoss()
    device = _device_of(model)
    model.train()
    _layout(model, settings.channels_last)
    try:
        for epoch in range(start, settings.epochs):
            generator = torch.Generator().manual_seed(settings.seed * 100_003 + epoch)
            total, count = 0.0, 0
            label = f"{description} epoch {epoch + 1}/{settings.epochs}".strip()
            bar = tqdm(
                _batches(train, settings.batch_size, generator),
                total=steps_per_epoch,
                desc=label,
                disable=not progress,
                leave=False,
            )
            for inputs, labels in bar:
                inputs, labels = inputs.to(device), labels.to(device)
                if settings.channels_last and inputs.dim() in (4, 5):
                    layout = torch.channels_last if inputs.dim() == 4 else torch.channels_last_3d
                    inputs = inputs.contiguous(memory_format=layout)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(
                    device.type,
                    dtype=torch.bfloat16,
                    enabled=settings.precision == "bfloat16",
                ):
                    logits = model(inputs)
                loss = loss_function(logits.float(), labels)
                loss.backward()
                optimizer.step()
                scheduler.step()
                value = loss.item()
                if not math.isfinite(value):
                    raise CamscopeError(
                        f"training diverged at epoch {epoch + 1} (loss {value}): lower the "
                        f"learning rate (now {settings.learning_rate:g}) or use float32"
                    )
                total += value * len(labels)
                count += len(labels)
                bar.set_postfix(loss=f"{total / count:.3f}")
            losses.append(total / max(count, 1))
            if checkpoint is not None:
                assert architecture is not None
                save_model(
                    checkpoint,
                    model,
                    architecture=architecture,
                    options=options,
                    metadata={"identity": run_identity, "losses": losses},
                    optimizer=optimizer,
                    scheduler=scheduler,
                    epoch=epoch + 1,
                )
    finally:
        _layout(model, False)
    model.eval()
    accuracy = evaluate_accuracy(model, evaluate_on) if evaluate_on is not None else None
    return TrainingResult(
        losses=tuple(losses),
        accuracy=accuracy,
        resumed_from_epoch=start,
        replaced_checkpoint=replaced,
    )


#: The small 2D networks trained here, with their options beyond the data's and their learning
#: rates: a CNN of 16/32 channels, and a ViT of 8² patches (width 64, 4 blocks of 4 heads).
SMALL_2D: dict[str, tuple[dict[str, Any], float, str]] = {
    "tiny2d": ({"widths": [16, 32]}, 2e-3, "tiny2d (16/32 channels)"),
    "vit2d": (
        {"patch": 8, "stem": True},
        1e-3,
        "vit2d (conv stem, 8² patches, width 64, 4 blocks)",
    ),
}


def train_small_2d(
    checkpoint: Path,
    train_arrays: tuple[np.ndarray, np.ndarray],
    test_arrays: tuple[np.ndarray, np.ndarray],
    *,
    classes: int,
    epochs: int,
    progress: bool,
    data: dict[str, Any],
    log: Callable[[str], None] = print,
    architecture: str = "tiny2d",
) -> tuple[nn.Module, float]:
    """Train (or reuse from ``checkpoint``) a seeded small 2D classifier (see
    :data:`SMALL_2D`) on ``(images, labels)`` arrays; return it with its test accuracy."""
    from camscope.models import create_model

    if architecture not in SMALL_2D:
        raise CamscopeError(
            f"architecture must be one of {', '.join(SMALL_2D)}, not {architecture!r}"
        )
    extra, learning_rate, title = SMALL_2D[architecture]
    images, labels = train_arrays
    test_images, test_labels = test_arrays
    options = {"num_classes": classes, "input_size": images.shape[-1], **extra}
    torch.manual_seed(0)
    model = create_model(architecture, **options)
    train = TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
    test = TensorDataset(torch.from_numpy(test_images), torch.from_numpy(test_labels))
    result = train_classifier(
        model,
        train,
        epochs=epochs,
        learning_rate=learning_rate,
        progress=progress,
        checkpoint=checkpoint,
        architecture=architecture,
        options=options,
        replace_mismatched=True,
        description="training",
        identity={"data": data},
    )
    accuracy = evaluate_accuracy(model, test)
    how = "reused" if result.resumed_from_epoch >= epochs else "trained"
    log(f"{title}: test accuracy {accuracy:.3f} on {len(test)} images ({how})")
    return model, accuracy
