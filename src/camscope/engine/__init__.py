"""The engine: the only place where camscope touches a model's internals.

* :mod:`~camscope.engine.state`: :class:`ModelState` (train/eval flags and batch statistics
  restored, one call per model at a time) and :func:`call_model` (the model's own errors wrapped).
* :mod:`~camscope.engine.capture`: record a layer (one hook context, early stop, a copy handed
  on), :class:`Capture` for the CAM family, :func:`trace_modules` for layer listings.
* :mod:`~camscope.engine.vjp`: gradients of many target scores from one batched backward pass.
* :mod:`~camscope.engine.replay`: :class:`~camscope.engine.replay.PrefixReplay`, the unchanged
  bottom of a network replayed instead of run again between randomisation steps.
"""

from __future__ import annotations

from camscope.engine.capture import (
    Capture,
    Recording,
    StopForward,
    record_layer,
    run_to_layer,
    trace_modules,
)
from camscope.engine.state import (
    ModelState,
    any_model,
    call_model,
    detached,
    eager_model,
    is_exported,
    is_exported_graph,
    weights_digest,
)
from camscope.engine.vjp import auto_chunk_size, batched_vjp, chunked_vjp

__all__ = [
    "Capture",
    "ModelState",
    "Recording",
    "StopForward",
    "any_model",
    "auto_chunk_size",
    "batched_vjp",
    "call_model",
    "chunked_vjp",
    "detached",
    "eager_model",
    "is_exported",
    "is_exported_graph",
    "record_layer",
    "run_to_layer",
    "trace_modules",
    "weights_digest",
]
