"""Side-by-side speed of camscope's trust metrics against Quantus's on the same arrays.

Cases (random weights, eval mode; the same inputs, maps and settings for both):

* ``mprt``: cascading model parameter randomisation on torchvision's ResNet-18 (one input
  channel: Quantus's ROAD fails on three) at 224², a batch of 8, saliency maps, Spearman
  similarity: Quantus's ``MPRT`` (its explain function from Captum's ``Saliency``) against
  ``camscope.metrics.mprt``.
* ``mprt_grad_cam``: the same test on Grad-CAM maps of ``layer4``: Quantus with Captum's
  ``LayerGradCam`` (upsampled to the input, as Quantus wants) against camscope's (maps at the
  layer), and the floor: one plain forward pass per step (what re-running the network costs;
  camscope replays the unchanged bottom, so it can go below it). The saliency case's floor is
  one forward and one backward pass to the input per step.
* ``mprt_blocks``: the same, camscope randomising the model's top-level blocks
  (``layers="blocks"``, 7 steps) against Quantus's per-layer test (41 steps): not the same
  test, measured to show what the coarser choice saves.
* ``road``: ROAD with noisy linear imputation on the same network and batch, MoRF at 10
  percentages, Grad-CAM-like maps given: Quantus's ``ROAD`` against ``camscope.metrics.road``
  (which also computes LeRF unless told not to; here ``order="morf"`` for like with like).
* ``mprt_3d`` / ``road_3d``: camscope alone on CNN-2 at 40³ (Quantus takes no volumes);
  ``road_3d`` also with Jacobi as every system's preconditioner (the multigrid's share).
* ``pixel_flipping``, ``region_perturbation``, ``irof``, ``faithfulness_estimate``,
  ``avg_sensitivity``, ``local_lipschitz``: the same ResNet-18 at 64², a batch of 8, logits,
  random maps (saliency maps for the two robustness metrics, 20 perturbations each): Quantus's
  metric against camscope's, and the floor: the bare forward passes (or, for the robustness
  metrics, the saliency maps) of the same perturbed inputs, built beforehand, in batches of 64.

Usage::

    .venv/bin/python benchmarks/bench_trust.py           # full (~10 min on 2 cores)
    .venv/bin/python benchmarks/bench_trust.py --quick   # tiny sizes (~30 s)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

import camscope
from camscope.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import results_path, save_cases, time_round_robin


def _resnet(size: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    # One input channel: Quantus's ROAD indexes a 3-channel input's pixels out of range (it
    # broadcasts the map over the channels, then imputes flat indices of the whole array).
    model.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    model.eval()
    x = torch.randn(8, 1, size, size)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def _quantus_saliency(model, inputs, targets, **kwargs):
    from captum.attr import Saliency

    x = torch.as_tensor(inputs).detach().clone().requires_grad_(True)
    maps = Saliency(model).attribute(x, target=torch.as_tensor(targets), abs=True)
    return maps.detach().abs().amax(1, keepdim=True).numpy()


def bench(quick: bool, cases: set[str], repeats: int = 1) -> dict[str, dict[str, object]]:
    import quantus

    size = 64 if quick else 224
    percentages = [10, 50] if quick else list(range(5, 100, 10))
    model, x, y = _resnet(size)
    results: dict[str, dict[str, object]] = {}

    def quantus_mprt(explain_func=_quantus_saliency) -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quantus.MPRT(
                layer_order="top_down",
                display_progressbar=False,
                disable_warnings=True,
                return_last_correlation=False,
                return_average_correlation=False,
                similarity_func=quantus.similarity_func.correlation_spearman,
                normalise=False,
                abs=False,
            )(
                model=model,
                x_batch=x.numpy(),
                y_batch=y.numpy(),
                a_batch=None,
                explain_func=explain_func,
                device="cpu",
                batch_size=8,
            )

    def ours_mprt() -> object:
        return camscope.metrics.mprt(model, x, method="saliency", targets=y)

    steps = len(camscope.metrics.randomizable_layers(model, x)) + 1  # and the original map

    def floor_mprt() -> None:  # one forward and one backward to the input per step
        for _ in range(steps):
            inputs = x.clone().requires_grad_(True)
            model(inputs).gather(1, y[:, None]).sum().backward(inputs=[inputs])

    def quantus_grad_cam(model, inputs, targets, **kwargs):
        from captum.attr import LayerAttribution, LayerGradCam

        inputs = torch.as_tensor(inputs)
        maps = LayerGradCam(model, model.layer4).attribute(inputs, target=torch.as_tensor(targets))
        # absolute values: Quantus refuses a batch of maps that are all negative, which a
        # randomised network's raw Grad-CAM can be (the same cost)
        return LayerAttribution.interpolate(maps, inputs.shape[2:]).detach().abs().numpy()

    def quantus_mprt_grad_cam() -> object:
        return quantus_mprt(quantus_grad_cam)

    def ours_mprt_grad_cam() -> object:
        return camscope.metrics.mprt(model, x, method="grad_cam", layer="layer4", targets=y)

    def floor_mprt_grad_cam() -> None:  # one forward per step, no replay, no backward
        with torch.inference_mode():
            for _ in range(steps):
                model(x)

    def ours_mprt_blocks() -> object:  # a coarser test: 7 steps instead of 41
        return camscope.metrics.mprt(model, x, method="saliency", targets=y, layers="blocks")

    maps = camscope.explain(model, x, method="grad_cam", targets=y).upsample().maps[:, 0]

    def quantus_road() -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quantus.ROAD(
                percentages=percentages,
                noise=0.01,
                display_progressbar=False,
                disable_warnings=True,
                normalise=False,
                abs=False,
            )(
                model=model,
                x_batch=x.numpy(),
                y_batch=y.numpy(),
                a_batch=maps[:, None].detach().numpy(),
                device="cpu",
                batch_size=8,
            )

    def ours_road() -> object:
        return camscope.metrics.road(
            model, x, maps, y, percentages=percentages, order="morf", batch_size=8
        )

    for case, runners in {
        "mprt": {"quantus": quantus_mprt, "camscope": ours_mprt, "floor": floor_mprt},
        "mprt_grad_cam": {
            "quantus": quantus_mprt_grad_cam,
            "camscope": ours_mprt_grad_cam,
            "floor": floor_mprt_grad_cam,
        },
        "mprt_blocks": {"quantus": quantus_mprt, "camscope": ours_mprt_blocks},
        "road": {"quantus": quantus_road, "camscope": ours_road},
    }.items():
        if case not in cases:
            continue
        times = time_round_robin(runners, repeats, warmup=False)
        medians = {name: statistics.median(t) for name, t in times.items()}
        results[case] = {
            "setting": f"ResNet-18, {size}², batch 8"
            + (f", {len(percentages)} percentages" if case == "road" else ""),
            "seconds": medians,
            "speedup": medians["quantus"] / medians["camscope"],
            "repeats": repeats,
        }
        if "floor" in medians:
            results[case]["to_floor"] = medians["camscope"] / medians["floor"]
        print(f"{case}: {medians}  speed-up ×{results[case]['speedup']:.2f}", flush=True)
    volume = 16 if quick else 40
    net = create_model("cnn2", input_size=volume).eval()
    v = torch.randn(8, 1, volume, volume, volume)
    target = torch.zeros(8, dtype=torch.long)
    cam = camscope.explain(net, v, method="respond_cam", targets=target).upsample().maps[:, 0]
    road_module = sys.modules["camscope.metrics.road"]

    def road_3d(multigrid_from: int):
        def run():
            saved, road_module.MULTIGRID_FROM = road_module.MULTIGRID_FROM, multigrid_from
            try:
                camscope.metrics.road(net, v, cam, target, percentages=percentages)
            finally:
                road_module.MULTIGRID_FROM = saved

        return run

    runners3d = {
        "mprt_3d": {
            "camscope": lambda: camscope.metrics.mprt(net, v, method="respond_cam", targets=target)
        },
        # the multigrid's share: the same code with Jacobi as every system's preconditioner
        "road_3d": {
            "camscope": road_3d(road_module.MULTIGRID_FROM),
            "jacobi": road_3d(sys.maxsize),
        },
    }
    for case, runners in runners3d.items():
        if case not in cases:
            continue
        times = time_round_robin(runners, repeats, warmup=False)
        seconds = {name: statistics.median(t) for name, t in times.items()}
        results[case] = {"setting": f"CNN-2, {volume}³, batch 8", "seconds": seconds}
        print(f"{case}: {seconds} (Quantus: 2D only)", flush=True)
    if cases & set(_METRIC_CASES):
        results.update(_metric_cases(quick, cases))
    return results


_METRIC_CASES = (
    "pixel_flipping",
    "region_perturbation",
    "irof",
    "faithfulness_estimate",
    "avg_sensitivity",
    "local_lipschitz",
)


def _quantus_call(metric, model, x, y, a, **call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=a.numpy()[:, None],
            channel_first=True,
            softmax=False,
            device="cpu",
            **call,
        )


def _floor_forward(model, frames: torch.Tensor) -> None:
    with torch.inference_mode():
        for start in range(0, len(frames), 64):
            model(frames[start : start + 64])


def _metric_cases(quick: bool, cases: set[str]) -> dict[str, dict[str, object]]:
    """Quantus's removal and robustness metrics against camscope's, with the floor."""
    import quantus

    np.trapz = getattr(np, "trapz", np.trapezoid)  # noqa: NPY201 (Quantus 0.6 calls it)
    size = 32 if quick else 64
    model, x, y = _resnet(size)
    a = torch.randn(8, size, size, generator=torch.Generator().manual_seed(0))
    metrics = camscope.metrics
    steps = size  # one row of positions per step
    segments = torch.from_numpy(
        np.repeat(np.repeat(np.arange(64).reshape(8, 8), size // 8, 0), size // 8, 1)
    )
    import quantus.helpers.utils as quantus_utils

    quantus_utils.get_superpixel_segments = lambda **_: segments.numpy()
    saliency = torch.from_numpy(_quantus_saliency(model, x, y)[:, 0])
    n = 5 if quick else 20

    def frames(count: int) -> torch.Tensor:  # as many perturbed inputs as the metric needs
        return x.repeat((count + 7) // 8, 1, 1, 1)[:count].clone()

    def saliency_floor() -> None:
        noisy = x.repeat_interleave(n, 0) + 0.1
        camscope.explain(model, noisy, method="saliency", targets=y.repeat_interleave(n))

    runners = {
        "pixel_flipping": {
            "quantus": lambda: _quantus_call(
                quantus.PixelFlipping(features_in_step=size, disable_warnings=True),
                model,
                x,
                y,
                a,
            ),
            "camscope": lambda: metrics.pixel_flipping(model, x, a, y, features_in_step=size),
            "floor": lambda: _floor_forward(model, frames(8 * steps)),
        },
        "region_perturbation": {
            "quantus": lambda: _quantus_call(
                quantus.RegionPerturbation(patch_size=4, disable_warnings=True), model, x, y, a
            ),
            "camscope": lambda: metrics.region_perturbation(model, x, a, y, patch_size=4),
            "floor": lambda: _floor_forward(model, frames(8 * min(100, (size // 4) ** 2))),
        },
        "irof": {
            "quantus": lambda: _quantus_call(
                quantus.IROF(perturb_baseline=0.0, disable_warnings=True), model, x, y, a
            ),
            "camscope": lambda: metrics.irof(model, x, a, y, segments=segments, baseline=0.0),
            "floor": lambda: _floor_forward(model, frames(8 * 64)),
        },
        "faithfulness_estimate": {
            "quantus": lambda: _quantus_call(
                quantus.FaithfulnessEstimate(features_in_step=size, disable_warnings=True),
                model,
                x,
                y,
                a,
            ),
            "camscope": lambda: metrics.faithfulness_estimate(
                model, x, a, y, features_in_step=size
            ),
            "floor": lambda: _floor_forward(model, frames(8 * steps)),
        },
        "avg_sensitivity": {
            "quantus": lambda: _quantus_call(
                quantus.AvgSensitivity(nr_samples=n, lower_bound=0.2, disable_warnings=True),
                model,
                x,
                y,
                saliency,
                explain_func=_quantus_saliency,
            ),
            "camscope": lambda: metrics.avg_sensitivity(model, x, "saliency", y, n_samples=n),
            "floor": saliency_floor,
        },
        "local_lipschitz": {
            "quantus": lambda: _quantus_call(
                quantus.LocalLipschitzEstimate(
                    nr_samples=n, normalise=False, abs=False, disable_warnings=True
                ),
                model,
                x,
                y,
                saliency,
                explain_func=_quantus_saliency,
            ),
            "camscope": lambda: metrics.local_lipschitz_estimate(
                model, x, "saliency", y, n_samples=n
            ),
            "floor": saliency_floor,
        },
    }
    results: dict[str, dict[str, object]] = {}
    for case, contenders in runners.items():
        if case not in cases:
            continue
        times = time_round_robin(contenders, 3 if quick else 2)
        medians = {name: statistics.median(t) for name, t in times.items()}
        results[case] = {
            "setting": f"ResNet-18, {size}², batch 8, logits",
            "seconds": medians,
            "speedup": medians["quantus"] / medians["camscope"],
            "over_floor": medians["camscope"] / medians["floor"],
            "quantus_over_floor": medians["quantus"] / medians["floor"],
        }
        print(
            f"{case}: {medians}  speed-up ×{results[case]['speedup']:.2f}, "
            f"camscope {results[case]['over_floor']:.2f}× its floor",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--repeats", type=int, default=1, help="interleaved runs per contender (the median)"
    )
    parser.add_argument(
        "--cases",
        default="mprt,mprt_grad_cam,mprt_blocks,road,mprt_3d,road_3d," + ",".join(_METRIC_CASES),
        help="comma-separated subset to run",
    )
    arguments = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    results = bench(arguments.quick, set(arguments.cases.split(",")), arguments.repeats)
    save_cases(results_path("trust", arguments.quick), results, ("quantus", "numpy"))


if __name__ == "__main__":
    main()
