"""Explanation methods: a name → method registry and the pure functions behind it.

``list_methods()`` gives the registered names (snake_case; the CLI also accepts kebab-case).
Each layer method is a pure, dimension-free function ``(activations, gradients) -> cam`` found in
:mod:`camscope.methods.cam_family` and re-exported here.
"""

from __future__ import annotations

from camscope.methods.cam_family import (
    cam,
    counterfactual_grad_cam,
    extended_cam,
    grad_cam,
    grad_cam_pp,
    layer_cam,
    pixelwise_cam,
    respond_cam,
    xgrad_cam,
)
from camscope.methods.registry import MethodInfo, get_method, list_methods, register_method

__all__ = [
    "MethodInfo",
    "cam",
    "counterfactual_grad_cam",
    "extended_cam",
    "get_method",
    "grad_cam",
    "grad_cam_pp",
    "layer_cam",
    "list_methods",
    "pixelwise_cam",
    "register_method",
    "respond_cam",
    "xgrad_cam",
]

_LAYER_METHODS = [
    (cam, "class activation map; needs global average pooling → linear after the layer", False),
    (grad_cam, "gradient-weighted CAM, channel weight = mean gradient", True),
    (counterfactual_grad_cam, "Grad-CAM with negated gradients: evidence against the target", True),
    (grad_cam_pp, "Grad-CAM++ (eq. 19, exponential trick)", True),
    (respond_cam, "Respond-CAM: response-weighted, sums to score − bias for a linear head", True),
    (xgrad_cam, "XGrad-CAM: Respond-CAM's weight without ε", True),
    (pixelwise_cam, "pixel-wise gradient × activation summed over channels (HiResCAM)", True),
    (layer_cam, "pixel-wise CAM with positive gradients only (LayerCAM)", False),
    (
        extended_cam,
        "Extended-CAM grid map (gradient × activation); Gaussian upsampling after",
        True,
    ),
]

for _function, _summary, _signed in _LAYER_METHODS:
    register_method(
        MethodInfo(
            name=_function.__name__,
            function=_function,
            kind="layer",
            summary=_summary,
            signed=_signed,
        )
    )
