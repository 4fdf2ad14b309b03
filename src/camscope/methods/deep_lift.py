"""DeepLIFT (rescale rule) and DeepLIFT-SHAP, for all targets at once.

DeepLIFT (Shrikumar et al. 2017) explains ``y(x) − y(x')`` against a reference input ``x'``:
the map is ``(x − x') ⊙ m`` where ``m`` is the input's *multiplier*, the chain rule run with every
nonlinearity's derivative replaced by its secant between the two passes,
``Δy/Δa = (f(a) − f(a')) / (a − a')`` (the rescale rule; the plain derivative where
``|a − a'| < eps``). Max-pooling gets the rule Captum's code sets out: the change of each pooled
value is handed to the positions that are the maximum in the input's and in the reference's pass.
With it the map sums exactly to ``y(x) − y(x')`` (summation to delta) on ReLU networks with
max-pooling.

The reference runs through the model first (without autograd), recording each nonlinearity's
input and output; the input runs next, with every nonlinearity's output replaced by the same value
with the secant against its record as its backward pass; one batched backward pass then gives the
multipliers of all targets. The backward pass runs over the inputs only (the references carry no
gradient), so it costs what a plain gradient's does. ReLUs, sigmoids, tanh, ELU, leaky ReLU,
softplus, GELU, SiLU and max-pooling are caught whether they are modules or functional calls (a
module used twice is fine), and no hook is registered: the model is left exactly as it was. The
model must run the same operations on every input (a pass that differs from the reference's is
refused).

Where this differs from Captum (0.9): its ``DeepLift`` gives max-pooling its plain gradient in
effect (its maps then miss ``y(x) − y(x')`` by as much as 20 % of the map's largest value on a
small ReLU network; ``max_pool="gradient"`` reproduces them exactly). Softmax layers inside a
model get their plain gradient here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from camscope.engine import call_model, chunked_vjp
from camscope.engine.relay import warn
from camscope.errors import InputError, MethodError
from camscope.methods.context import MethodContext, MethodResult
from camscope.methods.gradients import resolve_baseline
from camscope.methods.registry import method
from camscope.methods.rules import CallMode, in_place

__all__ = ["deeplift", "deeplift_shap"]

_aten = torch.ops.aten
_RELU = {F.relu, torch.relu, torch.Tensor.relu, _aten.relu.default}
_RELU_IN_PLACE = {F.relu_, torch.relu_, torch.Tensor.relu_, _aten.relu_.default}
_ELEMENTWISE = _RELU | {
    torch.sigmoid, torch.Tensor.sigmoid, F.sigmoid, torch.tanh, torch.Tensor.tanh, F.tanh, F.elu,
    F.leaky_relu, F.softplus, F.gelu, F.silu, _aten.sigmoid.default, _aten.tanh.default,
    _aten.gelu.default, _aten.silu.default,
}  # fmt: skip
_MAX_POOL = {F.max_pool1d, F.max_pool2d, F.max_pool3d}
_MAX_POOL_ATEN = {_aten.max_pool2d.default, _aten.max_pool3d.default}


class _RescaleMode(CallMode):
    """Two passes: the reference's records every nonlinearity's input and output (``record``);
    the input's (after :meth:`replay`) keeps each nonlinearity's value and gives it the rescale
    rule's backward pass against the record of the same call. Only the input's pass carries a
    gradient, so the backward pass runs over the inputs alone, not over their references."""

    def __init__(self, eps: float, max_pool: str) -> None:
        super().__init__()
        self.eps = eps
        self.pool_rule = max_pool
        self.recording = True
        self.records: list[tuple[str, tuple[torch.Tensor, ...]]] = []  # (the call, tensors)
        self.calls = 0  # nonlinearities met in the current pass
        self.plain_pools = 0  # max-pools given their own gradient (max_pool="gradient")

    def replay(self) -> None:
        self.recording = False
        self.calls = 0

    def handle(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        writes = in_place(func, args, kwargs)
        relu = func in _RELU or func in _RELU_IN_PLACE
        if (func in _ELEMENTWISE or func in _RELU_IN_PLACE) and _floating(args):
            a = args[0]
            if writes:
                # out of place on a copy: the write into `a` below must not change what the
                # function's backward pass keeps (leaky ReLU and ELU keep their input)
                options = {**kwargs, "inplace": False}
                y = torch.relu(a) if relu else func(a.clone(), *args[1:], **options)
            else:
                y = func(*args, **kwargs)
            call = _describe(func, args[1:], kwargs)
            if self.recording:
                # copies: the model may later write into either tensor (e.g. `out += identity`)
                self._record(call, (a.detach().clone(), y.detach().clone()))
                return a.copy_(y) if writes else y
            a_ref, y_ref = self._recorded(call, a)[:2]
            result = self._secant(a, y, a_ref, y_ref, relu)
            if writes and not (a.is_leaf and a.requires_grad):
                return a.copy_(result)
            return result
        pooling = func in _MAX_POOL or func in _MAX_POOL_ATEN
        if pooling and self.pool_rule == "rescale" and _floating(args):
            return self._max_pool(func, args, kwargs)
        self.plain_pools += pooling
        return func(*args, **kwargs)

    def _record(self, call: str, tensors: tuple[torch.Tensor, ...]) -> None:
        self.records.append((call, tensors))
        self.calls += 1

    def _recorded(self, call: str, a: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The reference pass's record of this call (the same place in the call order); a call
        of another function, other options or another shape there is refused."""
        index = self.calls
        self.calls += 1
        here = f"{call} of shape {tuple(a.shape)}"
        record = self.records[index] if index < len(self.records) else None
        there = "nothing" if record is None else f"{record[0]} of shape {tuple(record[1][0].shape)}"
        if record is None or there != here:
            raise MethodError(
                f"DeepLIFT runs the reference and then the input through the model, and their "
                f"passes differ: nonlinearity {index + 1} is {here} where the reference's pass "
                f"had {there}. It needs a model that runs the same operations on every input "
                "(no data-dependent control flow)"
            )
        return record[1]

    def _unchanged(self, delta: torch.Tensor) -> torch.Tensor:
        """Where ``|Δa| < eps`` (where ``Δa = 0`` when eps is 0): the derivative is kept."""
        return delta.abs() < self.eps if self.eps > 0 else delta == 0

    def _secant(
        self, a: torch.Tensor, y: torch.Tensor, a_ref: torch.Tensor, y_ref: torch.Tensor, relu: bool
    ) -> torch.Tensor:
        """``y`` whose backward pass is ``Δy/Δa`` (the derivative where ``|Δa| < eps``): one
        product, as a plain ReLU's backward pass is."""
        with torch.no_grad():
            delta = a - a_ref
            small = self._unchanged(delta)
            # a ReLU's derivative where unchanged is 1[a > 0]; another function's is autograd's
            fallback = (a > 0).to(a.dtype) if relu else torch.zeros_like(delta)
            slope = torch.where(small, fallback, (y - y_ref) / delta)
        part = (a - a.detach()) * slope
        if not relu and bool(small.any()):
            part = part + (y - y.detach()) * small
        return y.detach() + part

    def _max_pool(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        a = args[0]
        names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
        options = {**dict(zip(names, args[1:], strict=False)), **kwargs}
        if func in _MAX_POOL_ATEN:
            dims = 2 if func is _aten.max_pool2d.default else 3
            pool = {2: F.max_pool2d, 3: F.max_pool3d}[dims]
        else:
            if options.get("return_indices"):
                return func(*args, **kwargs)  # the caller un-pools itself: plain gradient
            pool = func
        options["return_indices"] = True
        with torch.no_grad():
            y, indices = pool(a, **options)
        call = _describe(pool, (), {k: v for k, v in options.items() if k != "return_indices"})
        if self.recording:
            self._record(call, (a.detach().clone(), y, indices))
            return y
        a_ref, y_ref, indices_ref = self._recorded(call, a)
        with torch.no_grad():
            delta = a - a_ref
            small = self._unchanged(delta)
            top = torch.maximum(y, y_ref)
            up, down = top - y_ref, y - top  # the pooled change, split between the maxima

            def at(where: torch.Tensor) -> torch.Tensor:  # `small` at each window's maximum
                return small.flatten(2).gather(2, where.flatten(2)).view_as(up)

            # An unchanged maximum of the input pass keeps max-pooling's own gradient (its `up`
            # is 0 there); one of the reference pass passes nothing. One input-space scale then
            # serves both routes: 1/Δa, or 1 where unchanged.
            scale = torch.where(small, torch.ones_like(delta), 1.0 / delta)
            first = torch.where(at(indices), torch.ones_like(up), up)
            second = torch.where(at(indices_ref), torch.zeros_like(down), down)
        moving = ((a - a.detach()) * scale).flatten(2)  # 0, with the gradient's route
        # Reading it at the input's (the reference's) maxima routes the gradient there (a
        # gather's backward pass is max-pooling's, without scanning the windows again).
        part = first * moving.gather(2, indices.flatten(2)).view_as(first)
        part = part + second * moving.gather(2, indices_ref.flatten(2)).view_as(second)
        return y.detach() + part


def _describe(func: Any, rest: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A call's function and options (not its tensors), to compare the two passes' calls."""
    name = getattr(func, "__name__", str(func)).rstrip("_")
    options = [repr(v) for v in rest if not isinstance(v, torch.Tensor)]
    options += [f"{k}={v!r}" for k, v in sorted(kwargs.items()) if k != "inplace"]
    return f"{name}({', '.join(options)})" if options else name


def _floating(args: tuple[Any, ...]) -> bool:
    return (
        bool(args)
        and isinstance(args[0], torch.Tensor)
        and args[0].is_floating_point()
        and args[0].ndim > 0
    )


def _multipliers(
    context: MethodContext, inputs: torch.Tensor, references: torch.Tensor, rows: torch.Tensor,
    eps: float,
    max_pool: str,
) -> tuple[torch.Tensor, torch.Tensor, bool]:  # fmt: skip
    """DeepLIFT maps ``(N, T, C, *S)`` of ``inputs`` against ``references`` (samples ``rows``),
    the references' target scores ``(N, T)``, and whether a max-pool kept its own gradient
    (``max_pool="gradient"``: the maps then need not sum to the change). When the targets are
    not fixed yet and these are all the samples, the input pass fixes them (no separate forward
    pass)."""
    mode = _RescaleMode(eps, max_pool)
    with torch.no_grad(), mode:
        reference_output = call_model(context.model, references.detach())
    if not mode.calls:
        if isinstance(context.model, torch.jit.ScriptModule):
            raise MethodError(
                "DeepLIFT changes the backward pass of every nonlinearity, and TorchScript runs no "
                "Python code inside, so it cannot: load the model as a module (its weights with "
                "--architecture, or the nn.Module), or use integrated_gradients on it"
            )
        others = sorted(
            {
                type(module).__name__
                for module in context.model.modules()
                if type(module).__module__ == "torch.nn.modules.activation"
            }
        )
        found = f"; its activations are {', '.join(others)}" if others else ""
        raise MethodError(
            "DeepLIFT found no nonlinearity it knows (ReLU, sigmoid, tanh, ELU, leaky ReLU, "
            f"softplus, GELU, SiLU, max-pooling) in this model's forward pass{found}; use "
            "integrated_gradients"
        )
    mode.replay()
    leaf = inputs.detach().requires_grad_(True)
    with torch.enable_grad(), mode:
        output = call_model(context.model, leaf)
    if mode.calls != len(mode.records):
        raise MethodError(
            f"DeepLIFT runs the reference and then the input through the model, and their passes "
            f"differ: the input's met {mode.calls} nonlinearities, the reference's "
            f"{len(mode.records)}. It needs a model that runs the same operations on every input "
            "(no data-dependent control flow)"
        )
    mode.records.clear()  # the backward pass needs none of them
    if not context.fixed:
        context.fix_targets(output)
    with torch.enable_grad():
        scores = context.target_scores(output, rows)
        reference_scores = _reference_scores(context, output, reference_output, rows)
    pieces = [
        grads
        for _, _, grads in chunked_vjp(
            scores, leaf, chunk_size=context.chunk_size, missing=_independent
        )
    ]
    grads = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
    maps = (inputs - references).unsqueeze(1) * grads
    return maps, reference_scores.detach(), mode.plain_pools > 0


def _check(eps: float, max_pool: str) -> float:
    if not float(eps) >= 0:
        raise MethodError(f"eps must be a non-negative number, got {eps}")
    if max_pool not in ("rescale", "gradient"):
        raise MethodError(f"max_pool must be 'rescale' or 'gradient', not {max_pool!r}")
    return float(eps)


@method(
    kind="input",
    summary="DeepLIFT (rescale rule) against a reference; delta_gap: Σ map − (y(x) − y(x'))",
)
def deeplift(
    context: MethodContext,
    *,
    baseline: float | torch.Tensor = 0.0,
    eps: float = 1e-10,
    max_pool: str = "rescale",
    batch_size: int | None = None,
) -> MethodResult:
    """DeepLIFT with the rescale rule (Shrikumar et al. 2017), as Captum's ``DeepLift``.

    ``(x − x') ⊙ m``, ``m`` the chain rule with each nonlinearity's derivative replaced by
    ``(f(a) − f(a')) / (a − a')`` at its inputs ``a`` (input pass) and ``a'`` (reference pass).

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        baseline: ``x'``: a number, one input ``(C, *S)`` or a batch; black (0) by default.
        eps: below this ``|a − a'|`` a nonlinearity keeps its derivative (Captum's 1e-10).
        max_pool: ``"rescale"`` (the pooled change handed to the maxima of both passes: the
            map sums to ``y(x) − y(x')``) or ``"gradient"`` (max-pooling's own gradient, what
            Captum 0.9's ``DeepLift`` computes in effect; its maps then miss that sum).
        batch_size: samples per pass (each after its reference's pass); default fits a memory
            budget.

    Extras:
        ``delta_gap`` ``(B, T)``: ``|Σ map − (y(x) − y(x'))|``, 0 up to rounding on ReLU networks
        with max-pooling. ``baseline_scores`` ``(B, T)``: ``y(x')``.

    References:
        Shrikumar, Greenside & Kundaje, "Learning Important Features Through Propagating
        Activation Differences", ICML 2017.
    """
    eps = _check(eps, max_pool)
    x = context.inputs
    reference = resolve_baseline(context, baseline)
    rows_per_batch = batch_size or max(1, context.gradient_rows() // 2)
    if rows_per_batch < context.batch_size:
        context._ensure_fixed()  # several passes: the targets of all samples first
    pieces, references = [], []
    plain_pools = False
    for part in context.batches(context.batch_size, rows_per_batch, "deeplift"):
        rows = torch.arange(part.start, part.stop, device=x.device)
        maps, scores, plain = _multipliers(context, x[part], reference[part], rows, eps, max_pool)
        plain_pools = plain_pools or plain
        pieces.append(maps)
        references.append(scores)
    maps = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
    baseline_scores = torch.cat(references)
    gap = (maps.flatten(2).sum(-1) - (context.scores - baseline_scores)).abs()
    if not plain_pools:
        _warn_if_unsummed(gap, context.scores, baseline_scores, "deeplift")
    return MethodResult(maps, {"delta_gap": gap, "baseline_scores": baseline_scores})


@method(
    kind="input",
    summary="DeepLIFT-SHAP: DeepLIFT averaged over a distribution of references",
)
def deeplift_shap(
    context: MethodContext,
    *,
    baselines: torch.Tensor | None = None,
    n_samples: int = 8,
    seed: int = 0,
    eps: float = 1e-10,
    max_pool: str = "rescale",
    batch_size: int | None = None,
) -> MethodResult:
    """DeepLIFT-SHAP (Lundberg & Lee 2017; Captum's ``DeepLiftShap``): the mean over references
    ``x'_j`` of DeepLIFT's ``(x − x'_j) ⊙ m_j``.

    Args:
        context: what explain() hands every method: inputs, layer, targets.
        baselines: the references: ``(n, C, *S)`` for every input (a background sample of the
            data: SHAP's expectation is over it) or ``(B, n, C, *S)`` per input; default:
            ``n_samples`` draws of uniform noise within each input's value range (seeded, the
            same draws for every input, so an input's map does not depend on its batch).
        n_samples: references drawn when ``baselines`` is not given.
        seed: seed of those draws.
        eps: as for :func:`deeplift`.
        max_pool: as for :func:`deeplift`.
        batch_size: (input, reference) pairs per pass; default fits a memory budget.

    Extras:
        ``delta_gap`` ``(B, T)``: ``|Σ map − (y(x) − mean_j y(x'_j))|``.

    References:
        Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.
    """
    eps = _check(eps, max_pool)
    x = context.inputs
    references = _references(x, baselines, n_samples, seed)  # (B, n, C, *S)
    count = references.shape[1]
    if count < 1:
        raise InputError("baselines holds no reference: give at least one (n ≥ 1)")
    context._ensure_fixed()
    total = torch.zeros(
        (context.batch_size, context.num_targets, *x.shape[1:]), dtype=x.dtype, device=x.device
    )
    expected = torch.zeros((context.batch_size, context.num_targets), dtype=x.dtype)
    plain_pools = False
    rows_per_batch = batch_size or max(1, context.gradient_rows() // 2)
    for part in context.batches(context.batch_size * count, rows_per_batch, "deeplift shap"):
        index = torch.arange(part.start, part.stop, device=x.device)
        sample, which = index // count, index % count
        pairs = references[sample, which]
        maps, scores, plain = _multipliers(context, x[sample], pairs, sample, eps, max_pool)
        plain_pools = plain_pools or plain
        total.index_add_(0, sample, maps)
        expected.index_add_(0, sample.cpu(), scores.cpu().to(x.dtype))
    maps = total / count
    expected = (expected / count).to(x.device)
    gap = (maps.flatten(2).sum(-1) - (context.scores - expected)).abs()
    if not plain_pools:
        _warn_if_unsummed(gap, context.scores, expected, "deeplift_shap")
    return MethodResult(maps, {"delta_gap": gap})


def _warn_if_unsummed(
    gap: torch.Tensor, scores: torch.Tensor, reference: torch.Tensor, name: str
) -> None:
    """Say when maps miss their sum ``y(x) − y(x')`` by more than 1 % of it (beyond rounding):
    the model has calls without a rescale rule (attention, layer norms, products of
    activations), or its two passes differ (dropout in training mode). Not said when a max-pool
    kept its own gradient (``max_pool="gradient"``), which misses the sum by design."""
    scores, reference = scores.detach(), reference.detach().to(scores.device)
    change = (scores - reference).abs()
    rounding = 1e-4 * (scores.abs() + reference.abs()) + 1e-6
    off = gap.detach() > 0.01 * change + rounding
    if bool(off.any()):
        worst = float((gap.detach()[off] / change[off].clamp_min(1e-12)).max())
        warn(
            f"camscope: {name}: {int(off.sum())} of {off.numel()} maps (sample × target) miss "
            f"their sum y(x) − y(x') by more than 1 % of it (by up to {100 * min(worst, 1e4):.3g} "
            "%): the model has calls DeepLIFT has no rule for (attention, layer norms, products "
            "or quotients of activations), or its passes differ (dropout with eval_mode=False); "
            "extras['delta_gap'] (the CLI's extra_delta_gap) has each gap",
            key=(name, "maps miss their sum"),
        )


def _references(
    x: torch.Tensor, baselines: torch.Tensor | None, count: int, seed: int
) -> torch.Tensor:
    """DeepLIFT-SHAP's references as ``(B, n, C, *S)``."""
    item = tuple(x.shape[1:])
    if baselines is None:
        if int(count) < 1:
            raise InputError(f"n_samples must be at least 1, got {count}")
        generator = torch.Generator().manual_seed(int(seed))
        draws = torch.rand((int(count), *item), generator=generator, dtype=x.dtype).to(x.device)
        low = x.flatten(1).amin(1).view(-1, 1, *[1] * len(item))
        high = x.flatten(1).amax(1).view(-1, 1, *[1] * len(item))
        return low + (high - low) * draws[None]
    if not isinstance(baselines, torch.Tensor):
        raise InputError(f"baselines must be a tensor, not {type(baselines).__name__}")
    if tuple(baselines.shape[1:]) == item:
        baselines = baselines[None].expand(len(x), *baselines.shape)
    elif (
        baselines.ndim != x.ndim + 1
        or tuple(baselines.shape[2:]) != item
        or (baselines.shape[0] != len(x))
    ):
        shape = ", ".join(map(str, item))
        raise InputError(
            f"baselines must be (n, {shape}) references for every input or ({len(x)}, n, "
            f"{shape}) per input, got {tuple(baselines.shape)}"
        )
    if not bool(torch.isfinite(baselines).all()):
        raise InputError("the baselines contain NaN or infinite values")
    return baselines.to(x.device, x.dtype)


def _reference_scores(
    context: MethodContext, first: Any, second: Any, rows: torch.Tensor
) -> torch.Tensor:
    """The references' target scores ``(N, T)``, as the map explains them: on a dense output,
    each class over the region the *input* predicts (the region is fixed by the input's pass)."""
    classes = context.classes
    if classes is None or not isinstance(first, torch.Tensor) or first.ndim <= 2:
        return context.target_scores(second, rows)
    picked = classes[rows].view(len(rows), -1, *[1] * (first.ndim - 2))
    region = first.detach().max(dim=1).indices.unsqueeze(1) == picked
    logits = second.gather(1, picked.expand(-1, -1, *first.shape[2:]))
    return (logits * region).flatten(2).sum(-1)


def _independent() -> MethodError:
    return MethodError("the target scores do not depend on the input, so there is no multiplier")
