"""A small, seeded training loop for classifiers (CPU-friendly), with a progress bar."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

__all__ = ["TrainingResult", "evaluate_accuracy", "train_classifier"]


@dataclass(frozen=True)
class TrainingResult:
    """Per-epoch mean training loss and the final accuracy on the evaluation set (if given)."""

    losses: tuple[float, ...]
    accuracy: float | None


def evaluate_accuracy(model: nn.Module, data: Dataset, *, batch_size: int = 32) -> float:
    """Fraction of samples whose arg-max logit is the label (model put in eval mode, restored)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        with torch.no_grad():
            for inputs, labels in DataLoader(data, batch_size=batch_size):
                correct += int((model(inputs).argmax(1) == labels).sum())
                total += int(labels.numel())
    finally:
        model.train(was_training)
    return correct / max(total, 1)


def train_classifier(
    model: nn.Module,
    train: Dataset,
    *,
    epochs: int = 3,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    seed: int = 0,
    evaluate_on: Dataset | None = None,
    progress: bool = True,
) -> TrainingResult:
    """Train ``model`` in place with Adam and cross-entropy, deterministically for a seed."""
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_function = nn.CrossEntropyLoss()
    losses = []
    model.train()
    for epoch in range(epochs):
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for inputs, labels in bar:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(model(inputs), labels)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(labels)
            count += len(labels)
            bar.set_postfix(loss=f"{total / count:.3f}")
        losses.append(total / max(count, 1))
    model.eval()
    accuracy = evaluate_accuracy(model, evaluate_on) if evaluate_on is not None else None
    return TrainingResult(losses=tuple(losses), accuracy=accuracy)
