"""explain_scan(out=...): interrupted runs resume to the same bytes; Zarr output; other jobs'
work is never resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import camscope
from camscope.models import create_model


def _classifier() -> nn.Module:
    torch.manual_seed(0)
    return create_model("tiny3d", num_classes=3, input_size=16).eval()


def _dense() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 2, 3, padding=1)
    ).eval()


def _scan() -> torch.Tensor:
    return torch.randn(1, 80, 23, 30, generator=torch.Generator().manual_seed(1))


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (Zarr stores are folders) with its bytes."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


class _Interrupt:
    """Stands in for the explain() that explain_scan calls: the real one, until call ``after``."""

    def __init__(self, after: int) -> None:
        from camscope.explain import (
            explain,  # the real one, whatever explain_scan holds now
        )

        self.real, self.after, self.calls = explain, after, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


@pytest.mark.parametrize(
    ("ending", "model", "method"),
    [
        (".npy", _classifier, "grad_cam"),
        pytest.param(".mrc", _classifier, "respond_cam", marks=pytest.mark.slow),
        pytest.param(".nii.gz", _dense, "grad_cam", marks=pytest.mark.slow),
        (".zarr", _dense, "saliency"),
    ],
)
def test_an_interrupted_scan_resumes_to_the_same_bytes(
    tmp_path, monkeypatch, ending, model, method
):
    (tmp_path / "whole").mkdir()
    (tmp_path / "resumed").mkdir()
    settings = dict(method=method, roi_size=16, overlap=0.5, batch_size=3, progress=False)
    layer = {"layer": "0"} if model is _dense and method != "saliency" else {}
    whole = camscope.explain_scan(
        model(), _scan(), out=tmp_path / "whole" / f"maps{ending}", **settings, **layer
    )
    interrupt = _Interrupt(after=8)
    monkeypatch.setattr("camscope.wholescan.explain.explain", interrupt)
    with pytest.raises(KeyboardInterrupt) as stopped:
        camscope.explain_scan(
            model(), _scan(), out=tmp_path / "resumed" / f"maps{ending}", **settings, **layer
        )
    assert "goes on from there" in "".join(stopped.value.__notes__)
    work = tmp_path / "resumed" / f".maps{ending}.partial"
    record = json.loads((work / "progress.json").read_text())
    assert record["windows_done"] == 24 and 0 < record["rows_done"] < 80
    assert [p.name for p in (tmp_path / "resumed").iterdir()] == [work.name]  # nothing final yet

    counting = _Interrupt(after=10**6)
    monkeypatch.setattr("camscope.wholescan.explain.explain", counting)
    resumed = camscope.explain_scan(
        model(), _scan(), out=tmp_path / "resumed" / f"maps{ending}", **settings, **layer
    )
    batches = -(-len(whole.windows) // 3)
    assert counting.calls == batches - 8  # only the interrupted batch and those after it
    assert _tree(tmp_path / "resumed") == _tree(tmp_path / "whole")
    assert [Path(f).name for f in resumed.files] == [Path(f).name for f in whole.files]
    if whole.outputs is not None:
        torch.testing.assert_close(resumed.outputs, whole.outputs, rtol=0, atol=0)
    if whole.scores is not None:
        torch.testing.assert_close(resumed.scores, whole.scores, rtol=0, atol=0)


def test_another_jobs_work_is_not_resumed(tmp_path, monkeypatch):
    settings = dict(method="grad_cam", roi_size=16, batch_size=2)
    monkeypatch.setattr("camscope.wholescan.explain.explain", _Interrupt(after=3))
    with pytest.raises(KeyboardInterrupt):
        camscope.explain_scan(
            _classifier(), _scan(), out=tmp_path / "maps.npy", progress=False, **settings
        )
    monkeypatch.undo()
    other = _scan() + 1  # the same shape, different values: a different scan
    with pytest.warns(RuntimeWarning, match=r"not resuming .*differs in .*scan.*starting over"):
        done = camscope.explain_scan(  # said without progress bars too
            _classifier(), other, out=tmp_path / "maps.npy", progress=False, **settings
        )
    fresh = camscope.explain_scan(_classifier(), other, progress=False, **settings)
    np.testing.assert_array_equal(np.load(done.files[0]), fresh.maps.numpy())
    assert not (tmp_path / ".maps.npy.partial").exists()


@pytest.mark.slow
def test_a_model_or_setting_change_starts_over_and_says_why(tmp_path, monkeypatch):
    settings = dict(method="grad_cam", roi_size=16, batch_size=2)
    for change, expected in (
        ({"model": lambda: create_model("tiny3d", num_classes=3, input_size=16)}, "model"),
        ({"overlap": 0.5}, "overlap"),
        ({"batch_size": 3}, "batch_size"),
        ({"targets": [1]}, "targets"),
    ):
        monkeypatch.setattr("camscope.wholescan.explain.explain", _Interrupt(after=2))
        with pytest.raises(KeyboardInterrupt):
            camscope.explain_scan(
                _classifier(), _scan(), out=tmp_path / "maps.npy", progress=False, **settings
            )
        monkeypatch.undo()
        factory = change.pop("model", _classifier)
        with pytest.warns(RuntimeWarning, match=f"not resuming .*differs in .*{expected}"):
            camscope.explain_scan(
                factory(), _scan(), out=tmp_path / "maps.npy", progress=True, **settings | change
            )


def test_resume_false_starts_over_and_an_early_failure_leaves_nothing(tmp_path, monkeypatch):
    settings = dict(method="grad_cam", roi_size=16, batch_size=2, progress=False)
    monkeypatch.setattr("camscope.wholescan.explain.explain", _Interrupt(after=2))
    with pytest.raises(KeyboardInterrupt):
        camscope.explain_scan(_classifier(), _scan(), out=tmp_path / "maps.npy", **settings)
    counting = _Interrupt(after=10**6)
    monkeypatch.setattr("camscope.wholescan.explain.explain", counting)
    done = camscope.explain_scan(
        _classifier(), _scan(), out=tmp_path / "maps.npy", resume=False, **settings
    )
    assert counting.calls == -(-len(done.windows) // 2)  # every batch again
    monkeypatch.setattr("camscope.wholescan.explain.explain", _Interrupt(after=0))
    with pytest.raises(KeyboardInterrupt) as stopped:
        camscope.explain_scan(_classifier(), _scan(), out=tmp_path / "other.npy", **settings)
    assert not getattr(stopped.value, "__notes__", [])  # nothing was done: nothing kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.npy", "maps.scores.npy"]


_KILLED = """
import sys, time, torch, camscope
import camscope.wholescan.explain as scan_module
from camscope.models import create_model
real = scan_module.explain
def slow(*args, **kwargs):
    time.sleep(0.3)
    return real(*args, **kwargs)
scan_module.explain = slow
torch.manual_seed(0)
model = create_model("tiny3d", num_classes=3, input_size=16).eval()
scan = torch.randn(1, 80, 23, 30, generator=torch.Generator().manual_seed(1))
camscope.explain_scan(model, scan, method="grad_cam", roi_size=16, overlap=0.5, batch_size=3,
                      out=sys.argv[1], progress=False)
"""


@pytest.mark.slow
def test_a_killed_process_resumes_to_the_same_bytes(tmp_path):
    (tmp_path / "whole").mkdir()
    (tmp_path / "killed").mkdir()
    settings = dict(method="grad_cam", roi_size=16, overlap=0.5, batch_size=3, progress=False)
    camscope.explain_scan(_classifier(), _scan(), out=tmp_path / "whole" / "maps.mrc", **settings)
    out = tmp_path / "killed" / "maps.mrc"
    process = subprocess.Popen([sys.executable, "-c", _KILLED, str(out)])
    record = tmp_path / "killed" / ".maps.mrc.partial" / "progress.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if record.exists() and json.loads(record.read_text())["windows_done"] >= 24:
            break
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)  # no handler runs: the files are as the kill left them
    process.wait()
    assert not list((tmp_path / "killed").glob("maps*"))
    camscope.explain_scan(_classifier(), _scan(), out=out, **settings)
    assert _tree(tmp_path / "killed") == _tree(tmp_path / "whole")


def test_zarr_output_is_an_ome_zarr_image_with_the_scans_geometry(tmp_path):
    import mrcfile
    import zarr

    from camscope.io import read_image

    volume = np.random.default_rng(0).standard_normal((20, 24, 18)).astype(np.float32)
    with mrcfile.new(tmp_path / "tomo.mrc") as mrc:
        mrc.set_data(volume)
        mrc.voxel_size = (2.5, 3.0, 4.0)  # x, y, z in Å
        mrc.header.origin = (10.0, 20.0, 30.0)
    scan = read_image(tmp_path / "tomo.mrc")
    kept = camscope.explain_scan(
        _classifier(), scan, method="grad_cam", roi_size=16, progress=False
    )
    done = camscope.explain_scan(
        _classifier(), scan, method="grad_cam", roi_size=16, out=tmp_path / "maps.zarr",
        progress=False,
    )  # fmt: skip
    group = zarr.open_group(tmp_path / "maps.zarr", mode="r")
    np.testing.assert_array_equal(group["0"][:], kept.maps.numpy())
    image = group.attrs["ome"]["multiscales"][0]
    assert [axis["name"] for axis in image["axes"]] == ["c", "z", "y", "x"]
    assert image["axes"][1]["unit"] == "angstrom"
    transforms = image["datasets"][0]["coordinateTransformations"]
    assert transforms[0]["scale"] == [1.0, 4.0, 3.0, 2.5]
    assert transforms[1]["translation"] == [0.0, 30.0, 20.0, 10.0]
    assert group.attrs["camscope"]["targets"] == ["class0", "class1", "class2"]
    assert done.files[0] == str(tmp_path / "maps.zarr")
    again = camscope.explain_scan(  # camscope replaces its own earlier output
        _classifier(), scan, method="grad_cam", roi_size=16, targets=[2],
        out=tmp_path / "maps.zarr", progress=False,
    )  # fmt: skip
    assert zarr.open_group(again.files[0], mode="r")["0"].shape == (1, 20, 24, 18)
    (tmp_path / "mine.zarr").mkdir()
    with pytest.raises(camscope.InputError, match="not a Zarr store"):
        camscope.explain_scan(
            _classifier(), scan, method="grad_cam", roi_size=16, out=tmp_path / "mine.zarr"
        )


def test_streamed_mrc_maps_have_the_geometry_write_heatmap_gives(tmp_path):
    import mrcfile

    from camscope.io import LoadedImage
    from camscope.io.heatmaps import write_heatmap

    data = np.random.default_rng(0).standard_normal((1, 20, 24, 18)).astype(np.float32)
    ct = LoadedImage(data, "ct", "dicom-series", spacing=(2.0, 0.5, 0.75))  # mm, (z, y, x)
    done = camscope.explain_scan(
        _classifier(), ct, method="grad_cam", roi_size=16, targets=[1], out=tmp_path / "s.mrc",
        progress=False,
    )  # fmt: skip
    write_heatmap(tmp_path / "h.mrc", np.zeros((20, 24, 18), np.float32), ct, "mrc")
    with mrcfile.open(done.files[0]) as streamed, mrcfile.open(tmp_path / "h.mrc") as written:
        assert streamed.voxel_size.tolist() == written.voxel_size.tolist()
        assert tuple(streamed.voxel_size.tolist()) == (0.75e7, 0.5e7, 2.0e7)  # Å, x y z
    bare = camscope.explain_scan(
        _classifier(), torch.from_numpy(data), method="grad_cam", roi_size=16, targets=[1],
        out=tmp_path / "bare.mrc", progress=False,
    )  # fmt: skip
    with mrcfile.open(bare.files[0]) as mrc:  # no unit: left unset, as write_heatmap leaves it
        assert tuple(mrc.voxel_size.tolist()) == (0.0, 0.0, 0.0)
    nifti = LoadedImage(data, "t1", "nifti", affine=np.eye(4), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(camscope.InputError, match="x, y, z where MRC's run z, y, x"):
        camscope.explain_scan(
            _classifier(), nifti, method="grad_cam", roi_size=16, out=tmp_path / "t1.mrc"
        )
    assert not list(tmp_path.glob("t1*"))  # refused before any work


def test_a_2d_scan_streams_to_zarr():
    import tempfile

    import zarr

    torch.manual_seed(0)
    model = create_model("tiny2d", num_classes=2, input_size=16).eval()
    image = torch.randn(1, 50, 37)
    kept = camscope.explain_scan(model, image, method="grad_cam", roi_size=16, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "maps.zarr"
        camscope.explain_scan(model, image, method="grad_cam", roi_size=16, out=out, progress=False)
        group = zarr.open_group(out, mode="r")
        np.testing.assert_array_equal(group["0"][:], kept.maps.numpy())
        assert [a["name"] for a in group.attrs["ome"]["multiscales"][0]["axes"]] == ["c", "y", "x"]


def test_the_scan_command_resumes_an_interrupted_run(tmp_path, monkeypatch):
    import nibabel
    from click.testing import CliRunner

    from camscope.cli.main import cli
    from camscope.io.checkpoints import save_model

    volume = np.random.default_rng(0).standard_normal((70, 20, 20)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, np.diag([2.0, 1, 1, 1])), tmp_path / "ct.nii.gz")
    options = {"num_classes": 3, "input_size": 16}
    save_model(tmp_path / "net", _classifier(), architecture="tiny3d", options=options)

    def command(folder: str) -> list[str]:
        return [
            "scan", str(tmp_path / "net.json"), str(tmp_path / "ct.nii.gz"), "--roi", "16",
            "--batch-size", "2", "--format", "nifti,npy", "--out", str(tmp_path / folder),
        ]  # fmt: skip

    assert CliRunner().invoke(cli, [*command("whole"), "--quiet"]).exit_code == 0
    monkeypatch.setattr("camscope.wholescan.explain.explain", _Interrupt(after=5))
    stopped = CliRunner().invoke(cli, command("resumed"))
    assert stopped.exit_code == 130, stopped.output
    assert "the same call (the same command) goes on from there" in stopped.output
    monkeypatch.undo()
    again = CliRunner().invoke(cli, command("resumed"))
    assert again.exit_code == 0, again.output
    assert "camscope: resuming from" in again.output
    whole, resumed = _tree(tmp_path / "whole"), _tree(tmp_path / "resumed")
    assert sorted(whole) == sorted(resumed)
    for name in whole:
        if name.endswith((".nii.gz", ".npy")):
            assert whole[name] == resumed[name], name
    manifest = json.loads(resumed["manifest.json"])
    assert "ct.grad_cam.npy" in manifest["outputs"]
    assert np.load(tmp_path / "resumed" / "ct.grad_cam.npy").shape == (3, 70, 20, 20)


@pytest.mark.slow
def test_damaged_work_files_are_never_resumed(tmp_path, monkeypatch):
    settings = dict(method="grad_cam", roi_size=16, batch_size=2)
    whole = camscope.explain_scan(_classifier(), _scan(), progress=False, **settings)
    for damage, said in (
        (lambda work: (work / "class1.mrc").unlink(), "is missing"),
        (lambda work: os.truncate(work / "class1.mrc", 5000), "bytes, not"),
    ):
        monkeypatch.setattr("camscope.wholescan.explain.explain", _Interrupt(after=6))
        with pytest.raises(KeyboardInterrupt):
            camscope.explain_scan(
                _classifier(), _scan(), out=tmp_path / "maps.mrc", progress=False, **settings
            )
        monkeypatch.undo()
        damage(tmp_path / ".maps.mrc.partial")
        with pytest.warns(RuntimeWarning, match=f"not resuming .*{said}"):
            done = camscope.explain_scan(
                _classifier(), _scan(), out=tmp_path / "maps.mrc", progress=True, **settings
            )
        import mrcfile

        with mrcfile.open(done.files[1]) as mrc:
            np.testing.assert_allclose(mrc.data, whole.maps[1].numpy(), rtol=1e-6, atol=1e-7)


def test_the_resume_message_says_where_it_goes_on(tmp_path, monkeypatch, capsys):
    settings = dict(method="grad_cam", roi_size=16, overlap=0.5, batch_size=3)
    monkeypatch.setattr("camscope.wholescan.explain.explain", _Interrupt(after=8))
    with pytest.raises(KeyboardInterrupt):
        camscope.explain_scan(
            _classifier(), _scan(), out=tmp_path / "maps.npy", progress=False, **settings
        )
    monkeypatch.undo()
    capsys.readouterr()
    camscope.explain_scan(_classifier(), _scan(), out=tmp_path / "maps.npy", **settings)
    # 8 batches of 3 windows were blended and kept (with the band of rows still open): the run
    # goes on from window 25, with 30 of the 54 left
    assert "30 of 54 windows left (going on from window 25)" in capsys.readouterr().err


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path):
    import zarr

    class Refusing(nn.Module):
        def forward(self, x):
            raise AssertionError("the model was run")

    foreign = zarr.open_group(tmp_path / "theirs.zarr", mode="w", zarr_format=3)
    foreign.create_array("data", shape=(4,), dtype="float32")
    (tmp_path / "folder.npy").mkdir()
    (tmp_path / "afile").write_text("")
    for out, message in (
        ("theirs.zarr", "not a Zarr store camscope wrote"),
        ("folder.npy", "is a folder"),
        ("afile/maps.npy", "is a file, not a folder"),
    ):
        with pytest.raises(camscope.InputError, match=message):
            camscope.explain_scan(
                Refusing(), _scan(), method="saliency", roi_size=16, out=tmp_path / out
            )
    assert (tmp_path / "theirs.zarr" / "data").exists()  # someone else's store is kept
    with pytest.raises(camscope.InputError, match="empty along a spatial axis"):
        camscope.explain_scan(Refusing(), torch.zeros(1, 0, 20, 20), method="saliency", roi_size=16)


def test_a_model_error_after_the_first_batch_is_not_blamed_on_the_window_size(monkeypatch):
    from camscope.errors import ModelError

    calls = {"n": 0}
    real = _Interrupt(after=10**6)

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ModelError("the model ran out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr("camscope.wholescan.explain.explain", failing)
    with pytest.raises(ModelError) as raised:
        camscope.explain_scan(
            _classifier(), _scan(), method="grad_cam", roi_size=16, progress=False
        )
    assert "roi_size" not in str(raised.value)


@pytest.mark.parametrize(
    "kind", [pytest.param("scripted", marks=pytest.mark.slow), "exported", "compiled"]
)
def test_scripted_exported_and_compiled_models_stream_and_resume(tmp_path, monkeypatch, kind):
    """Every kind of model camscope explains has a weights digest, so its scans stream to disk
    and resume; the maps equal the eager module's."""
    model = _dense()
    if kind == "scripted":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
            wrapped = torch.jit.script(model)
    elif kind == "exported":
        batch = torch.export.Dim("batch", min=1, max=64)
        example = (torch.randn(2, 1, 16, 16, 16),)
        wrapped = torch.export.export(model, example, dynamic_shapes=({0: batch},))
    else:
        wrapped = torch.compile(model)
    settings = dict(method="saliency", roi_size=16, batch_size=3, progress=False)
    eager = camscope.explain_scan(model, _scan(), **settings)
    monkeypatch.setattr("camscope.wholescan.explain.explain", _Interrupt(after=8))
    with pytest.raises(KeyboardInterrupt):
        camscope.explain_scan(wrapped, _scan(), out=tmp_path / "maps.npy", **settings)
    monkeypatch.setattr("camscope.wholescan.explain.explain", counting := _Interrupt(after=10**6))
    done = camscope.explain_scan(wrapped, _scan(), out=tmp_path / "maps.npy", **settings)
    assert counting.calls < -(-len(done.windows) // 3)  # resumed, not started over
    np.testing.assert_allclose(np.load(done.files[0]), eager.maps.numpy(), rtol=1e-5, atol=1e-6)


def test_a_2d_scan_resumes_to_the_same_bytes(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = create_model("tiny2d", num_classes=3, input_size=16).eval()
    image = torch.randn(1, 90, 37, generator=torch.Generator().manual_seed(2))
    settings = dict(method="grad_cam", roi_size=16, batch_size=2, progress=False)
    (tmp_path / "whole").mkdir()
    camscope.explain_scan(model, image, out=tmp_path / "whole" / "maps.zarr", **settings)
    monkeypatch.setattr("camscope.wholescan.explain.explain", _Interrupt(after=9))
    with pytest.raises(KeyboardInterrupt):
        camscope.explain_scan(model, image, out=tmp_path / "maps.zarr", **settings)
    monkeypatch.setattr("camscope.wholescan.explain.explain", counting := _Interrupt(after=10**6))
    done = camscope.explain_scan(model, image, out=tmp_path / "maps.zarr", **settings)
    assert 0 < counting.calls < -(-len(done.windows) // 2)
    assert _tree(tmp_path / "maps.zarr") == _tree(tmp_path / "whole" / "maps.zarr")


def test_an_interrupted_scan_of_a_callable_target_keeps_no_work_it_cannot_resume(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("camscope.wholescan.explain.explain", _Interrupt(after=3))
    with pytest.raises(KeyboardInterrupt) as stopped:
        camscope.explain_scan(
            _classifier(),
            _scan(),
            method="grad_cam",
            roi_size=16,
            batch_size=2,
            targets=lambda out: out[:, 0],
            out=tmp_path / "maps.npy",
            progress=False,
        )
    assert "goes on from there" not in "".join(getattr(stopped.value, "__notes__", []))
    assert list(tmp_path.iterdir()) == []  # no work folder a later call would refuse anyway
