"""What metrics accept: maps and targets as an :class:`~camscope.Explanation` holds them.

Every metric that scores one map per sample takes ``(B, *s)`` maps and ``(B,)`` targets, and
also, as they come out of :func:`camscope.explain` with one target per sample, ``(B, 1, *s)``
maps with ``(B, 1)`` targets, or the Explanation itself (its maps, input-space maps reduced over
channels by the method's default, and its targets). Several targets per sample are refused with
a message saying how to pick one.
"""

from __future__ import annotations

from typing import Any

import torch

from camscope.errors import InputError

__all__ = ["explanation_maps", "one_map_per_sample"]


def explanation_maps(value: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(maps, targets)`` of an Explanation (channels reduced); a tensor is returned as it is
    with ``None`` targets."""
    if isinstance(value, torch.Tensor):
        return value, None
    if hasattr(value, "maps") and hasattr(value, "reduce_channels"):
        reduced = value.reduce_channels()
        if tuple(reduced.maps.shape[2:]) != tuple(reduced.input_size):
            reduced = reduced.upsample()  # the method's own way, as shown
        return reduced.maps, reduced.targets
    raise InputError(f"maps must be a tensor or an Explanation, not {type(value).__name__}")


def one_map_per_sample(
    maps: Any, targets: Any, *, spatial_dims: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(B, *s)`` maps and ``(B,)`` targets (``None`` stays ``None``) from any accepted form.

    Args:
        maps: ``(B, *s)``, ``(B, 1, *s)`` or an Explanation with one target per sample.
        targets: ``(B,)``, ``(B, 1)``, ``None`` (take the Explanation's), or an int.
        spatial_dims: the number of spatial axes expected, when known (tells ``(B, 1, H, W)``
            from a ``(B, D, H, W)`` volume).

    Raises:
        InputError: several targets per sample, or shapes that do not fit.
    """
    tensor, own = explanation_maps(maps)
    if targets is None:
        targets = own
    if isinstance(targets, int):
        targets = torch.full((tensor.shape[0],), targets, dtype=torch.long)
    elif targets is not None:
        targets = class_indices(targets, tensor.shape[0])
    if spatial_dims is not None and tensor.ndim == spatial_dims + 3:
        raise InputError(
            f"maps {tuple(tensor.shape)} keep an input-channel axis (B, T, C, *S); reduce it "
            "(explanation.reduce_channels()) or pass the Explanation itself"
        )
    several = spatial_dims is not None and tensor.ndim == spatial_dims + 2
    several = several or (spatial_dims is None and own is not None)
    if several:
        if tensor.shape[1] != 1:
            raise InputError(
                f"maps {tuple(tensor.shape)} hold {tensor.shape[1]} maps per sample (read as "
                "targets (B, T, *S)); score one target at a time, e.g. maps[:, t] with "
                "targets[:, t]; if the axis is the input's channels (an input-space method's "
                "maps[:, t]), sum it (.sum(1)) or pass the Explanation itself"
            )
        tensor = tensor[:, 0]
    if targets is not None and targets.ndim == 2:
        if targets.shape[1] != 1:
            raise InputError(
                f"targets {tuple(targets.shape)} hold {targets.shape[1]} classes per sample; "
                "pass the class of the map scored, e.g. targets[:, t]"
            )
        targets = targets[:, 0]
    return tensor, targets


def class_indices(targets: Any, count: int) -> torch.Tensor:
    """``targets`` as an integer tensor; a single class (0-d) repeated for ``count`` samples.

    Raises:
        InputError: not numbers (a string, a callable), or not integers.
    """
    try:
        tensor = torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(
            f"targets must be class indices, an int or one per sample, not "
            f"{type(targets).__name__} {targets!r:.40}"
        ) from None
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise InputError(f"targets must be integer class indices, got {tensor.dtype}")
    return tensor.expand(count) if tensor.ndim == 0 else tensor
