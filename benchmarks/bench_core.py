"""Side-by-side speed and memory of camscope's core against peer libraries.

Two cases:

* ``resnet50``: Grad-CAM on ResNet-50 (random weights), batch 8 at 224², one class per image,
  layer ``layer4``.
* ``cnn2``: all 23 class maps for a batch of 16 volumes of 40³ with the paper's CNN-2 at
  ``maxpool2``; each peer in its fastest way of getting all 23 maps (torch-cam: one forward and one
  backward per class on the retained graph; Captum and pytorch-grad-cam: a full pass per class).

Times: every contender runs in this one process on the same inputs, round-robin within each
repeat so machine noise hits all alike; the table gives medians and ratios. Peak memory: each
contender runs once in a fresh subprocess (same imports, same set-up) and reports the process's
peak resident set size (``ru_maxrss``); ratios are against a plain inference forward pass.

Usage::

    .venv/bin/python benchmarks/bench_core.py            # full run (~10 min on 2 cores)
    .venv/bin/python benchmarks/bench_core.py --quick    # tiny sizes, a smoke test (~30 s)
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import camscope
from camscope.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import results_path, save_cases, time_round_robin

#: The peers' distributions, whose versions each measurement records.
PEERS = ("captum", "torchcam", "grad-cam")

Runner = Callable[[], object]


@dataclass
class Case:
    name: str
    title: str
    model: nn.Module
    inputs: torch.Tensor
    layer: str
    targets: list[int]
    num_classes: int
    all_classes: bool


def make_case(name: str, quick: bool) -> Case:
    torch.manual_seed(0)
    if name == "resnet50":
        import torchvision

        arch, batch, size = ("resnet18", 2, 64) if quick else ("resnet50", 8, 224)
        model = getattr(torchvision.models, arch)(weights=None).eval()
        inputs = torch.randn(batch, 3, size, size)
        targets = torch.randint(0, 1000, (batch,)).tolist()
        title = f"Grad-CAM, {arch} (random weights), batch {batch} at {size}², one class per image"
        return Case(name, title, model, inputs, "layer4", targets, 1000, all_classes=False)
    if name == "cnn2":
        batch, size = (2, 16) if quick else (16, 40)
        model = create_model("cnn2", input_size=size).eval()
        inputs = torch.randn(batch, 1, size, size, size)
        title = f"all 23 classes, CNN-2, batch {batch} of {size}³ volumes, layer maxpool2"
        return Case(name, title, model, inputs, "maxpool2", [0] * batch, 23, all_classes=True)
    raise ValueError(name)


def _layer(model: nn.Module, name: str) -> nn.Module:
    return dict(model.named_modules())[name]


def contenders(case: Case) -> dict[str, Runner]:
    """Every way of getting the case's maps, as zero-argument callables."""
    model, x, layer = case.model, case.inputs, case.layer
    module = _layer(model, layer)
    targets = case.targets
    runners: dict[str, Runner] = {}

    def inference() -> object:
        with torch.no_grad():
            return model(x)

    def floor() -> object:
        # The bare minimum of a gradient method done plainly: a forward pass with autograd, and
        # one backward pass from the target scores to the layer.
        store: dict[str, torch.Tensor] = {}
        handle = module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
        try:
            out = model(x)
        finally:
            handle.remove()
        score = out.gather(1, torch.tensor(targets)[:, None]).sum()
        return torch.autograd.grad(score, store["a"])

    runners["inference forward (no grad)"] = inference
    runners["bare forward+backward (floor)"] = floor
    runners["camscope grad_cam, 1 class"] = lambda: camscope.explain(
        model, x, method="grad_cam", layer=layer, targets=targets
    )
    if case.all_classes:
        runners["camscope grad_cam, all classes"] = lambda: camscope.explain(
            model, x, method="grad_cam", layer=layer, targets="all"
        )
        runners["camscope respond_cam, all classes"] = lambda: camscope.explain(
            model, x, method="respond_cam", layer=layer, targets="all"
        )
    classes = range(case.num_classes) if case.all_classes else [None]

    try:
        from captum.attr import LayerGradCam

        captum = LayerGradCam(model, module)

        def run_captum() -> object:
            if not case.all_classes:
                return captum.attribute(x, target=targets, relu_attributions=False)
            return [captum.attribute(x, target=c, relu_attributions=False) for c in classes]

        runners["captum LayerGradCam" + (", loop over classes" if case.all_classes else "")] = (
            run_captum
        )
    except ImportError:
        pass

    try:
        from torchcam.methods import GradCAM as TorchCamGradCAM

        def run_torchcam() -> object:
            extractor = TorchCamGradCAM(model, target_layer=layer)
            try:
                with torch.enable_grad():
                    out = model(x)
                    if not case.all_classes:
                        return extractor(class_idx=targets, scores=out, normalized=False)
                    last = case.num_classes - 1
                    return [
                        extractor(c, out, normalized=False, retain_graph=c < last) for c in classes
                    ]
            finally:
                extractor.remove_hooks()

        label = "torch-cam GradCAM" + (", retained-graph loop" if case.all_classes else "")
        runners[label] = run_torchcam
    except ImportError:
        pass

    try:
        from pytorch_grad_cam import GradCAM as PGCGradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        def run_pgc() -> object:
            with PGCGradCAM(model=model, target_layers=[module]) as cam:
                if not case.all_classes:
                    return cam(x, targets=[ClassifierOutputTarget(t) for t in targets])
                batch = x.shape[0]
                return [cam(x, targets=[ClassifierOutputTarget(c)] * batch) for c in classes]

        label = "pytorch-grad-cam GradCAM" + (", loop over classes" if case.all_classes else "")
        runners[label] = run_pgc
    except ImportError:
        pass
    return runners


def check_agreement(case: Case) -> float | None:
    """Largest |camscope − Captum| over the raw Grad-CAM maps (same work, same answer)."""
    try:
        from captum.attr import LayerGradCam
    except ImportError:
        return None
    module = _layer(case.model, case.layer)
    ours = camscope.explain(
        case.model, case.inputs, method="grad_cam", layer=case.layer, targets=case.targets
    ).maps
    theirs = LayerGradCam(case.model, module).attribute(
        case.inputs, target=case.targets, relu_attributions=False
    )
    difference = (ours - theirs).detach().abs().max()
    return float(difference / theirs.detach().abs().max().clamp_min(1e-30))


def _status_gib(key: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 2**20  # kB → GiB
    raise KeyError(key)


def peak_memory(case_name: str, contender: str, quick: bool) -> tuple[float, float]:
    """Peak RSS of a fresh process that sets the case up and runs one contender once.

    Returns:
        ``(total, working)`` in GiB: the process's peak resident set, and that peak minus the
        resident set right before the run (imports, model and inputs excluded).
    """
    command = [sys.executable, __file__, "--memory-probe", case_name, contender]
    if quick:
        command.append("--quick")
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    total, working = done.stdout.strip().splitlines()[-1].split()
    return float(total), float(working)


def memory_probe(case_name: str, contender: str, quick: bool) -> None:
    case = make_case(case_name, quick)
    runners = contenders(case)
    gc.collect()
    try:  # reset the kernel's peak-RSS mark so set-up transients do not hide the run's peak
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        before = _status_gib("VmRSS")
        runners[contender]()
        total = _status_gib("VmHWM")
    except OSError:  # not Linux: fall back to the lifetime peak
        before = 0.0
        runners[contender]()
        total = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{total} {total - before}")


def table(case: Case, times: dict[str, list[float]], memory: dict[str, tuple[float, float]]) -> str:
    floor = statistics.median(times["bare forward+backward (floor)"])
    single = statistics.median(times["camscope grad_cam, 1 class"])
    inference = memory.get("inference forward (no grad)")
    lines = [
        f"**{case.title}**",
        "",
        "| contender | median time (s) | × floor | × camscope 1 class | peak RSS (GiB) "
        "| × inference | working set (GiB) | × inference |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        row = f"| {name} | {median:.3f} | {median / floor:.2f} | {median / single:.2f} "
        peak = memory.get(name)
        if peak is None or inference is None:
            row += "| – | – | – | – |"
        else:
            row += (
                f"| {peak[0]:.2f} | {peak[0] / inference[0]:.2f} "
                f"| {peak[1]:.3f} | {peak[1] / max(inference[1], 1e-9):.2f} |"
            )
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--cases", nargs="+", default=["resnet50", "cnn2"])
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--memory-probe", nargs=2, metavar=("CASE", "CONTENDER"))
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(*args.memory_probe, quick=args.quick)
        return
    default_repeats = 2 if args.quick else 5
    cases: dict[str, dict] = {}
    for case_name in args.cases:
        case = make_case(case_name, args.quick)
        runners = contenders(case)
        agreement = check_agreement(case)
        # The per-class loops of the peers are slow: fewer repeats there unless asked.
        case_repeats = args.repeats or (
            default_repeats if not case.all_classes else max(2, default_repeats - 2)
        )
        print(f"== {case.title}: {len(runners)} contenders × {case_repeats} repeats", flush=True)
        times = time_round_robin(runners, case_repeats)
        memory = (
            {}
            if args.no_memory
            else {name: peak_memory(case_name, name, args.quick) for name in runners}
        )
        print(table(case, times, memory))
        if agreement is not None:
            print(f"\ncamscope vs Captum Grad-CAM, max relative difference: {agreement:.1e}\n")
        cases[case_name] = {
            "title": case.title,
            "times": times,
            "peak_rss_gib": memory,
            "captum_max_relative_difference": agreement,
        }
    save_cases(results_path("core", args.quick, args.out), cases, PEERS)


if __name__ == "__main__":
    main()
