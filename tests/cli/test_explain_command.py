"""``camscope explain`` / ``camscope layers`` on real file formats, and the pipeline behind them:
outputs with geometry, manifest, --force, resuming, bad inputs, a run killed half-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import camscope
from camscope.cli.main import cli
from camscope.io.checkpoints import load_model, save_model
from camscope.models import create_model

RNG = np.random.default_rng(0)
AFFINE = np.array([[0, -2.0, 0, 10], [1.5, 0, 0, -5], [0, 0, 3.0, 7], [0, 0, 0, 1]])


@pytest.fixture
def files(tmp_path):
    for name, size in (("tiny3d", 16), ("tiny2d", 32)):
        options = {"num_classes": 3, "input_size": size}
        model = create_model(name, **options)
        save_model(tmp_path / f"net{name[-2:]}", model, architecture=name, options=options)
    for name in ("a", "b", "c"):
        volume = RNG.standard_normal((16, 16, 16)).astype(np.float32)
        nibabel.save(nibabel.Nifti1Image(volume, AFFINE), tmp_path / f"{name}.nii.gz")
    Image.fromarray((RNG.random((32, 32)) * 255).astype(np.uint8)).save(tmp_path / "img.png")
    return tmp_path


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_explain_volume_writes_every_format_with_geometry(files):
    out = files / "out"
    result = _run(
        "explain",
        files / "net3d.json",
        files / "a.nii.gz",
        "--out",
        out,
        "--method",
        "respond-cam,integrated-gradients",
        "--targets",
        "0,2",
        "--format",
        "nifti,mrc,tiff,png,npy",
        "--option",
        "steps=4",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["camscope"] == camscope.__version__ and manifest["torch"] == torch.__version__
    assert manifest["settings"]["methods"] == ["respond_cam", "integrated_gradients"]
    assert manifest["settings"]["options"] == {"integrated_gradients": {"steps": 4}}
    assert manifest["model"]["architecture"] == "tiny3d" and manifest["failed"] == []
    (record,) = manifest["inputs"]
    np.testing.assert_allclose(record["input"]["affine"], AFFINE)
    assert record["results"]["respond_cam"]["targets"] == ["class0", "class2"]
    for method in ("respond_cam", "integrated_gradients"):
        for label in ("class0", "class2"):
            stem = out / f"a.{method}.{label}"
            heat = nibabel.load(f"{stem}.nii.gz")
            np.testing.assert_allclose(heat.affine, AFFINE, atol=1e-6)
            assert heat.shape == (16, 16, 16)
            np.testing.assert_array_equal(np.load(f"{stem}.npy"), np.asarray(heat.dataobj))
            for ending in (".mrc", ".tif", ".png"):
                assert Path(f"{stem}{ending}").stat().st_size > 0
    # the NPZ holds the library's own numbers
    model, _ = load_model(files / "net3d")
    x = torch.from_numpy(np.asarray(nibabel.load(files / "a.nii.gz").dataobj, dtype=np.float32))
    direct = camscope.explain(
        model, x[None, None], method="respond_cam", targets=torch.tensor([[0, 2]])
    )
    with np.load(out / "a.respond_cam.npz") as saved:
        np.testing.assert_allclose(saved["maps"], direct.maps[0].numpy(), rtol=1e-6, atol=1e-8)
        upsampled = direct.upsample(mode="linear").maps[0].numpy()
        np.testing.assert_allclose(saved["heatmaps"], upsampled, rtol=1e-6, atol=1e-8)
    with np.load(out / "a.integrated_gradients.npz") as saved:
        assert saved["maps"].shape == (2, 1, 16, 16, 16) and saved[
            "extra_completeness_gap"
        ].shape == (2,)
    html = (out / "report.html").read_text()
    assert "respond_cam · class2" in html and "http" not in html.split("<body>")[1]


def test_explain_image_with_input_space_and_layer_methods(files):
    out = files / "out2d"
    result = _run(
        "explain",
        files / "net2d.json",
        files / "img.png",
        "--out",
        out,
        "--method",
        "grad-cam,guided-backprop,occlusion",
        "--option",
        "window=8",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    for method in ("grad_cam", "guided_backprop", "occlusion"):
        with np.load(out / f"img.{method}.npz") as saved:
            assert saved["heatmaps"].shape == (1, 32, 32)
            predicted = int(saved["targets"][0])
        assert (out / f"img.{method}.class{predicted}.png").exists()


def test_overwrite_needs_force_and_resume_redoes_only_missing(files):
    out = files / "out"
    args = [
        "explain",
        files / "net3d.json",
        files / "a.nii.gz",
        files / "b.nii.gz",
        "--out",
        out,
        "--format",
        "npy",
        "--batch-size",
        "1",  # so that losing b's record redoes b alone (batches are redone whole)
        "--quiet",
    ]
    assert _run(*args).exit_code == 0
    first = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    again = _run(*args)  # same settings: everything is done already
    assert again.exit_code == 0 and "resumed: 2" in again.output
    (out / "records" / "b.json").unlink()  # as if killed before b's record
    (out / "b.respond_cam.npz").unlink()
    resumed = _run(*args)
    assert resumed.exit_code == 0 and "resumed: 1" in resumed.output
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == first
    other = _run(*args[:-1], "--targets", "all", "--quiet")
    assert other.exit_code == 2 and "other settings" in other.output and "--force" in other.output
    forced = _run(*args[:-1], "--targets", "all", "--quiet", "--force")
    assert forced.exit_code == 0, forced.output


def test_a_broken_input_is_skipped_and_listed(files):
    (files / "broken.nii.gz").write_bytes(b"\x1f\x8b not really")
    out = files / "out"
    result = _run(
        "explain",
        files / "net3d.json",
        files / "a.nii.gz",
        files / "broken.nii.gz",
        files / "b.nii.gz",
        "--out",
        out,
        "--format",
        "none",
        "--quiet",
    )
    assert result.exit_code == 1
    assert "skipped" in result.output and "listed in manifest.json" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["name"] for r in manifest["inputs"]] == ["a", "b"]
    assert manifest["failed"][0]["path"].endswith("broken.nii.gz")
    assert "cannot read" in manifest["failed"][0]["error"]


@pytest.mark.parametrize(
    ("inputs", "extra", "message"),
    [
        (["broken.png"], [], "cannot read"),
        (["img.gif"], [], "unsupported input type"),
        (["img.png"], ["--targets", "cat"], "Invalid value for '--targets'"),
        (["img.png"], ["--sigma", "wide"], "Invalid value for '--sigma'"),
        (["img.png"], ["--method", "gradcam"], "Did you mean 'grad_cam'"),
        (["img.png"], ["--format", "vtk"], "unknown heatmap format"),
        (["img.png"], ["--option", "steps=3"], "none of the chosen methods"),
        (["img.png"], ["--option", "steps"], "KEY=VALUE"),
        (
            ["img.png"],
            ["--method", "integrated-gradients", "--option", "steps=abc"],
            "steps='abc' must be an integer",
        ),
        (["img.png"], ["--method", "occlusion", "--option", "window=abc"], "window='abc'"),
        (["a.nii.gz"], [], "shape (1, 16, 16, 16)"),  # a volume into a 2D model
    ],
)
def test_explain_errors_are_one_line(files, inputs, extra, message):
    (files / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (files / "img.gif").write_bytes(b"GIF89a")
    result = _run(
        "explain",
        files / "net2d.json",
        *[files / i for i in inputs],
        "--out",
        files / "o",
        "--quiet",
        *extra,
    )
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_model_loading_from_the_command_line(files):
    torch.save(load_model(files / "net2d")[0], files / "whole.pt")
    refused = _run(
        "explain", files / "whole.pt", files / "img.png", "--out", files / "o", "--quiet"
    )
    assert refused.exit_code == 2 and "--trust-pickle" in refused.output
    trusted = _run(
        "explain",
        files / "whole.pt",
        files / "img.png",
        "--out",
        files / "o",
        "--quiet",
        "--trust-pickle",
    )
    assert trusted.exit_code == 0, trusted.output
    torch.save(load_model(files / "net2d")[0].state_dict(), files / "weights.pth")
    weights = _run(
        "explain",
        files / "weights.pth",
        files / "img.png",
        "--out",
        files / "o2",
        "--quiet",
        "--architecture",
        "tiny2d",
        "--arch-option",
        "num_classes=3",
        "--arch-option",
        "input_size=32",
    )
    assert weights.exit_code == 0, weights.output
    a = np.load(files / "o" / "img.respond_cam.npz")["maps"]
    b = np.load(files / "o2" / "img.respond_cam.npz")["maps"]
    np.testing.assert_array_equal(a, b)


def test_layers_for_user_models(files):
    torch.save(load_model(files / "net2d")[0].state_dict(), files / "weights.pth")
    result = _run(
        "layers",
        files / "weights.pth",
        "--architecture",
        "tiny2d",
        "--arch-option",
        "num_classes=3",
        "--arch-option",
        "input_size=32",
        "--input",
        files / "img.png",
    )
    assert result.exit_code == 0, result.output
    rows = {line[2:].split()[0]: line for line in result.output.splitlines()}
    assert rows["pool2"].startswith("*") and "8×8" in rows["pool2"]
    shaped = _run("layers", files / "net3d.json", "--input-shape", "1,16,16,16")
    assert shaped.exit_code == 0 and "4×4×4" in shaped.output
    missing = _run("layers", files / "net3d.json")
    assert missing.exit_code == 2 and "--input-shape" in missing.output


def _outputs(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
def test_killed_run_leaves_no_partial_file_and_resumes_to_the_same_result(files):
    """Kill the command at random moments; every file under a final name is complete, and the
    rerun ends with exactly the outputs of an uninterrupted run, byte for byte."""
    paths = []
    for index in range(8):
        volume = RNG.standard_normal((16, 16, 16)).astype(np.float32)
        np.save(files / f"v{index}.npy", volume)
        paths.append(str(files / f"v{index}.npy"))
    command = [
        sys.executable,
        "-m",
        "camscope.cli.main",
        "explain",
        str(files / "net3d.json"),
        *paths,
        "--method",
        "respond-cam,occlusion",
        "--format",
        "nifti,npy,png",
        "--quiet",
        "--option",
        "window=2",
        "--option",
        "stride=1",
    ]
    reference = files / "reference"
    subprocess.run([*command, "--out", str(reference)], check=True, capture_output=True)
    expected = _outputs(reference)
    out = files / "interrupted"
    rng = np.random.default_rng(1)
    for _ in range(3):
        process = subprocess.Popen(
            [*command, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(float(rng.uniform(1.0, 3.5)))
        process.send_signal(signal.SIGKILL)
        process.wait()
        for name, data in _outputs(out).items():
            if Path(name).name.startswith("."):
                continue  # a temporary file: never under a final name
            if name.endswith(".npz"):
                np.load(out / name)["maps"]  # complete archives only
            if name.startswith("records/"):
                record = json.loads(data)
                assert all((out / o).exists() for o in record["outputs"])
    finished = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert _outputs(out).keys() == expected.keys()
    for name, data in expected.items():
        if name in ("manifest.json", "report.html"):
            continue  # they name the output folder
        assert _outputs(out)[name] == data, name
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["name"] for r in manifest["inputs"]] == [f"v{i}" for i in range(8)]
    os.sync()


def test_features_command(files):
    out = files / "feat.png"
    result = _run(
        "features",
        files / "net2d.json",
        files / "img.png",
        "--layer",
        "conv2",
        "--channels",
        "0,3",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    maps = np.load(files / "feat.npy")
    model, _ = load_model(files / "net2d")
    x = torch.from_numpy(np.asarray(Image.open(files / "img.png"), dtype=np.float32) / 255.0)
    direct = camscope.methods.feature_visualization(
        model, x[None, None], layer="conv2", channels=[0, 3]
    )
    np.testing.assert_allclose(maps, direct[0].numpy(), rtol=1e-5, atol=1e-7)
    again = _run(
        "features", files / "net2d.json", files / "img.png", "--layer", "conv2", "--out", out
    )
    assert again.exit_code == 2 and "--force" in again.output
    bad = _run(
        "features",
        files / "net2d.json",
        files / "img.png",
        "--layer",
        "conv2",
        "--channels",
        "x",
        "--out",
        files / "f2.png",
    )
    assert bad.exit_code == 2 and "Invalid value for '--channels'" in bad.output


def test_degenerate_dicom_spacing_is_noted_and_nifti_written(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset.PixelSpacing = [0, 0]  # as pydicom-data's RG1_UNCR.dcm has it
    (tmp_path / "in").mkdir()
    dataset.save_as(tmp_path / "in" / "IM0001")
    result = _run(
        "explain",
        "tiny2d",
        tmp_path / "in",
        "--arch-option",
        "input_size=128",
        "--method",
        "saliency",
        "--format",
        "nifti",
        "--intensity",
        "zscore",
        "--out",
        tmp_path / "out",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert "1 mm is assumed" in result.output  # on the terminal, not only in the manifest
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    scan = manifest["inputs"][0]["input"]
    assert "degenerate" in scan["warning"] and scan["intensity"].startswith("zscore")
    assert nibabel.load(next((tmp_path / "out").glob("*.nii.gz"))).shape == (128, 128)


def test_a_4d_nifti_is_explained_once_a_volume_is_chosen(tmp_path):
    data = np.random.default_rng(0).standard_normal((16, 16, 16, 2)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), tmp_path / "t.nii.gz")
    args = ["explain", "tiny3d", tmp_path / "t.nii.gz", "--method", "saliency", "--quiet"]
    refused = _run(*args, "--out", tmp_path / "a")
    assert refused.exit_code == 2 and "--nifti-volume" in refused.output
    chosen = _run(*args, "--out", tmp_path / "b", "--nifti-volume", "1")
    assert chosen.exit_code == 0, chosen.output
    bad = _run(*args, "--out", tmp_path / "c", "--nifti-volume", "last")
    assert bad.exit_code == 2 and "volume index or 'channels'" in bad.output


def test_a_method_the_model_refuses_does_not_lose_the_others(files):
    import warnings

    model, _ = load_model(files / "net2d")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated
        torch.jit.save(torch.jit.script(model), files / "scripted.pt")
    result = _run(
        "explain",
        files / "scripted.pt",
        files / "img.png",
        "--method",
        "grad-cam,saliency",
        "--out",
        files / "o",
        "--quiet",
    )
    assert result.exit_code == 1, result.output
    assert "grad_cam was not run" in result.output and "TorchScript" in result.output
    assert "Traceback" not in result.output
    assert (files / "o" / "img.saliency.npz").exists()
    assert not (files / "o" / "img.grad_cam.npz").exists()
    manifest = json.loads((files / "o" / "manifest.json").read_text())
    assert "grad_cam" in manifest["inputs"][0]["refused"]


def test_a_second_run_does_not_take_the_first_runs_outputs_as_inputs(files):
    data = files / "data"
    data.mkdir()
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(data / "a.png")
    first = _run(
        "explain", files / "net2d.json", data, "--out", data / "out", "--quiet", "--format", "npy"
    )
    assert first.exit_code == 0, first.output
    second = _run("explain", files / "net2d.json", data, "--out", data / "out2", "--quiet")
    assert second.exit_code == 0, second.output
    manifest = json.loads((data / "out2" / "manifest.json").read_text())
    assert [item["name"] for item in manifest["inputs"]] == ["a"]


def test_a_wrong_layer_is_one_error_before_any_input(files):
    result = _run(
        "explain",
        files / "net2d.json",
        files / "img.png",
        "--layer",
        "nope",
        "--out",
        files / "o",
        "--quiet",
    )
    assert result.exit_code == 2 and result.output.count("nope") == 1
    assert "unknown layer 'nope'" in result.output and not (files / "o").exists()


def test_layers_shows_each_layers_layout_for_a_vit(tmp_path):
    from torchvision.models.vision_transformer import VisionTransformer

    options = {
        "image_size": 32,
        "patch_size": 8,
        "num_layers": 2,
        "num_heads": 2,
        "hidden_dim": 16,
        "mlp_dim": 32,
        "num_classes": 3,
    }
    torch.save(VisionTransformer(**options).state_dict(), tmp_path / "vit.pth")
    args = [
        "layers",
        tmp_path / "vit.pth",
        "--architecture",
        "torchvision.models.vision_transformer:VisionTransformer",
    ]
    for key, value in options.items():
        args += ["--arch-option", f"{key}={value}"]
    result = _run(*args, "--input-shape", "3,32,32")
    assert result.exit_code == 0, result.output
    rows = {line[2:].split()[0]: line for line in result.output.splitlines() if line[:1] in "* "}
    default = rows["encoder.layers.encoder_layer_1.ln_1"]
    assert default.startswith("*") and default.endswith("tokens(4×4, prefix=1)")
    assert rows["conv_proj"].endswith("channels_first")
    assert rows["heads"].endswith("-")  # (B, 3) logits: not a map


def test_explain_a_vit_with_attention_methods_and_refuse_a_layout_no_method_reads(tmp_path):
    from torchvision.models.vision_transformer import VisionTransformer

    options = {"image_size": 32, "patch_size": 8, "num_layers": 2, "num_heads": 2}
    options |= {"hidden_dim": 16, "mlp_dim": 32, "num_classes": 3}
    vit = VisionTransformer(**options)
    torch.nn.init.normal_(vit.heads.head.weight)  # torchvision initialises the head to zero
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    Image.fromarray((RNG.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "rgb.png")
    args = [
        "explain",
        tmp_path / "vit.pth",
        tmp_path / "rgb.png",
        "--architecture",
        "torchvision.models.vision_transformer:VisionTransformer",
    ]
    for key, value in options.items():
        args += ["--arch-option", f"{key}={value}"]
    out = tmp_path / "out"
    result = _run(*args, "--method", "attention-rollout,chefer", "--out", out, "--format", "npy")
    assert result.exit_code == 0, result.output
    maps = sorted(p.name for p in out.rglob("*.npy"))
    assert any("attention-rollout" in name or "attention_rollout" in name for name in maps), maps
    refused = _run(*args, "--method", "saliency", "--layout", "channels_last", "--out", out)
    assert refused.exit_code != 0
    assert "--layout channels_last: none of the methods run (saliency) reads a layer" in (
        refused.output
    )
