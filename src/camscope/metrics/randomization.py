"""Does the map depend on the model at all? Randomisation tests (sanity checks), 2D and 3D.

* :func:`mprt`: the model parameter randomisation test (Adebayo et al. 2018): layers re-drawn
  from their initialiser from the top down, cumulatively (``"cascading"``) or one at a time
  (``"independent"``), and the similarity of each map to the original one per step. A method
  whose maps stay similar does not explain the model.
* Smooth MPRT (``mprt(..., noise_samples=n)``, Hedström et al. 2023): MPRT on SmoothGrad maps.
* :func:`efficient_mprt`: eMPRT (Hedström et al. 2023): the rise in the maps' complexity
  (histogram entropy) from the trained to the fully randomised model.
* :func:`random_logit`: the random logit test (Sixt et al. 2020): similarity between the map of
  the target class and that of another class drawn at random.

The user's model is never changed: randomisation works on a copy (``copy.deepcopy``), re-drawn
with ``reset_parameters()`` (the layer's own initialiser) under a seed, so results are the same
for the same seed. Compiled and exported models are taken too: a ``torch.export`` program's
module cannot be deep-copied, so it is randomised in place and restored exactly afterwards (also
on an error); its layers, like TorchScript's, have lost ``reset_parameters()``, so convolutions,
linear layers and batch normalisations are re-drawn as PyTorch's initialisers would (the same
numbers as the eager model's), anything else from a normal distribution of each parameter's
spread. TorchScript runs no hooks: its layers are taken in the order they are defined. Targets
stay the original model's (its predicted class by default).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from scipy import stats
from torch import nn

from camscope.checks import check_inputs
from camscope.engine import (
    ModelState,
    any_model,
    call_model,
    is_exported,
    is_exported_graph,
    trace_modules,
)
from camscope.engine.replay import PrefixReplay
from camscope.errors import InputError, LayerError, MethodError
from camscope.explain import explain
from camscope.layers import module_name
from camscope.methods import get_method
from camscope.metrics._shapes import class_indices
from camscope.metrics._stats import PerSample, mean_std
from camscope.smoothing import smooth

__all__ = [
    "MPRTResult",
    "efficient_mprt",
    "map_similarity",
    "mprt",
    "random_logit",
    "randomizable_blocks",
    "randomizable_layers",
]

Similarity = Literal["spearman", "abs_spearman", "pearson", "ssim"]


def map_similarity(first: torch.Tensor, second: torch.Tensor, kind: Similarity) -> torch.Tensor:
    """Per-sample similarity ``(B,)`` of two batches of maps ``(B, ...)``.

    ``spearman``: rank correlation (ties share their mean rank, as SciPy's ``spearmanr``);
    ``abs_spearman``: of the absolute values (Adebayo et al.'s second variant); ``pearson``;
    ``ssim``: scikit-image's structural similarity over the map's own axes (2D or 3D), on both
    maps scaled together to [0, 1].
    """
    a = first.detach().double().cpu().flatten(1).numpy()
    b = second.detach().double().cpu().flatten(1).numpy()
    if kind == "abs_spearman":
        a, b = np.abs(a), np.abs(b)
    if kind in ("spearman", "abs_spearman"):
        a, b = stats.rankdata(a, axis=1), stats.rankdata(b, axis=1)
    if kind in ("spearman", "abs_spearman", "pearson"):
        a = a - a.mean(1, keepdims=True)
        b = b - b.mean(1, keepdims=True)
        norm = np.sqrt((a * a).sum(1) * (b * b).sum(1))
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(norm > 0, (a * b).sum(1) / norm, 0.0)
        return torch.from_numpy(values)
    if kind == "ssim":
        from skimage.metrics import structural_similarity

        shape = first.shape[1:]
        out = []
        for x, y in zip(a, b, strict=True):
            low, high = min(x.min(), y.min()), max(x.max(), y.max())
            span = high - low if high > low else 1.0
            x, y = ((x - low) / span).reshape(shape), ((y - low) / span).reshape(shape)
            window = min(7, *(s if s % 2 else s - 1 for s in shape))
            out.append(structural_similarity(x, y, data_range=1.0, win_size=max(window, 3)))
        return torch.tensor(out, dtype=torch.float64)
    raise InputError(f"similarity {kind!r} unknown; use spearman, abs_spearman, pearson or ssim")


def _owns_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _run_order(model: nn.Module, inputs: torch.Tensor) -> list[str]:
    """Module names in the order they finish on ``inputs``; for TorchScript, which runs no
    hooks, the order they are defined in (the run order of sequential networks)."""
    if isinstance(model, torch.jit.ScriptModule):
        return [name for name, _ in model.named_modules()]
    return [trace.name for trace in trace_modules(model, inputs[:1])]


@contextlib.contextmanager
def _working_copy(model: nn.Module) -> Iterator[nn.Module]:
    """A copy of ``model`` to randomise. A model that cannot be deep-copied (a ``torch.export``
    program's module: its graph holds fake tensors) is randomised in place instead, and every
    parameter and buffer is put back afterwards, on an error or Ctrl-C too."""
    duplicate = None
    if not is_exported(model):  # an exported module's fake tensors warn, then fail to copy
        try:
            duplicate = copy.deepcopy(model)
        except RuntimeError:
            pass
    if duplicate is not None:
        yield duplicate
        return
    saved = {key: value.detach().clone() for key, value in model.state_dict().items()}
    try:
        yield model
    finally:
        with torch.no_grad():
            model.load_state_dict(saved)


def _check_layered(model: nn.Module) -> None:
    """Refuse an exported program's ``.module()``: one graph, its parameters in no layers."""
    if is_exported_graph(model):
        raise LayerError(
            "this is an exported program's .module(): one graph whose parameters belong to no "
            "layer, so there is nothing to randomise layer by layer; pass the ExportedProgram "
            "itself, or torch.export.unflatten(program)"
        )


@any_model
def randomizable_layers(model: nn.Module, inputs: torch.Tensor) -> list[str]:
    """The modules that own parameters, from the output down (the order they finish, reversed)."""
    _check_layered(model)
    owned = {name for name, module in model.named_modules() if name and _owns_parameters(module)}
    return [name for name in _run_order(model, inputs) if name in owned][::-1]


@any_model
def randomizable_blocks(model: nn.Module, inputs: torch.Tensor) -> list[str]:
    """The model's top-level blocks that hold parameters, from the output down: its children
    (looking through a lone wrapper such as ``model.net``), as Adebayo et al. randomised
    Inception v3 block by block. Fewer steps than :func:`randomizable_layers` (7 instead of 41
    on a ResNet-18: its stem convolution and normalisation, ``layer1``–``layer4``, ``fc``)."""
    _check_layered(model)
    prefix, top = "", model
    while True:
        holders = [(n, c) for n, c in top.named_children() if any(True for _ in c.parameters())]
        if len(holders) != 1 or _owns_parameters(top):
            break
        prefix, top = f"{prefix}{holders[0][0]}.", holders[0][1]
    names = {f"{prefix}{name}" for name, _ in holders}
    return [name for name in _run_order(model, inputs) if name in names][::-1]


def _redraw(module: nn.Module, seed: int) -> None:
    """Re-draw every parameter in ``module`` (a layer or a whole block), seeded: each submodule
    that owns parameters by its own initialiser (``reset_parameters()``); one without (a layer
    of an exported program or of TorchScript) by PyTorch's default for its kind, draw for draw
    (so the result equals the eager model's), else from a normal distribution of the
    parameter's spread."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        # the CPU generator only (what the initialisers draw from; torch.manual_seed would also
        # seed every accelerator backend, which costs milliseconds a call)
        torch.default_generator.manual_seed(seed)
        for part in module.modules():
            if not _owns_parameters(part):
                continue
            reset = getattr(part, "reset_parameters", None)
            if callable(reset):
                reset()
            elif not _reset_like_pytorch(part):
                for parameter in part.parameters(recurse=False):
                    spread = float(parameter.std()) if parameter.numel() > 1 else 1.0
                    parameter.normal_(0.0, spread or 1.0)


def _reset_like_pytorch(part: nn.Module) -> bool:
    """What ``reset_parameters()`` of ``nn.Linear`` / ``nn.ConvNd`` (a weight of two or more
    axes, an optional bias) or of a batch normalisation (a 1-D weight beside running
    statistics) does, for a module that lost the method; False for anything else."""
    parameters = dict(part.named_parameters(recurse=False))
    buffers = dict(part.named_buffers(recurse=False))
    weight, bias = parameters.get("weight"), parameters.get("bias")
    if weight is None or not set(parameters) <= {"weight", "bias"}:
        return False
    if weight.ndim >= 2:
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        if bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
            if fan_in:
                nn.init.uniform_(bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        return True
    if {"running_mean", "running_var"} <= set(buffers):
        buffers["running_mean"].zero_()
        buffers["running_var"].fill_(1)
        if "num_batches_tracked" in buffers:
            buffers["num_batches_tracked"].zero_()
        nn.init.ones_(weight)
        if bias is not None:
            nn.init.zeros_(bias)
        return True
    return False


@dataclass(frozen=True)
class MPRTResult:
    """Similarity of each sample's map after each randomisation step to its original map.

    Attributes:
        layers: the randomised layers, top (output) first.
        similarity: ``(B, L)``, column ``l`` after step ``l`` (cascading: layers ``0..l``
            randomised; independent: layer ``l`` only).
        original: the original maps (as compared).
        maps: the maps after each step, ``(L, B, ...)``, when ``keep_maps`` was set.
    """

    layers: list[str]
    similarity: torch.Tensor
    original: torch.Tensor
    maps: torch.Tensor | None = None

    def summary(self) -> dict[str, float]:
        """Mean similarity after the last step and averaged over all steps (lower: the map
        depends on the model)."""
        last, last_std = mean_std(self.similarity[:, -1])
        average, average_std = mean_std(self.similarity.mean(1))
        return {"last": last, "last_std": last_std, "average": average, "average_std": average_std}


Explainer = Callable[[nn.Module], torch.Tensor]


def _explainer(
    inputs: torch.Tensor,
    method: str,
    targets: Any,
    layer: str | None,
    options: dict[str, Any],
    noise_samples: int = 0,
) -> Explainer:
    """``model → maps (B, ...)`` for the chosen method, one map per sample, channels reduced;
    with ``noise_samples``, the SmoothGrad of the method (Smooth MPRT)."""
    info = get_method(method)
    # a layer given to an input-space method reaches explain(), which says it takes none
    where: dict[str, Any] = {"layer": layer} if info.needs_layer or layer is not None else {}

    def run(model: nn.Module) -> torch.Tensor:
        if noise_samples:
            e = smooth(
                model,
                inputs,
                method=info.name,
                targets=targets,
                noise_samples=noise_samples,
                **where,
                **options,
            )
        else:
            e = explain(
                model,
                inputs,
                method=info.name,
                targets=targets,
                progress=False,
                **where,
                **options,
            )
        maps = e.reduce_channels().maps
        if maps.shape[1] != 1:
            raise MethodError("randomisation tests explain one target per sample")
        return maps[:, 0].detach()

    return run


def _replay(model: nn.Module, working: nn.Module, inputs: torch.Tensor) -> PrefixReplay | None:
    """The recorded pass of the working copy (none for a model randomised in place, an
    exported program's, or TorchScript, which runs no hooks)."""
    if working is model or isinstance(working, torch.jit.ScriptModule):
        return None
    return PrefixReplay(working, check_inputs(working, inputs))


def _fixed_targets(model: nn.Module, inputs: torch.Tensor, targets: Any) -> torch.Tensor:
    """One class per sample ``(B,)``: ``targets`` checked, or the model's prediction."""
    inputs = check_inputs(model, inputs)
    if targets is None:
        with ModelState(model), torch.no_grad():
            return call_model(model, inputs).argmax(1)
    tensor = class_indices(targets, len(inputs))
    if tensor.numel() != len(inputs):
        raise InputError(
            f"targets must be one class per sample ({len(inputs)}), got shape "
            f"{tuple(tensor.shape)} (the randomisation tests compare one map per sample; None "
            "explains each sample's predicted class)"
        )
    return tensor.reshape(len(inputs))


@any_model
def mprt(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str,
    targets: Any = None,
    layer: str | None = None,
    order: Literal["cascading", "independent"] = "cascading",
    similarity: Similarity = "spearman",
    seed: int = 0,
    layers: list[str] | Literal["layers", "blocks"] = "layers",
    keep_maps: bool = False,
    noise_samples: int = 0,
    reuse: bool = True,
    **method_options: Any,
) -> MPRTResult:
    """Model parameter randomisation test (Adebayo et al. 2018).

    Args:
        model: the network (never modified: a copy is randomised).
        inputs: ``(B, C, *S)``.
        method: a camscope method; its maps are compared after channel reduction.
        targets: classes ``(B,)`` or an int; default the original model's predictions (kept for
            every step).
        layer: for layer methods, where the maps are taken (the same name in every step).
        order: ``"cascading"`` (top down, cumulative) or ``"independent"`` (one layer at a time).
        similarity: see :func:`map_similarity`.
        seed: seed of the re-drawn parameters (step ``l`` uses ``seed + l``).
        layers: what one step randomises: ``"layers"`` (every module that owns parameters,
            :func:`randomizable_layers`), ``"blocks"`` (the model's top-level blocks,
            :func:`randomizable_blocks`: fewer steps, so proportionally faster), or a list of
            module names, top first (a name may be a whole block).
        keep_maps: keep every step's maps (for pictures, the Adebayo figure).
        noise_samples: Smooth MPRT (Hedström et al. 2023): compare SmoothGrad maps of this many
            noisy copies (denoised, so that noise in the maps does not hide the trend).
        reuse: for a layer method, replay what the modules below the first randomised one
            computed, where autograd is off (the trunk below the layer), instead of running them
            again
            (:class:`~camscope.engine.replay.PrefixReplay`; the same maps, fewer passes). Set
            False for a network whose modules read parameters that another module owns.
        **method_options: passed to the method.

    Returns:
        :class:`MPRTResult`: layers and per-sample similarity ``(B, L)``.
    """
    if order not in ("cascading", "independent"):
        raise InputError(f"order must be 'cascading' or 'independent', not {order!r}")
    if int(noise_samples) < 0:
        raise InputError(f"noise_samples must be 0 (plain MPRT) or more, got {noise_samples}")
    classes = _fixed_targets(model, inputs, targets)
    explain = _explainer(inputs, method, classes, layer, method_options, noise_samples)
    original = explain(model)
    if layers == "layers":
        names = randomizable_layers(model, inputs)
    elif layers == "blocks":
        names = randomizable_blocks(model, inputs)
    elif isinstance(layers, str):
        raise InputError(f"layers must be 'layers', 'blocks' or a list of names, not {layers!r}")
    else:
        names = list(layers)
    if not names:
        raise InputError("the model has no layer with parameters to randomise")
    modules = dict(model.named_modules())
    given, names = names, [module_name(modules, name) or name for name in names]
    for name, asked in zip(names, given, strict=True):  # all checked before the first step
        if name not in modules:
            raise InputError(f"no layer named {asked!r} in the model")
        if not any(True for _ in modules[name].parameters()):
            raise InputError(f"layer {name!r} has no parameters to randomise")
    columns, kept = [], []
    with _working_copy(model) as randomized:
        modules = dict(randomized.named_modules())
        state = copy.deepcopy(randomized.state_dict())
        layered = get_method(method).needs_layer and not noise_samples
        replay = _replay(model, randomized, inputs) if reuse and layered else None
        for step, name in enumerate(names):
            if order == "independent":
                randomized.load_state_dict(state)
            _redraw(modules[name], seed + step)
            changed = names[: step + 1] if order == "cascading" else [name]
            with replay.replaying(changed) if replay else contextlib.nullcontext():
                maps = explain(randomized)
            columns.append(map_similarity(original, maps, similarity))
            if keep_maps:
                kept.append(maps)
    return MPRTResult(
        layers=list(names),
        similarity=torch.stack(columns, dim=1),
        original=original,
        maps=torch.stack(kept) if keep_maps else None,
    )


def _entropy(maps: torch.Tensor, bins: int) -> torch.Tensor:
    """Discrete entropy of each map's histogram of values (after min-max scaling), ``(B,)``."""
    flat = maps.detach().double().cpu().flatten(1)
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    scaled = (flat - low) / torch.where(high > low, high - low, torch.ones_like(high))
    index = (scaled * bins).long().clamp(max=bins - 1)
    counts = torch.zeros(flat.shape[0], bins, dtype=torch.float64)
    counts.scatter_add_(1, index, torch.ones_like(scaled))
    p = counts / counts.sum(1, keepdim=True)
    return -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(1)


@any_model
def efficient_mprt(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str,
    targets: Any = None,
    layer: str | None = None,
    bins: int = 100,
    seed: int = 0,
    **method_options: Any,
) -> PerSample:
    """The efficient MPRT, eMPRT (Hedström et al. 2023): entropy of the maps of the fully
    randomised model divided by that of the trained model's, per sample ``(B,)``. Above 1:
    randomising the model made the maps more disordered (the method is sensitive to the model);
    near 1: it is not.
    """
    if int(bins) < 2:
        raise InputError(f"bins must be at least 2, got {bins}")
    classes = _fixed_targets(model, inputs, targets)
    explain = _explainer(inputs, method, classes, layer, method_options)
    before = _entropy(explain(model), bins)
    names = randomizable_layers(model, inputs)
    if not names:
        raise InputError("the model has no layer with parameters to randomise")
    with _working_copy(model) as randomized:
        modules = dict(randomized.named_modules())
        for step, name in enumerate(names):
            _redraw(modules[name], seed + step)
        after = _entropy(explain(randomized), bins)
    return PerSample(after / before.clamp_min(1e-12), "emprt")


@any_model
def random_logit(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str,
    targets: Any = None,
    layer: str | None = None,
    similarity: Similarity = "spearman",
    seed: int = 0,
    **method_options: Any,
) -> PerSample:
    """Random logit test (Sixt et al. 2020): similarity ``(B,)`` between the map of each sample's
    target class and that of another class drawn at random (seeded). High similarity: the map
    does not tell classes apart. With two classes the other class is always the same one, and
    for a two-class softmax its map is the target's negated: the test says little there."""
    classes = _fixed_targets(model, inputs, targets)
    with torch.no_grad():
        count = int(explain(model, inputs[:1], method="saliency").outputs.shape[1])
    if count < 2:
        raise InputError("the random logit test needs a model with at least two classes")
    generator = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, count, (len(inputs),), generator=generator)
    others = (classes.cpu() + shift) % count
    own = _explainer(inputs, method, classes, layer, method_options)(model)
    other = _explainer(inputs, method, others, layer, method_options)(model)
    return PerSample(map_similarity(own, other, similarity), "random_logit")
