"""Where a run's batches are computed: ``local`` (this process) or ``ray`` (Ray Data actors).

Every backend runs the same fixed batches through :func:`camscope.runs.batch.process_batch`, so
the outputs are the same whichever runs them.
"""

from __future__ import annotations

from camscope.runs.backends.local import run_local
from camscope.runs.backends.ray import run_ray

__all__ = ["BACKENDS", "run_local", "run_ray"]

BACKENDS = ("local", "ray")
