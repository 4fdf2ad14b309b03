"""Faithfulness metrics that query the model: how its confidence reacts when the map is used to
mask, delete or insert input positions. 2D and 3D; forward passes batched.

Maps may be at layer or input resolution (``(B, *s)``); they are upsampled linearly to the input
when needed. Inputs are ``(B, C, *S)``; every input channel is masked alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from scipy import ndimage
from torch import nn

from camscope.engine import ModelState, any_model, call_model
from camscope.errors import InputError, TargetError
from camscope.metrics._shapes import one_map_per_sample
from camscope.metrics._stats import mean_std
from camscope.postprocess import normalize, upsample

__all__ = [
    "ConfidenceResult",
    "CurveResult",
    "FidelityResult",
    "average_drop",
    "deletion",
    "fidelity",
    "increase_in_confidence",
    "insertion",
    "target_outputs",
    "target_probabilities",
]


@any_model
def target_probabilities(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, batch_size: int = 32
) -> torch.Tensor:
    """Softmax probability of ``targets[i]`` for every input, in batches, eval mode, no grad.

    ``inputs`` may hold several variants per target: it has ``len(targets) · r`` rows, row ``j``
    going with ``targets[j % len(targets)]``.
    """
    return target_outputs(model, inputs, targets, batch_size=batch_size)[0]


@any_model
def target_outputs(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int = 32,
    softmax: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The target's output (softmax probability, or the logit) and the predicted class of every
    input, in batches, eval mode, no grad. Row ``j`` goes with ``targets[j % len(targets)]``
    (``inputs`` may hold several variants per target)."""
    count = len(targets)
    values, predicted = [], []
    with ModelState(model, eval_mode=True), torch.no_grad():
        for start in range(0, inputs.shape[0], batch_size):
            chunk = inputs[start : start + batch_size]
            logits = call_model(model, chunk)
            if int(targets.max()) >= logits.shape[1] or int(targets.min()) < 0:
                raise TargetError(
                    f"class index out of range: the model has {logits.shape[1]} classes "
                    f"(0 to {logits.shape[1] - 1}), targets go to {int(targets.max())}"
                )
            scores = torch.softmax(logits, dim=1) if softmax else logits
            rows = torch.arange(start, start + chunk.shape[0]) % count
            values.append(scores.gather(1, targets[rows].to(scores.device)[:, None])[:, 0].cpu())
            predicted.append(logits.argmax(1).cpu())
    return torch.cat(values), torch.cat(predicted)


def _check(
    inputs: torch.Tensor, maps: Any, targets: Any
) -> tuple[tuple[int, ...], torch.Tensor, torch.Tensor]:
    """The input size, ``(B, *s)`` maps and ``(B,)`` targets (see :mod:`._shapes`)."""
    if not isinstance(inputs, torch.Tensor):
        hint = " (convert with torch.from_numpy)" if type(inputs).__module__ == "numpy" else ""
        raise InputError(f"inputs must be a torch.Tensor, not {type(inputs).__name__}{hint}")
    if not inputs.is_floating_point():
        raise InputError(
            f"inputs must be floating point, got {inputs.dtype}; convert with x.float() (and "
            "scale as the model expects)"
        )
    if inputs.ndim not in (4, 5):
        raise InputError(
            f"inputs must be (B, C, H, W) or (B, C, D, H, W), got {tuple(inputs.shape)}"
        )
    batch, size = inputs.shape[0], tuple(inputs.shape[2:])
    maps, targets = one_map_per_sample(maps, targets, spatial_dims=len(size))
    if targets is None:
        raise InputError("targets are needed: the class each map explains, (B,)")
    if maps.ndim != inputs.ndim - 1 or maps.shape[0] != batch:
        raise InputError(
            f"maps must be (B, *s) with B = {batch} and {len(size)} spatial axes, "
            f"got {tuple(maps.shape)}; take one target's maps, e.g. explanation.maps[:, 0]"
        )
    if targets.shape != (batch,):
        raise InputError(
            f"targets must be (B,) = ({batch},) class indices, got {tuple(targets.shape)}"
        )
    if not bool(torch.isfinite(maps).all()):
        raise InputError("maps contain NaN or infinite values")
    return size, maps, targets


def _input_maps(maps: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    maps = maps.detach().to(torch.float64)
    if tuple(maps.shape[1:]) != size:
        maps = upsample(maps[:, None], size, mode="linear")[:, 0]
    return maps


@dataclass(frozen=True)
class ConfidenceResult:
    """Per-sample confidence on the original (``original``) and masked (``masked``) inputs.

    ``drop`` is ``100 · max(0, Y − O) / Y`` and ``increase`` is ``O > Y``.
    """

    original: torch.Tensor
    masked: torch.Tensor
    drop: torch.Tensor
    increase: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Average Drop % (mean ± std) and Increase in Confidence %."""
        mean, std = mean_std(self.drop)
        return {
            "average_drop": mean,
            "average_drop_std": std,
            "increase_in_confidence": 100.0 * float(self.increase.double().mean()),
        }


def _confidence(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: Any,
    targets: Any,
    masking: Literal["absolute", "relative"],
    top_fraction: float,
    batch_size: int,
) -> ConfidenceResult:
    size, maps, targets = _check(inputs, maps, targets)
    scaled = normalize(torch.relu(_input_maps(maps, size))[:, None], kind="minmax")[:, 0]
    if masking == "relative":
        if not 0 < top_fraction <= 1:
            raise InputError(f"top_fraction must be in (0, 1], got {top_fraction}")
        flat = scaled.flatten(1)
        keep = max(1, round(top_fraction * flat.shape[1]))
        order = flat.argsort(dim=1, descending=True, stable=True)[:, :keep]
        binary = torch.zeros_like(flat).scatter_(1, order, 1.0)
        scaled = binary.view_as(scaled)
    elif masking != "absolute":
        raise InputError(f"masking must be 'absolute' or 'relative', got {masking!r}")
    masked_inputs = inputs * scaled[:, None].to(inputs.dtype)
    both = target_probabilities(
        model, torch.cat([inputs, masked_inputs]), targets, batch_size=batch_size
    )
    original, masked = both[: len(targets)], both[len(targets) :]
    drop = 100.0 * torch.clamp(original - masked, min=0) / original.clamp_min(1e-30)
    return ConfidenceResult(original=original, masked=masked, drop=drop, increase=masked > original)


@any_model
def average_drop(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: Any,
    targets: Any = None,
    *,
    masking: Literal["absolute", "relative"] = "absolute",
    top_fraction: float = 0.5,
    batch_size: int = 32,
) -> ConfidenceResult:
    """Average Drop % (Chattopadhay et al. 2018; Kim et al. 2020), with Increase in Confidence.

    ``M`` = the map after ReLU, upsampled to the input, min-max scaled to [0, 1] (absolute
    masking) or 1 on its top ``top_fraction`` of positions and 0 elsewhere (relative masking).
    ``Y`` = softmax probability of the target on ``x``, ``O`` = on ``x ⊙ M``;
    ``AD = 100 · mean(max(0, Y − O) / Y)``. Lower is better.

    Args:
        model: the classifier (evaluated in eval mode, restored afterwards).
        inputs: ``(B, C, *S)``.
        maps: ``(B, *s)`` one map per sample (any resolution, raw); also ``(B, 1, *s)`` or an
            :class:`~camscope.Explanation` with one target per sample.
        targets: ``(B,)`` (or ``(B, 1)``) the class each map explains; ``None`` with an
            Explanation takes its targets.
        masking: ``"absolute"`` or ``"relative"``.
        top_fraction: kept fraction for relative masking.
        batch_size: forward-pass batch size.
    """
    return _confidence(model, inputs, maps, targets, masking, top_fraction, batch_size)


#: Increase in Confidence % (``100 · mean(1[O > Y])``; higher is better) comes out of the same
#: computation as Average Drop: both are in the result of either name.
increase_in_confidence = average_drop


@dataclass(frozen=True)
class CurveResult:
    """Deletion or insertion: probability curves ``(B, steps + 1)`` and their areas ``(B,)``."""

    auc: torch.Tensor
    curves: torch.Tensor
    fractions: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Mean ± std of the area under the curve."""
        mean, std = mean_std(self.auc)
        return {"auc": mean, "auc_std": std}


def _baseline(inputs: torch.Tensor, baseline: str | float) -> torch.Tensor:
    if isinstance(baseline, int | float):
        return torch.full_like(inputs, float(baseline))
    if baseline == "zero":
        return torch.zeros_like(inputs)
    if baseline == "blur":
        sigma = [0, 0] + [5.0] * (inputs.ndim - 2)  # RISE's blurred canvas, σ = 5 px
        blurred = ndimage.gaussian_filter(inputs.detach().cpu().double().numpy(), sigma=sigma)
        return torch.from_numpy(blurred).to(inputs)
    raise InputError(f"baseline must be 'zero', 'blur' or a number, got {baseline!r}")


def _curve(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    targets: Any,
    *,
    steps: int,
    start: torch.Tensor,
    end: torch.Tensor,
    batch_size: int,
) -> CurveResult:
    size, saliency, targets = _check(inputs, saliency, targets)
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}")
    values = _input_maps(saliency, size).flatten(1)
    batch, positions = values.shape
    order = values.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(positions).expand(batch, positions).contiguous())
    counts = torch.tensor([math.ceil(i * positions / steps) for i in range(steps + 1)])
    # switched[i, b, p]: position p of sample b has moved from `start` to `end` at step i
    switched = (rank[None] < counts[:, None, None]).view(steps + 1, batch, 1, *size)
    frames = torch.where(switched, end[None], start[None]).reshape(-1, *inputs.shape[1:])
    probabilities = target_probabilities(model, frames, targets, batch_size=batch_size)
    curves = probabilities.view(steps + 1, batch).T.double()
    auc = (curves[:, 1:] + curves[:, :-1]).sum(dim=1) / (2 * steps)
    return CurveResult(auc=auc, curves=curves, fractions=counts.double() / positions)


@any_model
def deletion(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    targets: Any = None,
    *,
    steps: int = 20,
    baseline: str | float = "zero",
    batch_size: int = 32,
) -> CurveResult:
    """Deletion (Petsiuk et al. 2018): remove positions most-salient first; area under the target
    probability against the removed fraction. Lower is better.

    Args:
        model: the network (never modified).
        inputs: ``(B, C, *S)``.
        saliency: one map per sample ``(B, *S)``, ``(B, 1, *s)`` or an Explanation (layer maps
            are upsampled to the input).
        targets: the class of each sample (default: the predicted class).
        steps: number of removal steps (``steps + 1`` forward passes per sample).
        baseline: what removed positions become: ``"zero"``, ``"blur"`` (Gaussian, σ = 5 px) or a
            number.
        batch_size: perturbed copies per forward pass.
    """
    return _curve(
        model,
        inputs,
        saliency,
        targets,
        steps=steps,
        start=inputs,
        end=_baseline(inputs, baseline),
        batch_size=batch_size,
    )


@any_model
def insertion(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    targets: Any = None,
    *,
    steps: int = 20,
    baseline: str | float = "blur",
    batch_size: int = 32,
) -> CurveResult:
    """Insertion (Petsiuk et al. 2018): start from a baseline (blurred input by default) and insert
    the original positions most-salient first; area under the probability curve. Higher is better.
    """
    return _curve(
        model,
        inputs,
        saliency,
        targets,
        steps=steps,
        start=_baseline(inputs, baseline),
        end=inputs,
        batch_size=batch_size,
    )


@dataclass(frozen=True)
class FidelityResult:
    """Per-sample drop of the target probability after zeroing the map's salient positions."""

    drop: torch.Tensor
    original: torch.Tensor
    masked: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation over the samples."""
        mean, std = mean_std(self.drop)
        return {"fidelity": mean, "fidelity_std": std}


@any_model
def fidelity(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: Any,
    targets: Any = None,
    *,
    batch_size: int = 32,
) -> FidelityResult:
    """Fidelity (Nagy, Nimara & Qian): the mean drop of the target probability after zeroing the
    positions whose map value is above the median (50th percentile) of the map's positive
    values. Higher means the map found what the model uses. A map with no positive value
    zeroes nothing.
    """
    size, maps, targets = _check(inputs, maps, targets)
    values = _input_maps(maps, size).flatten(1)
    positive = torch.where(values > 0, values, torch.nan)
    median = torch.nanquantile(positive, 0.5, dim=1, keepdim=True)
    remove = (values > torch.nan_to_num(median, nan=math.inf)).view(-1, 1, *size)
    zeroed = torch.where(remove, torch.zeros((), dtype=inputs.dtype), inputs)
    both = target_probabilities(model, torch.cat([inputs, zeroed]), targets, batch_size=batch_size)
    original, masked = both[: len(targets)], both[len(targets) :]
    return FidelityResult(drop=original - masked, original=original, masked=masked)
