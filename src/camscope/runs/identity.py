"""What a run's outputs were made from, as short digests: a resumed run goes on only when they
match (the data's values, the model's weights, every setting), and refuses another job's folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

__all__ = ["content_digest", "fingerprint", "recorded_fingerprint"]


def content_digest(tensor: torch.Tensor) -> str:
    """Shape, dtype and a SHA-256 of the values, read in 64 MB pieces (a whole scan is never
    copied to bytes)."""
    flat = tensor.detach().cpu().contiguous().view(-1)
    raw = (flat.to(torch.uint8) if flat.dtype == torch.bool else flat).view(torch.uint8).numpy()
    digest = hashlib.sha256()
    for begin in range(0, len(raw), 1 << 26):
        digest.update(raw[begin : begin + (1 << 26)].data)
    return f"{tuple(tensor.shape)}:{tensor.dtype}:{digest.hexdigest()[:16]}"


def fingerprint(payload: Any) -> str:
    """16 hex digits of SHA-256 over ``payload`` as sorted JSON (anything else by ``str``)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recorded_fingerprint(manifest: Path) -> str | None:
    """The ``fingerprint`` a finished run wrote to its ``manifest.json``; ``None`` when the file is
    missing, unreadable or has none."""
    try:
        return json.loads(manifest.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
