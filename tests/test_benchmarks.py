"""The benchmark harness stays runnable (tiny sizes; speed is never asserted in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_core.py"


@pytest.mark.slow
def test_bench_core_quick_runs_and_writes_json(tmp_path):
    out = tmp_path / "core.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--cases",
            "cnn2",
            "--repeats",
            "1",
            "--no-memory",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "camscope grad_cam, all classes" in done.stdout
    results = json.loads(out.read_text())
    case = results["cases"]["cnn2"]
    assert case["captum_max_relative_difference"] < 1e-4
    assert len(case["times"]["camscope respond_cam, all classes"]) == 1


@pytest.mark.slow
def test_memory_probe_reports_total_and_working_set():
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--memory-probe",
            "cnn2",
            "camscope grad_cam, all classes",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    total, working = map(float, done.stdout.split())
    assert 0 <= working <= total


@pytest.mark.slow
def test_bench_perturbation_quick_runs_and_agrees(tmp_path):
    script = SCRIPT.with_name("bench_perturbation.py")
    out = tmp_path / "perturbation.json"
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            "--quick",
            "--cases",
            "occlusion_3d",
            "integrated_gradients",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    cases = json.loads(out.read_text())["cases"]
    assert cases["occlusion_3d"]["agreement"]["max relative difference vs Captum"] < 1e-4
    assert cases["integrated_gradients"]["agreement"]["max relative difference vs Captum"] < 1e-4
    assert (tmp_path / "perturbation.log").read_text().count("##") == 2
