"""The Respond-CAM reproduction pipeline at its smoke scale (seconds), and its table."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from click.testing import CliRunner

from camscope.cli.main import cli
from camscope.reproduce.respond_cam import PAPER_TABLE, SCALES, format_table

KEYS = ["model", "snr", "accuracy", "n_test", "l1_grad", "l1_respond", "kt_grad", "kt_respond"]


@pytest.mark.slow
def test_smoke_run_writes_results_report_and_figures(tmp_path):
    out = tmp_path / "rc"
    result = CliRunner().invoke(
        cli, ["reproduce", "respond-cam", "--scale", "smoke", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["model"], r["snr"]) for r in rows] == [("CNN-2", "inf"), ("CNN-2", 0.1)]
    for row in rows:
        for key in KEYS:
            assert key in row and (
                key in ("model", "snr") or f"{key}_std" in row or key in ("accuracy", "n_test")
            )
        # The layer is followed by Flatten → fc1 → ReLU → fc2 → ReLU → fc3 (zero biases at init,
        # one epoch of training): Respond-CAM's totals track the logits far better than Grad-CAM's.
        assert row["l1_respond"] < row["l1_grad"]
        assert row["kt_respond"] > 0.9
        assert row["n_test"] == 46
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "paper CNN-2" in page
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "figure3_cnn2_snr-0.1.png",
        "figure3_cnn2_snr-inf.png",
        "figure4_cnn2_snr-0.1.png",
        "figure4_cnn2_snr-inf.png",
    ]
    rerun = CliRunner().invoke(
        cli,
        ["reproduce", "respond-cam", "--scale", "smoke", "--out", str(out), "--quiet", "--force"],
    )
    assert rerun.exit_code == 0 and rerun.output.count("reused the trained model") == 2


def test_refuses_to_overwrite_and_bad_snr(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    result = CliRunner().invoke(
        cli, ["reproduce", "respond-cam", "--scale", "smoke", "--out", str(tmp_path), "--quiet"]
    )
    assert result.exit_code == 2 and "--force" in result.output
    bad = CliRunner().invoke(
        cli,
        [
            "reproduce",
            "respond-cam",
            "--scale",
            "smoke",
            "--out",
            str(tmp_path / "x"),
            "--snr",
            "loud",
        ],
    )
    assert bad.exit_code == 2 and "Invalid value for '--snr'" in bad.output


def test_table_prints_paper_rows_beside_ours():
    row = {"model": "CNN-1 (8/16 channels)", "snr": 0.1, "accuracy": 0.5}
    for key in ("l1_grad", "l1_respond", "kt_grad", "kt_respond"):
        row[key], row[f"{key}_std"] = 1.0, 0.1
    text = format_table([row])
    assert "paper CNN-1" in text and "21.142 ± 8.511" in text


def test_scales_are_consistent():
    assert set(PAPER_TABLE) == {(m, s) for m in ("CNN-1", "CNN-2") for s in (math.inf, 0.1)}
    assert SCALES["paper"].test_per_class == 200
    assert all(spec.per_class == 800 for spec in SCALES["paper"].models)


@pytest.mark.slow
def test_lazy_training_set_gives_the_same_results(tmp_path, monkeypatch):
    from camscope.reproduce import respond_cam

    config = dataclasses.replace(SCALES["smoke"], snrs=(math.inf,))
    in_memory = respond_cam.reproduce_table(
        tmp_path / "a", config, progress=False, log=lambda *_: None
    )
    monkeypatch.setattr(respond_cam, "IN_MEMORY_BYTES", 0)
    messages: list[str] = []
    lazy = respond_cam.reproduce_table(tmp_path / "b", config, progress=False, log=messages.append)
    assert any("simulated lazily" in m for m in messages)
    assert lazy == in_memory


@pytest.mark.slow
def test_two_runs_on_one_machine_are_identical_and_noisy_rows_start_warm(tmp_path):
    from camscope.reproduce import respond_cam

    first = respond_cam.reproduce_table(
        tmp_path / "a", SCALES["smoke"], progress=False, log=lambda *_: None
    )
    second = respond_cam.reproduce_table(
        tmp_path / "b", SCALES["smoke"], progress=False, log=lambda *_: None
    )
    assert first == second
    assert [(row["snr"], row["warm_start"]) for row in first] == [("inf", False), (0.1, True)]
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["precision"] in ("float32", "bfloat16") and results["cpu"]


def test_precision_and_device_are_checked():
    import torch

    from camscope.reproduce.respond_cam import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("float32", cpu) == "float32"
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert resolve_precision("auto", cpu) == ("bfloat16" if native else "float32")
    args = ["reproduce", "respond-cam", "--scale", "smoke", "--quiet", "--out"]
    for device, message in (("tpu9", "use cpu or cuda"), ("cuda", "CUDA is not available")):
        if device == "cuda" and torch.cuda.is_available():
            continue
        result = CliRunner().invoke(cli, [*args, "out", "--device", device])
        assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.slow
def test_a_vit_row_is_measured_at_its_own_layer(tmp_path):
    """The transformer scale's ViT: sum-to-score at the input of its last block, Figure 4 at
    every block; a tiny version of it runs end to end."""
    from camscope.reproduce import respond_cam

    vit = SCALES["transformer"].models[1]
    assert vit.architecture == "vit3d" and vit.layer == "blocks.3.norm1"
    tiny = dataclasses.replace(vit, per_class=2, epochs=1, batch_size=16)
    config = dataclasses.replace(SCALES["smoke"], models=(tiny,), snrs=(math.inf,))
    rows = respond_cam.reproduce_table(tmp_path, config, progress=False, log=lambda *_: None)
    assert rows[0]["layer"] == "blocks.3.norm1" and rows[0]["model"].startswith("ViT")
    assert math.isfinite(rows[0]["l1_respond"]) and -1 <= rows[0]["kt_respond"] <= 1
    assert (tmp_path / "figures" / "figure4_vit3d_snr-inf.png").stat().st_size > 10_000
