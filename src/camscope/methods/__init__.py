"""Explanation methods: a name → method registry and the functions behind it.

``list_methods()`` gives the registered names (snake_case; the CLI also accepts kebab-case).

* :mod:`~camscope.methods.cam_family`: the CAM family, pure dimension-free functions
  ``(activations, gradients) -> cam``.
* :mod:`~camscope.methods.gradients`: input-space maps from gradients (saliency, Deconvnet,
  guided backprop, Guided Grad-CAM, Integrated Gradients, Gradient SHAP).
* :mod:`~camscope.methods.perturbation`: occlusion, Kernel SHAP, Score-CAM.
* :mod:`~camscope.methods.rules`: the Deconvnet / guided ReLU backward rules.
* :mod:`~camscope.methods.features`: feature visualisation (Deconvnet projections).
"""

from __future__ import annotations

from collections.abc import Callable

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
from camscope.methods.features import feature_visualization
from camscope.methods.gradients import (
    deconvnet,
    gradient_shap,
    guided_backprop,
    guided_grad_cam,
    integrated_gradients,
    saliency,
)
from camscope.methods.perturbation import kernel_shap, occlusion, score_cam
from camscope.methods.problem import MethodResult, Problem
from camscope.methods.registry import MethodInfo, get_method, list_methods, register_method
from camscope.methods.rules import relu_rule

__all__ = [
    "MethodInfo",
    "MethodResult",
    "Problem",
    "cam",
    "counterfactual_grad_cam",
    "deconvnet",
    "extended_cam",
    "feature_visualization",
    "get_method",
    "grad_cam",
    "grad_cam_pp",
    "gradient_shap",
    "guided_backprop",
    "guided_grad_cam",
    "integrated_gradients",
    "kernel_shap",
    "layer_cam",
    "list_methods",
    "occlusion",
    "pixelwise_cam",
    "register_method",
    "relu_rule",
    "respond_cam",
    "saliency",
    "score_cam",
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

# name, summary, signed, resolution, needs a layer, channel reduction for display
_MODEL_METHODS: list[tuple[Callable[..., MethodResult], str, bool, str, bool, str]] = [
    (saliency, "vanilla gradient ∂y/∂x per input channel", True, "input", False, "max_abs"),
    (
        deconvnet,
        "Deconvnet: ReLUs pass positive gradients backwards",
        True,
        "input",
        False,
        "max_abs",
    ),
    (
        guided_backprop,
        "guided backpropagation: positive gradients through active ReLUs",
        True,
        "input",
        False,
        "max_abs",
    ),
    (
        guided_grad_cam,
        "guided backprop ⊙ upsampled ReLU(Grad-CAM) at the layer",
        True,
        "input",
        True,
        "max_abs",
    ),
    (
        integrated_gradients,
        "Integrated Gradients from a baseline; reports the completeness gap",
        True,
        "input",
        False,
        "sum",
    ),
    (
        gradient_shap,
        "Gradient SHAP: expected gradients over random baselines",
        True,
        "input",
        False,
        "sum",
    ),
    (
        kernel_shap,
        "Kernel SHAP over SLIC superpixels / supervoxels (exact when few)",
        True,
        "input",
        False,
        "sum",
    ),
    (
        occlusion,
        "occlusion: score drop when a sliding 2D/3D patch is masked",
        True,
        "input",
        False,
        "sum",
    ),
    (
        score_cam,
        "Score-CAM: channels weighted by the score of the input they mask",
        True,
        "layer",
        True,
        "sum",
    ),
]

for _driver, _summary, _signed, _resolution, _needs_layer, _reduction in _MODEL_METHODS:
    register_method(
        MethodInfo(
            name=_driver.__name__,
            function=_driver,
            kind="model",
            summary=_summary,
            signed=_signed,
            resolution=_resolution,  # type: ignore[arg-type]
            needs_layer=_needs_layer,
            channel_reduction=_reduction,  # type: ignore[arg-type]
        )
    )
