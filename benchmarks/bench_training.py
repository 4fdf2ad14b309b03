"""Training throughput of the Respond-CAM networks at 40³, before and after the speed settings,
and the accuracy each setting reaches, side by side in one run.

Throughput: one epoch of ``train_classifier`` (the real loop: AdamW, one-cycle schedule, batch
32) over random 40³ volumes, for CNN-2, the default scale's reduced CNN-1 (8/16 channels) and the
paper's CNN-1 (32/64 channels), each in four settings: float32 (before), channels-last weights,
bfloat16 autocast, both (after). Settings are timed round-robin so machine noise hits all alike.

Accuracy: CNN-2 trained on the same simulated subtomograms (SNR ∞, 40³, 23 classes, 100 per class,
6 epochs) in float32 and in channels-last + bfloat16, tested on 20 per class; the binomial
standard error of the test accuracy is the noise yardstick.

    .venv/bin/python benchmarks/bench_training.py [--quick] [--no-accuracy] [--no-throughput]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from camscope.models import create_model
from camscope.models.training import TrainingConfig, evaluate_accuracy, train_classifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import results_path, save_cases, time_round_robin

SETTINGS = {
    "float32 (before)": {"precision": "float32", "channels_last": False},
    "channels-last": {"precision": "float32", "channels_last": True},
    "bfloat16": {"precision": "bfloat16", "channels_last": False},
    "channels-last + bfloat16 (after)": {"precision": "bfloat16", "channels_last": True},
}


def _epoch(architecture: str, options: dict, data: TensorDataset, settings: dict) -> None:
    torch.manual_seed(0)
    model = create_model(architecture, **options)
    config = TrainingConfig(epochs=1, batch_size=32, learning_rate=1e-3, **settings)
    train_classifier(model, data, config=config, progress=False)


def throughput(quick: bool, repeats: int) -> dict[str, dict[str, float]]:
    size = 16 if quick else 40
    cases = {
        "CNN-2": ("cnn2", {"input_size": size}, 64 if quick else 128),
        "CNN-1 (8/16 channels)": ("cnn1", {"input_size": size, "widths": [8, 16]}, 64),
        "CNN-1 (paper, 32/64)": ("cnn1", {"input_size": size}, 32 if quick else 64),
    }
    results: dict[str, dict[str, float]] = {}
    for case, (architecture, options, count) in cases.items():
        generator = torch.Generator().manual_seed(0)
        data = TensorDataset(
            torch.randn(count, 1, size, size, size, generator=generator),
            torch.randint(0, 23, (count,), generator=generator),
        )
        runners = {
            name: (lambda a=architecture, o=options, d=data, s=settings: _epoch(a, o, d, s))
            for name, settings in SETTINGS.items()
        }
        times = time_round_robin(runners, repeats)
        results[case] = {name: count / statistics.median(t) for name, t in times.items()}
        before = results[case]["float32 (before)"]
        line = ", ".join(f"{name} {rate:.1f}/s" for name, rate in results[case].items())
        after = results[case]["channels-last + bfloat16 (after)"]
        print(f"{case} at {size}³: {line}; after/before ×{after / before:.2f}", flush=True)
    return results


def accuracy(quick: bool) -> dict[str, dict[str, float]]:
    from camscope.simulate import SimulationConfig, Simulator
    from camscope.simulate.subtomogram import simulate_arrays

    size, per_class, epochs = (16, 10, 3) if quick else (40, 100, 6)
    simulator = Simulator(SimulationConfig(size=size, seed=0, similarity=0.0))
    train, labels = simulate_arrays(simulator, per_class, (math.inf,), progress=False)
    test, test_labels = simulate_arrays(
        simulator, 20, (math.inf,), offset=per_class, progress=False
    )
    train_set = TensorDataset(torch.from_numpy(train[math.inf]), torch.from_numpy(labels))
    test_set = TensorDataset(torch.from_numpy(test[math.inf]), torch.from_numpy(test_labels))
    results: dict[str, dict[str, float]] = {}
    for name in ("float32 (before)", "channels-last + bfloat16 (after)"):
        torch.manual_seed(0)
        model = create_model("cnn2", input_size=size)
        config = TrainingConfig(epochs=epochs, batch_size=32, learning_rate=2e-3, seed=0)
        start = time.perf_counter()
        train_classifier(model, train_set, config=config, progress=False, **SETTINGS[name])
        seconds = time.perf_counter() - start
        value = evaluate_accuracy(model, test_set)
        error = math.sqrt(value * (1 - value) / len(test_set))
        results[name] = {"accuracy": value, "standard_error": error, "seconds": seconds}
        print(
            f"CNN-2, {per_class}/class, {epochs} epochs, {name}: test accuracy {value:.3f} "
            f"± {error:.3f} in {seconds:.0f} s",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args()
    cases: dict[str, dict] = {}  # a part not measured keeps its last measurement and date
    if not args.no_throughput:
        cases["samples_per_second"] = throughput(args.quick, args.repeats)
    if not args.no_accuracy:
        cases["accuracy"] = accuracy(args.quick)
    save_cases(results_path("training", args.quick), cases)


if __name__ == "__main__":
    main()
