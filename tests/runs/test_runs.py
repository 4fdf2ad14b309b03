"""Dataset-scale runs: datasets from folders/globs/CSVs, read-ahead, fixed batches, per-input
records, resuming, the evaluation summary from records, and the Ray backend."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from camscope import InputError
from camscope.cli.main import cli
from camscope.evaluation import evaluate_files
from camscope.io.checkpoints import load_model, save_model
from camscope.models import create_model
from camscope.runs import ExplainSettings, explain_files, resolve_dataset
from camscope.runs.loader import read_ahead

RNG = np.random.default_rng(0)


@pytest.fixture
def data(tmp_path):
    options = {"num_classes": 3, "input_size": 16}
    save_model(
        tmp_path / "net", create_model("tiny3d", **options), architecture="tiny3d", options=options
    )
    folder = tmp_path / "data"
    for sub in ("s1", "s2"):
        (folder / sub).mkdir(parents=True)
        for index in range(5):
            volume = RNG.standard_normal((16, 16, 16)).astype(np.float32)
            np.save(folder / sub / f"v{index}.npy", volume)
    rows = ["path,label"] + [f"{sub}/v{i}.npy,{i % 3}" for sub in ("s1", "s2") for i in range(5)]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_datasets_from_folder_glob_csv_and_files(data):
    # a folder with labels.csv is that manifest; without it, every readable file below it
    folder = resolve_dataset([str(data / "data")])
    assert len(folder) == 10 and folder.labels == [0, 1, 2, 0, 1] * 2
    (data / "data" / "labels.csv").rename(data / "labels.csv")
    folder = resolve_dataset([str(data / "data")])
    assert len(folder) == 10 and folder.labels is None and folder.paths == sorted(folder.paths)
    (data / "labels.csv").rename(data / "data" / "labels.csv")
    pattern = resolve_dataset([str(data / "data" / "s1" / "*.npy")])
    assert len(pattern) == 5
    table = resolve_dataset([str(data / "data" / "labels.csv")])
    assert table.labels == [0, 1, 2, 0, 1] * 2 and table.paths[5].endswith("s2/v0.npy")
    files = resolve_dataset(
        [str(data / "data" / "s1" / "v0.npy"), str(data / "data" / "s2" / "v0.npy")]
    )
    assert files.root is None and len(files) == 2
    with pytest.raises(InputError, match="no file matches"):
        resolve_dataset([str(data / "nothing" / "*.npy")])
    (data / "empty").mkdir()
    with pytest.raises(InputError, match="no readable"):
        resolve_dataset([str(data / "empty")])
    (data / "bad.csv").write_text("file\nx.npy\n")
    with pytest.raises(InputError, match="'path' column"):
        resolve_dataset([str(data / "bad.csv")])


def test_read_ahead_keeps_order_and_reports_errors():
    def read(index: int) -> str:
        time.sleep(0.01 * (5 - index))  # later files finish first
        if index == 3:
            raise InputError("broken 3")
        return f"read {index}"

    results = list(read_ahead([0, 2, 3, 4, 5], read, workers=3, depth=2))
    assert [i for i, _ in results] == [0, 2, 3, 4, 5]
    assert results[0][1] == "read 0" and isinstance(results[2][1], InputError)
    assert list(read_ahead([1], read, workers=0)) == [(1, "read 1")]


def test_manifest_paths_stay_inside_its_folder_unless_allowed(data):
    outside = data / "outside.npy"
    np.save(outside, np.zeros((8, 8), dtype=np.float32))
    (data / "data" / "escape.csv").write_text("path,label\n../outside.npy,1\n")
    with pytest.raises(InputError, match="outside the manifest's folder"):
        resolve_dataset([str(data / "data" / "escape.csv")])
    allowed = resolve_dataset([str(data / "data" / "escape.csv")], allow_outside=True)
    assert allowed.paths == [str(outside.resolve())]
    (data / "data" / "blank.csv").write_text("path,label\ns1/v0.npy,\n")
    blank = resolve_dataset([str(data / "data" / "blank.csv")])  # fine unless labels are used
    with pytest.raises(InputError, match="line 2: column 'label' must hold a class index"):
        blank.require_labels()


def test_output_folder_inside_the_inputs_is_never_an_input(data):
    (data / "data" / "labels.csv").unlink()
    out = data / "data" / "out"
    out.mkdir()
    np.save(out / "heat.npy", np.zeros((8, 8), dtype=np.float32))
    assert len(resolve_dataset([str(data / "data")], exclude=[str(out)])) == 10
    assert len(resolve_dataset([str(data / "data")])) == 11


def test_dicom_files_without_extension_are_found(tmp_path):
    pydicom_data = pytest.importorskip("pydicom.data")
    source = Path(pydicom_data.get_testdata_file("CT_small.dcm"))
    (tmp_path / "scan").mkdir()
    (tmp_path / "scan" / "IM0001").write_bytes(source.read_bytes())
    (tmp_path / "scan" / "README").write_text("not an image")
    dataset = resolve_dataset([str(tmp_path / "scan")])
    assert [Path(p).name for p in dataset.paths] == ["IM0001"]
    from camscope.io import read_image

    assert read_image(tmp_path / "scan" / "IM0001").format == "dicom"


def test_subfolders_name_outputs_and_batches_equal_single_inputs(data):
    model, _ = load_model(data / "net")
    dataset = resolve_dataset([str(data / "data")])
    settings = ExplainSettings(methods=["respond_cam"], formats=[], report=False, batch_size=4)
    summary = explain_files(
        model, dataset.paths, data / "out", settings, root=dataset.root, progress=False
    )
    assert sorted(summary.done) == sorted(f"{s}__v{i}" for s in ("s1", "s2") for i in range(5))
    single = ExplainSettings(methods=["respond_cam"], formats=[], report=False, batch_size=1)
    explain_files(model, dataset.paths, data / "one", single, root=dataset.root, progress=False)
    for name in summary.done:
        batched = np.load(data / "out" / f"{name}.respond_cam.npz")["maps"]
        alone = np.load(data / "one" / f"{name}.respond_cam.npz")["maps"]
        np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-7)


def test_label_targets_from_a_manifest(data):
    result = CliRunner().invoke(
        cli,
        [
            "explain",
            str(data / "net.json"),
            str(data / "data" / "labels.csv"),
            "--out",
            str(data / "o"),
            "--targets",
            "label",
            "--format",
            "none",
            "--no-report",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((data / "o" / "manifest.json").read_text())
    assert [r["results"]["respond_cam"]["targets"] for r in manifest["inputs"]] == [
        [f"class{i % 3}"] for _ in range(2) for i in range(5)
    ]
    assert [r["label"] for r in manifest["inputs"]] == [0, 1, 2, 0, 1] * 2


@pytest.mark.slow
def test_evaluation_summary_comes_from_records_and_resumes(data):
    model, _ = load_model(data / "net")
    dataset = resolve_dataset([str(data / "data" / "labels.csv")])
    options = {
        "methods": ["grad_cam", "saliency"],
        "batch_size": 4,
        "deletion_steps": 4,
        "progress": False,
    }
    rows, _ = evaluate_files(
        model, dataset.paths, dataset.labels, data / "e", root=dataset.root, **options
    )
    assert [(r["method"], r["upsample"], r["n"]) for r in rows] == [
        ("grad_cam", "linear", 10),
        ("saliency", "none", 10),
    ]
    # the same as the in-memory evaluation of the same batches
    from camscope.evaluation import evaluate

    x = torch.stack([torch.from_numpy(np.load(p)) for p in dataset.paths])[:, None]
    direct = evaluate(
        model,
        x,
        torch.tensor(dataset.labels),
        methods=["grad_cam"],
        batch_size=4,
        deletion_steps=4,
        progress=False,
    )
    for key in ("average_drop", "deletion_auc", "kendall_tau", "contrastivity"):
        assert rows[0][key] == pytest.approx(direct[0][key], rel=1e-9, abs=1e-12)
    # lose some records (as a killed run would) and run again: the same table
    for name in ("s1__v3", "s2__v4"):
        (data / "e" / "records" / f"{name}.json").unlink()
    again, _ = evaluate_files(
        model, dataset.paths, dataset.labels, data / "e", root=dataset.root, **options
    )
    assert again == rows


@pytest.mark.slow
def test_evaluate_dataset_command_with_a_broken_input(data):
    (data / "data" / "s2" / "v4.npy").write_bytes(b"broken")
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "dataset",
            str(data / "data"),
            "--model",
            str(data / "net.json"),
            "--methods",
            "respond-cam",
            "--upsample",
            "linear",
            "--out",
            str(data / "e"),
            "--quiet",
        ],
    )
    assert result.exit_code == 1 and "skipped" in result.output
    results = json.loads((data / "e" / "results.json").read_text())
    assert results["rows"][0]["n"] == 9
    manifest = json.loads((data / "e" / "manifest.json").read_text())
    assert manifest["failed"][0]["path"].endswith("v4.npy") and manifest["n_evaluated"] == 9
    report = (data / "e" / "report.html").read_text()
    assert report.count('<h2 class="input">') == 4  # a few inputs with their maps
    assert "Kim et al. 2020" not in result.output  # VGG-16's numbers only beside the benchmarks
    assert "insertion_auc" in result.output  # headers never cut


def test_unknown_backend(data):
    model, _ = load_model(data / "net")
    settings = ExplainSettings(methods=["respond_cam"], formats=[], report=False)
    with pytest.raises(Exception, match="unknown backend"):
        explain_files(
            model,
            [str(data / "data" / "s1" / "v0.npy")],
            data / "o",
            settings,
            backend="spark",
            progress=False,
        )


@pytest.mark.slow
def test_ray_backend_gives_the_local_results(data):
    pytest.importorskip("ray")
    args = [
        "explain",
        str(data / "net.json"),
        str(data / "data"),
        "--method",
        "respond-cam,saliency",
        "--format",
        "nifti",
        "--batch-size",
        "3",
        "--quiet",
    ]
    local = CliRunner().invoke(cli, [*args, "--out", str(data / "local")])
    assert local.exit_code == 0, local.output
    ray_run = CliRunner().invoke(
        cli, [*args, "--out", str(data / "ray"), "--backend", "ray", "--workers", "2"]
    )
    assert ray_run.exit_code == 0, ray_run.output
    a = {
        p.relative_to(data / "local"): p.read_bytes()
        for p in (data / "local").rglob("*")
        if p.is_file()
    }
    b = {
        p.relative_to(data / "ray"): p.read_bytes()
        for p in (data / "ray").rglob("*")
        if p.is_file()
    }
    assert a.keys() == b.keys()
    for name, content in a.items():
        if name.suffix in (".npz", ".gz"):
            assert b[name] == content, name  # byte-identical maps and heatmaps
    manifest = json.loads((data / "ray" / "manifest.json").read_text())
    assert manifest["backend"] == "ray" and len(manifest["inputs"]) == 10


def _explain(model, paths, out, **options):
    settings = ExplainSettings(methods=["respond_cam"], formats=["npy"], report=False)
    return explain_files(model, paths, out, settings, progress=False, **options)


def test_resume_identifies_inputs_by_content_not_name(tmp_path):
    model = create_model("tiny3d", num_classes=3, input_size=16)
    for folder in ("in1", "in2"):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "scan.npy", RNG.standard_normal((16, 16, 16)).astype("f4"))
    first = _explain(model, [tmp_path / "in1" / "scan.npy"], tmp_path / "same")
    second = _explain(model, [tmp_path / "in2" / "scan.npy"], tmp_path / "same")
    assert first.done == ["scan"] and second.done == ["scan"] and not second.resumed
    maps = np.load(tmp_path / "same" / "scan.respond_cam.npz")["maps"]
    direct = camscope_explain(model, tmp_path / "in2" / "scan.npy")
    np.testing.assert_allclose(maps, direct, rtol=1e-5, atol=1e-6)
    third = _explain(model, [tmp_path / "in2" / "scan.npy"], tmp_path / "same")
    assert third.resumed == ["scan"] and not third.done


def camscope_explain(model, path):
    import camscope

    x = torch.from_numpy(np.load(path))[None, None]
    return camscope.explain(model, x, method="respond_cam").maps[0].numpy()


def test_other_weights_are_refused_and_force_removes_the_previous_outputs(tmp_path):
    from camscope.io.atomic import OutputError

    torch.manual_seed(0)
    a = create_model("tiny3d", num_classes=3, input_size=16)
    b = create_model("tiny3d", num_classes=3, input_size=16)
    paths = []
    for index in range(2):
        paths.append(tmp_path / f"v{index}.npy")
        np.save(paths[-1], RNG.standard_normal((16, 16, 16)).astype("f4"))
    _explain(a, paths, tmp_path / "out")
    with pytest.raises(OutputError, match="another model"):
        _explain(b, paths, tmp_path / "out")
    _explain(b, paths[:1], tmp_path / "out", force=True)
    left = sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert not any(name.startswith("v1") for name in left), left  # nothing stale of v1


def test_builtin_models_are_seeded():
    from camscope.io import load_model_spec

    one, record = load_model_spec("cnn2")
    two, _ = load_model_spec("cnn2")
    for key, value in one.state_dict().items():
        assert torch.equal(value, two.state_dict()[key]), key
    assert "seed" in str(record.get("weights", ""))


def test_a_wrong_shape_input_is_a_failure_not_the_end_of_the_run(tmp_path):
    model = create_model("tiny3d", num_classes=3, input_size=16)
    np.save(tmp_path / "good.npy", RNG.standard_normal((16, 16, 16)).astype("f4"))
    np.save(tmp_path / "flat.npy", RNG.standard_normal((16, 16)).astype("f4"))
    summary = _explain(model, [tmp_path / "flat.npy", tmp_path / "good.npy"], tmp_path / "out")
    assert summary.done == ["good"] and summary.failed[0]["path"].endswith("flat.npy")
    with pytest.raises(InputError):
        _explain(model, [tmp_path / "flat.npy"], tmp_path / "only-bad")
    assert not (tmp_path / "only-bad").exists()  # no empty records/ left behind


def test_one_bad_label_fails_only_its_input_and_failures_are_not_redone(tmp_path):
    model = create_model("tiny3d", num_classes=3, input_size=16)
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("a", "b", "c"):
        np.save(folder / f"{name}.npy", RNG.standard_normal((16, 16, 16)).astype("f4"))
    np.save(folder / "flat.npy", RNG.standard_normal((16, 16)).astype("f4"))
    (folder / "m.csv").write_text("path,label\na.npy,7\nb.npy,1\nc.npy,2\nflat.npy,0\n")
    dataset = resolve_dataset([str(folder / "m.csv")])
    settings = ExplainSettings(
        methods=["respond_cam"], formats=[], report=False, targets="label", batch_size=8
    )

    def run():
        return explain_files(
            model,
            dataset.paths,
            tmp_path / "out",
            settings,
            root=dataset.root,
            labels=dataset.labels,
            progress=False,
        )

    first = run()
    assert first.done == ["b", "c"]
    failed = {item["path"].rpartition("/")[2]: item["error"] for item in first.failed}
    assert set(failed) == {"a.npy", "flat.npy"} and "class index 7" in failed["a.npy"]
    second = run()  # nothing changed: nothing is redone, the failures are still listed
    assert second.done == [] and second.resumed == ["b", "c"] and len(second.failed) == 2
    np.save(folder / "flat.npy", RNG.standard_normal((16, 16, 16)).astype("f4"))  # fixed
    third = run()  # its batch is redone (fixed batches: the same numbers as at first)
    assert "flat" in third.done and [f["path"][-5:] for f in third.failed] == ["a.npy"]


def test_report_says_how_inputs_were_read_lists_failures_and_stays_small(tmp_path):
    from PIL import Image

    model = create_model("tiny2d_gap", num_classes=3)
    big = (RNG.random((1200, 1000)) * 255).astype(np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    settings = ExplainSettings(methods=["grad_cam", "saliency"], formats=[], intensity="zscore")
    explain_files(
        model,
        [tmp_path / "big.png", tmp_path / "broken.png"],
        tmp_path / "o",
        settings,
        progress=False,
    )
    report = (tmp_path / "o" / "report.html").read_text()
    assert "zscore: each input minus its mean" in report
    assert 'id="failed"' in report and "broken.png" in report
    assert len(report) < 2_000_000  # pictures subsampled to at most 384 pixels across


def test_tensor_sources_run_in_the_job_s_batches_and_a_bare_tensor_is_refused(tmp_path):
    from camscope.runs import ExplainJob, TensorSource, run_job

    model = create_model("tiny2d", num_classes=3, input_size=16).eval()
    x = torch.randn(4, 1, 16, 16)
    with pytest.raises(InputError, match=r"TensorSource\.from_tensor"):
        TensorSource(x)  # the tensor would be taken for the inputs' names
    batches = []
    hook = model.register_forward_pre_hook(lambda _, args: batches.append(len(args[0])))
    job = ExplainJob(ExplainSettings(methods=["grad_cam"], formats=["npy"], batch_size=1))
    summary = run_job(job, TensorSource.from_tensor(x), tmp_path / "out", model=model)
    hook.remove()
    assert batches and set(batches) == {1}  # the job's batch size, not the runner's default
    assert summary.manifest["batch_size"] == 1
    assert repr(summary) == f"RunSummary(folder={summary.folder!r}, done=4, resumed=0, failed=0)"


def test_a_resumed_run_lists_the_warnings_its_first_part_said(data):
    import warnings

    model, _ = load_model(data / "net")
    paths = [data / "data" / "s1" / f"v{index}.npy" for index in range(3)]
    np.save(paths[0], np.zeros((16, 16, 16), dtype=np.float32))  # the baseline itself
    settings = ExplainSettings(
        methods=["integrated_gradients"], formats=[], report=False, batch_size=1
    )
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        first = explain_files(model, paths, data / "w", settings, progress=False)
    said = first.manifest["warnings"]
    assert len(said) == 1 and "because the baseline is the input itself" in said[0]
    for name in ("v1", "v2"):  # as if the run had been killed after the first input
        (data / "w" / "records" / f"{name}.json").unlink()
    (data / "w" / "manifest.json").unlink()
    again = explain_files(model, paths, data / "w", settings, progress=False)
    assert again.resumed == ["v0"] and again.manifest["warnings"] == said
