"""What a run's outputs were made from, as short digests: a resumed run goes on only when they
match (the data's values, the model's weights, every setting), and refuses another job's folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "camscope_version",
    "content_digest",
    "cpu_model",
    "fingerprint",
    "machine",
    "recorded_fingerprint",
]


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


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one): results and timings can
    differ between CPUs, whose kernels round differently."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    """Where and when a measurement was made: the date, the CPU, torch's threads, the versions."""
    import datetime
    import platform

    return {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "camscope": camscope_version(),
    }


def camscope_version() -> str:
    """The installed camscope's version (``0.0.0`` from a source tree without installation)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("camscope")
    except PackageNotFoundError:
        return "0.0.0"
