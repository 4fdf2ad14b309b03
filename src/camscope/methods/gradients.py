"""Input-space maps from gradients: vanilla gradient, Deconvnet, guided backpropagation,
Guided Grad-CAM, Integrated Gradients and Gradient SHAP.

Every function takes a :class:`~camscope.methods.context.MethodContext` (built by
:func:`camscope.explain`) and returns raw, signed maps ``(B, T, C_in, *S)``: one per sample,
target and input channel, at input resolution, in 2D or 3D alike. Gradients of all ``T`` targets
come from one batched backward pass per batch of inputs. Each function's docstring gives
its formula.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from camscope.errors import InputError, MethodError
from camscope.methods.cam_family import grad_cam
from camscope.methods.context import MethodContext, MethodResult
from camscope.methods.registry import method
from camscope.postprocess import UpsampleMode, upsample

__all__ = [
    "deconvnet",
    "gradient_shap",
    "guided_backprop",
    "guided_grad_cam",
    "input_x_gradient",
    "integrated_gradients",
    "resolve_baseline",
    "saliency",
]


def resolve_baseline(context: MethodContext, baseline: float | torch.Tensor) -> torch.Tensor:
    """A baseline as a tensor ``(B, C_in, *S)``: a number, one input ``(C_in, *S)`` or a batch.

    Raises:
        InputError: a shape that does not broadcast to the inputs, or NaN/Inf values.
    """
    x = context.inputs
    if isinstance(baseline, int | float):
        tensor = torch.full_like(x, float(baseline))
    elif isinstance(baseline, torch.Tensor):
        try:
            tensor = torch.broadcast_to(baseline.to(x.device, x.dtype), x.shape).clone()
        except RuntimeError as error:
            raise InputError(
                f"baseline of shape {tuple(baseline.shape)} does not broadcast to the inputs "
                f"{tuple(x.shape)}; give a number, one input (C, *S) or a batch (B, C, *S)"
            ) from error
    else:
        raise InputError(f"baseline must be a number or a tensor, not {type(baseline).__name__}")
    if not bool(torch.isfinite(tensor).all()):
        raise InputError("the baseline contains NaN or infinite values")
    return tensor


def _plain(context: MethodContext, rule: str) -> MethodResult:
    _, grads = context.input_gradients(
        context.inputs,
        torch.arange(context.batch_size, device=context.inputs.device),
        rule=rule,  # type: ignore[arg-type]
    )
    return MethodResult(grads)


@method(
    kind="input",
    summary="vanilla gradient ∂y/∂x per input channel",
    channel_reduction="max_abs",
    gradient_rule="gradient",
)
def saliency(context: MethodContext) -> MethodResult:
    """Vanilla gradient ``∂y/∂x`` (Simonyan et al. 2014), signed, per input channel."""
    return _plain(context, "gradient")


@method(
    kind="input",
    summary="input × gradient: x ⊙ ∂y/∂x per input channel",
    gradient_rule="gradient",
)
def input_x_gradient(context: MethodContext) -> MethodResult:
    """Input × gradient (Shrikumar et al. 2016): ``x ⊙ ∂y/∂x``, signed, per input channel.

    For a network without biases whose nonlinearities are ReLUs (piecewise linear through 0),
    ``Σ x ⊙ ∂y/∂x = y``: the map sums to the score (Euler's theorem for homogeneous functions).
    """
    result = _plain(context, "gradient")
    return MethodResult(result.maps * context.inputs.unsqueeze(1))


@method(
    kind="input",
    summary="Deconvnet: ReLUs pass positive gradients backwards",
    channel_reduction="max_abs",
    gradient_rule="deconvnet",
    may_be_empty=True,
)
def deconvnet(context: MethodContext) -> MethodResult:
    """Deconvnet (Zeiler & Fergus 2014): every ReLU passes ``max(grad_out, 0)`` backwards."""
    return _plain(context, "deconvnet")


@method(
    kind="input",
    summary="guided backpropagation: positive gradients through active ReLUs",
    channel_reduction="max_abs",
    gradient_rule="guided",
    may_be_empty=True,
)
def guided_backprop(context: MethodContext) -> MethodResult:
    """Guided backpropagation (Springenberg et al. 2015): ``grad_out · 1[x>0] · 1[grad_out>0]``."""
    return _plain(context, "guided")


@method(
    kind="input",
    summary="guided backprop ⊙ upsampled ReLU(Grad-CAM) at the layer",
    needs_layer=True,
    channel_reduction="max_abs",
    may_be_empty=True,
)
def guided_grad_cam(context: MethodContext, *, upsample_mode: str = "linear") -> MethodResult:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop ⊙ upsampled ReLU(Grad-CAM).

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        upsample_mode: how the layer's Grad-CAM reaches input size: ``"linear"`` (the paper's
            bilinear; trilinear in 3D), ``"nearest"`` (Captum's default: PyTorch's legacy
            ``nearest``, which picks ``floor(i · s / S)``) or ``"nearest-exact"`` (the pixel whose
            centre is closest, as PIL and scikit-image; :func:`camscope.upsample`'s nearest).

    Extras:
        ``grad_cam``: the raw Grad-CAM ``(B, T, *s)`` at the layer.
    """
    if upsample_mode not in ("linear", "nearest", "nearest-exact"):
        raise MethodError(
            f"upsample_mode must be 'linear', 'nearest' or 'nearest-exact', not {upsample_mode!r}"
        )
    cam = context.layer_maps(grad_cam)
    size = tuple(context.inputs.shape[2:])
    if upsample_mode == "nearest":
        coarse = F.interpolate(torch.relu(cam), size=size, mode="nearest")
    else:
        mode: UpsampleMode = "nearest" if upsample_mode == "nearest-exact" else "linear"
        coarse = upsample(torch.relu(cam), size, mode=mode)
    guided = guided_backprop(context).maps
    return MethodResult(guided * coarse.unsqueeze(2), {"grad_cam": cam})


def _path_gradients(
    context: MethodContext,
    starts: torch.Tensor,
    ends: torch.Tensor,
    alphas: torch.Tensor,
    batch_size: int | None,
    description: str,
    *,
    times_difference: bool = False,
) -> torch.Tensor:
    """Per sample, ``Σ_j ∂y/∂x`` at ``starts[j] + alphas[j](ends[j] - starts[j])``, each term
    multiplied by ``ends[j] - starts[j]`` with ``times_difference`` (Gradient SHAP's draws).

    ``starts``, ``ends``: ``(B, m, C, *S)`` or broadcastable; ``alphas``: ``(B, m)`` or
    broadcastable. The ``B·m`` points are evaluated in batches of ``batch_size`` rows, all targets
    at once.
    """
    x = context.inputs
    count = alphas.shape[-1]
    alphas = alphas.expand(context.batch_size, count)
    total = torch.zeros(
        (context.batch_size, context.num_targets, *x.shape[1:]), dtype=x.dtype, device=x.device
    )
    rows_per_batch = batch_size or context.gradient_rows()
    flat = context.batch_size * count
    shape = (context.batch_size, count, *x.shape[1:])
    starts = starts.expand(shape)
    ends = ends.expand(shape)
    for part in context.batches(flat, rows_per_batch, description):
        index = torch.arange(part.start, part.stop, device=x.device)
        sample, step = index // count, index % count
        alpha = alphas[sample, step].view(-1, *([1] * (x.ndim - 1)))
        start, end = starts[sample, step], ends[sample, step]
        _, grads = context.input_gradients(start + alpha * (end - start), sample)
        if times_difference:
            grads = grads * (end - start).unsqueeze(1)
        total.index_add_(0, sample, grads)
    return total


@method(
    kind="input",
    summary="Integrated Gradients from a baseline; reports the completeness gap",
)
def integrated_gradients(
    context: MethodContext,
    *,
    steps: int = 50,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = None,
) -> MethodResult:
    """Integrated Gradients (Sundararajan et al. 2017), right Riemann sum.

    ``IG = (x - x') ⊙ (1/m) Σ_{i=1..m} ∂y/∂x (x' + (i/m)(x - x'))``.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        steps: ``m``, points on the straight path (the paper suggests 20–300; 50 as Captum).
        baseline: ``x'``: a number, one input ``(C, *S)`` or a batch; black (0) by default.
        batch_size: path points per forward/backward pass; default fits a memory budget.

    Extras:
        ``completeness_gap`` ``(B, T)``: ``|Σ IG - (y(x) - y(x'))|``; it shrinks as ``steps``
        grows and says how far to trust the map's total. ``baseline_scores`` ``(B, T)``: ``y(x')``.
    """
    if int(steps) < 1:
        raise MethodError(f"steps must be at least 1, got {steps}")
    steps = int(steps)
    x = context.inputs
    reference = resolve_baseline(context, baseline)
    alphas = torch.arange(1, steps + 1, dtype=x.dtype, device=x.device) / steps
    total = _path_gradients(
        context,
        reference.unsqueeze(1),
        x.unsqueeze(1),
        alphas,
        batch_size,
        "integrated gradients",
    )
    maps = (x - reference).unsqueeze(1) * total / steps
    rows = torch.arange(context.batch_size, device=x.device)
    baseline_scores = context.target_scores(context.forward(reference), rows)
    attributed = maps.flatten(2).sum(-1)
    gap = (attributed - (context.scores - baseline_scores)).abs()
    return MethodResult(maps, {"completeness_gap": gap, "baseline_scores": baseline_scores})


@method(
    kind="input",
    summary="Gradient SHAP: expected gradients over random baselines",
)
def gradient_shap(
    context: MethodContext,
    *,
    n_samples: int = 50,
    baselines: float | torch.Tensor = 0.0,
    stdevs: float = 0.0,
    seed: int = 0,
    batch_size: int | None = None,
) -> MethodResult:
    """Gradient SHAP (Lundberg & Lee 2017; Captum's definition): expected gradients.

    For each of ``n_samples`` draws (the same draws for every sample): a baseline ``r`` picked
    at random from ``baselines``, Gaussian noise ``ε`` with ``stdevs`` added to the input,
    ``α ~ U(0, 1)``; the map is the mean of ``∂y/∂x (r + α(x + ε - r)) ⊙ (x + ε - r)``.
    Seeded: the same call gives the same map.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        n_samples: draws per sample.
        baselines: a number, one input ``(C, *S)``, or a set of reference inputs
            ``(R, C, *S)`` to draw from (e.g. a few training images).
        stdevs: standard deviation of the input noise (0: none).
        seed: seed of the draws.
        batch_size: draws per forward/backward pass; default fits a memory budget.

    Extras:
        ``completeness_gap`` ``(B, T)``: ``|Σ map - (y(x) - mean_r y(r))|``, small for
        near-linear models and many samples.
    """
    if int(n_samples) < 1:
        raise MethodError(f"n_samples must be at least 1, got {n_samples}")
    if stdevs < 0:
        raise MethodError(f"stdevs must be non-negative, got {stdevs}")
    n_samples = int(n_samples)
    x = context.inputs
    sample_shape = tuple(x.shape[1:])
    if isinstance(baselines, int | float):
        references = torch.full((1, *sample_shape), float(baselines), dtype=x.dtype)
    elif isinstance(baselines, torch.Tensor):
        references = baselines.to(x.device, x.dtype)
        if tuple(references.shape) == sample_shape:
            references = references.unsqueeze(0)
        if tuple(references.shape[1:]) != sample_shape:
            raise InputError(
                f"baselines of shape {tuple(baselines.shape)} must be one input {sample_shape} "
                f"or a set (R, {', '.join(map(str, sample_shape))})"
            )
    else:
        raise InputError(f"baselines must be a number or a tensor, not {type(baselines).__name__}")
    references = references.to(x.device)
    if not bool(torch.isfinite(references).all()):
        raise InputError("the baselines contain NaN or infinite values")
    # The same draws for every sample: a sample's map does not depend on its batch or position.
    generator = torch.Generator().manual_seed(int(seed))
    picks = torch.randint(len(references), (n_samples,), generator=generator)
    alphas = torch.rand((n_samples,), generator=generator, dtype=x.dtype)
    noise = torch.randn((n_samples, *sample_shape), generator=generator, dtype=x.dtype) * stdevs
    picks, alphas, noise = picks.to(x.device), alphas.to(x.device), noise.to(x.device)
    total = _path_gradients(
        context,
        references[picks].unsqueeze(0),  # (1, m, C, *S)
        x.unsqueeze(1) + noise,  # (B, m, C, *S)
        alphas,
        batch_size,
        "gradient SHAP",
        times_difference=True,
    )
    maps = total / n_samples
    reference_scores = context.scores_of_shared(context.forward(references))  # (R, B, T)
    expected = context.scores - reference_scores.mean(0)
    gap = (maps.flatten(2).sum(-1) - expected).abs()
    return MethodResult(maps, {"completeness_gap": gap})
