"""Speed of the transformer methods and of the one method contract, beside their floors.

Three cases, every contender in this one process on the same inputs, round-robin within each
repeat (:mod:`harness`), minimum and median of the repeats reported with the ratio to the floor:

* ``vit``: a ViT-B/16-sized network (torchvision ``VisionTransformer``, 12 blocks of width 768,
  224², random weights), batch 1, all of its classes.
  - Grad-CAM at the default layer (the last block's first norm) against the floor of one forward
    pass with autograd and one batched backward pass (``is_grads_batched``) of all class scores
    to that layer.
  - Attention rollout against one inference forward pass.
  - Chefer and LeGrad beside them (their floors: one forward pass with the attention kept, and
    one batched backward pass to the attention of every block, per block for LeGrad).
* ``cnn2``: the paper's CNN-2, batch 8 of 40³ volumes, layer ``maxpool2``: one class per sample
  against a bare forward+backward, all 23 classes against one forward and one batched backward.

Usage::

    .venv/bin/python benchmarks/bench_transformers.py           # full run (~8 min on 2 cores)
    .venv/bin/python benchmarks/bench_transformers.py --quick   # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.models import VisionTransformer

import camscope
from camscope.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import results_header, time_round_robin, write_results

Runner = Callable[[], object]


def _batched_grads(scores: torch.Tensor, wrt: torch.Tensor | tuple[torch.Tensor, ...]) -> object:
    count = scores.shape[1]
    eye = torch.eye(count)[:, None, :].expand(count, scores.shape[0], count)
    return torch.autograd.grad(scores, wrt, grad_outputs=eye, is_grads_batched=True)


def _layer_floor(model: nn.Module, layer: nn.Module, x: torch.Tensor, targets: object) -> Runner:
    """One forward pass with autograd, one (batched) backward pass to the layer's output."""

    def run() -> object:
        kept: dict[str, torch.Tensor] = {}
        handle = layer.register_forward_hook(lambda m, i, o: kept.__setitem__("a", o))
        try:
            out = model(x)
        finally:
            handle.remove()
        if targets == "all":
            return _batched_grads(out, kept["a"])
        index = torch.as_tensor(targets)[:, None]
        return torch.autograd.grad(out.gather(1, index).sum(), kept["a"])

    return run


def vit_case(quick: bool) -> tuple[str, dict[str, Runner]]:
    torch.manual_seed(0)
    size, layers, width, heads, classes = (
        (64, 4, 192, 3, 100) if quick else (224, 12, 768, 12, 1000)
    )
    model = VisionTransformer(
        image_size=size,
        patch_size=16,
        num_layers=layers,
        num_heads=heads,
        hidden_dim=width,
        mlp_dim=4 * width,
        num_classes=classes,
    ).eval()
    nn.init.normal_(model.heads.head.weight, std=0.02)
    x = torch.randn(1, 3, size, size)
    layer_name = f"encoder.layers.encoder_layer_{layers - 1}.ln_1"
    layer = dict(model.named_modules())[layer_name]
    blocks = [b.self_attention for b in model.encoder.layers]

    def inference() -> object:
        with torch.no_grad():
            return model(x)

    def attention_floor() -> tuple[torch.Tensor, list[torch.Tensor]]:
        # Every block's per-head attention kept and put on the graph: the block's output
        # recomputed from it with the block's value and output projections.
        kept: list[torch.Tensor] = []

        def ask(m: nn.Module, a: tuple, k: dict) -> tuple:
            return a, {**k, "need_weights": True, "average_attn_weights": False}

        def replay(m: nn.MultiheadAttention, a: tuple, o: tuple) -> tuple:
            weights = o[1]
            kept.append(weights)
            if not torch.is_grad_enabled():
                return o
            dim, heads = m.embed_dim, m.num_heads
            v = nn.functional.linear(a[2], m.in_proj_weight[2 * dim :], m.in_proj_bias[2 * dim :])
            v = v.view(v.shape[0], v.shape[1], heads, -1).transpose(1, 2)
            mixed = (weights @ v).transpose(1, 2).flatten(2)
            return m.out_proj(mixed), None

        hooks = [b.register_forward_pre_hook(ask, with_kwargs=True) for b in blocks]
        hooks += [b.register_forward_hook(replay) for b in blocks]
        try:
            out = model(x)
        finally:
            for hook in hooks:
                hook.remove()
        return out, kept

    def chefer_floor() -> object:
        out, kept = attention_floor()
        return torch.autograd.grad(out[:, 0].sum(), kept)

    def legrad_floor() -> object:
        # every block's tokens through the final norm and head, each score back to its block
        tokens: list[torch.Tensor] = []
        hooks = [
            b.register_forward_hook(lambda m, i, o: tokens.append(o)) for b in model.encoder.layers
        ]
        try:
            _, kept = attention_floor()
        finally:
            for hook in hooks:
                hook.remove()
        return [
            torch.autograd.grad(
                model.heads(model.encoder.ln(t)[:, 0])[:, 0].sum(), a, retain_graph=True
            )
            for t, a in zip(tokens, kept, strict=True)
        ]

    title = (
        f"ViT ({layers} blocks, width {width}, {size}², random weights), batch 1, "
        f"all {classes} classes"
    )
    runners: dict[str, Runner] = {
        "inference forward (no grad)": inference,
        "floor: forward + batched backward to the layer": _layer_floor(model, layer, x, "all"),
        "camscope grad_cam, all classes": lambda: camscope.explain(
            model, x, method="grad_cam", targets="all"
        ),
        "camscope attention_rollout": lambda: camscope.explain(
            model, x, method="attention_rollout"
        ),
        "forward with per-head attention (no grad)": lambda: _no_grad(attention_floor),
        "floor: forward + backward to every attention, 1 class": chefer_floor,
        "camscope chefer, 1 class": lambda: camscope.explain(model, x, method="chefer"),
        "floor: forward + each block's score back to its attention": legrad_floor,
        "camscope legrad, 1 class": lambda: camscope.explain(model, x, method="legrad"),
    }
    assert camscope.explain(model, x, method="grad_cam").layer == layer_name
    return title, runners


def _no_grad(run: Runner) -> object:
    with torch.no_grad():
        return run()


def cnn2_case(quick: bool) -> tuple[str, dict[str, Runner]]:
    torch.manual_seed(0)
    batch, size = (2, 16) if quick else (8, 40)
    model = create_model("cnn2", input_size=size).eval()
    x = torch.randn(batch, 1, size, size, size)
    layer = model.maxpool2
    with torch.no_grad():
        predicted = model(x).argmax(1).tolist()
    title = f"CNN-2, batch {batch} of {size}³ volumes, layer maxpool2"
    runners: dict[str, Runner] = {
        "floor: forward + backward, 1 class": _layer_floor(model, layer, x, predicted),
        "camscope grad_cam, 1 class": lambda: camscope.explain(
            model, x, method="grad_cam", layer="maxpool2"
        ),
        "floor: forward + batched backward, all classes": _layer_floor(model, layer, x, "all"),
        "camscope grad_cam, all classes": lambda: camscope.explain(
            model, x, method="grad_cam", layer="maxpool2", targets="all"
        ),
        "camscope respond_cam, all classes": lambda: camscope.explain(
            model, x, method="respond_cam", layer="maxpool2", targets="all"
        ),
    }
    return title, runners


#: Each contender's floor, for the ratio column.
FLOORS = {
    "camscope grad_cam, all classes": (
        "floor: forward + batched backward to the layer",
        "floor: forward + batched backward, all classes",
    ),
    "camscope attention_rollout": ("inference forward (no grad)",),
    "forward with per-head attention (no grad)": ("inference forward (no grad)",),
    "camscope chefer, 1 class": ("floor: forward + backward to every attention, 1 class",),
    "camscope legrad, 1 class": ("floor: forward + each block's score back to its attention",),
    "camscope grad_cam, 1 class": ("floor: forward + backward, 1 class",),
    "camscope respond_cam, all classes": ("floor: forward + batched backward, all classes",),
}


def table(title: str, times: dict[str, list[float]]) -> str:
    lines = [
        f"**{title}**",
        "",
        "| contender | min (s) | median (s) | floor | × floor (min) | × floor (median) |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name, values in times.items():
        floor = next((f for f in FLOORS.get(name, ()) if f in times), None)
        row = f"| {name} | {min(values):.3f} | {statistics.median(values):.3f} "
        if floor is None:
            row += "| – | – | – |"
        else:
            row += (
                f"| {floor} | {min(values) / min(times[floor]):.2f} "
                f"| {statistics.median(values) / statistics.median(times[floor]):.2f} |"
            )
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--cases", nargs="+", default=["vit", "cnn2"])
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    results = results_header()
    builders = {"vit": vit_case, "cnn2": cnn2_case}
    for name in args.cases:
        title, runners = builders[name](args.quick)
        repeats = args.repeats or (3 if args.quick else {"vit": 3, "cnn2": 15}[name])
        print(f"== {title}: {len(runners)} contenders × {repeats} repeats", flush=True)
        times = time_round_robin(runners, repeats)
        print(table(title, times), flush=True)
        results["cases"][name] = {"title": title, "times": times}  # type: ignore[index]
    if args.out:
        write_results(args.out, results)


if __name__ == "__main__":
    main()
