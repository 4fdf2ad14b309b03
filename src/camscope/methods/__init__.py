"""Explanation methods: a name → method registry and the functions behind it.

Each method is declared beside its formula with :func:`~camscope.methods.registry.method`;
``list_methods()`` gives the registered names (snake_case; the CLI also accepts kebab-case).

* :mod:`~camscope.methods.cam_family`: the CAM family, pure dimension-free functions
  ``(activations, gradients) -> cam``.
* :mod:`~camscope.methods.projections`: CAM variants from principal components (EigenCAM,
  Eigen-Grad-CAM, KPCA-CAM).
* :mod:`~camscope.methods.contrastive`: Finer-CAM (a CAM formula on a contrastive objective).
* :mod:`~camscope.methods.smoothed`: Smooth Grad-CAM++ (gradient moments over noisy copies).
* :mod:`~camscope.methods.second_order`: ShapleyCAM (gradient and Hessian–vector product).
* :mod:`~camscope.methods.layerwise_relevance`: LRP with zennit's composites and rules.
* :mod:`~camscope.methods.deep_lift`: DeepLIFT (rescale rule) and DeepLIFT-SHAP.
* :mod:`~camscope.methods.fullgrad`: FullGrad (input and bias gradients of every layer).
* :mod:`~camscope.methods.gradients`: input-space maps from gradients (saliency, Deconvnet,
  guided backprop, Guided Grad-CAM, input × gradient, Integrated Gradients, Gradient SHAP).
* :mod:`~camscope.methods.ablation`: Ablation-CAM (the head above the layer on ablated copies).
* :mod:`~camscope.methods.layer_attribution`: internal influence, layer conductance and layer
  Integrated Gradients (which
  channels and positions of a layer carry a target).
* :mod:`~camscope.methods.perturbation`: occlusion, Kernel SHAP, Score-CAM, SS-CAM, IS-CAM.
* :mod:`~camscope.methods.segments`: feature ablation, Shapley value sampling and LIME
  over segments.
* :mod:`~camscope.methods.attention`: transformer methods over the patch grid (attention
  rollout, Chefer's gradient-weighted attention, LeGrad).
* :mod:`~camscope.methods.rules`: the Deconvnet / guided ReLU backward rules.
* :mod:`~camscope.methods.features`: feature visualisation (Deconvnet projections).
* :mod:`~camscope.methods.context`: what a model-driven method receives from ``explain()``.
"""

from __future__ import annotations

from camscope.methods.ablation import ablation_cam
from camscope.methods.attention import attention_rollout, chefer, legrad
from camscope.methods.cam_family import (
    cam,
    counterfactual_grad_cam,
    extended_cam,
    grad_cam,
    grad_cam_elementwise,
    grad_cam_pp,
    layer_cam,
    pixelwise_cam,
    respond_cam,
    xgrad_cam,
)
from camscope.methods.context import MethodContext, MethodResult
from camscope.methods.contrastive import finer_cam
from camscope.methods.deep_lift import deeplift, deeplift_shap
from camscope.methods.features import feature_visualization
from camscope.methods.fullgrad import full_grad
from camscope.methods.gradients import (
    deconvnet,
    gradient_shap,
    guided_backprop,
    guided_grad_cam,
    input_x_gradient,
    integrated_gradients,
    saliency,
)
from camscope.methods.layer_attribution import (
    internal_influence,
    layer_conductance,
    layer_integrated_gradients,
)
from camscope.methods.layerwise_relevance import lrp
from camscope.methods.perturbation import is_cam, kernel_shap, occlusion, score_cam, ss_cam
from camscope.methods.projections import eigen_cam, eigen_grad_cam, kpca_cam
from camscope.methods.registry import MethodInfo, get_method, list_methods, method
from camscope.methods.rules import relu_rule
from camscope.methods.second_order import shapley_cam
from camscope.methods.segments import feature_ablation, lime, shapley_value_sampling
from camscope.methods.smoothed import smooth_grad_cam_pp

__all__ = [
    "MethodContext",
    "MethodInfo",
    "MethodResult",
    "ablation_cam",
    "attention_rollout",
    "cam",
    "chefer",
    "counterfactual_grad_cam",
    "deconvnet",
    "deeplift",
    "deeplift_shap",
    "eigen_cam",
    "eigen_grad_cam",
    "extended_cam",
    "feature_ablation",
    "feature_visualization",
    "finer_cam",
    "full_grad",
    "get_method",
    "grad_cam",
    "grad_cam_elementwise",
    "grad_cam_pp",
    "gradient_shap",
    "guided_backprop",
    "guided_grad_cam",
    "input_x_gradient",
    "integrated_gradients",
    "internal_influence",
    "is_cam",
    "kernel_shap",
    "kpca_cam",
    "layer_cam",
    "layer_conductance",
    "layer_integrated_gradients",
    "legrad",
    "lime",
    "list_methods",
    "lrp",
    "method",
    "occlusion",
    "pixelwise_cam",
    "relu_rule",
    "respond_cam",
    "saliency",
    "score_cam",
    "shapley_cam",
    "shapley_value_sampling",
    "smooth_grad_cam_pp",
    "ss_cam",
    "xgrad_cam",
]
