"""Transformer methods: maps over the patch grid read from the attention every block applies.

The probabilities ``A_l`` ``(B, heads, N, N)`` of every self-attention block come from
:class:`~camscope.engine.attention.AttentionTap` (the block's own explicit path, never a
re-implementation). Maps are ``(B, T, *grid)`` over the patch tokens of the model's token layout
(:mod:`camscope.layouts`; prefix tokens such as CLS get none), raw, 2D or 3D. Where the head
reads a class token, a map is its row (what the class token gathers); otherwise (no class token,
or an average-pooled head) the mean over all query tokens.
All samples and all targets are taken together: one forward pass, and for the gradient methods
batched backward passes over chunks of targets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from camscope.engine import chunked_vjp
from camscope.engine.attention import AttentionTap, attention_blocks
from camscope.engine.vjp import chunk_for_bytes
from camscope.errors import LayerError, MethodError
from camscope.layouts import Layout, LayoutResolver
from camscope.methods.context import MethodContext, MethodResult
from camscope.methods.registry import method

__all__ = ["attention_rollout", "chefer", "legrad"]

HeadFusion = Literal["mean", "max", "min"]


def _grid(context: MethodContext, attention: torch.Tensor) -> Layout:
    """The token layout of ``N`` tokens: the model's stated patch grid, or ``layout=``."""
    resolver = context.layout or LayoutResolver(None, context.inputs.shape[2:])
    count = attention.shape[-1]
    layout = resolver.resolve("the attention's tokens", (context.batch_size, count, 1))
    if layout.kind != "tokens":
        raise LayerError(
            f"the attention is over {count} tokens; pass layout=camscope.tokens(grid, prefix) "
            "to say which are patches"
        )
    return layout


def _reads_class_token(context: MethodContext, layout: Layout) -> bool:
    """Whether the head reads the first token: as the model states it (timm's average-pooled
    ViTs with register tokens do not), else whether there are prefix tokens."""
    geometry = None if context.layout is None else context.layout.geometry
    if geometry is not None and geometry.class_token is not None:
        return geometry.class_token
    return layout.prefix > 0


def _readout(relevance: torch.Tensor, layout: Layout, from_class_token: bool) -> torch.Tensor:
    """``(..., N, N)`` token relevance → ``(..., *grid)``: the class token's row over the
    patches, or the mean of the patch tokens' rows (what an average-pooled head reads)."""
    prefix = layout.prefix
    rows = relevance[..., 0, :] if from_class_token else relevance[..., prefix:, :].mean(-2)
    return rows[..., prefix:].unflatten(-1, layout.grid)


def _fuse_heads(attention: torch.Tensor, head_fusion: str) -> torch.Tensor:
    if head_fusion == "mean":
        return attention.mean(1)
    if head_fusion == "max":
        return attention.amax(1)
    return attention.amin(1)


def _blocks(context: MethodContext, outputs: bool = False) -> AttentionTap:
    return AttentionTap(context.model, attention_blocks(context.model), outputs=outputs)


@method(
    kind="layer",
    needs_layer=False,
    signed=False,
    target_blind=True,
    summary="attention rollout (Abnar & Zuidema 2020): head-fused attention with the residual, "
    "multiplied through the blocks",
)
def attention_rollout(
    context: MethodContext, *, head_fusion: HeadFusion = "mean", discard_ratio: float = 0.0
) -> MethodResult:
    """Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", 2020).

    ``Ā_l = fuse_heads(A_l)``, the smallest ``discard_ratio`` of its entries set to 0 (the class
    token's own entry kept), ``Â_l = row_normalise(0.5·Ā_l + 0.5·I)`` (the residual),
    ``R = Â_L ··· Â_1``; the map is the class token's row of ``R`` over the patches (where the
    head reads no class token, the mean of the patch tokens' rows). It does not depend on the
    target: every target gets the same map. One forward pass.
    """
    if head_fusion not in ("mean", "max", "min"):
        raise MethodError(f"head_fusion must be 'mean', 'max' or 'min', not {head_fusion!r}")
    if not 0.0 <= discard_ratio < 1.0:
        raise MethodError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    with torch.no_grad(), _blocks(context) as tap:
        output = tap.run(context.inputs)
        context.fix_targets(output)
        attentions = list(tap.attentions)
    layout = _grid(context, attentions[0])
    count = attentions[0].shape[-1]
    eye = torch.eye(count, dtype=attentions[0].dtype, device=attentions[0].device)
    rollout = None
    for attention in attentions:
        fused = _fuse_heads(attention, head_fusion)
        if discard_ratio > 0:
            fused = _discard(fused, discard_ratio)
        step = 0.5 * fused + 0.5 * eye
        step = step / step.sum(-1, keepdim=True)
        rollout = step if rollout is None else step @ rollout
    assert rollout is not None
    reads = _reads_class_token(context, layout)
    maps = _readout(rollout, layout, reads)  # (B, *grid)
    maps = maps.unsqueeze(1).expand(-1, context.num_targets, *maps.shape[1:]).contiguous()
    return MethodResult(
        maps,
        extras={"blocks": list(tap.order), "readout": _read_as(reads)},
        layer="attention",
        layout=str(layout),
    )


def _discard(fused: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero the smallest ``ratio`` of each sample's ``(N, N)`` entries, keeping entry (0, 0)."""
    flat = fused.flatten(1).clone()
    count = int(flat.shape[1] * ratio)
    if count:
        lowest = flat.topk(count, dim=1, largest=False).indices
        kept = flat[:, :1].clone()
        flat.scatter_(1, lowest, 0.0)
        flat[:, :1] = kept
    return flat.view_as(fused)


def _read_as(reads: bool) -> str:
    return "class token" if reads else "mean over patch tokens"


def _chunk(context: MethodContext, per_target: int) -> int:
    if context.chunk_size is not None:
        return context.chunk_size
    return chunk_for_bytes(context.num_targets, per_target)


@method(
    kind="layer",
    needs_layer=False,
    signed=False,
    summary="gradient-weighted attention (Chefer et al. 2021): relevance R += E_h[(∇A ⊙ A)⁺]·R "
    "through the blocks",
)
def chefer(context: MethodContext) -> MethodResult:
    """Gradient-weighted attention relevance (Chefer, Gur & Wolf, "Generic Attention-model
    Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV 2021).

    ``R = I``; for each block in order, ``Ā_l = mean_heads((∂y_t/∂A_l ⊙ A_l)⁺)`` and
    ``R ← R + Ā_l·R``; the map is the class token's row of ``R − I`` over the patches (where the
    head reads no class token, the mean of the patch tokens' rows). Any target (classes, regions
    of a dense output, a callable): one forward pass and batched backward passes to the
    attention of every block.
    """
    x = context.inputs.detach().requires_grad_(True)
    with torch.enable_grad(), _blocks(context) as tap:
        output = tap.run(x)
        context.fix_targets(output)
        attentions = tuple(tap.attentions)
    scores = context.attached_scores()
    layout = _grid(context, attentions[0])
    reads = _reads_class_token(context, layout)
    count = attentions[0].shape[-1]
    per_target = sum(a.numel() for a in attentions) * attentions[0].element_size() * 2
    eye = torch.eye(count, dtype=attentions[0].dtype, device=attentions[0].device)
    pieces = []
    chunks = chunked_vjp(
        scores, attentions, chunk_size=_chunk(context, per_target), missing=_unreached
    )
    for _, _, grads in chunks:
        with torch.no_grad():
            relevance = eye.expand(*grads[0].shape[:2], count, count)
            for attention, grad in zip(attentions, grads, strict=True):
                weighted = (grad * attention.detach().unsqueeze(1)).clamp_min(0).mean(2)
                relevance = relevance + weighted @ relevance
            # what the attention added (the identity is every token's own, and a flat offset
            # in a mean readout; the class token's row over the patches has none of it)
            pieces.append(_readout(relevance - eye, layout, reads))
    maps = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
    return MethodResult(
        maps,
        extras={"blocks": list(tap.order), "readout": _read_as(reads)},
        layer="attention",
        layout=str(layout),
    )


def _unreached() -> Exception:
    return LayerError("the target scores do not depend on the attention of every block")


Readout = Literal["model", "mean"]


def _head(model: nn.Module, readout: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Class logits from a block's output tokens ``(B, N, C)``, through the model's own final
    norm and head ("logit lens")."""
    module: Any
    for module in model.modules():
        cls = type(module)
        kind, origin = cls.__name__, cls.__module__
        if origin.startswith("torchvision.models.vision_transformer") and kind == (
            "VisionTransformer"
        ):
            norm, heads = module.encoder.ln, module.heads
            if readout == "mean":  # torch-cam's LeGrad: the mean token through norm and head
                return lambda tokens: heads(norm(tokens.mean(1)))
            return lambda tokens: heads(norm(tokens)[:, 0])
        if readout == "mean":
            break
        if origin.startswith(("timm.models", "camscope.models")) and hasattr(
            module, "forward_head"
        ):
            vit = module
            return lambda tokens: vit.forward_head(vit.norm(tokens))
        if origin.startswith("monai.networks") and kind == "ViT":
            head = getattr(module, "classification_head", None)
            if head is None:
                break
            monai_norm = module.norm
            return lambda tokens: head(monai_norm(tokens)[:, 0])
    known = (
        "readout='mean' is torchvision's ViT only"
        if readout == "mean"
        else "torchvision ViT, timm ViT/DeiT, camscope's vit2d/vit3d, MONAI ViT with "
        "classification=True"
    )
    raise MethodError(
        f"legrad reads class logits from every block through the model's own head, and knows "
        f"no head of {type(model).__name__} ({known}); on a model with global self-attention use "
        "chefer or attention_rollout, else a layer method such as grad_cam"
    )


def _as_output(logits: torch.Tensor, output: Any) -> Any:
    """A block's logit-lens logits in the form of the model's output (MONAI's ViT returns
    ``(logits, hidden states)``), so that a callable target reads them as it reads the output."""
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        if output[0].shape == logits.shape:
            return type(output)([logits, *output[1:]])
    return logits


@method(
    kind="layer",
    needs_layer=False,
    signed=False,
    summary="LeGrad (Bousselham et al. 2024): positive gradients of each block's logit-lens "
    "score w.r.t. its attention, averaged",
)
def legrad(
    context: MethodContext, *, blocks: int | None = None, readout: Readout = "model"
) -> MethodResult:
    """LeGrad (Bousselham et al., "LeGrad: An Explainability Method for Vision Transformers via
    Feature Formation Sensitivity", 2024).

    For each block ``l`` (the last ``blocks`` of them; ``None``: all), the target's score
    ``s_l`` is read from the block's output tokens through the model's final norm and head
    (``readout="model"``: as the model reads its last block, e.g. the class token;
    ``"mean"``: the mean token, as torch-cam's ``LeGrad`` does), and
    ``m_l = mean_{heads, queries}((∂s_l/∂A_l)⁺)`` over the patch keys; the map is
    ``mean_l m_l``. Class targets or a callable on the logits; one forward pass, one batched
    backward pass per block.
    """
    head = _head(context.model, readout)
    x = context.inputs.detach().requires_grad_(True)
    with torch.enable_grad(), _blocks(context, outputs=True) as tap:
        output = tap.run(x)
        context.fix_targets(output)
        attentions = list(tap.attentions)
        tokens = list(tap.tokens)
    total = len(attentions)
    chosen = total if blocks is None else blocks
    if not 1 <= chosen <= total:
        raise MethodError(f"blocks must be between 1 and {total} (this model's blocks)")
    layout = _grid(context, attentions[0])
    rows = torch.arange(context.batch_size, device=x.device)
    maps: torch.Tensor | None = None
    first = total - chosen
    for index in range(first, total):
        with torch.enable_grad():
            scores = context.target_scores(_as_output(head(tokens[index]), output), rows)
        per_target = attentions[index].numel() * attentions[index].element_size()
        pieces = []
        chunks = chunked_vjp(
            scores,
            attentions[index],
            chunk_size=_chunk(context, per_target),
            missing=_unreached,
            retain_graph=index < total - 1,
        )
        for _, _, grads in chunks:  # (B, t, heads, N, N)
            with torch.no_grad():
                keys = grads.clamp_min(0).mean(dim=(2, 3))[..., layout.prefix :]
                pieces.append(keys.unflatten(-1, layout.grid))
        part = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        maps = part if maps is None else maps + part
    assert maps is not None
    return MethodResult(
        maps / chosen,
        extras={"blocks": list(tap.order[first:]), "readout": readout},
        layer="attention",
        layout=str(layout),
    )
