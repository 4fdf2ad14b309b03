"""Perturbation methods over segments: feature ablation, Shapley value sampling and LIME.

Features are segments of the input (``segments=``: superpixels, supervoxels, atlas regions, organ
or particle labels read from a file; SLIC's by default, see
:func:`~camscope.methods.perturbation.segment`). A segment is removed by setting it to the
baseline in every channel. As the other perturbation methods, every perturbed copy of every sample
goes through the model in batches without autograd, all targets are read from the same passes,
and each element of a segment gets its segment's value in every channel (Captum's convention).
"""

from __future__ import annotations

import warnings

import torch

from camscope.engine.relay import warn
from camscope.errors import MethodError
from camscope.methods.context import MethodContext, MethodResult
from camscope.methods.gradients import resolve_baseline
from camscope.methods.perturbation import segment_labels
from camscope.methods.registry import method

__all__ = ["feature_ablation", "lime", "shapley_value_sampling"]


def _spread(values: torch.Tensor, labels: torch.Tensor, channels: int) -> torch.Tensor:
    """Per-segment values ``(B, M, T)`` (``M`` the largest count) → maps ``(B, T, C, *S)``."""
    picked = values.gather(1, labels.flatten(1)[..., None].expand(-1, -1, values.shape[2]))
    maps = picked.transpose(1, 2).unflatten(2, labels.shape[1:])  # (B, T, *S)
    return maps.unsqueeze(2).expand(-1, -1, channels, *labels.shape[1:]).clone()


@method(
    kind="input",
    summary="feature ablation: score drop when one segment is set to the baseline",
)
def feature_ablation(
    context: MethodContext,
    *,
    segments: torch.Tensor | None = None,
    n_segments: int = 50,
    compactness: float = 1.0,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = None,
    precision: str = "float32",
) -> MethodResult:
    """Feature ablation: each segment's value is ``y(x) − y(x with the segment at the baseline)``.

    Captum's ``FeatureAblation`` with a feature mask. One forward pass per segment and sample,
    all targets at once.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        segments: feature labels ``(B, *S)`` or ``(*S)``, integers; default SLIC's.
        n_segments: SLIC's number of segments, when ``segments`` is not given.
        compactness: SLIC's compactness, when ``segments`` is not given.
        baseline: value of a removed segment: a number, one input or a batch.
        batch_size: perturbed inputs per forward pass; default as for occlusion.
        precision: ``"float32"`` or ``"bfloat16"`` (approximate, faster).

    Extras:
        ``segments`` ``(B, *S)``; ``values`` ``(B, M, T)``: each segment's score drop (0 past a
        sample's own segment count).
    """
    x = context.inputs
    labels = segment_labels(
        context.inputs, segments, n_segments=n_segments, compactness=compactness
    )
    reference = resolve_baseline(context, baseline)
    full = context.reference_scores(precision)  # (B, T)
    counts = labels.flatten(1).amax(1) + 1  # (B,)
    sample = torch.repeat_interleave(torch.arange(context.batch_size, device=x.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    feature = torch.arange(len(sample), device=x.device) - starts[sample]
    values = torch.zeros(
        (context.batch_size, int(counts.max()), context.num_targets), dtype=x.dtype, device=x.device
    )
    rows = batch_size or context.perturbation_rows()
    view = (-1, *[1] * (x.ndim - 1))
    for part in context.batches(len(sample), rows, "feature ablation"):
        s, k = sample[part], feature[part]
        removed = (labels[s] == k.view(view[:-1])).unsqueeze(1)  # (n, 1, *S)
        masked = torch.where(removed, reference[s], x[s])
        scores = context.target_scores(context.forward(masked, precision), s)
        values[s, k] = (full[s] - scores).to(x.dtype)
    return MethodResult(_spread(values, labels, x.shape[1]), {"segments": labels, "values": values})


@method(
    kind="input",
    summary="Shapley value sampling: mean marginal gain of each segment over random orders",
)
def shapley_value_sampling(
    context: MethodContext,
    *,
    n_samples: int = 25,
    segments: torch.Tensor | None = None,
    n_segments: int = 50,
    compactness: float = 1.0,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = None,
    seed: int = 0,
    precision: str = "float32",
) -> MethodResult:
    """Shapley value sampling (Castro et al. 2009): ``φ_i = mean_π [y(S_π,i ∪ {i}) − y(S_π,i)]``.

    For each of ``n_samples`` random orders ``π`` of the segments, the segments are put back one by
    one into the baseline in that order; each one's value is the mean score gain it brings
    (Captum's ``ShapleyValueSampling``). The values of a sample add up to ``y(x) − y(baseline)``
    exactly, whatever the orders; they are unbiased estimates of the Shapley values, exact for
    any order when the model is additive over segments. ``n_samples × (M − 1)`` forward passes
    per sample, all targets at once.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        n_samples: random orders per sample.
        segments: as for :func:`feature_ablation`.
        n_segments: as for :func:`feature_ablation`.
        compactness: as for :func:`feature_ablation`.
        baseline: as for :func:`feature_ablation`.
        batch_size: as for :func:`feature_ablation`.
        precision: as for :func:`feature_ablation`.
        seed: seed of the orders (each sample its own generator with this seed).

    Extras:
        ``segments`` ``(B, *S)``; ``values`` ``(B, M, T)``; ``base_scores`` ``(B, T)``: the
        score of the baseline.
    """
    if int(n_samples) < 1:
        raise MethodError(f"n_samples must be at least 1, got {n_samples}")
    x = context.inputs
    labels = segment_labels(
        context.inputs, segments, n_segments=n_segments, compactness=compactness
    )
    reference = resolve_baseline(context, baseline)
    batch_rows = torch.arange(context.batch_size, device=x.device)
    empty = context.target_scores(context.forward(reference, precision), batch_rows)  # (B, T)
    full = context.reference_scores(precision)
    counts = labels.flatten(1).amax(1) + 1
    values = torch.zeros(
        (context.batch_size, int(counts.max()), context.num_targets),
        dtype=torch.float64,
        device=x.device,
    )
    rows = batch_size or context.perturbation_rows()
    for b in range(context.batch_size):  # segment counts differ per sample
        m = int(counts[b])
        generator = torch.Generator().manual_seed(int(seed))
        orders = torch.rand((int(n_samples), m), generator=generator).argsort(1).to(x.device)
        ranks = orders.argsort(1)  # (P, M): each segment's place in each order
        # f[p, j]: the score with the first j segments of order p put back (j = 0..m)
        f = torch.empty((len(orders), m + 1, context.num_targets), dtype=torch.float64)
        f[:, 0], f[:, m] = empty[b].double(), full[b].double()
        steps = torch.arange(1, m, device=x.device)
        work = torch.cartesian_prod(torch.arange(len(orders), device=x.device), steps)
        if m > 1:
            sample = torch.full((len(work),), b, device=x.device)
            for part in context.batches(len(work), rows, f"Shapley sampling {b + 1}"):
                p, j = work[part, 0], work[part, 1]
                kept = ranks[p][:, labels[b]] < j.view(-1, *[1] * (x.ndim - 2))  # (n, *S)
                masked = torch.where(kept.unsqueeze(1), x[b], reference[b])
                scores = context.target_scores(context.forward(masked, precision), sample[part])
                f[p, j] = scores.double().cpu()
        gains = f[:, 1:] - f[:, :-1]  # (P, m, T): the gain of the order's j-th segment
        order_cpu = orders.cpu()
        per_segment = torch.zeros((m, context.num_targets), dtype=torch.float64)
        per_segment.index_add_(0, order_cpu.flatten(), gains.flatten(0, 1))
        values[b, :m] = per_segment.to(x.device) / len(orders)
    maps = _spread(values.to(x.dtype), labels, x.shape[1])
    return MethodResult(
        maps, {"segments": labels, "values": values.to(x.dtype), "base_scores": empty}
    )


@method(
    kind="input",
    summary="LIME: a weighted Lasso of the score on which segments are kept",
    may_be_empty=True,
)
def lime(
    context: MethodContext,
    *,
    n_samples: int = 50,
    alpha: float = 0.01,
    max_iter: int = 1000,
    kernel_width: float = 1.0,
    segments: torch.Tensor | None = None,
    n_segments: int = 50,
    compactness: float = 1.0,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = None,
    seed: int = 0,
    precision: str = "float32",
) -> MethodResult:
    """LIME (Ribeiro et al. 2016) over segments, with Captum's ``Lime`` defaults.

    ``n_samples`` coalitions ``z ∈ {0, 1}^M`` are drawn (each segment kept with probability ½);
    the input keeps the segments of ``z`` and has the baseline elsewhere; each draw is weighted by
    ``exp(−d² / (2 w²))`` with ``d`` the cosine distance between the input and the perturbed
    input and ``w = kernel_width``; a Lasso with intercept (``alpha``, scikit-learn's) fits the
    target's score on ``z``, and each segment's value is its coefficient. All targets are fitted
    at once on the same draws.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        n_samples: draws per sample.
        alpha: the Lasso's L1 weight (Captum: 0.01); 0: weighted least squares.
        max_iter: the Lasso's iterations (scikit-learn's default); fits that stop before
            converging are counted in one warning per call.
        kernel_width: of the exponential similarity kernel.
        segments: as for :func:`feature_ablation`.
        n_segments: as for :func:`feature_ablation`.
        compactness: as for :func:`feature_ablation`.
        baseline: as for :func:`feature_ablation`.
        batch_size: as for :func:`feature_ablation`.
        precision: as for :func:`feature_ablation`.
        seed: seed of the draws (each sample its own generator with this seed).

    Extras:
        ``segments`` ``(B, *S)``; ``values`` ``(B, M, T)``; ``samples``: per sample the draws
        ``(n_samples, M_b)``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso, LinearRegression

    if int(n_samples) < 2:
        raise MethodError(f"n_samples must be at least 2, got {n_samples}")
    if int(max_iter) < 1:
        raise MethodError(f"max_iter must be at least 1, got {max_iter}")
    if not alpha >= 0 or not kernel_width > 0:
        raise MethodError(
            f"alpha must be ≥ 0 and kernel_width > 0, got alpha={alpha!r}, "
            f"kernel_width={kernel_width!r}"
        )
    x = context.inputs
    labels = segment_labels(
        context.inputs, segments, n_segments=n_segments, compactness=compactness
    )
    reference = resolve_baseline(context, baseline)
    counts = labels.flatten(1).amax(1) + 1
    values = torch.zeros(
        (context.batch_size, int(counts.max()), context.num_targets), dtype=x.dtype, device=x.device
    )
    draws = []
    rows = batch_size or context.perturbation_rows()
    unconverged = 0
    for b in range(context.batch_size):
        m = int(counts[b])
        generator = torch.Generator().manual_seed(int(seed))
        z = torch.bernoulli(torch.full((int(n_samples), m), 0.5), generator=generator).bool()
        scores = torch.empty((len(z), context.num_targets), dtype=torch.float64)
        similarity = torch.empty(len(z), dtype=torch.float64)
        flat = x[b].flatten().float()
        sample = torch.full((len(z),), b, device=x.device)
        for part in context.batches(len(z), rows, f"LIME {b + 1}"):
            kept = z[part].to(x.device)[:, labels[b]].unsqueeze(1)  # (n, 1, *S)
            masked = torch.where(kept, x[b], reference[b])
            out = context.forward(masked, precision)
            scores[part] = context.target_scores(out, sample[part]).double().cpu()
            cosine = torch.nn.functional.cosine_similarity(
                masked.flatten(1).float(), flat[None], dim=1
            )
            distance = (1 - cosine).double().cpu()
            similarity[part] = torch.exp(-(distance**2) / (2 * kernel_width**2))
        model = (
            Lasso(alpha=float(alpha), max_iter=int(max_iter)) if alpha > 0 else LinearRegression()
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(z.double().numpy(), scores.numpy(), sample_weight=similarity.numpy())
        unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
        for w in caught:  # anything else is the user's to see
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        coef = torch.as_tensor(model.coef_, dtype=x.dtype).reshape(context.num_targets, m)
        values[b, :m] = coef.T.to(x.device)
        draws.append(z)
    if unconverged:
        warn(
            f"camscope: lime: scikit-learn's Lasso stopped before converging for {unconverged} "
            f"of {context.batch_size} samples (max_iter={int(max_iter)}), so their segment "
            "values are approximate; raise max_iter, or fit by least squares with alpha=0",
            key="lime: Lasso stopped before converging",
        )
    maps = _spread(values, labels, x.shape[1])
    return MethodResult(maps, {"segments": labels, "values": values, "samples": draws})
