"""The attention probabilities a transformer's self-attention blocks apply, read without changing
the model.

Many blocks compute attention with a fused kernel that never forms the probabilities
(torchvision and MONAI call theirs with ``need_weights=False`` or flash attention, timm with
``scaled_dot_product_attention``). :class:`AttentionTap` makes each block take its own explicit
path for one run, so that the probabilities ``softmax(q·kᵀ·scale)`` ``(B, heads, N, N)`` it
applies are a tensor in the graph, then puts everything back:

* ``torch.nn.MultiheadAttention`` (torchvision's ViT): called with ``need_weights=True,
  average_attn_weights=False``; the returned per-head probabilities are applied to the block's
  own value projection and output projection again (the block's result is replaced by this,
  checked equal to it), so gradients reach them.
* timm ``Attention`` (ViT, DeiT, register ViTs): ``fused_attn`` off for the run; the
  probabilities are the output of its ``attn_drop``.
* MONAI ``SABlock`` (``ViT``, ``UNETR``): ``use_flash_attention`` off for the run; the
  probabilities are the output of its ``drop_weights``.

Windowed attention (Swin) attends within windows, not over the whole token sequence, and is
refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from camscope.engine.state import call_model, is_exported
from camscope.errors import LayerError

__all__ = ["SUPPORTED_ATTENTION", "AttentionBlock", "AttentionTap", "attention_blocks"]

#: The self-attention modules whose probabilities camscope can read.
SUPPORTED_ATTENTION = (
    "torch.nn.MultiheadAttention (torchvision ViT), timm Attention (ViT, DeiT), "
    "MONAI SABlock (ViT, UNETR)"
)

#: Relative tolerance of the replayed attention output against the block's own.
REPLAY_TOLERANCE = 1e-4


@dataclass
class AttentionBlock:
    """One self-attention module and the transformer block that holds it.

    Attributes:
        name: the attention module's name in ``model.named_modules()``.
        module: the attention module.
        kind: ``"mha"``, ``"timm"`` or ``"monai"``.
        block_name, block: its parent (the block whose output is the residual stream).
    """

    name: str
    module: nn.Module
    kind: str
    block_name: str
    block: nn.Module


def _kind(module: nn.Module) -> str | None:
    cls = type(module)
    if isinstance(module, nn.MultiheadAttention):
        return "mha"
    origin = cls.__module__
    if origin.startswith("timm.") and cls.__name__ == "Attention" and hasattr(module, "attn_drop"):
        return "timm"
    if origin.startswith("monai.") and cls.__name__ == "SABlock":
        return "monai"
    return None


def _windowed(module: nn.Module) -> bool:
    return "WindowAttention" in type(module).__name__


def attention_blocks(model: nn.Module) -> list[AttentionBlock]:
    """The model's self-attention blocks, in registration order.

    Raises:
        LayerError: the model has no self-attention camscope can read (or only windowed
            attention, as Swin).
    """
    modules = dict(model.named_modules())
    blocks = []
    for name, module in modules.items():
        kind = _kind(module)
        if kind is None:
            continue
        block_name = name.rpartition(".")[0]
        blocks.append(AttentionBlock(name, module, kind, block_name, modules[block_name]))
    if blocks:
        return blocks
    if isinstance(model, torch.jit.ScriptModule) or is_exported(model):
        kind = "TorchScript" if isinstance(model, torch.jit.ScriptModule) else "an exported program"
        raise LayerError(
            f"the model is {kind}, whose attention blocks no longer run as the modules camscope "
            "reads; for attention methods give the eager model (its state dict with "
            "--architecture), or use an input-space method"
        )
    if any(_windowed(module) for module in modules.values()):
        raise LayerError(
            f"{type(model).__name__} attends within windows (Swin), not over the whole token "
            "sequence, so attention methods do not apply; use a layer method (e.g. grad_cam) "
            "on a stage output"
        )
    raise LayerError(
        f"{type(model).__name__} has no self-attention block camscope can read "
        f"(supported: {SUPPORTED_ATTENTION}); use a layer method such as grad_cam"
    )


@dataclass
class AttentionTap:
    """Context manager: during its runs, records each block's attention probabilities
    ``(B, heads, N, N)`` (in the order the blocks run) and, with ``outputs=True``, each block's
    output tokens.

    Args:
        model: the network; its modules are restored on exit.
        blocks: from :func:`attention_blocks`.
        outputs: also record each block's output (the residual stream after it).
    """

    model: nn.Module
    blocks: list[AttentionBlock]
    outputs: bool = False
    attentions: list[torch.Tensor] = field(default_factory=list)
    tokens: list[torch.Tensor] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    _asked: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    _stack: contextlib.ExitStack | None = None

    def __enter__(self) -> AttentionTap:
        stack = contextlib.ExitStack()
        try:
            for block in self.blocks:
                stack.enter_context(self._tap(block))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def clear(self) -> None:
        """Forget what was recorded."""
        self.attentions.clear()
        self.tokens.clear()
        self.order.clear()

    def run(self, inputs: torch.Tensor) -> Any:
        """Run the model once and check every block ran once; returns its output."""
        self.clear()
        output = call_model(self.model, inputs)
        if len(self.attentions) != len(self.blocks):
            ran = len(self.attentions)
            raise LayerError(
                f"{len(self.blocks)} attention blocks are registered but {ran} ran on this "
                "input; attention methods need every block to run exactly once per pass"
            )
        return output

    @contextlib.contextmanager
    def _tap(self, block: AttentionBlock) -> Iterator[None]:
        handles = []
        module = block.module
        try:
            if block.kind == "mha":
                handles.append(
                    module.register_forward_pre_hook(self._asking(block), with_kwargs=True)
                )
                handles.append(
                    module.register_forward_hook(self._replayed(block), with_kwargs=True)
                )
                flag = None
            else:
                flag, explicit = ("fused_attn", False)
                dropout = getattr(module, "attn_drop", None)
                if block.kind == "monai":
                    flag, explicit = ("use_flash_attention", False)
                    dropout = getattr(module, "drop_weights", None)
                assert isinstance(dropout, nn.Module)
                handles.append(dropout.register_forward_hook(self._kept(block)))
            if self.outputs:
                handles.append(block.block.register_forward_hook(self._block_output))
            if flag is None:
                yield
            else:
                before = getattr(module, flag)
                setattr(module, flag, explicit)
                try:
                    yield
                finally:
                    setattr(module, flag, before)
        finally:
            for handle in handles:
                handle.remove()

    def _keep(self, block: AttentionBlock, probabilities: torch.Tensor) -> None:
        if probabilities.ndim != 4 or probabilities.shape[-1] != probabilities.shape[-2]:
            raise LayerError(
                f"attention of {block.name!r} has shape {tuple(probabilities.shape)}, not "
                "(B, heads, N, N) self-attention over the tokens"
            )
        self.attentions.append(probabilities)
        self.order.append(block.name)

    def _kept(self, block: AttentionBlock) -> Any:
        def hook(_module: nn.Module, _args: Any, output: torch.Tensor) -> None:
            self._keep(block, output)

        return hook

    def _block_output(self, _module: nn.Module, _args: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim != 3:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
            raise LayerError(f"a transformer block returned {shape}, not tokens (B, N, C)")
        self.tokens.append(output)

    def _asking(self, block: AttentionBlock) -> Any:
        def hook(
            module: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            args, kwargs, self._asked[block.name] = _ask_for_weights(module, args, kwargs)
            return args, kwargs

        return hook

    def _replayed(self, block: AttentionBlock) -> Any:
        def hook(
            module: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
        ) -> Any:
            given, probabilities = out
            if probabilities is None or probabilities.ndim != 4:
                raise LayerError(f"{block.name!r} did not return per-head attention probabilities")
            self._keep(block, probabilities)
            asked = self._asked.pop(block.name, (False, True))
            if torch.is_grad_enabled():
                value = args[2] if len(args) > 2 else kwargs["value"]
                given = _replay(module, probabilities, value, given, block.name)
            wanted, averaged = asked
            returned = (probabilities.mean(1) if averaged else probabilities) if wanted else None
            return given, returned

        return hook


def _ask_for_weights(
    module: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], tuple[bool, bool]]:
    """Make an ``nn.MultiheadAttention`` call return its per-head probabilities; also returns
    what the caller asked for (``need_weights``, ``average_attn_weights``)."""
    query = args[0] if args else kwargs.get("query")
    key = args[1] if len(args) > 1 else kwargs.get("key")
    value = args[2] if len(args) > 2 else kwargs.get("value")
    if not (query is key and key is value):
        raise LayerError(
            "attention methods read self-attention (query, key and value the same tokens); this "
            "MultiheadAttention is called with different ones"
        )
    if module.bias_k is not None or module.add_zero_attn or not module._qkv_same_embed_dim:
        raise LayerError(
            "attention methods read MultiheadAttention without added key/value biases, zero "
            "attention or separate key/value sizes"
        )
    given = list(args)
    kwargs = dict(kwargs)
    wanted = given[4] if len(given) > 4 else kwargs.get("need_weights", True)
    averaged = given[6] if len(given) > 6 else kwargs.get("average_attn_weights", True)
    for index, name, setting in ((4, "need_weights", True), (6, "average_attn_weights", False)):
        if len(given) > index:
            given[index] = setting
        else:
            kwargs[name] = setting
    return tuple(given), kwargs, (bool(wanted), bool(averaged))


def _replay(
    module: nn.MultiheadAttention,
    probabilities: torch.Tensor,
    value: torch.Tensor,
    given: torch.Tensor,
    name: str,
) -> torch.Tensor:
    """The block's output recomputed from its probabilities and its own value and output
    projections, so that the probabilities are on the graph; checked equal to ``given``."""
    dim = module.embed_dim
    weight = module.in_proj_weight[2 * dim :]
    bias = None if module.in_proj_bias is None else module.in_proj_bias[2 * dim :]
    tokens = value if module.batch_first else value.transpose(0, 1)
    batch, count, _ = tokens.shape
    heads = module.num_heads
    v = F.linear(tokens, weight, bias).view(batch, count, heads, dim // heads).transpose(1, 2)
    mixed = (probabilities @ v).transpose(1, 2).reshape(batch, -1, dim)
    replayed = module.out_proj(mixed)
    if not module.batch_first:
        replayed = replayed.transpose(0, 1)
    scale = given.detach().abs().max().clamp_min(1e-12)
    gap = (replayed.detach() - given.detach()).abs().max() / scale
    if not bool(gap <= REPLAY_TOLERANCE):
        raise LayerError(
            f"the attention of {name!r} applied to its value and output projections does not "
            f"give the block's output (relative gap {float(gap):.2g}); attention methods cannot "
            "read this block"
        )
    return replayed
