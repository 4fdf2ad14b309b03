"""explain_scan: windows and blending as MONAI's sliding_window_inference, maps of whole scans."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import camscope
from camscope.models import create_model
from camscope.wholescan.windows import importance_map, plan_windows


def _dense(spatial_dims: int) -> nn.Module:
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    torch.manual_seed(0)
    return nn.Sequential(conv(1, 4, 3, padding=1), nn.ReLU(), conv(4, 3, 1)).double().eval()


@pytest.mark.parametrize(
    ("size", "roi", "overlap"),
    [((50, 37), (16, 16), 0.25), ((20, 40, 33), (16, 16, 16), 0.5), ((10, 12), (16, 16), 0.25)],
)
def test_windows_are_monai_s(size, roi, overlap):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from monai.data.utils import compute_importance_map, dense_patch_slices
        from monai.inferers.utils import _get_scan_interval
    padded = tuple(max(s, r) for s, r in zip(size, roi, strict=True))
    interval = _get_scan_interval(padded, roi, len(roi), [overlap] * len(roi))
    plan = plan_windows(size, roi, overlap=overlap)
    assert [plan.slices(i) for i in range(len(plan))] == list(
        dense_patch_slices(padded, roi, interval)
    )
    reference = compute_importance_map(roi, mode="gaussian", sigma_scale=0.125).double()
    torch.testing.assert_close(importance_map(roi), reference)


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_blended_output_equals_monai_and_constant_maps_stay_constant(blend, spatial_dims):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from monai.inferers import sliding_window_inference
    model = _dense(spatial_dims)
    size = (23, 30) if spatial_dims == 2 else (13, 20, 17)
    roi = (12,) * spatial_dims
    scan = torch.randn(1, *size, dtype=torch.float64)
    result = camscope.explain_scan(
        model, scan, method="grad_cam", layer="0", roi_size=roi, blend=blend, progress=False
    )
    with torch.no_grad():
        reference = sliding_window_inference(
            scan[None], roi, 3, model, overlap=0.25, mode=blend, sigma_scale=0.125
        )
    torch.testing.assert_close(result.outputs, reference[0])
    assert result.maps.shape == (3, *size) and result.targets.tolist() == [0, 1, 2]
    # partition of unity: a model whose maps are constant gives a constant blended map
    plan = plan_windows(size, roi)
    weights = importance_map(roi, blend)
    total = torch.zeros(plan.padded_size, dtype=torch.float64)
    ones = torch.zeros(plan.padded_size, dtype=torch.float64)
    for i in range(len(plan)):
        total[plan.slices(i)] += weights * 5.0
        ones[plan.slices(i)] += weights
    torch.testing.assert_close(total / ones, torch.full(plan.padded_size, 5.0, dtype=torch.float64))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_a_scan_of_one_window_is_explain_upsampled(spatial_dims):
    model = create_model(f"tiny{spatial_dims}d", num_classes=3, input_size=16).double().eval()
    scan = torch.randn(1, *(16,) * spatial_dims, dtype=torch.float64)
    result = camscope.explain_scan(
        model, scan, method="respond_cam", roi_size=16, targets="all", progress=False
    )
    direct = camscope.explain(model, scan[None], method="respond_cam", targets="all")
    torch.testing.assert_close(result.maps, direct.upsample().maps[0])
    assert result.scores.shape == (1, 3) and result.outputs is None
    assert result.windows.tolist() == [[0] * spatial_dims + [16] * spatial_dims]


def test_window_classifier_over_a_larger_scan_keeps_window_scores_and_boxes():
    model = create_model("tiny2d", num_classes=3, input_size=16).double().eval()
    scan = torch.randn(1, 40, 28, dtype=torch.float64)
    result = camscope.explain_scan(
        model, scan, method="grad_cam", roi_size=16, targets=[1], batch_size=3, progress=False
    )
    plan = plan_windows((40, 28), (16, 16))
    assert result.scores.shape == (len(plan), 3) and result.windows.shape == (len(plan), 4)
    assert result.maps.shape == (1, 40, 28) and torch.isfinite(result.maps).all()
    first = scan[(slice(None), *plan.slices(0))][None]
    with torch.no_grad():
        torch.testing.assert_close(result.scores[0], model(first)[0])


def test_input_space_methods_and_bad_scans():
    model = _dense(2)
    scan = torch.randn(1, 20, 20, dtype=torch.float64)
    result = camscope.explain_scan(
        model, scan, method="saliency", roi_size=12, targets=1, progress=False
    )
    assert result.maps.shape == (1, 20, 20)
    with pytest.raises(camscope.InputError, match="scan must be"):
        camscope.explain_scan(model, scan[0], method="saliency", roi_size=12)
    with pytest.raises(camscope.InputError, match="overlap"):
        camscope.explain_scan(model, scan, method="saliency", roi_size=12, overlap=1.0)


def test_scan_command_writes_heatmaps_with_the_scan_geometry(tmp_path):
    import nibabel
    import numpy as np
    from click.testing import CliRunner

    from camscope.cli.main import cli
    from camscope.io.checkpoints import save_model

    affine = np.diag([1.5, 2.0, 2.5, 1.0])
    affine[:3, 3] = (10, -20, 5)
    volume = np.random.default_rng(0).standard_normal((30, 26, 20)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, affine), tmp_path / "scan.nii.gz")
    options = {"num_classes": 3, "input_size": 16}
    save_model(
        tmp_path / "net", create_model("tiny3d", **options), architecture="tiny3d", options=options
    )
    command = [
        "scan",
        str(tmp_path / "net.json"),
        str(tmp_path / "scan.nii.gz"),
        "--roi",
        "16",
        "--method",
        "grad-cam,layer_cam",  # one grammar: comma lists, repeats, kebab and snake case
        "--methods",
        "saliency,grad_cam",
        "--targets",
        "0",
        "--target",
        "2",
        "--out",
        str(tmp_path / "o"),
        "--quiet",
    ]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    heat = nibabel.load(tmp_path / "o" / "scan.grad_cam.class2.nii.gz")
    assert heat.shape == (30, 26, 20)
    np.testing.assert_allclose(heat.affine, affine)
    for method in ("layer_cam", "saliency"):
        for target in ("class0", "class2"):
            assert (tmp_path / "o" / f"scan.{method}.{target}.nii.gz").exists()
    import json

    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["methods"] == ["grad_cam", "layer_cam", "saliency"]
    assert manifest["layers"]["saliency"] == "input" and manifest["targets"] == ["class0", "class2"]
    windows = len(plan_windows((30, 26, 20), (16, 16, 16)))
    assert len(manifest["window_scores"]) == len(manifest["windows"]) == windows == 12
    page = (tmp_path / "o" / "report.html").read_text()
    assert "window scores" in page  # the classifier's own reading, as a coarse map
    assert 'href="scan.layer_cam.class2.nii.gz"' in page  # each preview links its full map

    # the same command again: already done, nothing recomputed; other settings: refused
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "o").iterdir()}
    again = CliRunner().invoke(cli, command)
    assert again.exit_code == 0 and "already done" in again.output, again.output
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "o").iterdir()} == before
    other = CliRunner().invoke(cli, [*command, "--overlap", "0.5"])
    assert other.exit_code != 0 and "another camscope scan" in other.output, other.output
    assert "settings: overlap 0.25 → 0.5" in other.output  # says what differs, and only that
    assert "another model" not in other.output and "another scan" not in other.output
    from camscope.wholescan.outputs import _window_score_map

    coarse = _window_score_map(
        torch.tensor([1.0, 3.0]), torch.tensor([[0, 0, 4, 4], [2, 0, 6, 4]]), (6, 4)
    )
    np.testing.assert_allclose(coarse[:, 0], [1, 1, 2, 2, 3, 3])  # the mean where windows overlap


def test_maps_that_would_not_fit_are_refused_before_any_work(monkeypatch):
    import sys

    scan_module = sys.modules["camscope.wholescan.explain"]
    monkeypatch.setattr(scan_module, "_available_bytes", lambda: 1_000_000)
    model = create_model("tiny2d", num_classes=3, input_size=16)
    with pytest.raises(camscope.InputError, match="GiB free; explain fewer targets"):
        camscope.explain_scan(
            model, torch.randn(1, 200, 200), method="grad_cam", roi_size=16, progress=False
        )


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_streamed_maps_equal_the_in_memory_ones(tmp_path, blend):
    import mrcfile
    import numpy as np

    model = create_model("tiny3d", num_classes=3, input_size=16).eval()
    scan = torch.randn(1, 37, 22, 29)
    kept = camscope.explain_scan(
        model, scan, method="grad_cam", roi_size=16, blend=blend, progress=False
    )
    streamed = camscope.explain_scan(
        model,
        scan,
        method="grad_cam",
        roi_size=16,
        blend=blend,
        out=tmp_path / "maps.npy",
        progress=False,
    )
    assert streamed.maps is None
    assert streamed.files == [str(tmp_path / "maps.npy"), str(tmp_path / "maps.scores.npy")]
    np.testing.assert_array_equal(np.load(tmp_path / "maps.scores.npy"), kept.scores.numpy())
    np.testing.assert_allclose(
        np.load(tmp_path / "maps.npy"), kept.maps.numpy(), rtol=1e-5, atol=1e-6
    )
    volumes = camscope.explain_scan(
        model,
        scan,
        method="grad_cam",
        roi_size=16,
        blend=blend,
        out=tmp_path / "maps.mrc",
        progress=False,
    )
    assert len(volumes.files) == 4  # three targets and the window scores
    with mrcfile.open(tmp_path / "maps.class2.mrc") as mrc:
        np.testing.assert_allclose(mrc.data, kept.maps[2].numpy(), rtol=1e-5, atol=1e-6)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary left behind


@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
def test_streamed_nifti_keeps_the_scans_affine_and_equals_the_in_memory_maps(tmp_path, ending):
    import nibabel
    import numpy as np

    from camscope.io import read_image

    affine = np.array([[0, 0, 1.5, -20], [0, 2.0, 0, 7], [-1.2, 0, 0, 3], [0, 0, 0, 1]])
    volume = np.random.default_rng(0).standard_normal((23, 19, 26)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, affine), tmp_path / "ct.nii.gz")
    scan = read_image(tmp_path / "ct.nii.gz")
    model = create_model("tiny3d", num_classes=3, input_size=16).eval()
    kept = camscope.explain_scan(model, scan, method="grad_cam", roi_size=16, progress=False)
    streamed = camscope.explain_scan(
        model, scan, method="grad_cam", roi_size=16, out=tmp_path / f"maps{ending}", progress=False
    )
    assert streamed.files[:3] == [str(tmp_path / f"maps.class{c}{ending}") for c in range(3)]
    for target, name in enumerate(streamed.files[:3]):
        image = nibabel.load(name)
        np.testing.assert_allclose(image.affine, affine)
        np.testing.assert_allclose(
            np.asarray(image.dataobj), kept.maps[target].numpy(), rtol=1e-5, atol=1e-6
        )
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    first = (tmp_path / f"maps.class0{ending}").read_bytes()
    camscope.explain_scan(
        model, scan, method="grad_cam", roi_size=16, out=tmp_path / f"again{ending}", progress=False
    )
    assert (tmp_path / f"again.class0{ending}").read_bytes() == first  # the same bytes


def test_streamed_nifti_of_a_tensor_and_of_an_image_are_refused_or_plain(tmp_path):
    import nibabel

    model3d = create_model("tiny3d", num_classes=2, input_size=16).eval()
    done = camscope.explain_scan(
        model3d, torch.randn(1, 16, 20, 16), method="grad_cam", roi_size=16,
        out=tmp_path / "plain.nii", progress=False,
    )  # fmt: skip
    assert nibabel.load(done.files[0]).shape == (16, 20, 16)
    upper = camscope.explain_scan(
        model3d, torch.randn(1, 16, 20, 16), method="grad_cam", roi_size=16,
        out=tmp_path / "UP.NII.GZ", progress=False,
    )  # fmt: skip
    assert [p.rsplit("/", 1)[1] for p in upper.files] == [
        "UP.class0.nii.gz",
        "UP.class1.nii.gz",
        "UP.scores.npy",
    ]
    assert (tmp_path / "UP.class0.nii.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzipped

    class Refusing(torch.nn.Module):  # the check must come before any window is explained
        def forward(self, x):
            raise AssertionError("the model was run")

    for scan, out, message in (
        (torch.randn(1, 20, 20), "flat.nii.gz", "needs a 3D scan .NIfTI"),
        (torch.randn(1, 20, 20), "flat.mrc", "needs a 3D scan .MRC"),
        (torch.randn(1, 16, 16, 16), "maps.tif", r"must end in .npy, .mrc, .nii, .nii.gz or .zarr"),
    ):
        with pytest.raises(camscope.InputError, match=message):
            camscope.explain_scan(
                Refusing(), scan, method="saliency", roi_size=16, out=tmp_path / out,
                progress=False,
            )  # fmt: skip


_PEAK = """
import resource, sys, tempfile, os, torch, camscope
from camscope.models import create_model
model = create_model("tiny3d", num_classes=8, input_size=32).eval()
scan = torch.randn(1, *[int(sys.argv[1])] * 3)
with tempfile.TemporaryDirectory() as folder:
    camscope.explain_scan(model, scan, method="grad_cam", roi_size=32,
                          out=os.path.join(folder, "maps.npy"), progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_streamed_memory_does_not_grow_with_the_scan():
    import subprocess
    import sys

    peaks = [
        int(
            subprocess.run(
                [sys.executable, "-c", _PEAK, str(edge)], capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        )
        / 1024
        for edge in (64, 192)
    ]
    maps_mb = 8 * 192**3 * 4 / 2**20  # the 192³ maps alone: 216 MB
    assert peaks[1] - peaks[0] < 0.75 * maps_mb, peaks  # measured: 113 MB (28 MB the scan)


def test_scan_mistakes_are_one_clear_error():
    model = create_model("tiny3d", num_classes=3, input_size=16).eval()
    with pytest.raises(camscope.InputError, match=r"scan\[None\]"):
        camscope.explain_scan(model, torch.randn(40, 36, 30), method="grad_cam", roi_size=16)
    with pytest.raises(camscope.InputError, match="batch_size"):
        camscope.explain_scan(
            model, torch.randn(1, 20, 20, 20), method="grad_cam", roi_size=16, batch_size=0
        )
    with pytest.raises(camscope.ModelError, match="roi_size must be the input size"):
        camscope.explain_scan(model, torch.randn(1, 30, 30, 30), method="grad_cam", roi_size=20)


def test_region_targets_over_a_scan_are_cropped_to_every_window():
    """A region target over the whole scan: each window explains its class logits summed over the
    part of the region inside it. On a one-window scan it equals explain() with the region; a
    region far from a window gives that window nothing."""
    model = _dense(3)
    scan = torch.randn(1, 16, 16, 16, dtype=torch.float64)
    region = torch.zeros(16, 16, 16, dtype=torch.bool)
    region[4:9, 5:10, 6:12] = True
    target = camscope.targets.region_target(2, region)
    one = camscope.explain_scan(
        model, scan, method="grad_cam", layer="0", roi_size=16, targets=[target], progress=False
    )
    direct = camscope.explain(model, scan[None], method="grad_cam", layer="0", targets=target)
    torch.testing.assert_close(one.maps, direct.upsample().maps[0])
    # by hand, the score a window's map explains: channel 2's logits summed over the region
    with torch.no_grad():
        assert torch.allclose(target(model(scan[None])), model(scan[None])[0, 2][region].sum())
    # a long scan: windows that do not reach the region explain nothing there
    long = torch.randn(1, 60, 16, 16, dtype=torch.float64)
    mask = torch.zeros(60, 16, 16, dtype=torch.bool)
    mask[2:6, 4:8, 4:8] = True
    far = camscope.explain_scan(
        model, long, method="saliency", roi_size=16, overlap=0.0, progress=False,
        targets=[camscope.targets.region_target(1, mask), camscope.targets.region_target(0, mask)],
    )  # fmt: skip
    assert far.maps.shape == (2, 60, 16, 16) and far.targets is None
    assert far.maps[:, 16:].abs().max() == 0 and far.maps[:, :16].abs().max() > 0
    with pytest.raises(camscope.InputError, match="the scan's spatial shape"):
        camscope.explain_scan(
            model, long, method="saliency", roi_size=16, progress=False,
            targets=[camscope.targets.region_target(1, region)],
        )  # fmt: skip


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_region_targets_follow_their_window_in_input_space_methods(method):
    """Input-space methods score many perturbed copies of each window in one batch: each copy is
    scored with its own window's part of the region. Checked against explaining each window
    alone (a scan of one window)."""
    model = _dense(3)
    scan = torch.randn(1, 24, 12, 12, dtype=torch.float64)
    mask = torch.zeros(24, 12, 12, dtype=torch.bool)
    mask[2:5, 3:7, 3:7] = True  # only the first window (rows 0..11) reaches it
    mask[20:23, 5:9, 5:9] = True  # only the second (rows 12..23)
    options = {"steps": 4} if method == "integrated_gradients" else {"window": 4}
    both = camscope.explain_scan(
        model, scan, method=method, roi_size=12, overlap=0.0, batch_size=2, progress=False,
        targets=[camscope.targets.region_target(1, mask)], **options,
    )  # fmt: skip
    for rows in (slice(0, 12), slice(12, 24)):
        alone = camscope.explain_scan(
            model, scan[:, rows], method=method, roi_size=12, batch_size=1, progress=False,
            targets=[camscope.targets.region_target(1, mask[rows])], **options,
        )  # fmt: skip
        torch.testing.assert_close(both.maps[:, rows], alone.maps)


def test_scan_command_takes_region_and_voxel_targets_from_files(tmp_path):
    import json

    import nibabel
    import numpy as np
    from click.testing import CliRunner

    from camscope.cli.main import cli

    affine = np.diag([1.5, 2.0, 2.5, 1.0])
    volume = np.random.default_rng(0).standard_normal((30, 20, 20)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, affine), tmp_path / "ct.nii.gz")
    lesion = np.zeros((30, 20, 20), np.uint8)
    lesion[3:7, 4:9, 5:10] = 1
    nibabel.save(nibabel.Nifti1Image(lesion, affine), tmp_path / "lesion.nii.gz")
    np.save(tmp_path / "wrong.npy", np.ones((8, 8, 8), np.uint8))
    torch.manual_seed(0)  # tanh: no voxel where every feature is dead (its maps would be empty)
    model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv3d(4, 3, 1)).eval()
    torch.save(model, tmp_path / "net.pt")

    def run(*extra: str) -> object:
        return CliRunner().invoke(
            cli,
            ["scan", str(tmp_path / "net.pt"), str(tmp_path / "ct.nii.gz"), "--roi", "16",
             "--method", "saliency", "--trust-pickle", "--quiet", *extra],
        )  # fmt: skip

    done = run("--region", f"{tmp_path / 'lesion.nii.gz'}:2", "--voxel", "20,10,10",
               "--format", "nifti,zarr", "--out", str(tmp_path / "o"))  # fmt: skip
    assert done.exit_code == 0, done.output
    maps = np.load(tmp_path / "o" / "ct.saliency.npy")
    reference = camscope.explain_scan(
        model, torch.from_numpy(volume)[None], method="saliency", roi_size=16, progress=False,
        targets=[camscope.targets.region_target(2, torch.from_numpy(lesion > 0))],
    )  # fmt: skip
    assert maps.shape == (2, 30, 20, 20)
    np.testing.assert_allclose(maps[0], reference.maps[0].numpy(), rtol=1e-5, atol=1e-7)
    assert nibabel.load(tmp_path / "o" / "ct.saliency.voxel1.nii.gz").shape == (30, 20, 20)
    details = json.loads((tmp_path / "o" / "manifest.json").read_text())["target_details"]
    assert details == {"region0": f"{tmp_path / 'lesion.nii.gz'}:2", "voxel1": "20,10,10"}
    assert "segmentation" in (tmp_path / "o" / "report.html").read_text()
    import zarr

    image = zarr.open_group(tmp_path / "o" / "ct.saliency.zarr", mode="r")
    np.testing.assert_array_equal(image["0"][:], maps)
    assert image.attrs["camscope"]["targets"] == ["region0", "voxel1"]
    assert image.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0][
        "scale"
    ] == [1.0, 1.5, 2.0, 2.5]
    bad = run("--region", str(tmp_path / "wrong.npy"), "--out", str(tmp_path / "p"))
    assert bad.exit_code == 2 and "mask of shape (8, 8, 8), the scan is (30, 20, 20)" in bad.output
    outside = run("--voxel", "40,1,1", "--out", str(tmp_path / "q"))
    assert outside.exit_code == 2 and "3 comma-separated indices inside the scan" in outside.output
    too_high = run("--region", f"{tmp_path / 'lesion.nii.gz'}:5", "--out", str(tmp_path / "r"))
    assert too_high.exit_code == 2 and "class 5 out of range: the output has 3 channels" in (
        too_high.output
    )
    assert not (tmp_path / "r").exists()  # a run that did nothing leaves no empty folder
    negative = run("--voxel", "1,1,1:-1", "--out", str(tmp_path / "s"))
    assert negative.exit_code == 2 and "must be 0 or more" in negative.output


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize("overlap", [0.25, 0.6])
def test_a_map_constant_in_every_window_stays_constant_when_blended(blend, overlap):
    """Saliency of a network that averages c·x over its window is c / N at every voxel of every
    window: blended over any layout, the scan's map must be c / N everywhere (the weights of the
    windows covering a voxel sum to one, padding included)."""
    conv = nn.Conv3d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(3.0)
    model = nn.Sequential(conv, nn.AdaptiveAvgPool3d(1), nn.Flatten()).double().eval()
    scan = torch.randn(1, 23, 9, 30, dtype=torch.float64)  # smaller than a window along one axis
    result = camscope.explain_scan(
        model, scan, method="saliency", roi_size=12, overlap=overlap, blend=blend, targets=0,
        progress=False,
    )  # fmt: skip
    torch.testing.assert_close(result.maps, torch.full_like(result.maps, 3.0 / 12**3))


def test_voxel_targets_over_a_scan_are_at_scan_positions():
    """A voxel target names a voxel of the scan: the windows that contain it explain that
    voxel's logit; the others nothing. It equals a region target of that one voxel."""
    model = _dense(3)
    scan = torch.randn(1, 40, 16, 16, dtype=torch.float64)
    voxel = camscope.targets.voxel_target(2, (30, 5, 6))
    one = torch.zeros(40, 16, 16, dtype=torch.bool)
    one[30, 5, 6] = True
    settings = dict(method="saliency", roi_size=16, overlap=0.25, progress=False)
    alone = camscope.explain_scan(model, scan, targets=voxel, **settings)
    listed = camscope.explain_scan(
        model, scan, targets=[voxel, camscope.targets.region_target(2, one)], **settings
    )
    assert alone.labels == ["voxel0"] and listed.labels == ["voxel0", "region1"]
    torch.testing.assert_close(listed.maps[0], listed.maps[1])
    torch.testing.assert_close(alone.maps[0], listed.maps[0])
    support = alone.maps[0].abs() > 0
    assert support.any() and not support[:27].any()  # a 3×3×3 network: the voxel's neighbours
    with pytest.raises(camscope.TargetError, match="class 7 out of range"):
        camscope.explain_scan(
            model, scan, targets=[camscope.targets.voxel_target(7, (1, 1, 1))], **settings
        )
    with pytest.raises(camscope.InputError, match="outside the scan"):
        camscope.explain_scan(
            model, scan, targets=[camscope.targets.voxel_target(1, (41, 1, 1))], **settings
        )
    with pytest.raises(camscope.TargetError, match="0 or more"):
        camscope.targets.region_target(-1, one)


def test_region_and_voxel_targets_over_a_2d_scan():
    """The same cropping in 2D: a one-window scan equals explain() with the region; a voxel
    target equals a region of that one pixel; windows away from it explain nothing."""
    model = _dense(2)
    image = torch.randn(1, 16, 16, dtype=torch.float64)
    region = torch.zeros(16, 16, dtype=torch.bool)
    region[3:7, 5:11] = True
    target = camscope.targets.region_target(1, region)
    one = camscope.explain_scan(
        model, image, method="grad_cam", layer="0", roi_size=16, targets=[target], progress=False
    )
    direct = camscope.explain(model, image[None], method="grad_cam", layer="0", targets=target)
    torch.testing.assert_close(one.maps, direct.upsample().maps[0])
    long = torch.randn(1, 60, 16, dtype=torch.float64)
    pixel = torch.zeros(60, 16, dtype=torch.bool)
    pixel[50, 7] = True
    targets = [camscope.targets.voxel_target(2, (50, 7)), camscope.targets.region_target(2, pixel)]
    both = camscope.explain_scan(
        model, long, method="saliency", roi_size=16, overlap=0.0, progress=False, targets=targets
    )
    torch.testing.assert_close(both.maps[0], both.maps[1])
    assert both.maps[0, :44].abs().max() == 0 and both.maps[0, 44:].abs().max() > 0


def test_writing_a_scan_s_heatmap_files_shows_progress(tmp_path, monkeypatch):
    import nibabel
    import numpy as np
    from click.testing import CliRunner

    from camscope.cli.main import cli
    from camscope.wholescan import outputs as scan_outputs

    monkeypatch.setattr(scan_outputs, "WRITE_PROGRESS_DELAY", 0.0)
    volume = np.random.default_rng(0).standard_normal((20, 20, 20)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "ct.nii.gz")
    torch.save(_dense(3).float(), tmp_path / "net.pt")
    done = CliRunner().invoke(
        cli,
        ["scan", str(tmp_path / "net.pt"), str(tmp_path / "ct.nii.gz"), "--roi", "16",
         "--method", "grad-cam", "--layer", "0", "--targets", "all", "--format", "nifti",
         "--trust-pickle", "--out", str(tmp_path / "o")],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "writing grad_cam" in done.output
    assert len(list((tmp_path / "o").glob("ct.grad_cam.*.nii.gz"))) == 3
