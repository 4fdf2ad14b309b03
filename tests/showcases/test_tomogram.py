"""The tomogram showcase: the per-particle scores by hand, and the whole command at a tiny size."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from camscope.cli.main import cli
from camscope.showcases.tomogram import particle_scores
from camscope.simulate import SimulationConfig, TomogramConfig, simulate_tomogram
from camscope.simulate.tomogram import particle_box


def test_particle_scores_by_hand():
    config = TomogramConfig(
        shape=(40, 64, 64), particles=3, classes=(1, 4, 9), simulation=SimulationConfig()
    )
    tomogram = simulate_tomogram(config, progress=False)
    maps = np.zeros((23, *config.shape), dtype=np.float32)
    for particle in tomogram.particles:
        inside = tomogram.labels == particle.index + 1
        maps[particle.class_id][inside] = 2.0  # its own class: evidence over the particle
        maps[(particle.class_id + 1) % 23][inside] = 1.0
    rows = particle_scores(maps, tomogram, box=40)
    assert [r["pointing"] for r in rows] == [True] * 3
    assert [r["detected"] for r in rows] == [True] * 3 and [r["rank"] for r in rows] == [1] * 3
    assert all(0 < r["pointing_chance"] < 1 for r in rows)
    wrong = np.zeros_like(maps)
    for particle in tomogram.particles:
        inside = tomogram.labels == particle.index + 1
        region = particle_box(particle.position, 40, config.shape)
        outside = np.argwhere(tomogram.labels[region] == 0)
        peak = outside[len(outside) // 2] + [r.start for r in region]  # in the box, not inside
        wrong[particle.class_id][tuple(peak)] = 5.0
        wrong[particle.class_id][inside] = 0.5
        wrong[(particle.class_id + 1) % 23][inside] = 1.0  # another class beats it there
    rows = particle_scores(wrong, tomogram, box=40)
    assert [r["pointing"] for r in rows] == [False] * 3
    assert [r["detected"] for r in rows] == [False] * 3 and [r["rank"] for r in rows] == [2] * 3


@pytest.mark.slow
def test_showcase_command_end_to_end_on_a_tiny_tomogram(tmp_path):
    from camscope.reproduce import respond_cam

    config = dataclasses.replace(respond_cam.SCALES["smoke"], snrs=(math.inf,))
    respond_cam.reproduce_table(tmp_path / "rc", config, progress=False, log=lambda *_: None)
    out = tmp_path / "tomo"
    args = ["showcase", "tomogram", "--model", str(tmp_path / "rc/models/cnn2_snr-inf")]
    args += ["--shape", "24", "40", "40", "--particles", "3", "--gap", "0", "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert set(results["summary"]) == {"respond_cam", "grad_cam"}
    for method, rows in results["particles"].items():
        assert len(rows) == 3 and sorted(r["particle"] for r in rows) == [0, 1, 2]
        summary = results["summary"][method]
        # the summary is the mean of the particle rows (a third per particle), chance as defined
        assert summary["pointing"] == pytest.approx(np.mean([r["pointing"] for r in rows]))
        assert summary["detection"] == pytest.approx(np.mean([r["detected"] for r in rows]))
        chance = np.mean([r["pointing_chance"] for r in rows])
        assert summary["pointing_chance"] == pytest.approx(chance)
        assert summary["detection_chance"] == 1 / 23
        assert all(0 < r["pointing_chance"] < 1 and 1 <= r["rank"] <= 23 for r in rows)
        assert all(r["detected"] == (r["rank"] == 1) for r in rows)
    maps = np.load(out / "maps" / "respond_cam.npy", mmap_mode="r")
    assert maps.shape == (23, 24, 40, 40)
    assert (out / "figures" / "slices.png").read_bytes()[:4] == b"\x89PNG"
    assert "pointing" in (out / "report.html").read_text()
    assert len((out / "particles.csv").read_text().splitlines()) == 4
    missing = CliRunner().invoke(cli, ["showcase", "tomogram", "--model", str(tmp_path / "no")])
    assert missing.exit_code == 2 and "camscope reproduce respond-cam" in missing.output
