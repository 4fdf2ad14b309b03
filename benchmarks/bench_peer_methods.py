"""Speed of the methods that pytorch-grad-cam, torch-cam and Captum also ship, beside the peer's
own implementation and the floor (the bare passes the work needs).

Every contender runs in this one process on the same inputs, round-robin within each repeat
(:mod:`harness`); minimum and median of the repeats are reported with the ratio to the floor.

* ``ablation``: Ablation-CAM on ResNet-50's ``layer4`` (random weights, 128², batch 1, one
  class), against pytorch-grad-cam's ``AblationCAM`` (which runs the whole network for every
  ablated channel, 32 per batch; it takes minutes, so it runs once after the others' repeats)
  and against the floor: one forward pass of the network plus the head (pooling and the
  classifier) on the 2,048 ablated copies.
* ``segments``: feature ablation over 16 segments for all 10 classes of a ResNet-18 (64², batch
  2), against Captum's ``FeatureAblation`` called once per sample and class (its default one row
  per pass, and 16 rows per pass), and against the floor: one forward pass of the 32 perturbed
  copies.
* ``lime``: LIME (50 draws) over the same segments for all 10 classes, against Captum's ``Lime``
  called once per sample and class (16 rows per pass, and its default of 1, which takes a minute
  or more and is timed once), and against the floor: one forward pass of the 100 perturbed
  copies.
* ``propagation``: LRP (``epsilon_plus``) and DeepLIFT for all 23 classes of CNN-2 (batch 8,
  40³), against zennit's ``EpsilonPlus`` and Captum's ``DeepLift`` called once per class, and
  against the floor: one forward pass (DeepLIFT: after one forward pass of the references without
  autograd) and one batched backward pass to the input.
* ``cnn2``: the paper's CNN-2, batch 8 of 40³ volumes, all 23 classes: the new gradient CAMs at
  ``maxpool2`` against one forward pass and one batched backward pass to the layer; input ×
  gradient and FullGrad against the same to the input.
* ``one_target``: the same methods, LRP and DeepLIFT, for one class, against one forward and one
  backward pass.

Each case is stamped with the date, the machine and the peers' versions when it is written
(``harness.save_cases``); ``--quick`` writes ``results/peer_methods_quick.json``.

Usage::

    .venv/bin/python benchmarks/bench_peer_methods.py   # all cases, results/peer_methods.json
    .venv/bin/python benchmarks/bench_peer_methods.py --cases one_target propagation
    .venv/bin/python benchmarks/bench_peer_methods.py --quick   # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

import camscope
from camscope.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import results_path, save_cases, time_round_robin

Runner = Callable[[], object]


def ablation_case(quick: bool) -> tuple[str, dict[str, Runner], dict[str, int]]:
    from pytorch_grad_cam import AblationCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=1000).eval()
    edge = 64 if quick else 128
    x = torch.randn(1, 3, edge, edge)
    peer = AblationCAM(model, [model.layer4])

    def theirs() -> object:
        return peer(x, targets=[ClassifierOutputTarget(1)])

    def floor() -> object:
        with torch.inference_mode():
            kept: dict[str, torch.Tensor] = {}
            handle = model.layer4.register_forward_hook(lambda m, i, o: kept.__setitem__("a", o))
            model(x)
            handle.remove()
            copies = kept["a"].expand(kept["a"].shape[1], -1, -1, -1).clone()
            return model.fc(torch.flatten(model.avgpool(copies), 1))

    runners = {
        "floor (forward + head on the ablated copies)": floor,
        "camscope ablation_cam": lambda: camscope.explain(
            model, x, method="ablation_cam", layer="layer4", targets=1, progress=False
        ),
        "pytorch-grad-cam AblationCAM": theirs,
    }
    title = f"Ablation-CAM, ResNet-50 layer4, {edge}², batch 1"
    return title, runners, {"repeats": 3, "once": 1}


def segments_case(quick: bool) -> tuple[str, dict[str, Runner], dict[str, int]]:
    from captum.attr import FeatureAblation

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    labels = (torch.arange(64)[:, None] // 16) * 4 + torch.arange(64)[None] // 16  # 16 boxes
    mask = labels[None, None]
    peer = FeatureAblation(model)

    def theirs(per_eval: int) -> Runner:
        def run() -> object:
            with torch.no_grad():
                return [
                    peer.attribute(
                        x[b : b + 1], target=c, feature_mask=mask, perturbations_per_eval=per_eval
                    )
                    for b in range(len(x))
                    for c in range(10)
                ]

        return run

    def floor() -> object:
        with torch.inference_mode():
            keep = (labels[None] != torch.arange(16)[:, None, None])[:, None]  # (16, 1, H, W)
            return model((x[:, None] * keep[None]).flatten(0, 1))

    runners = {
        "floor (one pass of the 32 perturbed copies)": floor,
        "camscope feature_ablation, all classes": lambda: camscope.explain(
            model, x, method="feature_ablation", segments=labels, targets="all", progress=False
        ),
        "Captum FeatureAblation per class, 1 row/pass": theirs(1),
        "Captum FeatureAblation per class, 16 rows/pass": theirs(16),
    }
    return "Feature ablation, ResNet-18, 64², 16 segments, 10 classes", runners, {"repeats": 3}


def lime_case(quick: bool) -> tuple[str, dict[str, Runner], dict[str, int]]:
    import warnings

    from captum.attr import Lime

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    labels = (torch.arange(64)[:, None] // 16) * 4 + torch.arange(64)[None] // 16  # 16 boxes
    draws = 10 if quick else 50
    peer = Lime(model)

    def theirs(per_eval: int) -> Runner:
        def run() -> object:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # scikit-learn's convergence notes
                return [
                    peer.attribute(
                        x[b : b + 1],
                        target=c,
                        feature_mask=labels[None, None],
                        n_samples=draws,
                        perturbations_per_eval=per_eval,
                    )
                    for b in range(len(x))
                    for c in range(10)
                ]

        return run

    def floor() -> object:
        keep = torch.rand(len(x), draws, 16, generator=torch.Generator().manual_seed(0)) < 0.5
        masks = keep.gather(2, labels.flatten()[None, None].expand(len(x), draws, -1))
        with torch.inference_mode():
            return model((x[:, None] * masks.view(len(x), draws, 1, 64, 64)).flatten(0, 1))

    runners = {
        f"floor (one pass of the {len(x) * draws} perturbed copies)": floor,
        "camscope lime, all classes": lambda: camscope.explain(
            model,
            x,
            method="lime",
            segments=labels,
            n_samples=draws,
            targets="all",
            progress=False,
        ),
        "Captum Lime per class, 16 rows/pass": theirs(16),
        "Captum Lime per class, 1 row/pass": theirs(1),  # a minute or more: timed once
    }
    title = f"LIME, ResNet-18, 64², 16 segments, {draws} draws, 10 classes"
    return title, runners, {"repeats": 3, "once": 1}


def _cnn2_floor(
    model: torch.nn.Module, x: torch.Tensor, *, classes: int | None, to_input: bool, reference: bool
) -> Runner:
    """The bare passes a gradient method needs on CNN-2: (for DeepLIFT, one forward pass of the
    reference without autograd, then) one forward pass, and one backward pass of one class
    (``classes=None``) or one batched backward pass of all classes, to ``maxpool2`` or to the
    input."""
    layer = model.get_submodule("maxpool2")

    def run() -> object:
        if reference:
            with torch.no_grad():
                model(torch.zeros_like(x))
        kept: dict[str, torch.Tensor] = {}
        inputs = x.clone().requires_grad_(to_input)
        handle = layer.register_forward_hook(lambda m, i, o: kept.__setitem__("a", o))
        out = model(inputs)
        handle.remove()
        wrt = inputs if to_input else kept["a"]
        if classes is None:
            return torch.autograd.grad(out[:, 0].sum(), wrt)
        eye = torch.eye(classes)[:, None, :].expand(classes, out.shape[0], classes)
        return torch.autograd.grad(out, wrt, grad_outputs=eye, is_grads_batched=True)

    return run


#: CNN-2's gradient methods at ``maxpool2`` and those that explain the input, with their floor.
_LAYER = ("grad_cam", "grad_cam_elementwise", "finer_cam", "eigen_grad_cam")
_INPUT = ("input_x_gradient", "full_grad")


def _cnn2_runners(quick: bool, targets: object) -> dict[str, Runner]:
    torch.manual_seed(0)
    model = create_model("cnn2").eval()
    x = torch.randn(2 if quick else 8, 1, 40, 40, 40)
    classes = None if targets == 0 else 23

    def floor(to_input: bool, reference: bool = False) -> Runner:
        return _cnn2_floor(model, x, classes=classes, to_input=to_input, reference=reference)

    def ours(method: str) -> Runner:
        options = {"layer": "maxpool2"} if method in _LAYER else {}
        return lambda: camscope.explain(
            model, x, method=method, targets=targets, progress=False, **options
        )

    to_layer = "floor: forward + batched backward to the layer"
    to_input = "floor: forward + batched backward to the input"
    with_reference = "floor: forward of the reference, forward + backward to the input"
    runners = {to_layer: floor(False)}
    runners.update({f"camscope {name}": ours(name) for name in _LAYER})
    runners[to_input] = floor(True)
    runners.update({f"camscope {name}": ours(name) for name in _INPUT})
    if targets == 0:  # with all classes, LRP and DeepLIFT run in the propagation case
        runners["camscope lrp"] = ours("lrp")
        runners[with_reference] = floor(True, reference=True)
        runners["camscope deeplift"] = ours("deeplift")
    return runners


def cnn2_case(quick: bool) -> tuple[str, dict[str, Runner], dict[str, int]]:
    runners = _cnn2_runners(quick, "all")
    batch = 2 if quick else 8
    return f"CNN-2, batch {batch}, 40³, all 23 classes", runners, {"repeats": 3 if quick else 7}


def one_target_case(quick: bool) -> tuple[str, dict[str, Runner], dict[str, int]]:
    runners = {
        key.replace("batched backward", "backward"): run
        for key, run in _cnn2_runners(quick, 0).items()
    }
    batch = 2 if quick else 8
    return f"CNN-2, batch {batch}, 40³, one class", runners, {"repeats": 3 if quick else 7}


def propagation_case(quick: bool) -> tuple[str, dict[str, Runner], dict[str, int]]:
    import warnings

    from captum.attr import DeepLift
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlus

    torch.manual_seed(0)
    model = create_model("cnn2").eval()
    x = torch.randn(2 if quick else 8, 1, 40, 40, 40)
    classes = 23

    def floor(reference: bool) -> Runner:
        return _cnn2_floor(model, x, classes=classes, to_input=True, reference=reference)

    def zennit_per_class() -> object:
        maps = []
        with Gradient(model, EpsilonPlus()) as attributor:
            for c in range(classes):
                output = model(x)
                relevance = torch.zeros_like(output)
                relevance[:, c] = output[:, c]
                maps.append(attributor(x, relevance.detach())[1])
        return maps

    def captum_per_class() -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # it warns that it sets hooks
            explainer = DeepLift(model)
            return [explainer.attribute(x, target=c) for c in range(classes)]

    def ours(method: str) -> Runner:
        return lambda: camscope.explain(model, x, method=method, targets="all", progress=False)

    runners = {
        "floor: forward + batched backward to the input": floor(False),
        "camscope lrp (epsilon_plus), all classes": ours("lrp"),
        "zennit EpsilonPlus, once per class": zennit_per_class,
        "floor: forward of the reference, forward + batched backward to the input": floor(True),
        "camscope deeplift, all classes": ours("deeplift"),
        "Captum DeepLift, once per class": captum_per_class,
    }
    return f"CNN-2, batch {len(x)}, 40³, all 23 classes", runners, {"repeats": 2 if quick else 3}


def table(title: str, times: dict[str, list[float]]) -> str:
    lines = [title]
    floor = None
    for name, values in times.items():
        low, mid = min(values), statistics.median(values)
        if name.startswith("floor"):
            floor = (low, mid)
            lines.append(f"  {name:<52} {low:8.3f} s  {mid:8.3f} s")
            continue
        assert floor is not None
        lines.append(
            f"  {name:<52} {low:8.3f} s  {mid:8.3f} s  "
            f"{low / floor[0]:6.2f}× / {mid / floor[1]:6.2f}× the floor"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["cnn2", "one_target", "propagation", "segments", "lime", "ablation"],
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    cases: dict[str, dict] = {}
    builders = {
        "ablation": ablation_case,
        "segments": segments_case,
        "lime": lime_case,
        "cnn2": cnn2_case,
        "one_target": one_target_case,
        "propagation": propagation_case,
    }
    for name in args.cases:
        title, runners, settings = builders[name](args.quick)
        print(f"== {title}: {len(runners)} contenders × {settings['repeats']}", flush=True)
        # A contender that takes minutes (the peer's Ablation-CAM) runs once, without warm-up,
        # after the others' interleaved repeats.
        slow = list(runners)[-settings.get("once", 0) :] if settings.get("once") else []
        quick = {key: run for key, run in runners.items() if key not in slow}
        times = time_round_robin(quick, settings["repeats"])
        times.update(time_round_robin({key: runners[key] for key in slow}, 1, warmup=False))
        print(table(title, times), flush=True)
        cases[name] = {"title": title, "times": times}
    path = results_path("peer_methods", args.quick, args.out)
    save_cases(path, cases, ("captum", "grad-cam", "zennit"))


if __name__ == "__main__":
    main()
