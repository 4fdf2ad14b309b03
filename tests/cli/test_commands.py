"""The command line and the built-in demo (the README's main job)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import camscope
from camscope.cli.main import cli
from camscope.demo import run_demo


def test_methods_lists_registry_in_kebab_case():
    result = CliRunner().invoke(cli, ["methods"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines() if not line.startswith(" ")]
    assert names == [name.replace("_", "-") for name in camscope.list_methods()]


def test_layers_marks_the_default():
    result = CliRunner().invoke(cli, ["layers", "cnn2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    marked = [line for line in lines if line.startswith("*")]
    assert len(marked) == 1 and "maxpool2" in marked[0] and "64×5×5×5" in marked[0]
    header = next(line for line in lines if line.split()[:2] == ["layer", "kind"])
    # columns aligned under the header, whatever the names' lengths
    assert marked[0].index("MaxPool3d") == header.index("kind")
    assert marked[0].index("64×5×5×5") == header.index("output")


def test_user_error_is_one_line_and_exit_code_2():
    result = CliRunner().invoke(cli, ["layers", "resnet9000"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("camscope: error: resnet9000: no such model file")
    assert "Traceback" not in result.output


def test_demo_runs_and_saves(tmp_path):
    result = run_demo(tmp_path / "demo", per_class=12, test_per_class=4, epochs=1, progress=False)
    rows = {row["method"]: row for row in result.rows}
    # Flatten → Linear head: Respond-CAM's totals are logit − bias exactly, so τ is 1 up to ties.
    assert rows["respond_cam"]["kendall_tau"] > 0.99
    assert rows["respond_cam"]["l1"] < rows["grad_cam"]["l1"]
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["n_test"] == 12 and summary["layer"] == "pool2"
    with np.load(tmp_path / "demo" / "maps.npz") as saved:
        assert saved["respond_cam"].shape == (12, 3, 6, 6, 6)
    assert (tmp_path / "demo" / "slices.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "demo").glob(".*tmp"))


def test_demo_refuses_to_overwrite_without_force(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 2
    assert "--force" in result.output
    assert (tmp_path / "summary.json").read_text() == "{}"


@pytest.mark.slow
def test_demo_command_end_to_end(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "respond_cam" in result.output and "test accuracy" in result.output


def test_erf_command_prints_sigma_and_writes_plot(tmp_path):
    plot = tmp_path / "erf.png"
    args = ["erf", "tiny2d", "--input-size", "32", "--n-inputs", "4", "--plot", str(plot)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "layer pool2" in result.output and "sigma (input pixels, HW)" in result.output
    assert plot.read_bytes()[:4] == b"\x89PNG"
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "--force" in again.output


def test_simulate_writes_mrc_with_voxel_size_and_labels(tmp_path):
    import csv
    import stat

    from camscope.io.volumes import read_mrc

    args = [
        "simulate",
        "--out",
        str(tmp_path),
        "--per-class",
        "2",
        "--classes",
        "3",
        "--snr",
        "inf",
        "--snr",
        "0.1",
        "--size",
        "20",
        "--quiet",
        "--similarity-matrix",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "voxel size 20 Å" in result.output and "class similarity" in result.output
    with open(tmp_path / "labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and {r["snr"] for r in rows} == {"inf", "0.1"}
    volume, voxel = read_mrc(tmp_path / rows[0]["path"])
    assert volume.shape == (20, 20, 20) and voxel == pytest.approx(20.0)
    # same sample, same pose at both SNRs
    pairs = [r for r in rows if r["class_id"] == "1" and r["index"] == "1"]
    assert len(pairs) == 2 and pairs[0]["r00"] == pairs[1]["r00"]
    mode = stat.S_IMODE((tmp_path / rows[0]["path"]).stat().st_mode)
    assert mode & stat.S_IRGRP  # shared results: not owner-only like a raw mkstemp file
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "--force" in again.output


def test_simulate_npz_bundle(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--out",
            str(tmp_path),
            "--per-class",
            "2",
            "--classes",
            "2",
            "--snr",
            "0.5",
            "--size",
            "16",
            "--format",
            "npz",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "subtomograms.npz") as bundle:
        assert bundle["snr_0.5"].shape == (4, 1, 16, 16, 16)
        assert bundle["labels"].tolist() == [0, 1, 0, 1] and bundle["poses"].shape == (4, 12)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--targets", "cat"], "Invalid value for '--targets'"),
        (["--sigma", "wide"], "Invalid value for '--sigma'"),
        (["--method", "gradcam"], "Did you mean 'grad_cam'"),
    ],
)
def test_explain_command_errors(tmp_path, extra, message):
    np.save(tmp_path / "a.npy", np.zeros((16, 16), dtype=np.float32))
    result = CliRunner().invoke(
        cli,
        [
            "explain",
            "tiny2d",
            str(tmp_path / "a.npy"),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
            *extra,
        ],
    )
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_layers_of_a_builtin_model_sized_by_the_input_file(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((48, 48), dtype=np.uint8)).save(tmp_path / "x.png")
    result = CliRunner().invoke(cli, ["layers", "tiny2d", "--input", str(tmp_path / "x.png")])
    assert result.exit_code == 0, result.output
    assert "* pool2" in result.output and "16×12×12" in result.output


def test_compiled_model_state_dicts_load(tmp_path):
    import torch

    from camscope.io import load_model_spec
    from camscope.models import create_model

    model = create_model("tiny2d", num_classes=3)
    compiled = torch.compile(model, backend="eager")
    torch.save(compiled.state_dict(), tmp_path / "w.pt")  # keys start with _orig_mod.
    loaded, _ = load_model_spec(
        str(tmp_path / "w.pt"), architecture="tiny2d", options={"num_classes": 3}
    )
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_python_dash_m_camscope_is_the_command_line():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "camscope", "methods"], capture_output=True, text=True, check=True
    )
    assert "grad-cam" in done.stdout and "deeplift" in done.stdout


def test_warnings_are_one_line_on_stderr(tmp_path, capsys):
    """A warning from the library reads as one line (Python's format adds the source line that
    raised it); camscope's own keep their text, others say their category."""
    import warnings

    np.save(tmp_path / "a.npy", np.random.default_rng(0).random((16, 16), dtype=np.float32))
    args = ["explain", "tiny2d", str(tmp_path / "a.npy"), "--out", str(tmp_path / "out")]
    args += ["--quiet", "--method", "lime", "--option", "max_iter=1", "--option", "alpha=1e-6"]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if "stopped before converging" in line]
    assert len(said) == 1 and said[0].startswith("camscope: lime: scikit-learn's Lasso")
    assert "RuntimeWarning" not in result.output and "warnings.warn" not in result.output
    import json

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [w[: len("camscope: lime: ")] for w in manifest["warnings"]] == ["camscope: lime: "]
    assert 'id="warnings"' in (tmp_path / "out" / "report.html").read_text()
    from camscope.cli.main import _one_line

    _one_line(UserWarning("not ours"), UserWarning, "file.py", 3)
    assert capsys.readouterr().err == "warning (UserWarning): not ours\n"
