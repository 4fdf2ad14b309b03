"""Throughput of dataset runs (``camscope explain`` over files): local backend against a local Ray
instance with 2 actors, for a 2D and a 3D model.

* ``2d``: the small 2D network (``tiny2d``) on 512 PNG images of 64², Respond-CAM, all 3 classes.
* ``3d``: the paper's CNN-2 on 96 simulated-size volumes (40³, ``.npy``), Respond-CAM, all 23
  classes.

Each run writes NPZ outputs and records (no heatmap files, no report) to a fresh folder; the time
is the whole run, Ray's start-up included (measured on its own as well). The two backends' NPZ
files are checked to be byte-identical. Usage::

    .venv/bin/python benchmarks/bench_runs.py            # ~5 min on 2 cores
    .venv/bin/python benchmarks/bench_runs.py --quick    # a smoke test
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from camscope.io.checkpoints import save_model
from camscope.models import create_model
from camscope.runs import ExplainSettings, explain_files

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import results_path, save_cases


def _make(folder: Path, kind: str, count: int) -> tuple[Path, dict, list[str]]:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    if kind == "2d":
        options = {"num_classes": 3, "input_size": 64}
        model = create_model("tiny2d", **options)
        paths = []
        for index in range(count):
            path = folder / f"img{index:04d}.png"
            Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(path)
            paths.append(str(path))
        architecture = "tiny2d"
    else:
        options = {"input_size": 40}
        model = create_model("cnn2", **options)
        paths = []
        for index in range(count):
            path = folder / f"vol{index:04d}.npy"
            np.save(path, rng.standard_normal((40, 40, 40)).astype(np.float32))
            paths.append(str(path))
        architecture = "cnn2"
    save_model(folder / "model", model, architecture=architecture, options=options)
    return folder / "model.json", {"spec": str(folder / "model.json")}, paths


def _run(model_file: Path, spec: dict, paths: list[str], out: Path, backend: str) -> float:
    from camscope.io.models import load_model_spec

    model, record = load_model_spec(model_file)
    settings = ExplainSettings(
        methods=["respond_cam"], targets="all", formats=[], report=False, batch_size=8
    )
    start = time.perf_counter()
    explain_files(
        model if backend == "local" else None,
        paths,
        out,
        settings,
        model_record=record,
        progress=False,
        backend=backend,
        model_spec=spec,
        ray_workers=2,
    )
    return time.perf_counter() - start


def _ray_startup() -> float:
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.shutdown()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    counts = {"2d": 32, "3d": 8} if args.quick else {"2d": 512, "3d": 96}
    ray_startup = _ray_startup()
    print(f"Ray start-up + shutdown alone: {ray_startup:.1f} s", flush=True)
    cases: dict[str, dict] = {}
    for kind, count in counts.items():
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            model_file, spec, paths = _make(folder, kind, count)
            times = {}
            for backend in ("local", "ray"):
                out = folder / f"out-{backend}"
                times[backend] = _run(model_file, spec, paths, out, backend)
            identical = all(
                (folder / "out-local" / p.name).read_bytes() == p.read_bytes()
                for p in (folder / "out-ray").glob("*.npz")
            )
            shutil.rmtree(folder / "out-ray")
        case = {
            "inputs": count,
            "seconds": times,
            "inputs_per_second": {k: count / v for k, v in times.items()},
            "identical_npz": identical,
            "ray_startup_seconds": ray_startup,
        }
        cases[kind] = case
        print(
            f"{kind}: {count} inputs; local {case['inputs_per_second']['local']:.1f}/s, "
            f"ray (2 actors) {case['inputs_per_second']['ray']:.1f}/s; identical: {identical}",
            flush=True,
        )
    save_cases(results_path("runs", args.quick), cases, ("ray",))


if __name__ == "__main__":
    main()
