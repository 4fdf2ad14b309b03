"""``explain_scan`` against MONAI's ``sliding_window_inference`` (forward only), side by side.

Cases (random weights, eval mode, the same scan and windows for both):

* ``classifier``: CNN-2 (the paper's subtomogram classifier, 23 classes) over a 40-voxel-window
  tomogram of 80 × 120 × 120, overlap 0.25; camscope: Grad-CAM for all 23 classes.
* ``unet``: MONAI's 3D ``UNet`` (2 classes) over 96³ with 48³ windows; camscope: Grad-CAM of
  every class's predicted region (dense targets) at the default layer.

The targets: explaining costs at most 1.5× the forward-only time for the classifier and
2.5× for the U-Net. Peak memory (the process's maximum resident set) is reported beside.

    .venv/bin/python benchmarks/bench_scan.py [--quick]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import warnings
from pathlib import Path

import torch

import camscope
from camscope.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import results_path, save_cases, time_round_robin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    quick = parser.parse_args().quick
    repeats = parser.parse_args().repeats
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from monai.inferers import sliding_window_inference
        from monai.networks.nets import UNet
    torch.manual_seed(0)
    window = 16 if quick else 40
    classifier = create_model("cnn2", input_size=window).eval()
    tomogram = torch.randn(1, *((32, 48, 48) if quick else (80, 120, 120)))
    unet = UNet(
        spatial_dims=3, in_channels=1, out_channels=2, channels=(8, 16, 32), strides=(2, 2)
    ).eval()
    edge = 32 if quick else 96
    volume = torch.randn(1, edge, edge, edge)
    roi = 16 if quick else 48
    cases = {
        "classifier": {
            "monai forward": lambda: sliding_window_inference(
                tomogram[None], (window,) * 3, 4, _as_map(classifier), overlap=0.25
            ),
            "camscope grad_cam, all classes": lambda: camscope.explain_scan(
                classifier,
                tomogram,
                method="grad_cam",
                roi_size=window,
                batch_size=4,
                progress=False,
            ),
        },
        "unet": {
            "monai forward": lambda: sliding_window_inference(
                volume[None], (roi,) * 3, 4, unet, overlap=0.25
            ),
            "camscope grad_cam, every class's region": lambda: camscope.explain_scan(
                unet, volume, method="grad_cam", roi_size=roi, batch_size=4, progress=False
            ),
        },
    }
    results = {}
    for case, runners in cases.items():
        times = time_round_robin(runners, repeats)
        medians = {name: statistics.median(t) for name, t in times.items()}
        memory = {name: _peak_above_start(run) for name, run in runners.items()}
        names = list(medians)
        ratio = medians[names[1]] / medians[names[0]]
        results[case] = {
            "seconds": medians,
            "ratio": ratio,
            "peak_mb_above_start": memory,
            "repeats": repeats,
        }
        print(f"{case}: {medians}  explain / forward ×{ratio:.2f}; peak MB {memory}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak:.0f} MB")
    save_cases(results_path("scan", quick), results, ("monai",))


def _peak_above_start(run) -> float:
    """The most resident memory (MB) the process held above its level at the start of ``run``,
    sampled every 2 ms from /proc (the high-water mark of getrusage cannot be reset)."""
    import gc
    import os
    import threading
    import time

    page = os.sysconf("SC_PAGE_SIZE") / 2**20

    def resident() -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * page

    gc.collect()
    start = resident()
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run()
    done.set()
    sampler.join()
    return round(max(peak[0], resident()) - start, 1)


def _as_map(model: torch.nn.Module):
    """MONAI blends what the predictor returns: a classifier's logits as a constant window map."""

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = model(x)
        return logits[(..., *([None] * (x.ndim - 2)))].expand(-1, -1, *x.shape[2:]).clone()

    return predict


if __name__ == "__main__":
    main()
