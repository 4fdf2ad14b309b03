"""Layer-wise relevance propagation (LRP) with zennit's composites, all targets at once.

LRP (Bach et al. 2015; Montavon et al. 2019) hands a target's score back layer by layer: each
convolution or dense layer ``z = W x + b`` splits the relevance ``R`` of its outputs among its
inputs by a rule, so that the input map sums (up to biases and stabilisers) to the score, the
same conservation Respond-CAM's sum-to-score checks. The rules and the composites that assign
them to layers are zennit's (Anders et al. 2021), under its snake-case names:

===========================  ===========  =============  ==========================
composite                    first layer  convolutions   dense layers
===========================  ===========  =============  ==========================
``epsilon_plus``             (as others)  z⁺             ε
``epsilon_plus_flat``        flat         z⁺             ε
``epsilon_gamma_box``        z^B          γ (0.25)       ε
``epsilon_alpha2_beta1``     (as others)  α2β1           ε
``epsilon_alpha2_beta1_flat`` flat        α2β1           ε
``excitation_backprop``      (as others)  z⁺             z⁺
===========================  ===========  =============  ==========================

``rule=`` applies one rule (``epsilon``, ``zplus``, ``alpha_beta``, ``gamma``) to every layer
instead. Activations and unfolded batch norms pass relevance through unchanged; additions
(residual connections), concatenations, average pooling and max-pooling need no canonizer here
(see below). A batch norm whose input is a convolution's or dense layer's output is folded into
that layer before its rule is applied, as zennit's merging canonizers do, found by following the
tensors of the forward pass rather than by module names, so ResNets, VGGs, DenseNets and
hand-written models get it alike.

How it runs: a :class:`~torch.overrides.TorchFunctionMode` replaces the output of every
convolution, dense layer, batch norm and activation by the same value with a changed backward
pass; the gradient that flows back is then ``R / a`` (the relevance per unit of each activation
``a``), so ``R_input = x ⊙ ∂/∂x``. Linear operations without a rule (additions, average pooling,
concatenation, upsampling) thereby split relevance in proportion to their inputs' contributions
(zennit's ``Norm`` rule, which it applies to the additions and average pools its canonizers
expose), and ReLUs and max-pooling pass it as zennit's ``Pass`` and gradient do. All targets come
from one forward pass and one batched backward pass; no hook is registered, and the model is left
exactly as it was.

Differences from zennit: relevance that zennit's ``Pass`` rule hands to an exactly-zero input of an
unfolded batch norm or activation (e.g. a batch norm after a ReLU) is dropped here (it cannot be
carried as relevance per unit of a zero activation); ``excitation_backprop`` passes relevance
through non-ReLU activations (zennit uses their gradient); the first layer is the first
convolution or dense layer the forward pass runs (zennit: the first in module order).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F

from camscope.engine import call_model, chunked_vjp
from camscope.engine.state import is_exported
from camscope.engine.vjp import chunk_for_bytes
from camscope.errors import MethodError
from camscope.methods.context import MethodContext, MethodResult
from camscope.methods.lrp_calls import (
    ADD,
    ADD_IN_PLACE,
    ATEN_NORM,
    AVERAGE,
    CONV,
    DENSE,
    FUNCTIONAL_NORM,
    NORM_TAIL,
    PASS,
    TRANSPOSED,
    two_activations,
    unruled,
    warn_unruled,
)
from camscope.methods.registry import method
from camscope.methods.rules import CallMode

_aten = torch.ops.aten

__all__ = ["COMPOSITES", "LRP_RULES", "lrp"]

Rule = Literal["epsilon", "zplus", "alpha_beta", "gamma", "zbox", "flat"]

#: The single rules ``rule=`` accepts.
LRP_RULES: tuple[str, ...] = ("epsilon", "zplus", "alpha_beta", "gamma")


@dataclasses.dataclass(frozen=True)
class Composite:
    """Which rule each kind of layer gets: convolutions, dense layers, and (optionally) the first
    layer when it is of ``first_on`` (``"any"``: convolution or dense; ``"conv"``)."""

    conv: Rule
    dense: Rule
    first: Rule | None = None
    first_on: Literal["any", "conv"] = "any"
    alpha: float = 2.0
    beta: float = 1.0


#: zennit's composites under their snake-case names.
COMPOSITES: dict[str, Composite] = {
    "epsilon_plus": Composite("zplus", "epsilon"),
    "epsilon_plus_flat": Composite("zplus", "epsilon", "flat"),
    "epsilon_gamma_box": Composite("gamma", "epsilon", "zbox", "conv"),
    "epsilon_alpha2_beta1": Composite("alpha_beta", "epsilon"),
    "epsilon_alpha2_beta1_flat": Composite("alpha_beta", "epsilon", "flat"),
    "excitation_backprop": Composite("zplus", "zplus"),
}


def _stabilise(values: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + ε·sign(z)`` (``+ε`` at 0): zennit's stabiliser of a rule's denominator."""
    return values + epsilon * ((values == 0).to(values) + values.sign())


@dataclasses.dataclass
class _Call:
    """One convolution or dense call: reruns it with other inputs, weights and bias."""

    func: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @property
    def x(self) -> torch.Tensor:
        return self.args[0]

    @property
    def weight(self) -> torch.Tensor:
        return self.args[1] if len(self.args) > 1 else self.kwargs["weight"]

    @property
    def bias(self) -> torch.Tensor | None:
        if len(self.args) > 2:
            return self.args[2]
        return self.kwargs.get("bias")

    def __call__(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        rest = {k: v for k, v in self.kwargs.items() if k not in ("input", "weight", "bias")}
        return self.func(x, weight, bias, *self.args[3:], **rest)


class _LrpMode(CallMode):
    """Replaces each rule-bearing call's output by its value with the rule's backward pass.

    ``folded`` (call indices whose output a batch norm takes) comes from a first pass with
    ``probe=True``, which only records them.
    """

    def __init__(
        self,
        composite: Composite,
        *,
        epsilon: float,
        gamma: float,
        stabilizer: float,
        low: torch.Tensor | float,
        high: torch.Tensor | float,
        fold: bool,
        folded: set[int] | None = None,
    ) -> None:
        super().__init__()
        self.composite = composite
        self.epsilon = epsilon
        self.gamma = gamma
        self.stabilizer = stabilizer
        self.low, self.high = low, high
        self.fold = fold
        self.probe = folded is None
        self.folded: set[int] = set() if folded is None else folded
        self.calls = 0
        self.aux: list[tuple[torch.Tensor, torch.Tensor]] = []  # (leaf, its value) of rules
        self.unruled: Counter[str] = Counter()  # calls with no rule on activations, by name
        self._last: tuple[int, torch.Tensor, _Call, bool] | None = None

    def handle(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if func in DENSE or func in CONV or func in TRANSPOSED:
            return self._linear(func, args, kwargs)
        if func is F.batch_norm or func is _aten.batch_norm.default:
            return self._batch_norm(func, args, kwargs)
        in_place = func in ADD_IN_PLACE
        if (in_place or func in ADD) and len(args) == 2 and not kwargs and two_activations(*args):
            a, b = args
            if self.probe:
                return func(a, b)
            y = a + b
            part = y * (y / _stabilise(y, self.stabilizer)).detach()  # zennit's Norm on sums
            result = y.detach() + (part - part.detach())
            if in_place:  # e.g. a residual block's `out += identity`
                return a.copy_(result)
            return result
        if func in AVERAGE and args and isinstance(args[0], torch.Tensor):
            y = func(*args, **kwargs)
            if self.probe or not args[0].requires_grad:
                return y
            part = y * (y / _stabilise(y, self.stabilizer)).detach()  # zennit's Norm rule
            return y.detach() + (part - part.detach())
        if func in PASS and args and isinstance(args[0], torch.Tensor):
            x = args[0]
            y = func(*args, **kwargs)
            if self.probe or not x.requires_grad:
                return y
            part = x * (y / _stabilise(x, self.stabilizer)).detach()
            return y.detach() + (part - part.detach())
        if not self.probe and (name := unruled(func, args)) is not None:
            self.unruled[name] += 1
        return func(*args, **kwargs)

    # -- convolutions and dense layers -----------------------------------------------------------

    def _linear(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        index = self.calls
        self.calls += 1
        call = _Call(func, args, kwargs)
        z = func(*args, **kwargs)
        foldable = func not in TRANSPOSED
        self._last = (index, z, call, foldable)
        if self.probe or index in self.folded:
            return z
        return self._apply(call, index, func in DENSE, z, call.weight, call.bias)

    def _batch_norm(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        y = func(*args, **kwargs)
        x = args[0]
        names = FUNCTIONAL_NORM if func is F.batch_norm else ATEN_NORM
        given = {**dict(zip(names + NORM_TAIL, args, strict=False)), **kwargs}
        defaults = {"weight": None, "bias": None, "training": False, "eps": 1e-5}
        given = {**defaults, **given}
        last = self._last
        if (
            self.fold
            and last is not None
            and last[1] is x
            and last[3]
            and not given["training"]
            and given.get("running_mean") is not None
        ):
            index, _, call, _ = last
            if self.probe:
                self.folded.add(index)
                return y
            scale = torch.rsqrt(given["running_var"] + given["eps"])
            if given["weight"] is not None:
                scale = scale * given["weight"]
            shift = -given["running_mean"] * scale
            if given["bias"] is not None:
                shift = shift + given["bias"]
            weight = call.weight.detach()
            bias = call.bias.detach() if call.bias is not None else torch.zeros_like(shift)
            weight = weight * scale.detach().view(-1, *[1] * (weight.ndim - 1))
            bias = bias * scale.detach() + shift.detach()
            return self._apply(call, index, call.func in DENSE, y, weight, bias)
        if self.probe or not x.requires_grad:
            return y
        part = x * (y / _stabilise(x, self.stabilizer)).detach()  # pass the relevance through
        return y.detach() + (part - part.detach())

    # -- the rules -------------------------------------------------------------------------------

    def _rule_for(self, index: int, dense: bool) -> Rule:
        composite = self.composite
        if (
            index == 0
            and composite.first is not None
            and (composite.first_on == "any" or not dense)
        ):
            return composite.first
        return composite.dense if dense else composite.conv

    def _apply(
        self,
        call: _Call,
        index: int,
        dense: bool,
        value: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """``value`` with the backward pass of this call's rule (weights and bias as folded)."""
        rule = self._rule_for(index, dense)
        x = call.x
        w = weight.detach()
        b = None if bias is None else bias.detach()
        stab = self.stabilizer

        def ratio(denominator: torch.Tensor, eps: float = stab) -> torch.Tensor:
            return (value / _stabilise(denominator, eps)).detach()

        def pos(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.clamp(min=0)

        def neg(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.clamp(max=0)

        # The input of most layers is a ReLU's or a pooling's output: with no negative entry, the
        # x⁻ products of the rules below are zero and are skipped (half the products, both ways).
        signed = bool((x < 0).any()) if rule in ("zplus", "alpha_beta", "gamma") else True
        xp, xn = (x.clamp(min=0), x.clamp(max=0)) if signed else (x, None)

        def both(
            x_pos: torch.Tensor,
            x_neg: torch.Tensor | None,
            w_pos: torch.Tensor,
            w_neg: torch.Tensor,
            bias: torch.Tensor | None,
        ) -> torch.Tensor:
            """``f(x⁺; w_pos, bias) + f(x⁻; w_neg)``, the second term only for a signed input."""
            if x_neg is None:
                return call(x_pos, w_pos, bias)
            return call(x_pos, w_pos, bias) + call(x_neg, w_neg)

        if rule == "epsilon":
            # ``value`` is the layer's own output (of the folded weights when a batch norm follows)
            part = call(x, w) * ratio(value, self.epsilon)
        elif rule == "zplus":
            if signed:
                z = _split_call(call, xp, xn, w, pos(b))  # type: ignore[arg-type]
            else:
                z = call(x, w.clamp(min=0), pos(b))
            # z⁺ ≥ 0 (x⁺w⁺, x⁻w⁻ and b⁺ are), so its stabiliser is the plain `+ stabilizer`
            part = z * (value / (z.detach() + stab)).detach()
        elif rule == "alpha_beta":
            a, c = self.composite.alpha, self.composite.beta
            zp = both(xp, xn, w.clamp(min=0), w.clamp(max=0), pos(b))
            zn = both(xp, xn, w.clamp(max=0), w.clamp(min=0), neg(b))
            part = a * zp * ratio(zp) - c * zn * ratio(zn)
        elif rule == "gamma":
            g = self.gamma
            up, down = w + g * w.clamp(min=0), w + g * w.clamp(max=0)
            b_up = None if b is None else b + g * b.clamp(min=0)
            b_down = None if b is None else b + g * b.clamp(max=0)
            zp = both(xp, xn, up, down, b_up)
            zn = both(xp, xn, down, up, b_down)
            part = zp * (ratio(zp) * (value > 0)) + zn * (ratio(zn) * (value < 0))
        else:
            part = self._first_rule(rule, call, x, w, b, ratio)
        return value.detach() + (part - part.detach())

    def _first_rule(
        self,
        rule: Rule,
        call: _Call,
        x: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        ratio: Callable[..., torch.Tensor],
    ) -> torch.Tensor:
        """The input-layer rules, whose relevance is not ``x ⊙ gradient``: their extra inputs
        (bounds, ones) are leaves whose ``leaf ⊙ gradient`` is added to the map."""
        if rule == "flat":
            ones = torch.ones_like(x).requires_grad_(True)
            self.aux.append((ones, x))
            flat = torch.ones_like(w)
            with torch.no_grad():
                denominator = call(torch.ones_like(x), flat)
            return call(ones, flat) * ratio(denominator)
        low = torch.as_tensor(self.low, dtype=x.dtype, device=x.device)
        high = torch.as_tensor(self.high, dtype=x.dtype, device=x.device)
        low = _expand_bound(low, x).requires_grad_(True)
        high = _expand_bound(high, x).requires_grad_(True)
        self.aux += [(low, x), (high, x)]
        z = call(x, w) - call(low, w.clamp(min=0)) - call(high, w.clamp(max=0))
        return z * ratio(z)


def _split_call(
    call: _Call, xp: torch.Tensor, xn: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``f(x⁺; w⁺, bias) + f(x⁻; w⁻)``, as one call over stacked input channels where the layer
    allows (a dense layer, or a convolution of one group): the same products, one operation."""
    groups = call.kwargs.get("groups", call.args[6] if len(call.args) > 6 else 1)
    if call.func in DENSE or (call.func in CONV and call.func is not _aten.convolution.default
                               and groups == 1):  # fmt: skip
        stacked = torch.cat([w.clamp(min=0), w.clamp(max=0)], dim=1)
        axis = -1 if call.func in DENSE else 1  # features last; channels second
        return call(torch.cat([xp, xn], dim=axis), stacked, bias)
    return call(xp, w.clamp(min=0), bias) + call(xn, w.clamp(max=0))


def _expand_bound(bound: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A ZBox bound (a number or per channel ``(C,)``/``(1, C, 1, ...)``) as a tensor like ``x``."""
    if bound.ndim == 1 and x.ndim > 2 and bound.numel() == x.shape[1]:
        bound = bound.view(1, -1, *[1] * (x.ndim - 2))
    try:
        return torch.broadcast_to(bound, x.shape).clone()
    except RuntimeError as error:
        raise MethodError(
            f"the z^B bounds (low/high) of shape {tuple(bound.shape)} do not broadcast to the "
            f"first layer's input {tuple(x.shape)}; give numbers or one value per channel"
        ) from error


@method(
    kind="input",
    summary="layer-wise relevance propagation: zennit's composites, BN folded; conservation_gap",
    may_be_empty=True,  # z⁺ hands everything to the biases where no positive path carries it
)
def lrp(
    context: MethodContext,
    *,
    composite: str = "epsilon_plus",
    rule: str | None = None,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    alpha: float = 2.0,
    beta: float = 1.0,
    low: float | torch.Tensor | None = None,
    high: float | torch.Tensor | None = None,
    stabilizer: float = 1e-6,
    fold_batch_norm: bool = True,
) -> MethodResult:
    """Layer-wise relevance propagation (Bach et al. 2015) with zennit's composites.

    The relevance of the output is the target's score (``R = y ⊙ ∂score/∂y``: the logit for a
    class), and each layer's rule splits it among the layer's inputs:

    - ε: ``R_i = x_i Σ_j w_ij R_j / (z_j + ε·sign z_j)``;
    - z⁺ (α1β0): ``R_i = Σ_j (x_i⁺ w_ij⁺ + x_i⁻ w_ij⁻) R_j / (z_j⁺)`` with
      ``z_j⁺ = Σ_i (x_i⁺ w_ij⁺ + x_i⁻ w_ij⁻) + b_j⁺``;
    - αβ: ``α`` times the z⁺ share minus ``β`` times the same share of the opposite-signed
      contributions (``α − β = 1``);
    - γ: the weights ``w + γ w⁺`` for positive outputs (``w + γ w⁻`` for negative ones), as zennit's
      generalised γ rule;
    - z^B (first layer): ``R_i = Σ_j (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) R_j / z_j^B`` for inputs in
      ``[l, h]``;
    - flat (first layer): relevance spread evenly over each output's receptive field.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        composite: one of :data:`COMPOSITES` (zennit's, snake case).
        rule: one rule for every convolution and dense layer instead of a composite:
            ``"epsilon"``, ``"zplus"``, ``"alpha_beta"`` or ``"gamma"`` (with a composite other
            than the default, refused).
        epsilon: ε of the ε rule (``0``: LRP-0).
        gamma: γ of the γ rule.
        alpha: α of ``rule="alpha_beta"`` (the composites use α = 2, β = 1).
        beta: β of ``rule="alpha_beta"``; ``alpha − beta`` must be 1.
        low: lowest input value for z^B (a number or one per channel); default: each input's
            own minimum.
        high: highest input value for z^B; default: each input's own maximum.
        stabilizer: added (with the sign) to the denominators of the rules other than ε.
        fold_batch_norm: fold each batch norm into the convolution or dense layer whose output
            it normalises (zennit's canonizers); ``False`` passes relevance through it.

    Extras:
        ``relevance_sum`` ``(B, T)``: the map's total; ``conservation_gap`` ``(B, T)``:
        ``|Σ R − y|``, what biases and stabilisers absorbed (near 0 for a bias-free ReLU network
        under ε or z⁺).

    References:
        Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by
        Layer-Wise Relevance Propagation", PLoS ONE 2015. Montavon et al., "Layer-Wise Relevance
        Propagation: An Overview", 2019. Anders et al., "Software for Dataset-wide XAI: From
        Local Explanations to Global Insights with Zennit, CoRelAy, and ViRelAy", 2021.
    """
    chosen = _composite(composite.replace("-", "_"), rule, alpha, beta)
    if low is not None and high is not None and bool(torch.as_tensor(low).gt(high).any()):
        raise MethodError(f"low must not exceed high for z^B, got low={low}, high={high}")
    for name, value in (("epsilon", epsilon), ("gamma", gamma), ("stabilizer", stabilizer)):
        if not float(value) >= 0:
            raise MethodError(f"{name} must be a non-negative number, got {value}")
    x = context.inputs
    options = {
        "epsilon": float(epsilon),
        "gamma": float(gamma),
        "stabilizer": float(stabilizer),
        "low": _per_sample(x, "min") if low is None else low,
        "high": _per_sample(x, "max") if high is None else high,
        "fold": bool(fold_batch_norm),
    }
    folded: set[int] = set()
    if fold_batch_norm and _may_have_batch_norms(context.model):
        # A first pass finds the batch norms that take a layer's output (to fold them into it)
        # and fixes the targets.
        probe = _LrpMode(chosen, **options)  # type: ignore[arg-type]
        with torch.no_grad(), probe:
            output = call_model(context.model, x)
        _check_ran(probe, context)
        if not context.fixed:
            context.fix_targets(output)
        folded = probe.folded
    mode = _LrpMode(chosen, **options, folded=folded)  # type: ignore[arg-type]
    inputs = x.detach().requires_grad_(True)
    with torch.enable_grad(), mode:
        output = call_model(context.model, inputs)
    _check_ran(mode, context)
    warn_unruled(mode.unruled)
    if not context.fixed:  # the values are the model's own: this pass fixes the targets
        context.fix_targets(output)
    rows = torch.arange(context.batch_size, device=x.device)
    with torch.enable_grad():
        scores = context.target_scores(output, rows)
        if mode.aux:  # a flat first layer leaves the input itself without a gradient
            scores = scores + 0.0 * inputs.sum()
    leaves = (inputs, *[leaf for leaf, _ in mode.aux])
    for leaf, at in mode.aux:
        if leaf.shape != x.shape:
            raise MethodError(
                f"the first layer's input {tuple(at.shape)} is not the model's input "
                f"{tuple(x.shape)}, so its {chosen.first} rule's relevance has no place on the "
                "input: use a composite without a first-layer rule (epsilon_plus)"
            )
    per_target = sum(t.numel() * t.element_size() for t in leaves) * 3
    chunk = context.chunk_size or chunk_for_bytes(scores.shape[1], per_target)
    pieces = []
    for _, _, grads in chunked_vjp(
        scores,
        leaves,
        chunk_size=chunk,
        missing=_independent,
        automatic=context.chunk_size is None,
        progress="relevance" if context.progress else None,
    ):
        with torch.no_grad():
            relevance = grads[0] * x.unsqueeze(1)
            for (leaf, _), grad in zip(mode.aux, grads[1:], strict=True):
                relevance = relevance + grad * leaf.detach().unsqueeze(1)
        pieces.append(relevance)
    maps = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
    total = maps.flatten(2).sum(-1)
    gap = (total - scores.detach()).abs()
    return MethodResult(maps, {"relevance_sum": total, "conservation_gap": gap})


def _per_sample(x: torch.Tensor, which: str) -> torch.Tensor:
    """Each input's own minimum or maximum ``(B, 1, ...)``: z^B's default bounds, so a sample's
    map does not depend on its batch."""
    flat = x.flatten(1)
    values = flat.amin(1) if which == "min" else flat.amax(1)
    return values.view(-1, *[1] * (x.ndim - 1))


def _may_have_batch_norms(model: torch.nn.Module) -> bool:
    """Whether a batch norm may run: a batch-norm module, or a graph whose calls are not modules
    (an exported program)."""
    if is_exported(model):
        return True
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _composite(name: str, rule: str | None, alpha: float, beta: float) -> Composite:
    if rule is not None and name != "epsilon_plus":
        raise MethodError(
            f"give composite={name!r} or rule={rule!r}, not both: a rule applies to every layer, "
            "a composite chooses one per kind of layer"
        )
    if rule is not None:
        if rule not in LRP_RULES:
            raise MethodError(f"unknown LRP rule {rule!r}; use one of {', '.join(LRP_RULES)}")
        if rule == "alpha_beta" and (alpha < 0 or beta < 0 or abs(alpha - beta - 1) > 1e-9):
            raise MethodError(
                f"alpha and beta must be non-negative with alpha - beta = 1, got {alpha}, {beta}"
            )
        return Composite(rule, rule, alpha=alpha, beta=beta)  # type: ignore[arg-type]
    if name not in COMPOSITES:
        raise MethodError(
            f"unknown LRP composite {name!r}; use one of {', '.join(COMPOSITES)} (or rule=)"
        )
    return COMPOSITES[name]


def _check_ran(mode: _LrpMode, context: MethodContext) -> None:
    if mode.calls:
        return
    if isinstance(context.model, torch.jit.ScriptModule):
        raise MethodError(
            "LRP changes the backward pass of every convolution and dense layer, and TorchScript "
            "runs no Python code inside, so it cannot: load the model as a module (its weights "
            "with --architecture, or the nn.Module), or use input_x_gradient on it"
        )
    raise MethodError(
        "LRP found no convolution or dense layer in this model's forward pass, so it has no "
        "rule to apply; use input_x_gradient or integrated_gradients"
    )


def _independent() -> MethodError:
    return MethodError("the target scores do not depend on the input, so there is no relevance")
