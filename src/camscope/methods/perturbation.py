"""Perturbation methods: occlusion, Kernel SHAP over superpixels/supervoxels, Score-CAM, SS-CAM
and IS-CAM.

They explain by changing the input and watching the score, so they need many forward passes;
here every pass is batched (``batch_size`` rows, rows of all samples mixed), runs without autograd,
serves all ``T`` targets at once, and a progress bar appears when a call takes more than a few
seconds. Occlusion and Kernel SHAP return ``(B, T, C_in, *S)``; Score-CAM a map ``(B, T, *s)`` at
the chosen layer, like the rest of the CAM family.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from camscope.errors import InputError, MethodError
from camscope.methods.context import MethodContext, MethodResult
from camscope.methods.gradients import resolve_baseline
from camscope.methods.registry import method

__all__ = [
    "is_cam",
    "kernel_shap",
    "occlusion",
    "occlusion_windows",
    "score_cam",
    "segment",
    "segment_labels",
    "shapley_kernel_weights",
    "ss_cam",
]


def _per_axis(value: int | Sequence[int] | None, default: Sequence[int], name: str) -> list[int]:
    if value is None:
        return [int(v) for v in default]
    values = [int(value)] * len(default) if isinstance(value, int) else [int(v) for v in value]
    if len(values) != len(default) or any(v < 1 for v in values):
        raise MethodError(
            f"{name} needs {len(default)} positive entries (one per spatial axis), got {value!r}"
        )
    return values


def occlusion_windows(size: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> list:
    """Start positions per axis: ``0, stride, …`` until the window reaches the end.

    As in Captum, the last window may run past the edge and is cropped, so every position is
    covered at least once.
    """
    starts = []
    for extent, width, step in zip(size, window, stride, strict=True):
        if width > extent:
            raise MethodError(f"occlusion window {tuple(window)} is larger than the input {size}")
        if step > width and width < extent:
            raise MethodError(
                f"stride {tuple(stride)} larger than the window {tuple(window)} leaves gaps"
            )
        count = math.ceil((extent - width) / step) + 1
        starts.append(torch.arange(count) * step)
    return starts


def _window_masks(
    index: torch.Tensor, starts: list, window: Sequence[int], size: Sequence[int]
) -> torch.Tensor:
    """Boolean masks ``(n, *size)`` of the windows with flat indices ``index``."""
    counts = [len(s) for s in starts]
    mask: torch.Tensor | None = None
    remaining = index
    axis_masks = []
    for axis in reversed(range(len(size))):
        position = starts[axis].to(index.device)[remaining % counts[axis]]
        remaining = remaining // counts[axis]
        grid = torch.arange(size[axis], device=index.device)
        inside = (grid >= position[:, None]) & (grid < position[:, None] + window[axis])
        axis_masks.append(inside)
    axis_masks.reverse()
    for axis, inside in enumerate(axis_masks):
        shape = [len(index)] + [1] * len(size)
        shape[axis + 1] = size[axis]
        piece = inside.view(shape)
        mask = piece if mask is None else mask & piece
    assert mask is not None
    return mask


@method(
    kind="input",
    summary="occlusion: score drop when a sliding 2D/3D patch is masked",
)
def occlusion(
    context: MethodContext,
    *,
    window: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = None,
    precision: str = "float32",
) -> MethodResult:
    """Occlusion (Zeiler & Fergus 2014): slide a patch over the input, record the score drop.

    Each position's value is the mean, over the windows covering it, of ``y(x) - y(x_occluded)``
    (Captum's definition). Windows span all input channels; in 3D they are boxes.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        window: patch size per spatial axis (an int for all); default ``ceil(S/8)`` per axis.
        stride: step per axis; default the window (8 × 8 patches in 2D, 8 × 8 × 8 in 3D);
            a smaller stride overlaps patches and smooths the map at more cost.
        baseline: what replaces the patch: a number, one input ``(C, *S)`` or a batch.
        batch_size: occluded inputs per forward pass; default: about 2.5 M input values per
            batch (16 images of 224² × 3, 39 volumes of 40³), which keeps a CPU's caches warm.
        precision: ``"float32"`` (exact) or ``"bfloat16"`` (autocast: approximate, about 2×
            faster on CPUs with bfloat16 units; the unoccluded score is taken alike).

    Extras:
        ``windows``: number of occluded inputs per sample.
    """
    x = context.inputs
    size = tuple(x.shape[2:])
    window_ = _per_axis(window, [math.ceil(s / 8) for s in size], "window")
    stride_ = _per_axis(stride, window_, "stride")
    starts = occlusion_windows(size, window_, stride_)
    per_sample = int(np.prod([len(s) for s in starts]))
    reference = resolve_baseline(context, baseline)
    total = torch.zeros(
        (context.batch_size, context.num_targets, *size), dtype=x.dtype, device=x.device
    )
    flat = context.batch_size * per_sample
    unoccluded = context.reference_scores(precision)
    for part in context.batches(flat, batch_size or context.perturbation_rows(), "occlusion"):
        index = torch.arange(part.start, part.stop, device=x.device)
        sample, position = index // per_sample, index % per_sample
        mask = _window_masks(position, starts, window_, size).unsqueeze(1)  # (n, 1, *S)
        occluded = torch.where(mask, reference[sample], x[sample])
        scores = context.target_scores(context.forward(occluded, precision), sample)
        drop = unoccluded[sample] - scores  # (n, T)
        weighted = drop.view(*drop.shape, *([1] * len(size))) * mask.to(x.dtype)
        total.index_add_(0, sample, weighted)
    counts = _window_masks(torch.arange(per_sample, device=x.device), starts, window_, size)
    coverage = counts.sum(0).to(x.dtype)
    maps = (total / coverage).unsqueeze(2).expand(-1, -1, x.shape[1], *size).clone()
    return MethodResult(maps, {"windows": per_sample})


# -- Kernel SHAP -------------------------------------------------------------------------------


def segment(
    inputs: torch.Tensor, *, n_segments: int = 50, compactness: float = 1.0
) -> torch.Tensor:
    """Superpixels (2D) or supervoxels (3D) per sample with scikit-image's SLIC.

    Each sample is min-max scaled to ``[0, 1]`` first, so ``compactness`` means the same for
    any intensity range (smaller follows intensity edges more closely).

    Returns:
        Labels ``(B, *S)``, ``0 … M_b - 1`` per sample (long).
    """
    from skimage.segmentation import slic

    labels = []
    for sample in inputs.detach().cpu().double().numpy():
        low, high = sample.min(), sample.max()
        scaled = (sample - low) / (high - low) if high > low else np.zeros_like(sample)
        multichannel = scaled.shape[0] > 1
        image = np.moveaxis(scaled, 0, -1) if multichannel else scaled[0]
        result = slic(
            image,
            n_segments=int(n_segments),
            compactness=float(compactness),
            channel_axis=-1 if multichannel else None,
            convert2lab=False,
            start_label=0,
            enforce_connectivity=True,
        )
        _, dense = np.unique(result, return_inverse=True)
        labels.append(dense.reshape(result.shape))
    return torch.as_tensor(np.stack(labels), dtype=torch.long, device=inputs.device)


def segment_labels(
    inputs: torch.Tensor,
    segments: torch.Tensor | None,
    *,
    n_segments: int = 50,
    compactness: float = 1.0,
) -> torch.Tensor:
    """Segment labels ``(B, *S)`` numbered ``0..M_b − 1`` per sample: the user's ``segments``
    (``(B, *S)`` or one ``(*S)`` shared by all samples: superpixels, atlas regions, organ or
    particle labels) or SLIC's (see :func:`segment`).

    Raises:
        InputError: segments that are not integer labels of the inputs' spatial shape.
    """
    size = tuple(inputs.shape[2:])
    if segments is None:
        return segment(inputs, n_segments=n_segments, compactness=compactness)
    if not isinstance(segments, torch.Tensor) or segments.is_floating_point():
        raise InputError("segments must be an integer tensor of labels (B, *S) or (*S)")
    try:
        labels = torch.broadcast_to(segments.to(inputs.device), (inputs.shape[0], *size))
    except RuntimeError as error:
        raise InputError(
            f"segments of shape {tuple(segments.shape)} do not fit the inputs' spatial shape "
            f"{size}; give labels (B, *S) or (*S)"
        ) from error
    return torch.stack([torch.unique(row, return_inverse=True)[1] for row in labels])


def shapley_kernel_weights(num_features: int, sizes: torch.Tensor) -> torch.Tensor:
    """The Shapley kernel ``(M-1) / (C(M, k) k (M-k))`` for coalition sizes ``0 < k < M``."""
    m = num_features
    k = sizes.to(torch.float64)
    binom = torch.exp(
        torch.lgamma(torch.tensor(m + 1.0)) - torch.lgamma(k + 1) - torch.lgamma(m - k + 1)
    )
    return (m - 1) / (binom * k * (m - k))


def _coalitions(
    num_features: int, n_samples: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coalitions ``(n, M)`` (bool, neither empty nor full) and their regression weights."""
    m = num_features
    if m == 1:  # one segment holds the whole difference: nothing to sample
        return torch.zeros((0, 1), dtype=torch.bool), torch.zeros(0, dtype=torch.float64)
    if 2**m - 2 <= n_samples:  # few features: all coalitions, exact Shapley values
        rows = [
            [i in chosen for i in range(m)]
            for size in range(1, m)
            for chosen in combinations(range(m), size)
        ]
        z = torch.tensor(rows, dtype=torch.bool)
        return z, shapley_kernel_weights(m, z.sum(1))
    # Sizes drawn in proportion to the kernel's total weight per size, members uniformly:
    # then every drawn coalition has the same regression weight.
    sizes = torch.arange(1, m, dtype=torch.float64)
    size_weights = (m - 1) / (sizes * (m - sizes))
    drawn = torch.multinomial(size_weights, n_samples, replacement=True, generator=generator) + 1
    order = torch.rand((n_samples, m), generator=generator).argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(m).expand(n_samples, m))
    z = ranks < drawn[:, None]
    return z, torch.ones(n_samples, dtype=torch.float64)


def _solve_shapley(
    z: torch.Tensor,
    weights: torch.Tensor,
    values: torch.Tensor,
    empty: torch.Tensor,
    full: torch.Tensor,
) -> torch.Tensor:
    """Kernel SHAP's constrained weighted least squares, all targets at once.

    ``φ`` minimises ``Σ w (f(z) - f(∅) - z·φ)²`` subject to ``Σ φ = f(full) - f(∅)``; the last
    feature is eliminated with the constraint. ``z (n, M)``, ``values (n, T)`` → ``φ (M, T)``.
    """
    m = z.shape[1]
    delta = (full - empty).to(torch.float64)  # (T,)
    if m == 1:
        return delta[None]
    zf = z.to(torch.float64)
    target = values.to(torch.float64) - empty.to(torch.float64) - zf[:, -1:] * delta
    design = zf[:, :-1] - zf[:, -1:]
    root = weights.sqrt()[:, None]
    solution = torch.linalg.lstsq(design * root, target * root, driver="gelsd").solution
    return torch.cat([solution, (delta - solution.sum(0))[None]], dim=0)


@method(
    kind="input",
    summary="Kernel SHAP over SLIC superpixels / supervoxels (exact when few)",
)
def kernel_shap(
    context: MethodContext,
    *,
    n_samples: int = 256,
    n_segments: int = 50,
    compactness: float = 1.0,
    segments: torch.Tensor | None = None,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = None,
    seed: int = 0,
    precision: str = "float32",
) -> MethodResult:
    """Kernel SHAP (Lundberg & Lee 2017) over superpixels (2D) or supervoxels (3D).

    Features are segments (SLIC by default); a coalition keeps its segments and replaces the rest
    with the baseline. Shapley values come from the constrained weighted regression on the
    coalitions' scores, for all targets at once; when ``2^M - 2 ≤ n_samples`` every coalition is
    evaluated and the values are exact. Every element of a segment gets its segment's value
    (Captum's convention), in every channel.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        n_samples: coalitions evaluated per sample (besides the empty and the full one).
        n_segments: SLIC's number of segments (see :func:`segment`).
        compactness: SLIC's compactness (see :func:`segment`).
        segments: your own feature labels ``(B, *S)`` or ``(*S)``, integers; overrides SLIC.
        baseline: value of removed segments: a number, one input or a batch.
        batch_size: masked inputs per forward pass; default as for :func:`occlusion`.
        seed: seed of the sampled coalitions.
        precision: ``"float32"`` or ``"bfloat16"`` (approximate, faster; see :func:`occlusion`).

    Extras:
        ``segments`` ``(B, *S)``; ``shapley_values``: per sample ``(M_b, T)``;
        ``base_scores`` ``(B, T)``: ``f(∅)``, the score with every segment removed.
    """
    x = context.inputs
    size = tuple(x.shape[2:])
    if int(n_samples) < 1:
        raise MethodError(f"n_samples must be at least 1, got {n_samples}")
    labels = segment_labels(
        context.inputs, segments, n_segments=n_segments, compactness=compactness
    )
    reference = resolve_baseline(context, baseline)
    rows = torch.arange(context.batch_size, device=x.device)
    empty_scores = context.target_scores(context.forward(reference, precision), rows)
    full_scores = context.reference_scores(precision)
    maps = torch.empty((context.batch_size, context.num_targets, *size), dtype=x.dtype)
    values_per_sample = []
    for b in range(context.batch_size):  # segment counts differ per sample
        count = int(labels[b].max()) + 1
        # Seeded per sample, not per batch: a sample's values do not depend on its neighbours.
        generator = torch.Generator().manual_seed(int(seed))
        z, weights = _coalitions(count, int(n_samples), generator)
        scores = torch.empty((len(z), context.num_targets), dtype=x.dtype, device=x.device)
        keep_all = z.to(x.device)
        rows_per_batch = batch_size or context.perturbation_rows()
        for part in context.batches(len(z), rows_per_batch, f"kernel SHAP {b + 1}/{len(rows)}"):
            keep = keep_all[part][:, labels[b]].unsqueeze(1)  # (n, 1, *S)
            masked = torch.where(keep, x[b], reference[b])
            sample = torch.full((len(keep),), b, dtype=torch.long, device=x.device)
            scores[part] = context.target_scores(context.forward(masked, precision), sample)
        phi = _solve_shapley(z, weights, scores, empty_scores[b], full_scores[b])
        values_per_sample.append(phi.to(x.dtype))
        maps[b] = phi.to(x.dtype).T[:, labels[b]]
    expanded = maps.to(x.device).unsqueeze(2).expand(-1, -1, x.shape[1], *size).clone()
    return MethodResult(
        expanded,
        {"segments": labels, "shapley_values": values_per_sample, "base_scores": empty_scores},
    )


# -- Score-CAM ---------------------------------------------------------------------------------

ScoreWeighting = Literal["probability", "score", "channel_softmax"]


@method(
    kind="layer",
    summary="Score-CAM: channels weighted by the score of the input they mask",
)
def score_cam(
    context: MethodContext,
    *,
    batch_size: int | None = None,
    weighting: ScoreWeighting = "probability",
    top_channels: int | None = None,
    align_corners: bool = False,
    precision: str = "float32",
) -> MethodResult:
    """Score-CAM (Wang et al. 2020): channels weighted by the score of the input they mask.

    Each channel ``A^k`` of the layer is upsampled to input size, min-max scaled to ``[0, 1]`` and
    multiplied into the input; the target's score on that masked input is ``α_k``; the map is
    ``Σ_k α_k A^k`` at the layer (raw: no ReLU). Channels that are constant over space make the
    same all-zero mask, so their score is computed once per sample.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        batch_size: masked inputs per forward pass; default as for :func:`occlusion`.
        weighting: ``"probability"``: the softmax probability of the target class (the paper's
            Algorithm 1; class targets only); ``"score"``: the raw target score;
            ``"channel_softmax"``: a softmax over channels of the raw scores (pytorch-grad-cam's
            choice, for comparison).
        top_channels: approximate (Faster Score-CAM, Wang et al. 2020): only the ``N`` channels
            whose activation varies most over space get a forward pass; the others get weight 0
            (and are left out of ``channel_softmax``).
        align_corners: of the (bi/tri)linear mask upsampling (pytorch-grad-cam uses ``True``).
        precision: ``"float32"`` (exact) or ``"bfloat16"`` (autocast for the masked forward
            passes: approximate, about 2× faster on CPUs with bfloat16 units).

    Extras:
        ``weights`` ``(B, T, C)``; ``forward_passes`` per sample (mean).
    """
    if weighting not in ("probability", "score", "channel_softmax"):
        raise MethodError(
            f"weighting must be 'probability', 'score' or 'channel_softmax', not {weighting!r}"
        )
    if weighting == "probability" and context.classes is None:
        raise MethodError(
            "Score-CAM's 'probability' weighting needs class targets; pass weighting='score' "
            "with a callable target"
        )
    x = context.inputs
    activations = context.layer_activations()  # (B, C, *s)
    batch, channels = activations.shape[:2]
    spatial = activations.shape[2:]
    flat = activations.flatten(2)
    low, high = flat.amin(-1), flat.amax(-1)
    varying = high > low  # (B, C)
    if top_channels is not None:
        if int(top_channels) < 1:
            raise MethodError(f"top_channels must be at least 1, got {top_channels}")
        keep = min(int(top_channels), channels)
        chosen = flat.var(-1).topk(keep, dim=1).indices
        selected = torch.zeros_like(varying).scatter_(1, chosen, True)
    else:
        selected = torch.ones_like(varying)
    work = (varying & selected).nonzero()  # (n, 2): sample, channel
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
    score = context.probabilities if weighting == "probability" else context.target_scores
    raw = torch.zeros((batch, channels, context.num_targets), dtype=x.dtype, device=x.device)
    # One all-zero-mask pass per sample serves every constant channel of it.
    rows = torch.arange(batch, device=x.device)
    zero_scores = score(context.forward(torch.zeros_like(x), precision), rows)  # (B, T)
    raw[:] = zero_scores[:, None, :]
    for part in context.batches(len(work), batch_size or context.perturbation_rows(), "Score-CAM"):
        sample, channel = work[part, 0], work[part, 1]
        maps = activations[sample, channel].unsqueeze(1)  # (n, 1, *s)
        masks = F.interpolate(maps, size=x.shape[2:], mode=mode, align_corners=align_corners)
        lo = masks.flatten(1).amin(-1).view(-1, 1, *([1] * len(spatial)))
        hi = masks.flatten(1).amax(-1).view(-1, 1, *([1] * len(spatial)))
        masks = (masks - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        raw[sample, channel] = score(context.forward(x[sample] * masks, precision), sample)
    if weighting == "channel_softmax":
        logits = raw.masked_fill(~selected[..., None], float("-inf"))
        weights = torch.softmax(logits, dim=1)
    else:
        weights = raw * selected[..., None]
    weights = weights.transpose(1, 2)  # (B, T, C)
    cam = torch.einsum("btc,bc...->bt...", weights, activations)
    return MethodResult(
        cam,
        {"weights": weights, "forward_passes": (len(work) + batch) / batch},
    )


def _channel_masks(activations: torch.Tensor, size: tuple[int, ...], align: bool) -> torch.Tensor:
    """Channels ``(n, *s)`` upsampled to ``size`` and min-max scaled to ``[0, 1]``: ``(n, 1, *S)``
    (a constant channel gives zeros)."""
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    masks = F.interpolate(activations.unsqueeze(1), size=size, mode=mode, align_corners=align)
    flat = masks.flatten(1)
    view = (-1, 1, *[1] * len(size))
    lo, hi = flat.amin(-1).view(view), flat.amax(-1).view(view)
    return (masks - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))


def _repeated_mask_cam(
    context: MethodContext,
    name: str,
    draws: int,
    perturb: Callable[[torch.Tensor, int, int], torch.Tensor],
    *,
    weighting: str,
    batch_size: int | None,
    align_corners: bool,
    precision: str,
) -> MethodResult:
    """Score-CAM with ``draws`` perturbed versions of each channel's mask, their target scores
    averaged: ``perturb(masks (D, 1, *S), sample, channel)`` gives the ``D`` masks of one
    channel (seeded per channel, so a sample's map does not depend on the batch)."""
    if weighting not in ("probability", "score", "channel_softmax"):
        raise MethodError(
            f"weighting must be 'probability', 'score' or 'channel_softmax', not {weighting!r}"
        )
    if weighting == "probability" and context.classes is None:
        raise MethodError(
            f"{name}'s 'probability' weighting needs class targets; pass weighting='score' "
            "with a callable target"
        )
    if draws < 1:
        raise MethodError(f"{name}: n_samples must be at least 1, got {draws}")
    x = context.inputs
    activations = context.layer_activations()  # (B, C, *s)
    batch, channels = activations.shape[:2]
    size = tuple(x.shape[2:])
    score = context.probabilities if weighting == "probability" else context.target_scores
    raw = torch.zeros((batch, channels, context.num_targets), dtype=x.dtype, device=x.device)
    per_pass = max(1, (batch_size or context.perturbation_rows()) // draws)
    for b in range(batch):
        rows = torch.full((per_pass * draws,), b, device=x.device)
        for part in context.batches(channels, per_pass, f"{name} {b + 1}/{batch}"):
            masks = _channel_masks(activations[b, part], size, align_corners)  # (n, 1, *S)
            perturbed = torch.cat(
                [
                    perturb(masks[i].expand(draws, *masks.shape[1:]), b, part.start + i)
                    for i in range(len(masks))
                ]
            )
            scores = score(context.forward(x[b] * perturbed, precision), rows[: len(perturbed)])
            raw[b, part] = scores.view(len(masks), draws, -1).mean(1).to(x.dtype)
    weights = torch.softmax(raw, dim=1) if weighting == "channel_softmax" else raw
    weights = weights.transpose(1, 2)  # (B, T, C)
    cam = torch.einsum("btc,bc...->bt...", weights, activations)
    return MethodResult(cam, {"weights": weights})


@method(
    kind="layer",
    summary="SS-CAM: Score-CAM with Gaussian noise in each mask, scores averaged",
)
def ss_cam(
    context: MethodContext,
    *,
    n_samples: int = 35,
    std: float = 2.0,
    weighting: ScoreWeighting = "probability",
    batch_size: int | None = None,
    align_corners: bool = False,
    seed: int = 0,
    precision: str = "float32",
) -> MethodResult:
    """SS-CAM (Wang et al. 2020, "Smoothed Score-CAM"): ``α_k = mean_i s(x ⊙ (M_k + δ_i))``.

    ``M_k`` is channel ``k`` upsampled and min-max scaled to ``[0, 1]`` (as in Score-CAM),
    ``δ_i ~ N(0, std²)`` per element, ``s`` the target's probability, score or (with
    ``"channel_softmax"``) a softmax over channels of the mean scores (torch-cam's choice);
    ``L = Σ_k α_k A^k``, raw. ``n_samples × C`` forward passes per sample, all targets at once.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        n_samples: noisy masks per channel (torch-cam: 35).
        std: the noise's standard deviation (torch-cam: 2).
        weighting: as for :func:`score_cam`.
        batch_size: as for :func:`score_cam`.
        align_corners: as for :func:`score_cam`.
        precision: as for :func:`score_cam`.
        seed: seed of the noise (per channel; a sample's map does not depend on the batch).

    Extras:
        ``weights`` ``(B, T, C)``.
    """
    if not std >= 0:
        raise MethodError(f"ss_cam: std must be ≥ 0, got {std!r}")

    def noisy(masks: torch.Tensor, sample: int, channel: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + channel)
        noise = torch.randn(masks.shape, generator=generator, dtype=masks.dtype)
        return masks + float(std) * noise.to(masks.device)

    return _repeated_mask_cam(
        context, "SS-CAM", int(n_samples), noisy, weighting=weighting, batch_size=batch_size,
        align_corners=align_corners, precision=precision,
    )  # fmt: skip


@method(
    kind="layer",
    summary="IS-CAM: Score-CAM with each mask scaled along an integration path, scores averaged",
)
def is_cam(
    context: MethodContext,
    *,
    n_samples: int = 10,
    weighting: ScoreWeighting = "probability",
    batch_size: int | None = None,
    align_corners: bool = False,
    precision: str = "float32",
) -> MethodResult:
    """IS-CAM (Naidu et al. 2020, "Integrated Score-CAM"): ``α_k = mean_i s(x ⊙ c_i M_k)``.

    ``M_k`` as in Score-CAM; the masks are scaled by ``c_i = Σ_{j ≤ i} j/N = i(i+1)/(2N)``,
    ``i = 1..N`` (torch-cam's path); ``s`` and the map as in :func:`ss_cam`. Deterministic.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        n_samples: steps along the path (torch-cam: 10).
        weighting: as for :func:`score_cam`.
        batch_size: as for :func:`score_cam`.
        align_corners: as for :func:`score_cam`.
        precision: as for :func:`score_cam`.

    Extras:
        ``weights`` ``(B, T, C)``.
    """
    steps = torch.arange(1, int(n_samples) + 1, dtype=torch.float64)
    coefficients = steps * (steps + 1) / (2 * max(int(n_samples), 1))

    def scaled(masks: torch.Tensor, sample: int, channel: int) -> torch.Tensor:
        view = (-1, *[1] * (masks.ndim - 1))
        return masks * coefficients.to(masks.device, masks.dtype).view(view)

    return _repeated_mask_cam(
        context, "IS-CAM", int(n_samples), scaled, weighting=weighting, batch_size=batch_size,
        align_corners=align_corners, precision=precision,
    )  # fmt: skip
