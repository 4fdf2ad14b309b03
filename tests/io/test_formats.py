"""Inputs and heatmap outputs in every format: geometry survives, broken files give clear errors."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import mrcfile
import nibabel
import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from camscope import InputError
from camscope.io.heatmaps import HEATMAP_FORMATS, heatmap_suffix, write_heatmap
from camscope.io.inputs import read_image

RNG = np.random.default_rng(0)


def _affine() -> np.ndarray:
    angle = 0.3
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = [-90.0, 12.5, 40.0]
    return affine


def write_dicom(
    path,
    pixels: np.ndarray,
    *,
    photometric="MONOCHROME2",
    slope=1.0,
    intercept=0.0,
    window=None,
    series=None,
    position=None,
    orientation=None,
    instance=None,
):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.PixelSpacing = [0.7, 0.6]
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.SeriesInstanceUID = series or generate_uid()
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    if instance is not None:
        ds.InstanceNumber = instance
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


# -- inputs ------------------------------------------------------------------------------------


def test_nifti_keeps_affine_and_axes(tmp_path):
    data = RNG.standard_normal((6, 7, 8)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(data, _affine()), tmp_path / "scan.nii.gz")
    scan = read_image(tmp_path / "scan.nii.gz")
    assert scan.format == "nifti" and scan.data.shape == (1, 6, 7, 8)
    np.testing.assert_array_equal(scan.data[0], data)
    np.testing.assert_allclose(scan.affine, _affine())
    assert scan.spacing == pytest.approx((0.8, 0.9, 2.5))


def _map_with_geometry(path):
    """A (5, 6, 7) MRC map with voxel size (10, 11, 12) Å and origin (1, 2, 3) Å."""
    data = RNG.standard_normal((5, 6, 7)).astype(np.float32)
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = (10.0, 11.0, 12.0)
        mrc.header.origin = (1.0, 2.0, 3.0)
    return data


def test_mrc_keeps_voxel_size_and_origin(tmp_path):
    data = _map_with_geometry(tmp_path / "map.mrc")
    scan = read_image(tmp_path / "map.mrc")
    np.testing.assert_array_equal(scan.data[0], data)
    assert scan.spacing == (12.0, 11.0, 10.0)  # (z, y, x) like the array
    assert scan.origin == (1.0, 2.0, 3.0)


def test_tiff_stack_is_a_volume_and_a_page_an_image(tmp_path):
    stack = RNG.standard_normal((4, 9, 10)).astype(np.float32)
    tifffile.imwrite(
        tmp_path / "stack.tif", stack, imagej=True, metadata={"spacing": 2.5, "axes": "ZYX"}
    )
    scan = read_image(tmp_path / "stack.tif")
    assert scan.data.shape == (1, 4, 9, 10) and scan.is_volume
    np.testing.assert_array_equal(scan.data[0], stack)
    assert scan.spacing == (2.5, 1.0, 1.0)  # (z, y, x): ImageJ spacing, no resolution tags
    page = (RNG.random((9, 10)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "page.tiff", page)
    image = read_image(tmp_path / "page.tiff")
    assert image.data.shape == (1, 9, 10)
    np.testing.assert_allclose(image.data[0], page / 65535.0, rtol=1e-6)
    rgb = (RNG.random((9, 10, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    assert read_image(tmp_path / "rgb.tif").data.shape == (3, 9, 10)


def test_png_and_jpeg(tmp_path):
    grey = (RNG.random((12, 14)) * 255).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    np.testing.assert_allclose(read_image(tmp_path / "g.png").data[0], grey / 255.0, rtol=1e-6)
    Image.fromarray((RNG.random((12, 14, 3)) * 255).astype(np.uint8)).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").data.shape == (3, 12, 14)
    Image.fromarray((RNG.random((12, 14, 4)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").data.shape == (3, 12, 14)  # alpha dropped


def test_dicom_rescale_window_and_monochrome1(tmp_path):
    raw = RNG.integers(0, 4000, (8, 9)).astype(np.uint16)
    write_dicom(tmp_path / "ct.dcm", raw, slope=2.0, intercept=-1024.0)
    scan = read_image(tmp_path / "ct.dcm", dicom_window="none")
    np.testing.assert_allclose(scan.data[0], raw * 2.0 - 1024.0)  # Hounsfield units
    assert scan.spacing == (0.7, 0.6)
    write_dicom(tmp_path / "w.dcm", raw, slope=2.0, intercept=-1024.0, window=(40.0, 400.0))
    windowed = read_image(tmp_path / "w.dcm").data[0]
    hu = raw * 2.0 - 1024.0
    assert windowed.min() == 0.0 and windowed.max() == 1.0
    assert (windowed[hu <= 40 - 200] == 0).all() and (windowed[hu >= 40 + 200] == 1).all()
    write_dicom(tmp_path / "m1.dcm", raw, photometric="MONOCHROME1")
    inverted = read_image(tmp_path / "m1.dcm", dicom_window="none").data[0]
    np.testing.assert_allclose(inverted, raw.max() + raw.min() - raw.astype(np.float64))


def test_real_chest_radiograph_dicom():
    path = importlib.resources.files("data_store") / "data" / "RG1_UNCR.dcm"
    scan = read_image(str(path))
    dataset = pydicom.dcmread(str(path))
    assert dataset.PhotometricInterpretation == "MONOCHROME1"
    assert scan.data.shape == (1, dataset.Rows, dataset.Columns)
    assert 0.0 <= scan.data.min() < 0.05 and 0.95 < scan.data.max() <= 1.0
    assert scan.details["inverted"]


def test_numpy_inputs(tmp_path):
    volume = RNG.standard_normal((5, 6, 7)).astype(np.float32)
    np.save(tmp_path / "v.npy", volume)
    assert read_image(tmp_path / "v.npy").data.shape == (1, 5, 6, 7)
    np.savez(tmp_path / "v.npz", x=volume, other=np.zeros(3))
    np.testing.assert_array_equal(read_image(tmp_path / "v.npz").data[0], volume)
    np.savez(tmp_path / "two.npz", a=volume, b=volume)
    with pytest.raises(InputError, match="name the input array 'x'"):
        read_image(tmp_path / "two.npz")
    np.save(tmp_path / "five.npy", np.zeros((1, 1, 2, 2, 2), dtype=np.float32))
    with pytest.raises(InputError, match="give"):
        read_image(tmp_path / "five.npy")
    np.save(tmp_path / "nan.npy", np.full((4, 4), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="NaN"):
        read_image(tmp_path / "nan.npy")


def _truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("kind", ["png", "jpeg", "tiff", "dicom", "nifti", "mrc", "npy", "npz"])
def test_truncated_or_corrupted_files_give_a_clear_error(tmp_path, kind):
    image = (RNG.random((32, 32)) * 255).astype(np.uint8)
    volume = RNG.standard_normal((8, 8, 8)).astype(np.float32)
    path = {
        "png": tmp_path / "x.png",
        "jpeg": tmp_path / "x.jpg",
        "tiff": tmp_path / "x.tif",
        "dicom": tmp_path / "x.dcm",
        "nifti": tmp_path / "x.nii",
        "mrc": tmp_path / "x.mrc",
        "npy": tmp_path / "x.npy",
        "npz": tmp_path / "x.npz",
    }[kind]
    if kind in ("png", "jpeg"):
        Image.fromarray(image).save(path)
    elif kind == "tiff":
        tifffile.imwrite(path, volume)
    elif kind == "dicom":
        write_dicom(path, image.astype(np.uint16))
    elif kind == "nifti":
        nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), path)
    elif kind == "mrc":
        with mrcfile.new(path) as mrc:
            mrc.set_data(volume)
    elif kind == "npy":
        np.save(path, volume)
    else:
        np.savez(path, x=volume)
    read_image(path)  # whole: fine
    _truncate(path)
    with pytest.raises(InputError, match=r"cannot read .* as|truncated|complete"):
        read_image(path)
    path.write_bytes(b"\x00garbage" * 3)
    with pytest.raises(InputError, match="cannot read"):
        read_image(path)


def test_unsupported_and_missing(tmp_path):
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(InputError, match=r"unsupported input type \.gif"):
        read_image(tmp_path / "a.gif")
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.nii.gz")


# -- heatmap outputs ----------------------------------------------------------------------------


def test_nifti_heatmap_has_the_inputs_affine(tmp_path):
    data = RNG.standard_normal((6, 7, 8)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(data, _affine()), tmp_path / "scan.nii.gz")
    scan = read_image(tmp_path / "scan.nii.gz")
    heat = RNG.standard_normal((6, 7, 8)).astype(np.float32)
    write_heatmap(tmp_path / "heat.nii.gz", heat, scan, "nifti")
    back = nibabel.load(tmp_path / "heat.nii.gz")
    np.testing.assert_allclose(back.affine, _affine(), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(back.dataobj), heat)
    # the same voxel of scan and heatmap maps to the same world point
    assert read_image(tmp_path / "heat.nii.gz").data.shape == (1, 6, 7, 8)


def test_mrc_heatmap_keeps_voxel_size_and_origin(tmp_path):
    _map_with_geometry(tmp_path / "map.mrc")
    scan = read_image(tmp_path / "map.mrc")
    heat = RNG.standard_normal((5, 6, 7)).astype(np.float32)
    write_heatmap(tmp_path / "heat.mrc", heat, scan, "mrc")
    with mrcfile.open(tmp_path / "heat.mrc") as mrc:
        np.testing.assert_array_equal(mrc.data, heat)
        assert tuple(mrc.voxel_size.item()) == (10.0, 11.0, 12.0)
        assert tuple(mrc.header.origin.item()) == (1.0, 2.0, 3.0)
    # MRC input → NIfTI heatmap: (z, y, x) becomes (x, y, z) with the voxel sizes and origin,
    # in µm (NIfTI has no Å): 10 Å = 1e-3 µm
    write_heatmap(tmp_path / "heat.nii.gz", heat, scan, "nifti")
    image = nibabel.load(tmp_path / "heat.nii.gz")
    np.testing.assert_array_equal(np.asarray(image.dataobj), heat.T)
    assert image.header.get_xyzt_units()[0] == "micron"
    np.testing.assert_allclose(np.diag(image.affine)[:3], [1e-3, 1.1e-3, 1.2e-3], rtol=1e-6)
    np.testing.assert_allclose(image.affine[:3, 3], [1e-4, 2e-4, 3e-4], rtol=1e-6)


def test_nifti_input_to_mrc_heatmap(tmp_path):
    data = RNG.standard_normal((6, 7, 8)).astype(np.float32)
    image = nibabel.Nifti1Image(data, np.diag([0.5, 0.6, 0.7, 1.0]))
    image.header.set_xyzt_units("micron")
    nibabel.save(image, tmp_path / "s.nii")
    scan = read_image(tmp_path / "s.nii")
    write_heatmap(tmp_path / "h.mrc", data, scan, "mrc")
    with mrcfile.open(tmp_path / "h.mrc") as mrc:
        np.testing.assert_array_equal(mrc.data, data.T)
        np.testing.assert_allclose(tuple(mrc.voxel_size.item()), (5000.0, 6000.0, 7000.0))


def test_tiff_png_npy_heatmaps(tmp_path):
    volume = RNG.standard_normal((4, 9, 10)).astype(np.float32)
    tifffile.imwrite(
        tmp_path / "stack.tif", volume, imagej=True, metadata={"spacing": 2.5, "axes": "ZYX"}
    )
    scan = read_image(tmp_path / "stack.tif")
    heat = RNG.standard_normal((4, 9, 10)).astype(np.float32)
    write_heatmap(tmp_path / "h.tif", heat, scan, "tiff")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "h.tif"), heat)
    write_heatmap(tmp_path / "h.npy", heat, scan, "npy")
    np.testing.assert_array_equal(np.load(tmp_path / "h.npy"), heat)
    write_heatmap(tmp_path / "h.png", heat, scan, "png", signed=True, title="x")
    with Image.open(tmp_path / "h.png") as picture:
        assert picture.format == "PNG" and picture.size[0] > 300
    with pytest.raises(InputError, match="upsample it"):
        write_heatmap(tmp_path / "bad.npy", heat[:2], scan, "npy")
    with pytest.raises(InputError, match="unknown heatmap format"):
        write_heatmap(tmp_path / "bad.x", heat, scan, "vtk")
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("kind", HEATMAP_FORMATS)
def test_every_format_round_trips_a_two_d_heatmap(tmp_path, kind):
    image = (RNG.random((12, 14)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    scan = read_image(tmp_path / "in.png")
    heat = RNG.standard_normal((12, 14)).astype(np.float32)
    path = write_heatmap(tmp_path / f"h{heatmap_suffix(kind)}", heat, scan, kind)
    if kind == "png":
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return
    back = read_image(path).data[0]
    np.testing.assert_array_equal(back.T if kind == "nifti" else back.reshape(heat.shape), heat)


def _series(folder, *, count=5, spacing=2.5, shuffle=True):
    """An axial CT series: slice k at z = 30 + k·spacing, written in a shuffled file order, each
    slice with its own rescale slope."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    raws = [RNG.integers(0, 3000, (6, 7)).astype(np.uint16) for _ in range(count)]
    order = RNG.permutation(count) if shuffle else np.arange(count)
    for file_index, k in enumerate(order):
        write_dicom(
            folder / f"slice{file_index:03d}.dcm",
            raws[k],
            slope=1.0 + 0.5 * k,
            intercept=-1024.0,
            series=uid,
            position=(-100.0, -120.0, 30.0 + spacing * k),
            orientation=(1, 0, 0, 0, 1, 0),
            instance=int(k) + 1,
        )
    return raws


def test_dicom_series_folder_is_a_volume_with_a_ras_affine(tmp_path):
    raws = _series(tmp_path / "ct")
    scan = read_image(tmp_path / "ct", dicom_window="none")
    assert scan.format == "dicom-series" and scan.data.shape == (1, 5, 6, 7)
    for k, raw in enumerate(raws):  # ordered along z, each slice rescaled with its own slope
        np.testing.assert_allclose(scan.data[0, k], raw * (1.0 + 0.5 * k) - 1024.0)
    assert scan.spacing == pytest.approx((2.5, 0.7, 0.6))
    # voxel (k, r, c) sits at LPS (−100 + 0.6c, −120 + 0.7r, 30 + 2.5k); RAS negates x and y
    k, r, c = 3, 4, 5
    world = scan.affine @ np.array([k, r, c, 1.0])
    np.testing.assert_allclose(world[:3], [100 - 0.6 * c, 120 - 0.7 * r, 30 + 2.5 * k])
    write_heatmap(tmp_path / "h.nii.gz", scan.data[0], scan, "nifti")
    np.testing.assert_allclose(nibabel.load(tmp_path / "h.nii.gz").affine, scan.affine, atol=1e-6)


def test_dicom_series_errors(tmp_path):
    _series(tmp_path / "two")
    _series(tmp_path / "two_b")
    for file in (tmp_path / "two_b").iterdir():
        file.rename(tmp_path / "two" / f"b_{file.name}")
    with pytest.raises(InputError, match="2 DICOM series"):
        read_image(tmp_path / "two")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="at least 2"):
        read_image(tmp_path / "empty")


def test_folder_dataset_groups_series_and_keeps_single_files(tmp_path):
    from camscope.runs import resolve_dataset

    _series(tmp_path / "data" / "patient1" / "ct")
    write_dicom(tmp_path / "data" / "xray.dcm", (RNG.random((8, 8)) * 100).astype(np.uint16))
    Image.fromarray((RNG.random((8, 8)) * 255).astype(np.uint8)).save(tmp_path / "data" / "a.png")
    dataset = resolve_dataset([str(tmp_path / "data")])
    names = [str(Path(p).relative_to(tmp_path / "data")) for p in dataset.paths]
    assert names == ["a.png", "patient1/ct", "xray.dcm"]
    assert read_image(dataset.paths[1]).data.shape == (1, 5, 6, 7)


def test_mrc_heatmap_keeps_start_indices_and_is_the_same_bytes_every_time(tmp_path):
    import time

    import mrcfile

    from camscope.io import read_image, write_heatmap

    volume = np.random.default_rng(0).standard_normal((6, 5, 4)).astype(np.float32)
    with mrcfile.new(tmp_path / "sub.mrc") as mrc:
        mrc.set_data(volume)
        mrc.voxel_size = (2.0, 3.0, 4.0)
        mrc.header.origin = (10.0, 20.0, 30.0)
        mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = 100, 200, 30
    scan = read_image(tmp_path / "sub.mrc")
    write_heatmap(tmp_path / "a.mrc", volume, scan, "mrc")
    time.sleep(1.1)  # mrcfile's default label holds the time of day
    write_heatmap(tmp_path / "b.mrc", volume, scan, "mrc")
    assert (tmp_path / "a.mrc").read_bytes() == (tmp_path / "b.mrc").read_bytes()
    with mrcfile.open(tmp_path / "a.mrc") as mrc:
        header = mrc.header
        assert (int(header.nxstart), int(header.nystart), int(header.nzstart)) == (100, 200, 30)
        assert tuple(float(v) for v in mrc.voxel_size.item()) == (2.0, 3.0, 4.0)
        assert (float(header.origin.x), float(header.origin.y)) == (10.0, 20.0)
