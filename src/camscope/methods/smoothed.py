"""Smooth Grad-CAM++: Grad-CAM++'s weights from gradients averaged over noisy copies.

Smooth Grad-CAM++ (Omeiza et al. 2019) averages the gradients at the layer, and their squares and
cubes, over ``n`` copies of the input with Gaussian noise, and puts these means into Grad-CAM++'s
weights, with the clean input's activations:

``α_ks = D²_ks / (2 D²_ks + Σ_s' A_ks' · D³_ks)``, ``w_k = Σ_s α_ks ReLU(D¹_ks)``,
``L = Σ_k w_k A_k``

with ``Dᵖ = mean_i (G_i)ᵖ`` over the noisy copies ``i``. The noise is :func:`camscope.smooth`'s:
seeded, the same draws for every input, its standard deviation a share of each input's value range.
All copies of all samples go through the model in memory-bounded batches, all targets at once.
:func:`camscope.smooth` with ``target="gradients"`` and ``method="grad_cam_pp"`` runs this method.

torch-cam's ``SmoothGradCAMpp`` differs: its noise is absolute (``std=0.3``), and the
``ReLU(D¹)`` of its weights is the last noisy copy's gradient rather than the mean.
"""

from __future__ import annotations

import torch

from camscope.errors import MethodError
from camscope.methods.cam_family import weighted_sum
from camscope.methods.context import MethodContext, MethodResult
from camscope.methods.registry import method

__all__ = ["smooth_grad_cam_pp"]


@method(
    kind="layer",
    summary="Smooth Grad-CAM++: Grad-CAM++ weights from gradient moments over noisy copies",
)
def smooth_grad_cam_pp(
    context: MethodContext,
    *,
    noise_samples: int = 16,
    noise_std: float = 0.15,
    seed: int = 0,
    batch_size: int | None = None,
) -> MethodResult:
    """Smooth Grad-CAM++ (Omeiza et al. 2019).

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        noise_samples: noisy copies per input.
        noise_std: noise standard deviation as a share of each input's value range.
        seed: seed of the noise.
        batch_size: noisy copies per forward/backward pass; default fits a memory budget.

    References:
        Omeiza, Speakman, Cintas & Weldermariam, "Smooth Grad-CAM++: An Enhanced Inference Level
        Visualization Technique for Deep Convolutional Neural Network Models", 2019.
    """
    if int(noise_samples) < 1:
        raise MethodError(f"noise_samples must be at least 1, got {noise_samples}")
    if not float(noise_std) >= 0:
        raise MethodError(f"noise_std must be non-negative, got {noise_std}")
    count = int(noise_samples)
    x = context.inputs
    activations = context.layer_activations()  # the clean input's, (B, C, *s)
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(-1, *[1] * (x.ndim - 1))
    generator = torch.Generator().manual_seed(int(seed))
    noise = torch.randn((count, *x.shape[1:]), generator=generator, dtype=x.dtype).to(x.device)
    moments: list[torch.Tensor] = []
    rows_per_batch = batch_size or context.gradient_rows()
    for part in context.batches(context.batch_size * count, rows_per_batch, "smooth grad-cam++"):
        index = torch.arange(part.start, part.stop, device=x.device)
        sample, draw = index // count, index % count
        noisy = x[sample] + noise[draw] * float(noise_std) * span[sample]
        _, grads = context.layer_gradients(noisy, sample)  # (N, T, C, *s)
        powers = torch.stack([grads, grads.square(), grads.pow(3)])  # (3, N, T, C, *s)
        if not moments:
            shape = (3, context.batch_size, *grads.shape[1:])
            moments.append(torch.zeros(shape, dtype=x.dtype, device=x.device))
        moments[0].index_add_(1, sample, powers)
    d1, d2, d3 = moments[0] / count
    a = activations.unsqueeze(1)  # (B, 1, C, *s)
    spatial = tuple(range(3, a.ndim))
    denominator = 2.0 * d2 + a.sum(dim=spatial, keepdim=True) * d3
    nonzero = denominator != 0
    alpha = torch.where(nonzero, d2 / torch.where(nonzero, denominator, 1.0), 0.0)
    weights = (alpha * torch.relu(d1)).sum(dim=spatial)  # (B, T, C)
    maps = weighted_sum(weights, a, spatial_dims=len(spatial))
    return MethodResult(maps, {"weights": weights})
