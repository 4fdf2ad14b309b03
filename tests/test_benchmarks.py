"""The benchmark harness stays runnable (tiny sizes; speed is never asserted in tests)."""

from __future__ import annotations

import json
import re
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
    assert done.stdout.count("## ") == 2  # one printed section per case run
    assert all(case["measured"]["cpu"] for case in cases.values())  # each case stamped


def _harness():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import harness
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return harness


def test_saved_cases_say_when_and_where_and_keep_the_cases_not_rerun(tmp_path):
    from importlib.metadata import version

    harness = _harness()
    path = tmp_path / "bench.json"
    harness.save_cases(path, {"a": {"seconds": 1.0}, "b": {"seconds": 2.0}})
    first = json.loads(path.read_text())["cases"]
    assert first["a"]["measured"]["cpu"] and first["a"]["measured"]["date"]
    harness.save_cases(path, {"b": {"seconds": 3.0}}, peers=("captum",))
    cases = json.loads(path.read_text())["cases"]
    assert cases["a"] == first["a"]  # not re-run: its own stamp kept
    assert cases["b"]["seconds"] == 3.0
    assert cases["b"]["measured"]["captum"] == version("captum")
    assert "captum" not in cases["a"]["measured"]
    assert not list(tmp_path.glob("*.tmp"))


def test_every_measurement_the_docs_show_is_dated_and_tied_to_a_cpu():
    results = SCRIPT.parent / "results"
    pages = "\n".join(page.read_text() for page in (SCRIPT.parents[1] / "docs").rglob("*.md"))
    shown = {  # rendered by name ("trust") or by their own function (runs())
        path.stem
        for path in results.glob("*.json")
        if f'"{path.stem}"' in pages or re.search(rf"\b{path.stem}\(", pages)
    }
    assert {"core", "perturbation", "runs", "scan", "upsample", "training", "trust"} <= shown
    for name in sorted(shown):
        data = json.loads((results / f"{name}.json").read_text())
        for key, case in data["cases"].items():
            measured = case.get("measured") or {"date": data.get("date"), **data.get("machine", {})}
            assert measured.get("date") and measured.get("cpu"), f"{name}: {key} is not dated"
