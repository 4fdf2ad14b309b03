"""A whole-scan run's identity: what an interrupted run must share with this one to be resumed."""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from camscope.engine import weights_digest
from camscope.runs.identity import camscope_version, content_digest
from camscope.targets import RegionTarget, VoxelTarget

__all__ = ["job_identity"]


def job_identity(
    model: nn.Module,
    data: torch.Tensor,
    method: str,
    layer: Any,
    targets: Any,
    options: dict[str, Any],
    plan: Any,
    overlap: float,
    blend: str,
    sigma_scale: float,
    batch_size: int,
) -> dict[str, Any] | None:
    """What an interrupted run must share with this one to be resumed: the scan's values, the
    model (its class and weights), the method and every setting; ``None`` for a callable target
    (which cannot be recognised again)."""
    if callable(targets) and not isinstance(targets, torch.Tensor | RegionTarget | VoxelTarget):
        return None
    described: Any = targets.tolist() if isinstance(targets, torch.Tensor) else targets
    if isinstance(targets, RegionTarget | VoxelTarget):
        targets = [targets]
    if isinstance(targets, list | tuple) and any(
        isinstance(t, RegionTarget | VoxelTarget) for t in targets
    ):
        described = [
            f"region{t.class_index}:{content_digest(t.mask)}"
            if isinstance(t, RegionTarget)
            else f"voxel{t.class_index}:{t.position}"
            for t in targets
        ]
    return {
        "scan": content_digest(data),
        "model": f"{type(model).__qualname__}:{weights_digest(model)}",
        "method": method,
        "layer": layer if isinstance(layer, str | None) else type(layer).__qualname__,
        "targets": json.loads(json.dumps(described, default=str)),
        "options": _describe(options),
        "roi_size": list(plan.roi_size),
        "overlap": overlap,
        "blend": [blend, sigma_scale],
        "batch_size": int(batch_size),
        "versions": [camscope_version(), torch.__version__],
    }


def _describe(options: dict[str, Any]) -> str:
    """Method options as text, tensors by a digest of their values."""

    def value(item: Any) -> Any:
        if isinstance(item, torch.Tensor):
            return f"tensor{content_digest(item)}"
        return repr(item)

    return json.dumps({key: value(item) for key, item in sorted(options.items())})
