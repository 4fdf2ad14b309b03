"""Which torch calls layer-wise relevance propagation gives a rule, passes relevance through, or
has no rule for (and says so): the tables :mod:`camscope.methods.layerwise_relevance` consults
for every call of the forward pass, functional and ``torch.export`` (aten) forms alike."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F

from camscope.engine.relay import warn

__all__ = [
    "ADD", "ADD_IN_PLACE", "ATEN_NORM", "AVERAGE", "CONV", "DENSE", "FUNCTIONAL_NORM",
    "NORM_TAIL", "NO_RULE", "PASS", "TRANSPOSED", "two_activations", "unruled", "warn_unruled",
]  # fmt: skip

_aten = torch.ops.aten
DENSE = {F.linear, _aten.linear.default}
CONV = {F.conv1d, F.conv2d, F.conv3d, _aten.conv1d.default, _aten.conv2d.default,
        _aten.conv3d.default, _aten.convolution.default}  # fmt: skip
TRANSPOSED = {F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d}
AVERAGE = {F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
           F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, _aten.avg_pool2d.default,
           _aten.avg_pool3d.default, _aten.adaptive_avg_pool2d.default,
           _aten.adaptive_avg_pool3d.default}  # fmt: skip
ADD = {torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__, _aten.add.Tensor}
ADD_IN_PLACE = {torch.Tensor.add_, torch.Tensor.__iadd__, _aten.add_.Tensor}
PASS = {torch.sigmoid, torch.Tensor.sigmoid, F.sigmoid, torch.tanh, torch.Tensor.tanh, F.tanh,
        F.gelu, F.silu, F.elu, F.selu, F.celu, F.softplus, F.hardswish, F.mish, F.relu6,
        F.hardtanh, F.hardsigmoid, _aten.gelu.default, _aten.silu.default,
        _aten.sigmoid.default, _aten.tanh.default}  # fmt: skip

#: Calls that mix activations non-linearly and have no LRP rule here (nor in zennit's
#: composites): relevance passes through them as a gradient would, and is not conserved there.
NO_RULE = {
    F.layer_norm: "layer_norm", _aten.layer_norm.default: "layer_norm",
    F.group_norm: "group_norm", _aten.group_norm.default: "group_norm",
    F.instance_norm: "instance_norm", _aten.instance_norm.default: "instance_norm",
    F.prelu: "prelu", _aten.prelu.default: "prelu",
    F.softmax: "softmax", torch.softmax: "softmax", torch.Tensor.softmax: "softmax",
    _aten.softmax.int: "softmax", _aten._softmax.default: "softmax",
    F.scaled_dot_product_attention: "attention",
    _aten.scaled_dot_product_attention.default: "attention",
    F.multi_head_attention_forward: "attention",
    torch.matmul: "matmul", torch.Tensor.__matmul__: "matmul", torch.bmm: "matmul",
    _aten.matmul.default: "matmul", _aten.bmm.default: "matmul", torch.einsum: "matmul",
    torch.mul: "product", torch.Tensor.mul: "product", torch.Tensor.__mul__: "product",
    torch.Tensor.__rmul__: "product", _aten.mul.Tensor: "product",
    torch.div: "quotient", torch.Tensor.div: "quotient", torch.Tensor.__truediv__: "quotient",
    torch.Tensor.__rtruediv__: "quotient", _aten.div.Tensor: "quotient",
    F.normalize: "normalize",
}  # fmt: skip

#: How the kinds of :data:`NO_RULE` read in the warning.
_SAID = {"product": "product of two activations", "quotient": "division by an activation"}
_TRANSFORMER = {"softmax", "attention", "matmul"}  # self-attention (not ConvNeXt's layer norms)


def _activation(value: Any) -> bool:
    """A tensor the forward pass computed from the input (not a weight such as a layer scale)."""
    return (
        isinstance(value, torch.Tensor)
        and value.requires_grad
        and not isinstance(value, torch.nn.Parameter)
    )


def unruled(func: Any, args: tuple[Any, ...]) -> str | None:
    """The name under which a call without a rule is reported, or None: a call of
    :data:`NO_RULE` on an activation (a product only when both of its factors are, a division
    when its divisor is; a weight times an activation is linear and has a rule)."""
    name = NO_RULE.get(func)
    if name is None:
        return None
    if name in ("product", "matmul"):
        return name if sum(_activation(a) for a in args[:2]) == 2 else None
    if name == "quotient":
        divisor = (
            args[0] if func is torch.Tensor.__rtruediv__ else args[1] if len(args) > 1 else None
        )
        return name if _activation(divisor) else None
    return name if any(_activation(a) for a in args[:1]) else None


FUNCTIONAL_NORM = ("input", "running_mean", "running_var", "weight", "bias", "training")
ATEN_NORM = ("input", "weight", "bias", "running_mean", "running_var", "training")
NORM_TAIL = ("momentum", "eps")


def two_activations(a: Any, b: Any) -> bool:
    """Whether an addition adds two tensors of one shape (a residual connection)."""
    return (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.shape == b.shape
        and a.is_floating_point()
        and (a.requires_grad or b.requires_grad)
    )


def warn_unruled(unruled: Counter[str]) -> None:
    """Say which calls of the forward pass mixed activations with no LRP rule (a transformer's
    attention and layer norms, a PReLU, a gating product): the map is then not LRP's there."""
    if not unruled:
        return
    calls = ", ".join(
        f"{_SAID.get(name, name)} (×{count})" for name, count in unruled.most_common()
    )
    hint = (
        "; for a transformer use chefer or attention_rollout" if _TRANSFORMER & set(unruled) else ""
    )
    warn(
        f"camscope: lrp has no rule for {calls} in this model: relevance passes through them as "
        "a gradient would, so it is not conserved there (the conservation_gap extra shows by "
        f"how much; zennit does the same){hint}",
        key=("lrp has no rule for", *sorted(unruled)),
    )
