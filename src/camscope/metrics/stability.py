"""How much does the map change when the input barely does? Robustness metrics that re-explain
perturbed inputs, in 2D and 3D.

* :func:`avg_sensitivity` (Yeh et al. 2019): the mean relative change of the map under uniform
  noise (:func:`~camscope.metrics.max_sensitivity` is its maximum).
* :func:`local_lipschitz_estimate` (Alvarez-Melis & Jaakkola 2018): the largest ratio of the
  map's change to the input's change under Gaussian noise.
* :func:`relative_input_stability`, :func:`relative_output_stability`,
  :func:`relative_representation_stability` (Agarwal et al. 2022): the largest relative change
  of the map over the relative change of the input, of the logits, or of a layer's output.
* :func:`continuity` (Montavon et al. 2018): the largest change of the map per unit change of
  the input under translations.
* :func:`consistency` (Dasgupta et al. 2022): samples whose maps are the same once discretised
  share their predicted class.

``method`` is a registered method's name (explained with :func:`camscope.explain`, its options
in ``options``) or a callable ``(inputs, targets) -> maps``. All ``n_samples`` perturbed copies
of all samples are explained together, ``batch_size`` rows at a time; noise is seeded. Maps are
compared at the input's resolution, raw. Perturbations that change the predicted class are left
out of the relative stabilities (as the paper and Quantus do); a sample whose every perturbation
changes the class gets NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from camscope.engine import ModelState, any_model, call_model
from camscope.engine.capture import attach_hook
from camscope.errors import InputError, MethodError
from camscope.metrics._shapes import explanation_maps
from camscope.metrics._stats import PerSample

__all__ = [
    "avg_sensitivity",
    "consistency",
    "continuity",
    "local_lipschitz_estimate",
    "relative_input_stability",
    "relative_output_stability",
    "relative_representation_stability",
]

MethodLike = str | Callable[[torch.Tensor, torch.Tensor], Any]
Noise = Literal["uniform", "gaussian"]


@dataclass(frozen=True)
class _Changes:
    """Per sample and perturbation ``(B, n)``: norms of what changed."""

    map_change: torch.Tensor  # ‖e' − e‖
    map_norm: torch.Tensor  # ‖e‖, (B, 1)
    input_change: torch.Tensor  # ‖x' − x‖
    relative_map: torch.Tensor  # ‖(e − e') / e‖
    relative_input: torch.Tensor  # ‖(x − x') / x‖
    relative_output: torch.Tensor  # ‖(h − h') / h‖ (logits)
    relative_layer: torch.Tensor  # ‖(r − r') / r‖ at the layer (NaN without one)
    changed: torch.Tensor  # predicted class changed


def _maps_of(
    model: nn.Module,
    method: MethodLike,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    options: dict[str, Any],
) -> torch.Tensor:
    """One map per row at the input's resolution, flattened ``(N, Z)`` float64."""
    if callable(method):
        result = method(inputs, targets)
    else:
        from camscope.explain import explain

        result = explain(model, inputs, method=method, targets=targets, progress=False, **options)
    maps, _ = explanation_maps(result)
    if isinstance(result, torch.Tensor) and maps.ndim == inputs.ndim:  # (N, 1, *S)
        maps = maps[:, 0]
    elif not isinstance(result, torch.Tensor):
        if maps.shape[1] != 1:
            raise MethodError("robustness metrics explain one target per sample")
        maps = maps[:, 0]
    if tuple(maps.shape) != (inputs.shape[0], *inputs.shape[2:]):
        raise InputError(
            f"the explainer must give one map per input at its resolution "
            f"{(inputs.shape[0], *inputs.shape[2:])}, got {tuple(maps.shape)}"
        )
    return maps.detach().double().flatten(1)


def rows_per_batch(inputs: torch.Tensor, budget: int = 4_000_000) -> int:
    """Perturbed inputs per explanation call: about ``budget`` input values at once."""
    return max(1, budget // max(1, inputs[0].numel()))


def _relative(
    before: torch.Tensor, after: torch.Tensor, eps: float
) -> torch.Tensor:  # ‖(a − b) / a‖ per row
    before, after = before.flatten(1).double(), after.flatten(1).double()
    return ((before - after) / torch.where(before == 0, eps, before)).norm(dim=1)


def _forward(
    model: nn.Module, inputs: torch.Tensor, layer: str | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits and the layer's output (when asked), no autograd."""
    seen: list[torch.Tensor] = []
    handle = None
    if layer is not None:
        from camscope.layers import resolve_layer

        name, module = resolve_layer(model, layer)
        handle = attach_hook(module, name, lambda _m, _i, out: seen.append(out.detach()))
    try:
        with ModelState(model, eval_mode=True), torch.no_grad():
            logits = call_model(model, inputs)
    finally:
        if handle is not None:
            handle.remove()
    return logits.detach(), (seen[-1] if seen else None)


def _changes(
    model: nn.Module,
    inputs: torch.Tensor,
    method: MethodLike,
    targets: Any,
    *,
    noise: Noise,
    scale: float,
    n_samples: int,
    seed: int,
    batch_size: int | None,
    options: dict[str, Any] | None,
    layer: str | None = None,
    eps: float = 1e-6,
    outputs: bool = True,
) -> _Changes:
    from camscope.metrics.randomization import _fixed_targets

    if not isinstance(inputs, torch.Tensor) or inputs.ndim not in (4, 5):
        raise InputError("inputs must be a (B, C, H, W) or (B, C, D, H, W) tensor")
    if int(n_samples) < 1 or not scale > 0:
        raise InputError(f"n_samples must be ≥ 1 and the noise > 0, got {n_samples}, {scale}")
    if noise not in ("uniform", "gaussian"):
        raise InputError(f"noise must be 'uniform' or 'gaussian', got {noise!r}")
    options = dict(options or {})
    targets = _fixed_targets(model, inputs, targets)
    batch, n = inputs.shape[0], int(n_samples)
    original = _maps_of(model, method, inputs, targets, options)
    logits, representation = _forward(model, inputs, layer) if outputs else (None, None)
    generator = torch.Generator().manual_seed(seed)
    columns: dict[str, list[torch.Tensor]] = {
        key: [] for key in _Changes.__dataclass_fields__ if key != "map_norm"
    }
    total = batch * n
    batch_size = batch_size or rows_per_batch(inputs)
    nothing = torch.full((total,), torch.nan, dtype=torch.float64)
    for start in range(0, total, batch_size):
        index = torch.arange(start, min(start + batch_size, total))
        sample = index // n
        shape = (len(index), *inputs.shape[1:])
        if noise == "uniform":
            delta = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * scale
        else:
            delta = torch.randn(shape, generator=generator, dtype=torch.float64) * scale
        perturbed = inputs[sample] + delta.to(inputs)
        maps = _maps_of(model, method, perturbed, targets[sample], options)
        columns["map_change"].append((maps - original[sample]).norm(dim=1))
        columns["input_change"].append((perturbed - inputs[sample]).flatten(1).double().norm(dim=1))
        columns["relative_map"].append(_relative(original[sample], maps, eps))
        columns["relative_input"].append(_relative(inputs[sample], perturbed, eps))
        if not outputs:  # the sensitivities need neither the outputs nor the class
            continue
        assert logits is not None
        after, layer_after = _forward(model, perturbed, layer)
        columns["relative_output"].append(_relative(logits[sample], after, eps))
        if representation is not None and layer_after is not None:
            columns["relative_layer"].append(_relative(representation[sample], layer_after, eps))
        else:
            columns["relative_layer"].append(nothing[: len(index)])
        columns["changed"].append(after.argmax(1) != logits.argmax(1)[sample])
    if not outputs:
        columns["relative_output"] = columns["relative_layer"] = [nothing]
        columns["changed"] = [torch.zeros(total, dtype=torch.bool)]
    joined = {key: torch.cat(value).view(batch, n) for key, value in columns.items()}
    return _Changes(map_norm=original.norm(dim=1, keepdim=True), **joined)


@any_model
def avg_sensitivity(
    model: nn.Module,
    inputs: torch.Tensor,
    method: MethodLike,
    targets: Any = None,
    *,
    radius: float = 0.2,
    n_samples: int = 20,
    seed: int = 0,
    batch_size: int | None = None,
    options: dict[str, Any] | None = None,
) -> PerSample:
    """Average sensitivity (Yeh et al. 2019), per sample: ``mean_δ ‖E(x + δ) − E(x)‖ / ‖E(x)‖``
    with ``δ`` uniform in ``[−radius, radius]`` per input value. Lower is better. Quantus's
    ``AvgSensitivity`` (``lower_bound=radius``, unnormalised maps) agrees in expectation.

    Args:
        model: the classifier (eval mode, restored afterwards).
        inputs: ``(B, C, *S)``.
        method: a registered method's name or a callable ``(inputs, targets) -> maps``.
        targets: ``(B,)`` classes; default the model's predictions.
        radius: the noise's bound, in input units.
        n_samples: perturbations per sample (seeded).
        seed: the noise's seed.
        batch_size: perturbed inputs explained at a time (default: about 4 M input values).
        options: the method's options (``layer``, ...), for a named method.
    """
    changes = _changes(
        model,
        inputs,
        method,
        targets,
        noise="uniform",
        scale=radius,
        n_samples=n_samples,
        seed=seed,
        batch_size=batch_size,
        options=options,
        outputs=False,
    )
    ratio = changes.map_change / changes.map_norm.clamp_min(1e-30)
    return PerSample(ratio.mean(1), "avg_sensitivity")


@any_model
def local_lipschitz_estimate(
    model: nn.Module,
    inputs: torch.Tensor,
    method: MethodLike,
    targets: Any = None,
    *,
    std: float = 0.1,
    n_samples: int = 20,
    seed: int = 0,
    batch_size: int | None = None,
    options: dict[str, Any] | None = None,
) -> PerSample:
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018), per sample:
    ``max_δ ‖E(x + δ) − E(x)‖ / ‖δ‖`` with ``δ ~ N(0, std²)`` per input value. Lower is
    better. Quantus's ``LocalLipschitzEstimate`` with ``normalise=False`` agrees in
    expectation (it max-normalises maps by default).

    Args:
        model: the classifier (eval mode, restored afterwards).
        inputs: ``(B, C, *S)``.
        method: a registered method's name or a callable ``(inputs, targets) -> maps``.
        targets: ``(B,)`` classes; default the model's predictions.
        std: the noise's standard deviation, in input units.
        n_samples: perturbations per sample (seeded).
        seed: the noise's seed.
        batch_size: perturbed inputs explained at a time (default: about 4 M input values).
        options: the method's options (``layer``, ...), for a named method.
    """
    changes = _changes(
        model,
        inputs,
        method,
        targets,
        noise="gaussian",
        scale=std,
        n_samples=n_samples,
        seed=seed,
        batch_size=batch_size,
        options=options,
        outputs=False,
    )
    return PerSample(
        (changes.map_change / changes.input_change.clamp_min(1e-30)).amax(1),
        "local_lipschitz_estimate",
    )


def _stability(changes: _Changes, denominator: torch.Tensor, eps: float) -> torch.Tensor:
    ratio = changes.relative_map / denominator.clamp_min(eps)
    ratio = ratio.masked_fill(changes.changed, -torch.inf).amax(1)
    return ratio.masked_fill(torch.isneginf(ratio), torch.nan)


@any_model
def relative_input_stability(
    model: nn.Module,
    inputs: torch.Tensor,
    method: MethodLike,
    targets: Any = None,
    *,
    radius: float = 0.02,
    eps: float = 1e-6,
    n_samples: int = 20,
    seed: int = 0,
    batch_size: int | None = None,
    options: dict[str, Any] | None = None,
) -> PerSample:
    """Relative input stability (Agarwal et al. 2022), per sample:
    ``max_δ ‖(e − e′) / e‖ / max(‖(x − x′) / x‖, eps)`` over uniform perturbations in
    ``[−radius, radius]`` that keep the predicted class (a zero in a denominator's elementwise
    division is replaced by ``eps``). Lower is better. Quantus's ``RelativeInputStability``
    agrees in expectation.

    Args:
        model: the classifier (eval mode, restored afterwards).
        inputs: ``(B, C, *S)``.
        method: a registered method's name or a callable ``(inputs, targets) -> maps``.
        targets: ``(B,)`` classes; default the model's predictions.
        radius: the noise's bound, in input units.
        eps: replaces zeros in the divisions and bounds the denominator.
        n_samples: perturbations per sample (seeded).
        seed: the noise's seed.
        batch_size: perturbed inputs explained at a time (default: about 4 M input values).
        options: the method's options (``layer``, ...), for a named method.
    """
    changes = _changes(
        model,
        inputs,
        method,
        targets,
        noise="uniform",
        scale=radius,
        n_samples=n_samples,
        seed=seed,
        batch_size=batch_size,
        options=options,
        eps=eps,
    )
    return PerSample(_stability(changes, changes.relative_input, eps), "relative_input_stability")


@any_model
def relative_output_stability(
    model: nn.Module,
    inputs: torch.Tensor,
    method: MethodLike,
    targets: Any = None,
    *,
    radius: float = 0.02,
    eps: float = 1e-6,
    n_samples: int = 20,
    seed: int = 0,
    batch_size: int | None = None,
    options: dict[str, Any] | None = None,
) -> PerSample:
    """Relative output stability (Agarwal et al. 2022), per sample: as
    :func:`relative_input_stability` with the relative change of the logits
    ``‖(h − h′) / h‖`` in the denominator. Lower is better.

    Args:
        model: the classifier (eval mode, restored afterwards).
        inputs: ``(B, C, *S)``.
        method: a registered method's name or a callable ``(inputs, targets) -> maps``.
        targets: ``(B,)`` classes; default the model's predictions.
        radius: the noise's bound, in input units.
        eps: replaces zeros in the divisions and bounds the denominator.
        n_samples: perturbations per sample (seeded).
        seed: the noise's seed.
        batch_size: perturbed inputs explained at a time (default: about 4 M input values).
        options: the method's options (``layer``, ...), for a named method.
    """
    changes = _changes(
        model,
        inputs,
        method,
        targets,
        noise="uniform",
        scale=radius,
        n_samples=n_samples,
        seed=seed,
        batch_size=batch_size,
        options=options,
        eps=eps,
    )
    return PerSample(_stability(changes, changes.relative_output, eps), "relative_output_stability")


@any_model
def relative_representation_stability(
    model: nn.Module,
    inputs: torch.Tensor,
    method: MethodLike,
    targets: Any = None,
    *,
    layer: str | None = None,
    radius: float = 0.02,
    eps: float = 1e-6,
    n_samples: int = 20,
    seed: int = 0,
    batch_size: int | None = None,
    options: dict[str, Any] | None = None,
) -> PerSample:
    """Relative representation stability (Agarwal et al. 2022), per sample: as
    :func:`relative_input_stability` with the relative change of ``layer``'s output in the
    denominator (default: the layer camscope's CAM methods pick). Quantus's
    ``RelativeRepresentationStability`` takes every layer's output together by default.

    Args:
        model: the classifier (eval mode, restored afterwards).
        inputs: ``(B, C, *S)``.
        method: a registered method's name or a callable ``(inputs, targets) -> maps``.
        targets: ``(B,)`` classes; default the model's predictions.
        layer: the layer whose output is the representation.
        radius: the noise's bound, in input units.
        eps: replaces zeros in the divisions and bounds the denominator.
        n_samples: perturbations per sample (seeded).
        seed: the noise's seed.
        batch_size: perturbed inputs explained at a time (default: about 4 M input values).
        options: the method's options (``layer``, ...), for a named method.
    """
    if layer is None:
        from camscope.layers import choose_layer

        layer = choose_layer(model, inputs[:1])
    changes = _changes(
        model,
        inputs,
        method,
        targets,
        noise="uniform",
        scale=radius,
        n_samples=n_samples,
        seed=seed,
        batch_size=batch_size,
        options=options,
        layer=layer,
        eps=eps,
    )
    return PerSample(
        _stability(changes, changes.relative_layer, eps), "relative_representation_stability"
    )


@any_model
def consistency(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: Any,
    *,
    discretise: Literal["top_k", "sign", "round"] = "top_k",
    k: int = 5,
    decimals: int = 2,
    batch_size: int = 64,
) -> PerSample:
    """Consistency (Dasgupta et al. 2022), per sample in [0, 1]: among the other samples of the
    batch whose discretised map equals its own, the share the model puts in the same class (0
    when there is none). Higher is better.

    Discretisations: ``"top_k"`` the set of the map's ``k`` largest positions; ``"sign"`` the
    sign of every position; ``"round"`` the map divided by its largest magnitude and rounded
    to ``decimals``. (Quantus's default, ``top_n_sign``, takes the sign of the first five
    positions in memory order after ``abs``, so every map is the same to it; its ``sign`` and
    ``floating_points`` options are ``"sign"`` and ``"round"`` here.)

    Args:
        model: the classifier.
        inputs: ``(B, C, *S)``.
        saliency: ``(B, *s)`` maps or an Explanation.
        discretise: how maps are made discrete.
        k: positions of ``"top_k"``.
        decimals: decimals of ``"round"``.
        batch_size: inputs per forward pass.
    """
    from camscope.metrics.faithfulness import target_outputs
    from camscope.metrics.flipping import prepared_maps

    zeros = torch.zeros(len(inputs), dtype=torch.long)
    _, values, _ = prepared_maps(inputs, saliency, zeros, False)
    if discretise == "top_k":
        if not 1 <= int(k) <= values.shape[1]:
            raise InputError(f"k must be in 1..{values.shape[1]}, got {k}")
        keys = values.topk(int(k), dim=1).indices.sort(1).values.double()
    elif discretise == "sign":
        keys = values.sign()
    elif discretise == "round":
        scale = values.abs().amax(1, keepdim=True)
        keys = torch.round(values / torch.where(scale > 0, scale, 1.0), decimals=int(decimals))
    else:
        raise InputError(f"discretise must be 'top_k', 'sign' or 'round', got {discretise!r}")
    same_map = (keys[:, None, :] == keys[None, :, :]).all(-1)
    same_map &= ~torch.eye(len(keys), dtype=torch.bool)
    _, predicted = target_outputs(model, inputs, zeros, batch_size=batch_size)
    same_class = predicted[None, :] == predicted[:, None]
    count = same_map.sum(1)
    share = (same_map & same_class).sum(1).double() / count.clamp_min(1)
    return PerSample(torch.where(count > 0, share, 0.0), "consistency")


def translated(inputs: torch.Tensor, shifts: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Each input moved along its last axis by ``shifts`` positions (``(N,)``; positive: towards
    the end), the uncovered part filled from ``fill`` (same shape as ``inputs``)."""
    width = inputs.shape[-1]
    source = torch.arange(width, device=inputs.device)[None, :] - shifts[:, None].to(inputs.device)
    inside = (source >= 0) & (source < width)
    view = (len(inputs),) + (1,) * (inputs.ndim - 2) + (width,)
    index = source.clamp(0, width - 1).view(view).expand_as(inputs)
    moved = inputs.gather(-1, index)
    return torch.where(inside.view(view), moved, fill)


@any_model
def continuity(
    model: nn.Module,
    inputs: torch.Tensor,
    method: MethodLike,
    targets: Any = None,
    *,
    nr_steps: int = 28,
    absolute: bool = True,
    normalise: bool = True,
    skip_changed: bool = False,
    batch_size: int | None = None,
    options: dict[str, Any] | None = None,
) -> PerSample:
    """Continuity (Montavon et al. 2018), per sample: ``max_t ‖E(x) − E(x_t)‖₁ / ‖x − x_t‖₂``
    over the input translated along its last axis by ``t`` positions (``nr_steps`` evenly
    spaced shifts between ``−W`` and ``W``, as Quantus's ``Continuity``; the uncovered part
    takes the sample's minimum). Lower is better. Equal to Quantus's with ``normalise=False``
    (Quantus normalises by the batch's largest value; camscope each map by its own).

    Args:
        model: the classifier.
        inputs: ``(B, C, *S)``.
        method: a registered method's name or a callable ``(inputs, targets) -> maps``.
        targets: ``(B,)`` classes; default the model's predictions.
        nr_steps: translations per sample.
        absolute: compare ``|map|``.
        normalise: divide each map by its largest magnitude first.
        skip_changed: leave out translations that change the predicted class.
        batch_size: translated inputs explained at a time (default: about 4 M input values).
        options: the method's options, for a named method.
    """
    from camscope.metrics.flipping import fill_values
    from camscope.metrics.randomization import _fixed_targets

    if int(nr_steps) < 1:
        raise InputError(f"nr_steps must be at least 1, got {nr_steps}")
    options = dict(options or {})
    targets = _fixed_targets(model, inputs, targets)
    width, batch, steps = inputs.shape[-1], inputs.shape[0], int(nr_steps)
    step = (2 * width + 1) // steps
    shifts = torch.tensor([-width + step * (k + 1) for k in range(steps)])

    def shown(maps: torch.Tensor) -> torch.Tensor:
        maps = maps.abs() if absolute else maps
        if normalise:
            scale = maps.abs().amax(1, keepdim=True)
            maps = maps / torch.where(scale > 0, scale, 1.0)
        return maps

    original = shown(_maps_of(model, method, inputs, targets, options))
    logits, _ = _forward(model, inputs, None)
    fill = fill_values(inputs, "black")
    ratios = torch.empty(batch * steps, dtype=torch.float64)
    batch_size = batch_size or rows_per_batch(inputs)
    for start in range(0, batch * steps, batch_size):
        index = torch.arange(start, min(start + batch_size, batch * steps))
        sample, shift = index // steps, shifts[index % steps]
        moved = translated(inputs[sample], shift, fill[sample])
        maps = shown(_maps_of(model, method, moved, targets[sample], options))
        distance = (moved - inputs[sample]).flatten(1).double().norm(dim=1)
        ratio = (maps - original[sample]).abs().sum(1) / (distance + 1e-9)
        if skip_changed:
            after, _ = _forward(model, moved, None)
            ratio = ratio.masked_fill(after.argmax(1) != logits.argmax(1)[sample], torch.nan)
        ratios[index] = ratio
    per_sample = ratios.view(batch, steps)
    worst = per_sample.nan_to_num(nan=-torch.inf).amax(1)
    return PerSample(worst.masked_fill(torch.isneginf(worst), torch.nan), "continuity")
