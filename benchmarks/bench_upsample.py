"""Cost of upsampling maps to the input, against the cost of computing them.

For each case the explanation (``explain``) and its upsampling (Gaussian with fixed widths, as
after the receptive field is cached; and linear for comparison) run side by side in this process,
round-robin, and the table gives medians and the ratio upsampling / explanation. The target for
Gaussian upsampling is < 10 % of the explanation.

Usage::

    .venv/bin/python benchmarks/bench_upsample.py           # full sizes (~3 min on 2 cores)
    .venv/bin/python benchmarks/bench_upsample.py --quick   # smoke test
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

import camscope
from camscope.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import results_path, save_cases, time_round_robin


def cases(quick: bool) -> list[tuple[str, torch.nn.Module, torch.Tensor, str, object, float]]:
    """(title, model, inputs, layer, targets, sigma) per case."""
    import torchvision

    torch.manual_seed(0)
    out = []
    if quick:
        resnet = torchvision.models.resnet18(weights=None).eval()
        x2 = torch.randn(2, 3, 64, 64)
        out.append(("resnet18 layer4 2² → 64², batch 2, 1 class", resnet, x2, "layer4", None, 8.0))
        cnn2 = create_model("cnn2", input_size=16).eval()
        x3 = torch.randn(2, 1, 16, 16, 16)
        out.append(
            ("CNN-2 maxpool2 2³ → 16³, batch 2, 23 classes", cnn2, x3, "maxpool2", "all", 3.0)
        )
        return out
    resnet = torchvision.models.resnet50(weights=None).eval()
    x2 = torch.randn(8, 3, 224, 224)
    targets = torch.randint(0, 1000, (8,)).tolist()
    out.append(
        ("ResNet-50 layer4 7² → 224², batch 8, 1 class", resnet, x2, "layer4", targets, 32.0)
    )
    out.append(
        ("ResNet-50 layer3 14² → 224², batch 8, 1 class", resnet, x2, "layer3", targets, 16.0)
    )
    volumes = torch.randn(16, 1, 40, 40, 40)
    cnn2 = create_model("cnn2").eval()
    cnn1 = create_model("cnn1").eval()
    for title, model, grid in (("CNN-2", cnn2, 5), ("CNN-1", cnn1, 10)):
        for targets_, label in ((None, "1 class"), ("all", "23 classes")):
            out.append(
                (
                    f"{title} maxpool2 {grid}³ → 40³, batch 16, {label}",
                    model,
                    volumes,
                    "maxpool2",
                    targets_,
                    6.0,
                )
            )
    return out


def measure(runners: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    return {
        name: statistics.median(values)
        for name, values in time_round_robin(runners, repeats).items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    rows: dict[str, dict] = {}
    print(
        "| case | explain (s) | Gaussian upsampling (s) | × explain | linear upsampling (s) "
        "| × explain |\n|---|---:|---:|---:|---:|---:|"
    )
    for title, model, x, layer, targets, sigma in cases(args.quick):
        explanation = camscope.explain(
            model,
            x,
            method="extended_cam",
            layer=layer,
            targets=targets,  # type: ignore[arg-type]
        )
        size = tuple(x.shape[2:])
        runners: dict[str, Callable[[], object]] = {
            "explain": lambda model=model, x=x, layer=layer, targets=targets: camscope.explain(
                model, x, method="extended_cam", layer=layer, targets=targets
            ),
            "gaussian": lambda e=explanation, size=size, sigma=sigma: camscope.upsample(
                e.maps, size, mode="gaussian", sigma=sigma
            ),
            "linear": lambda e=explanation, size=size: camscope.upsample(
                e.maps, size, mode="linear"
            ),
        }
        medians = measure(runners, repeats)
        rows[title] = medians
        print(
            f"| {title} | {medians['explain']:.3f} | {medians['gaussian']:.4f} "
            f"| {medians['gaussian'] / medians['explain']:.3f} | {medians['linear']:.4f} "
            f"| {medians['linear'] / medians['explain']:.3f} |",
            flush=True,
        )
    save_cases(results_path("upsample", args.quick, args.out), rows)


if __name__ == "__main__":
    main()
