"""Targets: what scalar(s) of the model's output an explanation is about.

A target turns the model output into scores ``(B, T)``: ``T`` scalars per sample, each explained
by its own map. Class targets pick logits; a callable can return any differentiable score
(a segmentation region's mean, a regression output, ...).

Accepted forms (``K`` = number of classes, ``B`` = batch size):

========================  =====================================================
``None``, ``"predicted"``  each sample's predicted class (arg-max logit), ``T = 1``
``int``                   that class for every sample, ``T = 1``
sequence / 1-D tensor     one class per sample, length ``B``, ``T = 1``
``(B, T)`` int tensor     ``T`` classes per sample
``"all"``                 every class, ``T = K``, in class order
callable                  ``output -> (B,)`` or ``(B, T)`` scores
========================  =====================================================

**Dense outputs** (segmentation networks: ``(B, K, *S)``): a class index ``c`` means the sum of
channel ``c``'s logits over the positions predicted as ``c`` (``argmax`` over channels; the
convention of Vinogradova et al. 2020 and M3d-CAM), so the class forms above work on them,
except that ``None`` and ``"all"`` both explain every class there (a segmentation predicts
a class per position, not one per sample) and ``"predicted"`` is refused.
:func:`region_target` (a class and a mask) and :func:`voxel_target` (a class at one position)
build callables for other questions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from camscope.errors import TargetError

__all__ = [
    "RegionTarget",
    "TargetScores",
    "TargetSpec",
    "VoxelTarget",
    "check_targets",
    "dense_class_scores",
    "region_target",
    "select_targets",
    "voxel_target",
]

TargetSpec = None | int | str | Sequence[int] | torch.Tensor | Callable[[Any], torch.Tensor]


@dataclass(frozen=True)
class TargetScores:
    """Scores ``(B, T)`` attached to the graph, and class indices when the targets are classes."""

    scores: torch.Tensor
    classes: torch.Tensor | None


def check_targets(targets: TargetSpec, batch_size: int) -> None:
    """Reject malformed targets before any forward pass is spent on them.

    Raises:
        TargetError: wrong type, wrong length, wrong dtype or rank.
    """
    if targets is None or callable(targets):
        return
    if isinstance(targets, str):
        if targets not in ("all", "predicted"):
            raise TargetError(
                f"targets={targets!r} is not understood; the strings accepted are 'all' and "
                "'predicted'"
            )
        return
    if isinstance(targets, bool):
        raise TargetError("targets must be a class index, not a bool")
    if isinstance(targets, int):
        if targets < 0:
            raise TargetError(f"class index {targets} is negative; class indices start at 0")
        return
    tensor = _as_index_tensor(targets)
    if tensor.ndim == 1 and tensor.shape[0] != batch_size:
        raise TargetError(
            f"{tensor.shape[0]} targets were given for a batch of {batch_size}; give one class "
            "per sample, a single int for all, or a (B, T) tensor"
        )
    if tensor.ndim == 2 and tensor.shape[0] != batch_size:
        raise TargetError(
            f"targets of shape {tuple(tensor.shape)} do not match a batch of {batch_size}; "
            "the first axis must be the batch"
        )
    if tensor.ndim == 2 and tensor.shape[1] == 0:
        raise TargetError("targets of shape (B, 0) ask for no map at all; give at least one class")


def targets_per_sample(targets: TargetSpec) -> int | None:
    """How many targets each sample gets, when the request alone says it (``None``,
    ``"predicted"``, a class index, one per sample or ``(B, T)``); ``None`` when only the model's
    output tells (``"all"``, a callable)."""
    if targets is None or targets == "predicted" or isinstance(targets, int):
        return 1
    if isinstance(targets, str) or callable(targets):
        return None
    tensor = _as_index_tensor(targets)
    return 1 if tensor.ndim == 1 else int(tensor.shape[1])


def _as_index_tensor(targets: object) -> torch.Tensor:
    if isinstance(targets, torch.Tensor):
        tensor = targets
    else:
        try:
            tensor = torch.as_tensor(targets)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TargetError(
                f"targets of type {type(targets).__name__} are not understood: {error}"
            ) from error
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise TargetError(f"class targets must be integers, got dtype {tensor.dtype}")
    if tensor.ndim not in (1, 2):
        raise TargetError(
            f"class targets must be 1-D (one per sample) or 2-D (B, T), got shape "
            f"{tuple(tensor.shape)}"
        )
    return tensor.long()


def select_targets(targets: TargetSpec, output: Any, batch_size: int) -> TargetScores:
    """Turn the model output into target scores ``(B, T)``.

    Args:
        targets: any accepted form (see the module docstring).
        output: what the model returned for the batch.
        batch_size: ``B``.

    Returns:
        The scores (attached to the autograd graph) and the class indices, ``None`` for a callable.

    Raises:
        TargetError: class targets on an output that is not ``(B, K)`` logits, a class index out of
            range, or a callable returning the wrong shape.
    """
    if callable(targets) and not isinstance(targets, torch.Tensor):
        scores = targets(output)
        if not isinstance(scores, torch.Tensor):
            raise TargetError(
                f"the target callable returned {type(scores).__name__}; it must return a tensor "
                "of shape (B,) or (B, T)"
            )
        if scores.ndim == 1:
            scores = scores[:, None]
        if scores.ndim != 2 or scores.shape[0] != batch_size:
            raise TargetError(
                f"the target callable returned shape {tuple(scores.shape)}; expected (B,) or "
                f"(B, T) with B = {batch_size}"
            )
        return TargetScores(scores=scores, classes=None)

    if isinstance(output, torch.Tensor) and output.ndim >= 3 and output.shape[0] == batch_size:
        return _dense(targets, output, batch_size)
    if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != batch_size:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise TargetError(
            f"class targets need a model output of shape (B, K) logits, got {shape}; pass a "
            "callable target that maps the output to (B,) or (B, T) scores"
        )
    num_classes = output.shape[1]
    device = output.device
    if targets is None or targets == "predicted":
        classes = output.detach().argmax(dim=1, keepdim=True)
    elif isinstance(targets, str):  # "all", checked before
        classes = torch.arange(num_classes, device=device).expand(batch_size, num_classes)
        return TargetScores(scores=output, classes=classes)
    else:
        classes = _class_indices(targets, batch_size, num_classes, device)
    return TargetScores(scores=output.gather(1, classes), classes=classes)


def dense_class_scores(output: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Scores ``(B, T)`` of dense outputs ``(B, K, *S)``: for class ``classes[b, t]``, the sum of
    its channel's logits over the positions predicted as that class."""
    # max().indices, not argmax(): the same first maximum, but argmax over a non-last axis is
    # ~20× slower on CPU (74 ms against 3 ms for a batch of four 48³ windows of 2 classes).
    predicted = output.detach().max(dim=1).indices  # (B, *S)
    logits = output.gather(
        1,
        classes.view(*classes.shape, *([1] * (output.ndim - 2))).expand(-1, -1, *output.shape[2:]),
    )  # (B, T, *S)
    chosen = predicted.unsqueeze(1) == classes.view(*classes.shape, *([1] * (output.ndim - 2)))
    return (logits * chosen).flatten(2).sum(-1)


def _dense(targets: TargetSpec, output: torch.Tensor, batch_size: int) -> TargetScores:
    count = output.shape[1]
    device = output.device
    if targets is None or targets == "all":
        classes = torch.arange(count, device=device).expand(batch_size, count)
    elif targets == "predicted":
        raise TargetError(
            "targets='predicted' names one class per sample; a dense output predicts one per "
            "position: give class indices (each is summed over its predicted region) or 'all'"
        )
    else:
        classes = _class_indices(targets, batch_size, count, device)
    return TargetScores(scores=dense_class_scores(output, classes), classes=classes)


def _class_indices(
    targets: TargetSpec, batch_size: int, count: int, device: torch.device
) -> torch.Tensor:
    """Class targets (an int, one per sample, or ``(B, T)``) as ``(B, T)``, checked against
    the ``count`` classes the output has."""
    if isinstance(targets, int):
        classes = torch.full((batch_size, 1), targets, dtype=torch.long, device=device)
    else:
        classes = _as_index_tensor(targets).to(device)
        if classes.ndim == 1:
            classes = classes[:, None]
    bad = (classes < 0) | (classes >= count)
    if bool(bad.any()):
        wrong = sorted({int(v) for v in classes[bad].tolist()})
        raise TargetError(
            f"class index {wrong[0] if len(wrong) == 1 else wrong} out of range: the model has "
            f"{count} classes (0 to {count - 1})"
        )
    return classes


@dataclass(frozen=True, eq=False)
class RegionTarget:
    """A target for dense outputs: the sum of channel ``class_index``'s logits inside ``mask``
    (``(*S)`` or ``(B, *S)`` booleans, e.g. a lesion's mask). Called on an output ``(B, K, *S)``
    it gives ``(B,)`` scores. :func:`camscope.explain_scan` takes one (or a list: one map per
    region) with a mask of the whole scan, and crops it to every window."""

    class_index: int
    mask: torch.Tensor
    #: Input-space methods score perturbed copies of the samples; ``rows[n]`` names the sample
    #: of output row ``n`` (so a per-sample mask follows its sample).
    takes_rows: ClassVar[bool] = True

    def __call__(self, output: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``(B, T)`` of a dense output ``(B, K, *S)``; ``rows[n]``: row n's sample."""
        if not isinstance(output, torch.Tensor) or output.ndim < 3:
            raise TargetError(
                "a region target needs a dense output (B, K, *S); got "
                f"{tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)}"
            )
        if not 0 <= self.class_index < output.shape[1]:
            raise TargetError(
                f"region target class {self.class_index} out of range: the output has "
                f"{output.shape[1]} channels"
            )
        region = torch.as_tensor(self.mask).to(output.device, torch.bool)
        if tuple(region.shape[-(output.ndim - 2) :]) != tuple(output.shape[2:]):
            raise TargetError(
                f"region mask of shape {tuple(region.shape)} does not match the output's "
                f"spatial shape {tuple(output.shape[2:])}"
            )
        if region.ndim == output.ndim - 1 and rows is not None:  # (B, *S): one per sample
            region = region[rows.to(region.device)]
        region = region.expand(output.shape[0], *output.shape[2:])
        return (output[:, self.class_index] * region).flatten(1).sum(1)


def region_target(class_index: int, mask: Any) -> RegionTarget:
    """A target for dense outputs: the sum of channel ``class_index``'s logits inside ``mask``
    (``(*S)`` or ``(B, *S)`` booleans, e.g. a lesion's mask; a tensor or an array)."""
    if int(class_index) < 0:
        raise TargetError(f"region target class must be 0 or more, got {class_index}")
    return RegionTarget(int(class_index), torch.as_tensor(mask).bool())


@dataclass(frozen=True)
class VoxelTarget:
    """A target for dense outputs: channel ``class_index``'s logit at one ``position``. Over a
    whole scan (:func:`camscope.explain_scan`) the position is in the scan's coordinates."""

    class_index: int
    position: tuple[int, ...]

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, T)`` of a dense output ``(B, K, *S)``."""
        if not isinstance(output, torch.Tensor) or output.ndim != 2 + len(self.position):
            raise TargetError(
                f"a voxel target at {self.position} needs a dense output (B, K, *S) with "
                f"{len(self.position)} spatial axes"
            )
        if not 0 <= self.class_index < output.shape[1]:
            raise TargetError(
                f"voxel target class {self.class_index} out of range: the output has "
                f"{output.shape[1]} channels"
            )
        selector: tuple[slice | int, ...] = (slice(None), self.class_index, *self.position)
        return output[selector]


def voxel_target(class_index: int, position: Sequence[int]) -> VoxelTarget:
    """A target for dense outputs: channel ``class_index``'s logit at one position."""
    if int(class_index) < 0:
        raise TargetError(f"voxel target class must be 0 or more, got {class_index}")
    return VoxelTarget(int(class_index), tuple(int(v) for v in position))
