"""Side-by-side speed of camscope's perturbation and path methods against the peers' own.

Cases (random weights; the same inputs and settings for every contender; every result checked
for agreement before it is timed):

* ``score_cam``: Score-CAM on ResNet-50 at 224², one image, one class, layer ``layer4``
  (2,048 channels → 2,048 masked forward passes). pytorch-grad-cam's ``ScoreCAM`` against
  camscope with the same weighting (softmax over channels) and mask upsampling, so the same maps;
  plus camscope's approximate ``top_channels=256``.
* ``occlusion_2d``: occlusion on ResNet-50 at 224², 32² patches with stride 16, one image,
  5 classes: Captum's ``Occlusion`` (one call per class) against camscope (all classes at once).
* ``occlusion_3d``: occlusion on CNN-2 at 40³, 8³ boxes with stride 4, one volume, all 23 classes.
* ``integrated_gradients``: CNN-2 at 40³, one volume, 23 classes, 50 steps: Captum's
  ``IntegratedGradients`` (riemann_right, one call per class) against camscope.

Each contender runs ``--repeats`` times round-robin (1 by default: the slow peers take minutes);
the table gives medians and the speed-up. Usage::

    .venv/bin/python benchmarks/bench_perturbation.py           # full (~20 min on 2 cores)
    .venv/bin/python benchmarks/bench_perturbation.py --quick   # tiny sizes (~30 s)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

import camscope
from camscope.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import results_path, save_cases, time_round_robin

#: The peers' distributions, whose versions each measurement records.
PEERS = ("grad-cam", "captum")


def _relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    ours, theirs = ours.double(), theirs.double()
    return float((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-30))


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1])


def _resnet(quick: bool):
    import torchvision

    arch, size = ("resnet18", 64) if quick else ("resnet50", 224)
    torch.manual_seed(0)
    return arch, size, getattr(torchvision.models, arch)(weights=None).eval()


def score_cam_case(quick: bool) -> dict:
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    arch, size, model = _resnet(quick)
    x = torch.randn(1, 3, size, size)
    target = 7
    same = {"weighting": "channel_softmax", "align_corners": True, "progress": False}
    peer = ScoreCAM(model=model, target_layers=[model.layer4])
    peer_weights: dict[str, torch.Tensor] = {}
    original = peer.get_cam_weights

    def recording(*args, **kwargs):
        weights = original(*args, **kwargs)
        peer_weights["w"] = torch.from_numpy(weights)
        return weights

    peer.get_cam_weights = recording  # type: ignore[method-assign]

    def run_peer():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return peer(input_tensor=x, targets=[ClassifierOutputTarget(target)])

    def run_ours(**options):
        return camscope.explain(
            model, x, method="score_cam", layer="layer4", targets=target, **same, **options
        )

    results: dict[str, object] = {}

    def keep(name: str, run: Callable[[], object]) -> Callable[[], object]:
        def timed() -> object:
            results[name] = run()
            return results[name]

        return timed

    runners: dict[str, Callable[[], object]] = {
        "pytorch-grad-cam ScoreCAM (batch 16)": run_peer,
        "camscope score_cam (same maps)": keep("exact", run_ours),
        "camscope score_cam precision=bfloat16": keep(
            "bf16", lambda: run_ours(precision="bfloat16")
        ),
        "camscope score_cam top_channels=256": keep("top", lambda: run_ours(top_channels=256)),
    }
    # One timed run each (the peer takes minutes); agreement is read off the same runs.
    times = time_round_robin(runners, repeats=1, warmup=False)
    peer.activations_and_grads.release()
    exact, bf16, approx = results["exact"], results["bf16"], results["top"]
    return {
        "title": f"Score-CAM, {arch} at {size}², 1 image, 1 class, layer4",
        "times": times,
        "reference": "pytorch-grad-cam ScoreCAM (batch 16)",
        "agreement": {
            "max relative difference of channel weights vs pytorch-grad-cam": _relative_difference(
                exact.extras["weights"][0, 0],
                peer_weights["w"][0],  # type: ignore[attr-defined]
            ),
            "relative L2 difference of bfloat16 map from exact map": float(
                (bf16.maps - exact.maps).norm() / exact.maps.norm()  # type: ignore[attr-defined]
            ),
            "correlation of bfloat16 map with exact map": _correlation(bf16.maps, exact.maps),  # type: ignore[attr-defined]
            "correlation of top-256 map with exact map": _correlation(approx.maps, exact.maps),  # type: ignore[attr-defined]
            "channels needing a forward pass": float(exact.extras["forward_passes"] - 1),  # type: ignore[attr-defined]
        },
    }


def occlusion_2d_case(quick: bool) -> dict:
    from captum.attr import Occlusion

    arch, size, model = _resnet(quick)
    x = torch.randn(1, 3, size, size)
    classes = [1, 7, 42, 100, 500]
    window, stride = (8, 4) if quick else (32, 16)
    return _occlusion(
        model, x, classes, window, stride, 16, f"{arch} at {size}², 1 image, 5 classes", Occlusion
    )


def occlusion_3d_case(quick: bool) -> dict:
    from captum.attr import Occlusion

    size = 16 if quick else 40
    torch.manual_seed(0)
    model = create_model("cnn2", input_size=size).eval()
    x = torch.randn(1, 1, size, size, size)
    window, stride = (4, 2) if quick else (8, 4)
    return _occlusion(
        model,
        x,
        list(range(23)),
        window,
        stride,
        64,
        f"CNN-2 at {size}³, 1 volume, 23 classes",
        Occlusion,
    )


def _occlusion(model, x, classes, window, stride, batch, title, Occlusion) -> dict:
    dims = x.ndim - 2
    peer = Occlusion(model)

    def run_peer():
        return torch.stack(
            [
                peer.attribute(
                    x,
                    target=c,
                    sliding_window_shapes=(x.shape[1], *([window] * dims)),
                    strides=(x.shape[1], *([stride] * dims)),
                    baselines=0.0,
                    perturbations_per_eval=batch,
                )
                for c in classes
            ],
            dim=1,
        )

    def run_ours():
        return camscope.explain(
            model,
            x,
            method="occlusion",
            targets=torch.tensor([classes]),
            window=window,
            stride=stride,
            batch_size=batch,
            progress=False,
        )

    difference = _relative_difference(run_ours().maps, run_peer())
    runners = {
        f"Captum Occlusion (one call per class, batch {batch})": run_peer,
        f"camscope occlusion (all classes, batch {batch})": run_ours,
    }
    return {
        "title": f"occlusion, {title}, window {window}, stride {stride}",
        "times": time_round_robin(runners, repeats=1, warmup=False),
        "reference": next(iter(runners)),
        "agreement": {"max relative difference vs Captum": difference},
    }


def integrated_gradients_case(quick: bool) -> dict:
    from captum.attr import IntegratedGradients

    size = 16 if quick else 40
    torch.manual_seed(0)
    model = create_model("cnn2", input_size=size).eval()
    x = torch.randn(1, 1, size, size, size)
    peer = IntegratedGradients(model)

    def run_peer():
        return torch.stack(
            [
                peer.attribute(
                    x.clone().requires_grad_(True),
                    target=c,
                    n_steps=50,
                    method="riemann_right",
                    internal_batch_size=50,
                ).detach()
                for c in range(23)
            ],
            dim=1,
        )

    def run_ours():
        return camscope.explain(
            model, x, method="integrated_gradients", targets="all", steps=50, progress=False
        )

    difference = _relative_difference(run_ours().maps, run_peer())
    runners = {
        "Captum IntegratedGradients (one call per class)": run_peer,
        "camscope integrated_gradients (all classes)": run_ours,
    }
    return {
        "title": f"Integrated Gradients, CNN-2 at {size}³, 1 volume, 23 classes, 50 steps",
        "times": time_round_robin(runners, repeats=1, warmup=False),
        "reference": next(iter(runners)),
        "agreement": {"max relative difference vs Captum": difference},
    }


CASES = {
    "score_cam": score_cam_case,
    "occlusion_2d": occlusion_2d_case,
    "occlusion_3d": occlusion_3d_case,
    "integrated_gradients": integrated_gradients_case,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: results/)")
    args = parser.parse_args()
    cases = {}
    for name in args.cases:
        result = CASES[name](args.quick)
        reference = statistics.median(result["times"][result["reference"]])
        result["median_seconds"] = {k: statistics.median(v) for k, v in result["times"].items()}
        result["speedup_vs_reference"] = {
            k: reference / v for k, v in result["median_seconds"].items()
        }
        cases[name] = result
        print("\n".join(_lines(result)), flush=True)
    save_cases(results_path("perturbation", args.quick, args.out), cases, PEERS)


def _lines(result: dict) -> list[str]:
    lines = [f"## {result['title']}"]
    for contender, seconds in result["median_seconds"].items():
        speedup = result["speedup_vs_reference"][contender]
        lines.append(f"  {contender:<55} {seconds:9.2f} s   {speedup:6.2f}×")
    for key, value in result["agreement"].items():
        lines.append(f"  {key}: {value:.3g}")
    return lines


if __name__ == "__main__":
    main()
