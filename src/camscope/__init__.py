"""camscope: what vision networks, convolutional and transformer, look at, in 2D and 3D.

>>> import camscope
>>> e = camscope.explain(  # doctest: +SKIP
...     model, x, method="respond_cam", layer="maxpool2", targets="all"
... )
>>> e.maps.shape  # (B, T, *s), raw and signed, at the layer's resolution  # doctest: +SKIP
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from camscope import methods, metrics, models, targets
from camscope.errors import (
    CamscopeError,
    InputError,
    LayerError,
    MethodError,
    ModelError,
    TargetError,
)
from camscope.explain import explain
from camscope.explanation import Explanation
from camscope.layers import LayerInfo, default_layer, probe_layers, resolve_layer
from camscope.layouts import Layout, tokens
from camscope.methods import get_method, list_methods
from camscope.postprocess import normalize, relu, upsample
from camscope.receptive import ReceptiveField, effective_receptive_field
from camscope.smoothing import smooth
from camscope.wholescan import ScanExplanation, explain_scan

try:
    __version__ = version("camscope")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "CamscopeError",
    "Explanation",
    "InputError",
    "LayerError",
    "LayerInfo",
    "Layout",
    "MethodError",
    "ModelError",
    "ReceptiveField",
    "ScanExplanation",
    "TargetError",
    "__version__",
    "default_layer",
    "effective_receptive_field",
    "explain",
    "explain_scan",
    "get_method",
    "list_methods",
    "methods",
    "metrics",
    "models",
    "normalize",
    "probe_layers",
    "relu",
    "resolve_layer",
    "smooth",
    "targets",
    "tokens",
    "upsample",
]
