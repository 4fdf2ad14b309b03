"""evaluate(): methods × upsampling × metrics on simulated subtomograms with known masks."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import camscope
from camscope.cli.main import cli
from camscope.errors import CamscopeError
from camscope.evaluation import evaluate
from camscope.io.checkpoints import save_model
from camscope.models import create_model
from camscope.simulate import SimulationConfig, Simulator


def test_particle_mask_is_where_the_particle_is():
    simulator = Simulator(SimulationConfig(size=24, n_classes=4))
    mask = simulator.particle_mask(2, 3)
    clean = -simulator.sample(2, 3)[float("inf")]  # particles are dark: negate back
    assert 0.01 < mask.mean() < 0.5
    assert clean[mask].mean() > clean[~mask].mean() + 1.0


@pytest.mark.slow
def test_rows_have_every_metric_within_bounds():
    torch.manual_seed(0)
    simulator = Simulator(SimulationConfig(size=16, n_classes=4))
    items = [(c, i) for i in range(2) for c in range(4)]
    x = torch.from_numpy(np.stack([simulator.sample(c, i)[float("inf")] for c, i in items]))[
        :, None
    ]
    y = torch.tensor([c for c, _ in items])
    masks = torch.from_numpy(np.stack([simulator.particle_mask(c, i) for c, i in items]))
    model = create_model("tiny3d", num_classes=4, input_size=16)
    rows = evaluate(
        model,
        x,
        y,
        methods=["grad_cam", "respond-cam", "integrated_gradients", "occlusion"],
        truth=masks,
        upsample_modes=["linear", "gaussian"],
        batch_size=3,
        deletion_steps=4,
        progress=False,
    )
    assert [(r["method"], r["upsample"]) for r in rows] == [
        ("grad_cam", "linear"),
        ("grad_cam", "gaussian"),
        ("respond_cam", "linear"),
        ("respond_cam", "gaussian"),
        ("integrated_gradients", "none"),  # input-space: evaluated once, at input resolution
        ("occlusion", "none"),
    ]
    for row in rows:
        assert row["n"] == 8
        for key in ("average_drop", "increase", "average_drop_relative", "increase_relative"):
            assert 0 <= row[key] <= 100
        for key in ("deletion_auc", "insertion_auc", "iou", "hit", "pointing", "contrastivity"):
            assert 0 <= row[key] <= 1
        assert -1 <= row["kendall_tau"] <= 1
    respond = rows[2]
    # Flatten → Linear head: Respond-CAM's totals are exactly logit − bias, so L1 = mean |bias|
    assert respond["l1"] == pytest.approx(float(model.fc.bias.detach().abs().mean()), rel=1e-4)
    assert respond["l1_std"] == pytest.approx(0.0, abs=1e-5)
    # Integrated Gradients' totals are y(x) - y(0), so its sum-to-score L1 is |y(0)| on average.
    with torch.no_grad():
        at_zero = model(torch.zeros_like(x[:1]))
    assert rows[4]["l1"] == pytest.approx(float(at_zero.abs().mean()), rel=0.02)


@pytest.mark.slow
def test_evaluate_subtomograms_command(tmp_path):
    options = {"num_classes": 23, "input_size": 16}
    save_model(
        tmp_path / "net", create_model("tiny3d", **options), architecture="tiny3d", options=options
    )
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "subtomograms",
            "--model",
            str(tmp_path / "net.json"),
            "--per-class",
            "1",
            "--methods",
            "grad-cam,respond-cam",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Kim et al. 2020" in result.output and "respond_cam" in result.output
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 4 and rows[0]["n"] == 23
    assert (out / "plots" / "deletion_auc.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "plots" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert len(rows[0]["deletion_curve"]) == 21 and rows[0]["deletion_curve"][0] > 0
    assert (out / "results.csv").read_text().startswith("method,upsample,n,")


def test_evaluate_command_without_a_trained_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["evaluate", "subtomograms", "--quiet"])
    assert result.exit_code == 2 and "camscope reproduce respond-cam" in result.output


def test_shape_samples_know_their_box_and_mask():
    from camscope.simulate.shapes2d import SHAPE_CLASSES, shape_arrays, shape_sample

    for class_id in range(len(SHAPE_CLASSES)):
        sample = shape_sample(class_id, 7, seed=2)
        y0, x0, y1, x1 = sample.box
        assert sample.mask[y0:y1, x0:x1].any() and not sample.mask[:y0].any()
        assert not sample.mask[:, x1:].any()
        inside = sample.image[0][sample.mask].mean()
        assert inside > sample.image[0][~sample.mask].mean() + 1.0  # the object is brighter
        again = shape_sample(class_id, 7, seed=2)
        assert np.array_equal(sample.image, again.image)
    images, labels, masks, boxes = shape_arrays(2, size=32, offset=5)
    assert images.shape == (8, 1, 32, 32) and labels.tolist() == [0, 1, 2, 3] * 2
    assert masks.shape == (8, 32, 32) and boxes.shape == (8, 4)
    np.testing.assert_array_equal(images[5], shape_sample(1, 6, size=32).image)


@pytest.mark.slow
def test_evaluate_shapes_command(tmp_path):
    out = tmp_path / "shapes"
    args = [
        "evaluate",
        "shapes",
        "--train-per-class",
        "8",
        "--test-per-class",
        "2",
        "--epochs",
        "1",
        "--methods",
        "grad-cam",
        "--upsample",
        "linear",
        "--out",
        str(out),
        "--quiet",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["n"] == 8 and 0 <= rows[0]["iou"] <= 1
    again = CliRunner().invoke(cli, [*args, "--force"])
    assert again.exit_code == 0 and "(reused)" in again.output


@pytest.mark.slow
def test_evaluate_shapes_with_the_vit_and_its_attention_methods(tmp_path):
    out = tmp_path / "vit"
    args = ["evaluate", "shapes", "--network", "vit2d", "--train-per-class", "8"]
    args += ["--test-per-class", "2", "--epochs", "1", "--upsample", "linear", "--quiet"]
    args += ["--methods", "grad-cam,attention-rollout,chefer,legrad", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "vit2d (conv stem" in result.output
    record = json.loads((out / "results.json").read_text())
    rows = {row["method"]: row for row in record["rows"]}
    assert set(rows) == {"grad_cam", "attention_rollout", "chefer", "legrad"}
    assert all(0 <= row["pointing"] <= 1 and row["n"] == 8 for row in rows.values())
    assert len({round(row["deletion_auc"], 6) for row in rows.values()}) == 4  # four methods
    assert record["network"] == "vit2d"


def test_onet_is_a_real_face_classifier_with_known_boxes():
    pytest.importorskip("facenet_pytorch")
    import camscope
    from camscope.datasets.faces import FaceClassifier, astronaut_face_crops

    model = FaceClassifier()
    inputs, boxes = astronaut_face_crops(6, seed=1)
    with torch.no_grad():
        logits = model(inputs)
        reference = model.onet(inputs)[2]  # ONet's own softmax output
    torch.testing.assert_close(torch.softmax(logits, 1), reference)
    assert (reference[:, 1] > 0.9).all()  # the crops are faces to ONet
    assert ((boxes[:, 2:] - boxes[:, :2]) > 20).all() and (boxes[:, 2:] <= 48).all()
    e = camscope.explain(model, inputs, method="respond_cam", targets="all")
    assert e.layer == "onet.conv4" and e.maps.shape == (6, 2, 3, 3)


@pytest.mark.slow
def test_evaluate_faces_command(tmp_path):
    pytest.importorskip("facenet_pytorch")
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "faces",
            "--count",
            "4",
            "--methods",
            "grad-cam",
            "--upsample",
            "linear",
            "--out",
            str(tmp_path),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ONet face probability" in result.output
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert rows[0]["n"] == 4 and 0 <= rows[0]["pointing"] <= 1


def test_chest_radiograph_and_lesion_crops():
    pytest.importorskip("pydicom")
    pytest.importorskip("data_store")
    from camscope.datasets.chest import chest_radiograph, lesion_crops

    image = chest_radiograph()
    assert image.shape == (256, 256) and image.min() >= 0.0 and image.max() <= 1.0
    # MONOCHROME1 inverted: the spine (centre column) is brighter than the lung fields
    assert image[100:150, 120:136].mean() > image[100:150, 60:90].mean()
    images, labels, boxes = lesion_crops(6, seed=3)
    assert images.shape == (6, 1, 48, 48) and labels.tolist() == [0, 1] * 3
    assert (boxes[labels == 0] == 0).all()
    for image_, box in zip(images[labels == 1], boxes[labels == 1], strict=True):
        y0, x0, y1, x1 = box
        assert image_[0, y0:y1, x0:x1].mean() > image_[0].mean()  # the lesion is brighter
    again, _, _ = lesion_crops(6, seed=3)
    assert np.array_equal(images, again)


@pytest.mark.slow
def test_evaluate_chest_command(tmp_path):
    pytest.importorskip("data_store")
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "chest",
            "--train",
            "16",
            "--test",
            "6",
            "--epochs",
            "1",
            "--methods",
            "respond-cam",
            "--upsample",
            "linear",
            "--out",
            str(tmp_path),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert rows[0]["n"] == 3 and rows[0]["kendall_tau"] == pytest.approx(1.0)


def test_evaluation_resumes_from_per_sample_records(tmp_path, monkeypatch):
    import camscope

    torch.manual_seed(0)
    model = create_model("tiny2d", num_classes=3)
    x = torch.randn(4, 1, 16, 16)
    y = torch.tensor([0, 1, 2, 0])
    options = {
        "methods": ["grad_cam"],
        "batch_size": 2,
        "deletion_steps": 2,
        "progress": False,
        "out_dir": tmp_path / "partial",
    }
    first = evaluate(model, x, y, **options)
    # an interrupted run: the second batch's records are missing
    for name in ("sample2", "sample3"):
        (tmp_path / "partial" / "records" / f"{name}.json").unlink()
    calls = []
    real = camscope.explain
    monkeypatch.setattr(camscope, "explain", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = evaluate(model, x, y, **options)
    assert again == first
    assert len(calls) == 1  # only the missing batch was computed
    changed = evaluate(model, x + 1, y, **options)  # other data: nothing reused
    assert len(calls) == 3 and changed[0] != first[0]
    with pytest.raises(camscope.CamscopeError, match="other settings"):
        evaluate(model, x, y, **{**options, "methods": ["respond_cam"]})


@pytest.mark.slow
def test_simulate_then_evaluate_the_folder(tmp_path):
    data = tmp_path / "data"
    simulated = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--out",
            str(data),
            "--per-class",
            "1",
            "--size",
            "16",
            "--snr",
            "inf",
            "--snr",
            "0.5",
            "--masks",
            "--quiet",
        ],
    )
    assert simulated.exit_code == 0, simulated.output
    assert (data / "masks" / "c03_00000.npy").exists()
    options = {"num_classes": 23, "input_size": 16}
    save_model(
        tmp_path / "net", create_model("tiny3d", **options), architecture="tiny3d", options=options
    )
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "dataset",
            str(data),
            "--model",
            str(tmp_path / "net.json"),
            "--where",
            "snr=0.5",
            "--methods",
            "respond-cam",
            "--upsample",
            "linear",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert rows[0]["n"] == 23 and "iou" in rows[0]  # masks were used as ground truth
    assert len(list((out / "records").glob("*.json"))) == 23  # one record per input


def test_evaluate_folder_with_boxes_and_errors(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = ["path,label,y0,x0,y1,x1"]
    for i in range(4):
        np.save(data / f"{i}.npy", np.random.default_rng(i).standard_normal((16, 16)))
        rows.append(f"{i}.npy,{i % 3},2,2,10,10")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "eval"
    args = [
        "evaluate",
        "dataset",
        str(data),
        "--model",
        "tiny2d",
        "--methods",
        "grad-cam",
        "--upsample",
        "linear",
        "--out",
        str(out),
        "--quiet",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    row = json.loads((out / "results.json").read_text())["rows"][0]
    assert row["n"] == 4 and 0 <= row["iou"] <= 1
    report = (out / "report.html").read_text()
    assert 'id="metrics"' in report and "grad_cam" in report  # the table, self-contained
    bad = CliRunner().invoke(cli, [*args, "--where", "site=A", "--force"])
    assert bad.exit_code == 2 and "no column 'site'" in bad.output
    (tmp_path / "empty").mkdir()
    missing = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "dataset",
            str(tmp_path / "empty"),
            "--model",
            "tiny2d",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert missing.exit_code == 2 and "no readable image or volume files" in missing.output


def test_sanity_checks_separate_guided_backprop_from_gradients():
    from camscope.evaluation.sanity import sanity_check, sanity_table

    torch.manual_seed(0)
    model = create_model("tiny2d", num_classes=3, input_size=16).eval()
    control = create_model("tiny2d", num_classes=3, input_size=16).eval()
    x = torch.randn(4, 1, 16, 16)
    y = torch.tensor([0, 1, 2, 0])
    results = sanity_check(
        model,
        x,
        y,
        ["saliency", "guided_backprop", "grad_cam"],
        control=control,
        road_percentages=(20, 60),
    )
    by_name = {r.method: r for r in results}
    assert by_name["guided_backprop"].final_similarity > by_name["saliency"].final_similarity
    assert by_name["saliency"].passes
    row = by_name["grad_cam"].row()
    assert row["layers"] == ["fc", "conv2", "conv1"] and len(row["mprt_curve"]) == 3
    assert "data_randomization" in row
    table = sanity_table(results)
    assert "passes the sanity check on this model" in table and "saliency" in table


def test_sanity_command_on_your_own_data(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    for index in range(3):
        np.save(data / f"x{index}.npy", np.random.default_rng(index).random((16, 16)))
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "sanity",
            str(data),
            "--model",
            "tiny2d",
            "--methods",
            "saliency,grad-cam",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "passes the sanity check" in result.output
    report = (tmp_path / "o" / "report.html").read_text()
    assert "MPRT: similarity as layers are randomised" in report
    assert "MPRT, top layer" in report and "mprt_first" not in report  # named columns
    saved = json.loads((tmp_path / "o" / "results.json").read_text())
    settings = saved["settings"]
    assert settings["inputs"] == ["x0.npy", "x1.npy", "x2.npy"] and len(settings["targets"]) == 3
    assert settings["targets_from"] == "the predicted classes" and settings["seed"] == 0
    assert settings["randomize"] == "layers" and settings["model"] == "tiny2d"
    assert settings["intensity"] == "auto"
    assert saved["title"] == "3 inputs from d"
    rows = {row["method"]: row for row in saved["rows"]}
    assert "layer" in rows["grad_cam"] and "layer" not in rows["saliency"]  # where maps came from
    for row in rows.values():  # the verdict's number is the mean |ρ|, shown beside the mean ρ
        assert row["mprt_last_abs"] >= abs(row["mprt_last"]) - 1e-12
        assert row["passes"] == (row["mprt_last_abs"] < 0.5)
    # 3 inputs, 8 asked for, and Grad-CAM's 4×4 maps: each said, not hidden
    assert any("--count 8, but DATA holds 3" in note for note in saved["notes"])
    assert any("only 3 input(s)" in note for note in saved["notes"])
    assert any("few positions" in note and "grad_cam (16)" in note for note in saved["notes"])
    assert "note: maps with few positions" in result.output
    blocks = CliRunner().invoke(
        cli,
        ["evaluate", "sanity", str(data), "--model", "tiny2d", "--methods", "saliency",
         "--randomize", "blocks", "--intensity", "minmax", "--out", str(tmp_path / "b"),
         "--quiet"],
    )  # fmt: skip
    assert blocks.exit_code == 0, blocks.output
    assert json.loads((tmp_path / "b" / "results.json").read_text())["settings"]["intensity"] == (
        "minmax"
    )
    rows = json.loads((tmp_path / "b" / "results.json").read_text())["rows"]
    model = create_model("tiny2d")
    expected = camscope.metrics.randomizable_blocks(model, torch.zeros(1, 1, 16, 16))
    assert rows[0]["layers"] == expected and expected
    missing = CliRunner().invoke(cli, ["evaluate", "sanity", "--out", str(tmp_path / "p")])
    assert missing.exit_code == 2 and "--benchmark" in missing.output
    architecture = CliRunner().invoke(
        cli,
        ["evaluate", "sanity", str(data), "--model", "torchvision:resnet18", "--out",
         str(tmp_path / "q")],
    )  # fmt: skip
    assert architecture.exit_code == 2 and "give it with --architecture" in architecture.output
    for methods, message in (("saliency", "none of --methods takes a layer"), ("grad-cam", "nope")):
        unused = CliRunner().invoke(
            cli,
            ["evaluate", "sanity", str(data), "--model", "tiny2d", "--methods", methods,
             "--layer", "nope", "--out", str(tmp_path / "r")],
        )  # fmt: skip
        assert unused.exit_code == 2 and message in unused.output, unused.output
        assert "Traceback" not in unused.output


def test_sanity_command_on_a_torchscript_model_skips_what_cannot_run(tmp_path, monkeypatch):
    import warnings

    monkeypatch.chdir(tmp_path)

    data = tmp_path / "d"
    data.mkdir()
    for index in range(4):
        np.save(data / f"x{index}.npy", np.random.default_rng(index).random((16, 16)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        scripted = torch.jit.script(create_model("tiny2d", num_classes=3, input_size=16).eval())
        torch.jit.save(scripted, str(tmp_path / "net.pt"))
    result = CliRunner().invoke(
        cli,
        ["evaluate", "sanity", str(data), "--model", str(tmp_path / "net.pt"), "--methods",
         "saliency,grad-cam,guided-backprop", "--out", str(tmp_path / "o"), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [row["method"] for row in saved["rows"]] == ["saliency"]
    assert sorted(saved["does_not_apply"]) == ["grad_cam", "guided_backprop"]
    assert all(
        "TorchScript runs no Python hooks" in why for why in saved["does_not_apply"].values()
    )
    assert "Does not apply to this model (TorchScript" in saved["verdict"]
    nothing = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "sanity",
            "d",
            "--model",
            str(tmp_path / "net.pt"),
            "--methods",
            "grad-cam",
            "--out",
            str(tmp_path / "n"),
            "--quiet",
        ],
    )  # fmt: skip  (DATA relative to the working folder; every method skipped)
    assert nothing.exit_code == 0, nothing.output
    assert (tmp_path / "n" / "report.html").exists()
    saved = json.loads((tmp_path / "n" / "results.json").read_text())
    assert saved["rows"] == [] and saved["settings"]["inputs"][0] == "x0.npy"


def test_sanity_command_mistakes_are_one_line(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    np.save(data / "a.npy", np.zeros((16, 16), dtype=np.float32))
    np.save(data / "b.npy", np.zeros((20, 20), dtype=np.float32))
    runner = CliRunner()
    mixed = runner.invoke(
        cli, ["evaluate", "sanity", str(data), "--model", "tiny2d", "--out", str(tmp_path / "o")]
    )
    assert mixed.exit_code == 2 and "different shapes" in mixed.output
    (data / "b.npy").unlink()
    wrong = runner.invoke(
        cli, ["evaluate", "sanity", str(data), "--model", "tiny3d", "--out", str(tmp_path / "p")]
    )
    assert wrong.exit_code == 2 and "the model raised" in wrong.output
    both = runner.invoke(
        cli,
        [
            "evaluate",
            "sanity",
            str(data),
            "--model",
            "tiny2d",
            "--benchmark",
            "faces",
            "--out",
            str(tmp_path / "q"),
        ],
    )
    assert both.exit_code == 2 and "not both" in both.output
    zero = runner.invoke(
        cli,
        [
            "evaluate",
            "sanity",
            str(data),
            "--model",
            "tiny2d",
            "--count",
            "0",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert zero.exit_code == 2 and "Traceback" not in zero.output


@pytest.mark.slow
def test_subtomogram_data_randomisation_control_fits_its_permuted_labels(tmp_path, monkeypatch):
    from camscope.evaluation import testbeds
    from camscope.io.checkpoints import read_checkpoint
    from camscope.reproduce import respond_cam

    config = dataclasses.replace(respond_cam.SCALES["smoke"], snrs=(math.inf,))
    respond_cam.reproduce_table(tmp_path / "rc", config, progress=False, log=lambda *_: None)
    stem = tmp_path / "rc" / "models" / "cnn2_snr-inf"
    monkeypatch.setattr(testbeds, "CONTROL_PER_CLASS", 4)  # smaller and shorter than the
    monkeypatch.setattr(testbeds, "CONTROL_EPOCHS", 30)  # real control, for the test's time
    lines: list[str] = []
    built = testbeds.subtomograms(
        tmp_path / "sanity",
        log=lines.append,
        quiet=True,
        model_path=str(stem),
        snr=math.inf,
        per_class=1,
        offset=1000,
        control=True,
    )
    assert built.control is not None and not built.control.training
    # Adebayo's control memorises its labels (the reproduction's 6 epochs on all data did not).
    fit = built.extra["control"]
    assert fit["n_train"] == 4 * 23 and fit["epochs"] == 30
    assert fit["train_accuracy"] >= 0.9, fit
    assert any("fits" in line and "92 training labels" in line for line in lines)
    saved = read_checkpoint(tmp_path / "sanity" / "model" / "cnn2-permuted-labels")
    original = read_checkpoint(stem)
    identity, reference = saved.metadata["identity"], original.metadata["identity"]
    assert identity["labels"] == "permuted, seed 0" and identity["n_train"] == 92
    assert identity["training"] == {**reference["training"], "epochs": 30}  # else the same
    assert identity["simulation"] == reference["simulation"]
    different = any(
        not torch.equal(a, b)
        for a, b in zip(
            built.control.state_dict().values(), built.model.state_dict().values(), strict=True
        )
    )
    assert different


def test_control_note_says_when_the_control_has_not_fitted():
    from camscope.evaluation.sanity import control_note

    fitted = control_note({"n_train": 230, "epochs": 60, "train_accuracy": 1.0})
    assert "230 inputs" in fitted and "fits 100%" in fitted and "weaker" not in fitted
    unfitted = control_note({"n_train": 6900, "epochs": 6, "train_accuracy": 0.05})
    assert "fits 5%" in unfitted and "weaker control" in unfitted


def test_subtomogram_control_needs_a_reproduction_model(tmp_path):
    from camscope.evaluation import testbeds

    options = {"num_classes": 23, "input_size": 16}
    save_model(
        tmp_path / "net", create_model("tiny3d", **options), architecture="tiny3d", options=options
    )
    with pytest.raises(CamscopeError, match="trained by `camscope reproduce"):
        testbeds.subtomograms(
            tmp_path,
            log=lambda *_: None,
            quiet=True,
            model_path=str(tmp_path / "net"),
            snr=math.inf,
            per_class=1,
            offset=1000,
            control=True,
        )


@pytest.mark.slow
def test_evaluate_shapes_with_a_sanity_section(tmp_path):
    out = tmp_path / "shapes"
    args = ["evaluate", "shapes", "--train-per-class", "8", "--test-per-class", "2", "--epochs",
            "1", "--methods", "grad-cam,grad-cam-pp", "--upsample", "linear", "--sanity",
            "--out", str(out), "--quiet"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    sanity = saved.get("sanity") or saved.get("extra", {}).get("sanity")
    assert [row["method"] for row in sanity] == ["grad_cam", "grad_cam_pp"]
    assert all("data_randomization" in row for row in sanity)  # the control was trained
    note = saved.get("sanity_control") or saved.get("extra", {}).get("sanity_control")
    assert note.startswith("trained 1 epochs on 32 inputs with permuted labels; fits ")
    assert sorted(p.name for p in (out / "plots").glob("sanity_*.png")) == [
        "sanity_mprt_curves.png",
        "sanity_mprt_maps.png",
    ]
    page = (out / "report.html").read_text()
    assert "<h2>Sanity checks</h2>" in page and "MPRT, top layer" in page  # a table of its own
    assert "passes the sanity check on this model" in page
    assert "with permuted labels; fits" in page  # how well the control fits its labels


@pytest.mark.slow
def test_sanity_on_the_faces_benchmark_with_input_space_methods_only(tmp_path):
    pytest.importorskip("facenet_pytorch")
    # the benchmark's own layer (onet.prelu4) is its default, not a --layer the user gave
    result = CliRunner().invoke(
        cli,
        ["evaluate", "sanity", "--benchmark", "faces", "--methods", "saliency", "--count", "2",
         "--out", str(tmp_path / "o"), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "o" / "results.json").read_text())
    assert saved["title"].startswith("2 of ONet") and saved["settings"]["layer"] == "onet.prelu4"
    assert any("only 2 input(s)" in note for note in saved["notes"])


def test_evaluate_and_mprt_take_a_layout_for_a_model_that_states_none():
    """A token model camscope does not know: refused without ``layout=``, scored with it (the
    text form too), and the randomisation tests take it as explain() does."""
    from tests.nets import Tokens

    torch.manual_seed(0)
    model = Tokens().eval()
    x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 0])
    with pytest.raises(CamscopeError, match=r"pass layout=camscope\.tokens"):
        evaluate(model, x, y, methods=["grad_cam"], layer="block", progress=False)
    rows = evaluate(
        model, x, y, methods=["grad_cam"], layer="block", layout="tokens:4x4:1", progress=False
    )
    assert rows[0]["n"] == 4 and math.isfinite(rows[0]["deletion_auc"])
    layout = camscope.tokens((4, 4), prefix=1)
    assert layout.text == "tokens:4x4:1"
    test = camscope.metrics.mprt(model, x, method="grad_cam", layer="block", layout=layout)
    assert len(test.layers) >= 2


def test_an_interrupted_sanity_run_continues_with_the_methods_it_had_not_checked(
    tmp_path, monkeypatch
):
    import importlib
    import warnings

    from camscope.engine.relay import warn

    sanity_module = importlib.import_module("camscope.evaluation.sanity")
    data = tmp_path / "d"
    data.mkdir()
    for index in range(2):
        np.save(data / f"x{index}.npy", np.random.default_rng(index).random((16, 16)))
    out = tmp_path / "o"
    args = ["evaluate", "sanity", str(data), "--model", "tiny2d", "--out", str(out)]
    args += ["--methods", "saliency,grad-cam"]
    real = sanity_module.mprt

    def stopping(model, inputs, method, **options):
        if method == "grad_cam":
            raise KeyboardInterrupt  # the user stops the run during the second method
        warn("camscope: said while checking saliency")
        return real(model, inputs, method=method, **options)

    monkeypatch.setattr(sanity_module, "mprt", stopping)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        stopped = CliRunner().invoke(cli, [*args, "--quiet"])
    assert stopped.exit_code == 130 and "interrupted" in stopped.output
    assert "the checks of 1 of 2 methods are saved in" in stopped.output
    assert "(saliency); the same command goes on from there" in stopped.output
    assert (out / "checked" / "saliency.safetensors").exists()
    assert not (out / "results.json").exists()
    monkeypatch.setattr(sanity_module, "mprt", real)
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "resuming: 1 of 2 methods were checked by an interrupted run" in again.output
    said = json.loads((out / "results.json").read_text())["warnings"]
    assert said == ["camscope: said while checking saliency"]  # the first run's, kept
    rows = {row["method"]: row for row in json.loads((out / "results.json").read_text())["rows"]}
    whole = ["evaluate", "sanity", str(data), "--model", "tiny2d", "--out", str(tmp_path / "f")]
    fresh = CliRunner().invoke(cli, [*whole, "--methods", "saliency,grad-cam"])
    assert fresh.exit_code == 0 and "resuming" not in fresh.output
    expected = json.loads((tmp_path / "f" / "results.json").read_text())["rows"]
    assert [rows[row["method"]] for row in expected] == expected  # the same as one whole run
    assert not (out / "checked").exists()  # a finished run keeps its results, not its checks
    cli_sanity = importlib.import_module("camscope.cli.sanity")

    def stopped_writing(*_, **__):
        raise KeyboardInterrupt  # the run stops after its checks

    monkeypatch.setattr(cli_sanity, "_write_outputs", stopped_writing)
    other = CliRunner().invoke(cli, [*args, "--seed", "1", "--force"])  # another job
    assert other.exit_code == 130 and "resuming" not in other.output
    monkeypatch.undo()
    for name in ("results.json", "report.html"):  # the first job's
        (out / name).unlink()
    (out / "checked" / "grad_cam.safetensors").write_bytes(b"torn")  # unreadable: checked again
    torn = CliRunner().invoke(cli, [*args, "--seed", "1"])
    assert torn.exit_code == 0 and "resuming: 1 of 2 methods" in torn.output
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from camscope.evaluation.sanity_store import _digest

    def altered(tensors, metadata):
        tensors["road_gap"] += 1  # changed by hand after it was saved: checked again

    def incomplete(tensors, metadata):
        del tensors["steps"]  # the right job and digest, but incomplete: checked again
        metadata["sha256"] = _digest(tensors)

    for damage in (altered, incomplete):
        monkeypatch.setattr(cli_sanity, "_write_outputs", stopped_writing)
        CliRunner().invoke(cli, [*args, "--seed", "1", "--force"])  # both checks saved again
        monkeypatch.undo()
        saved = out / "checked" / "saliency.safetensors"
        with safe_open(str(saved), framework="pt") as stored:
            metadata = stored.metadata()
        tensors = load_file(str(saved))
        damage(tensors, metadata)
        save_file(tensors, str(saved), metadata=metadata)
        for name in ("results.json", "report.html"):
            (out / name).unlink(missing_ok=True)
        rerun = CliRunner().invoke(cli, [*args, "--seed", "1", "--quiet"])
        assert rerun.exit_code == 0, rerun.output
        assert "resuming: 1 of 2" in rerun.output and "(grad_cam;" in rerun.output


def test_a_saved_check_brings_back_the_warnings_said_while_it_ran(tmp_path):
    from camscope.engine.relay import said_once, said_so_far
    from camscope.evaluation.sanity import SanityResult
    from camscope.evaluation.sanity_store import load_checked, save_checked

    def result(method):
        return SanityResult(
            method,
            ["fc"],
            torch.zeros(2, 1),
            torch.zeros(2),
            torch.zeros(2),
            None,
            torch.zeros(2, 4),
            torch.zeros(1, 2, 4),
        )

    save_checked(tmp_path, result("lrp"), "job", ["camscope: lrp has no rule for layer_norm"])
    save_checked(tmp_path, result("saliency"), "job", [])

    @said_once
    def resume(methods):
        return list(load_checked(tmp_path, methods, "job")), said_so_far()

    assert resume(["saliency"]) == (["saliency"], [])  # only the warnings of what it takes over
    assert resume(["lrp", "saliency"]) == (
        ["lrp", "saliency"],
        ["camscope: lrp has no rule for layer_norm"],
    )
