"""Geometry kept from input to heatmap, or said why not: NIfTI codes, TIFF spacing, DICOM
position and degenerate spacing, non-parallel series, 4D NIfTI; the intensity rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
import tifffile
from pydicom.data import get_testdata_file

from camscope.errors import InputError
from camscope.io import read_image, write_heatmap

RNG = np.random.default_rng(0)


def test_nifti_heatmap_keeps_qform_and_sform_codes(tmp_path):
    data = RNG.standard_normal((6, 7, 5)).astype(np.float32)
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = (-10, 5, 7)
    image = nibabel.Nifti1Image(data, affine)
    image.set_qform(affine, code=2)
    image.set_sform(affine, code=4)
    image.header.set_xyzt_units("mm")
    nibabel.save(image, tmp_path / "in.nii")
    scan = read_image(tmp_path / "in.nii")
    write_heatmap(tmp_path / "h.nii.gz", scan.data[0], scan, "nifti")
    out = nibabel.load(tmp_path / "h.nii.gz")
    assert int(out.header["qform_code"]) == 2 and int(out.header["sform_code"]) == 4
    np.testing.assert_allclose(out.affine, affine)
    assert out.header.get_xyzt_units()[0] == "mm"


def test_imagej_stack_spacing_reaches_nifti_and_tiff_heatmaps(tmp_path):
    stack = RNG.random((4, 6, 8)).astype(np.float32)
    tifffile.imwrite(
        tmp_path / "s.tif",
        stack,
        imagej=True,
        resolution=(2.0, 2.0),  # pixels per µm: 0.5 µm pixels
        metadata={"spacing": 2.0, "unit": "micron", "axes": "ZYX"},  # ImageJ spells µm so
    )
    scan = read_image(tmp_path / "s.tif")
    assert scan.spacing == pytest.approx((2.0, 0.5, 0.5)) and scan.details["unit"] == "µm"
    write_heatmap(tmp_path / "h.nii.gz", stack, scan, "nifti")
    image = nibabel.load(tmp_path / "h.nii.gz")
    np.testing.assert_allclose(np.diag(image.affine)[:3], (0.5, 0.5, 2.0))
    assert image.header.get_xyzt_units()[0] == "micron"
    write_heatmap(tmp_path / "h.tif", stack, scan, "tiff")
    again = read_image(tmp_path / "h.tif")
    assert again.spacing == pytest.approx(scan.spacing) and again.details["unit"] == "µm"


def test_single_dicom_slice_keeps_its_position_and_orientation(tmp_path):
    source = get_testdata_file("CT_small.dcm")
    scan = read_image(source)
    header = pydicom.dcmread(source)
    position = np.asarray(header.ImagePositionPatient, dtype=float)
    write_heatmap(tmp_path / "h.nii.gz", scan.data[0], scan, "nifti")
    affine = nibabel.load(tmp_path / "h.nii.gz").affine
    np.testing.assert_allclose(affine[:3, 3], position * (-1, -1, 1), atol=1e-4)  # LPS → RAS
    spacing = float(header.PixelSpacing[0])
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :2], axis=0), (spacing, spacing))
    # pixel (r, c) lands at position + c·row direction + r·column direction, in RAS
    row_direction = np.asarray(header.ImageOrientationPatient[:3], dtype=float)
    expected = position + 10 * spacing * row_direction
    np.testing.assert_allclose((affine @ [0, 10, 0, 1])[:3], expected * (-1, -1, 1), atol=1e-4)


def test_degenerate_pixel_spacing_falls_back_with_a_warning(tmp_path):
    source = tmp_path / "x.dcm"
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset.PixelSpacing = [0, 0]
    dataset.save_as(source)
    scan = read_image(source)
    assert scan.spacing == (1.0, 1.0) and "degenerate" in scan.details["warning"]
    write_heatmap(tmp_path / "h.nii.gz", scan.data[0], scan, "nifti")  # no HeaderDataError
    assert nibabel.load(tmp_path / "h.nii.gz").shape == scan.data.shape[1:]


def _series(tmp_path: Path, count: int = 3) -> Path:
    folder = tmp_path / "series"
    folder.mkdir()
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for index in range(count):
        template.ImagePositionPatient = [0.0, 0.0, 2.5 * index]
        template.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        template.InstanceNumber = index + 1
        template.save_as(folder / f"IM{index:04d}")
    return folder


def test_a_series_of_parallel_slices_is_a_volume(tmp_path):
    scan = read_image(_series(tmp_path))
    assert scan.data.shape[:2] == (1, 3) and scan.spacing[0] == pytest.approx(2.5)


def test_slices_that_are_not_parallel_are_refused(tmp_path):
    folder = _series(tmp_path)
    tilted = pydicom.dcmread(folder / "IM0001")
    tilted.ImageOrientationPatient = [1, 0, 0, 0, 0.8, 0.6]  # a radial acquisition's plane
    tilted.save_as(folder / "IM0001")
    with pytest.raises(InputError, match="not parallel"):
        read_image(folder)


def test_a_4d_nifti_asks_which_volume(tmp_path):
    data = RNG.standard_normal((5, 6, 4, 3)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), tmp_path / "t.nii.gz")
    with pytest.raises(InputError, match=r"4D NIfTI .* --nifti-volume N .* nifti_volume=N"):
        read_image(tmp_path / "t.nii.gz")
    one = read_image(tmp_path / "t.nii.gz", nifti_volume=2)
    np.testing.assert_array_equal(one.data[0], data[..., 2])
    every = read_image(tmp_path / "t.nii.gz", nifti_volume="channels")
    assert every.data.shape == (3, 5, 6, 4)
    with pytest.raises(InputError, match="out of range"):
        read_image(tmp_path / "t.nii.gz", nifti_volume=3)


def test_intensity_rules(tmp_path):
    from PIL import Image

    pixels = (RNG.random((8, 9)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    auto = read_image(tmp_path / "p.png")
    np.testing.assert_allclose(auto.data[0], pixels / 255.0, rtol=1e-6)
    assert auto.details["intensity"].startswith("auto")
    stored = read_image(tmp_path / "p.png", intensity="stored")
    np.testing.assert_array_equal(stored.data[0], pixels.astype(np.float32))
    z = read_image(tmp_path / "p.png", intensity="zscore").data
    assert abs(float(z.mean())) < 1e-5 and float(z.std()) == pytest.approx(1.0, abs=1e-5)
    m = read_image(tmp_path / "p.png", intensity="minmax").data
    assert float(m.min()) == 0.0 and float(m.max()) == 1.0
    ct = get_testdata_file("CT_small.dcm")  # no window in the file: Hounsfield units
    hu = read_image(ct)
    assert float(hu.data.max()) > 1.0 and "modality" in hu.details["window"]
    with pytest.raises(InputError, match="has none"):
        read_image(ct, intensity="window")
    mr = read_image(get_testdata_file("MR_small.dcm"))  # a window: [0, 1]
    assert 0.0 <= float(mr.data.min()) and float(mr.data.max()) <= 1.0
    with pytest.raises(InputError, match="intensity 'loud' unknown"):
        read_image(ct, intensity="loud")  # type: ignore[arg-type]


def test_dicom_copy_without_extension_reads_the_same(tmp_path):
    source = Path(get_testdata_file("CT_small.dcm"))
    shutil.copy(source, tmp_path / "IM0001")
    np.testing.assert_array_equal(read_image(tmp_path / "IM0001").data, read_image(source).data)


def test_the_real_radiograph_with_zero_spacing(tmp_path):
    import importlib.resources

    pytest.importorskip("data_store")
    path = importlib.resources.files("data_store") / "data" / "RG1_UNCR.dcm"
    scan = read_image(str(path))
    assert scan.spacing == (1.0, 1.0) and "degenerate" in scan.details["warning"]
    write_heatmap(tmp_path / "h.nii.gz", scan.data[0], scan, "nifti")  # once a traceback
    # no position in the file: written in NIfTI's (x, y) order with 1 mm pixels
    image = nibabel.load(tmp_path / "h.nii.gz")
    assert image.shape == scan.data.shape[:0:-1] and np.allclose(np.diag(image.affine), 1)


def test_spacing_crosses_formats_in_the_right_units(tmp_path):
    import mrcfile

    data = RNG.standard_normal((6, 7, 5)).astype(np.float32)
    image = nibabel.Nifti1Image(data, np.diag([2.0, 3.0, 4.0, 1.0]))
    image.header.set_xyzt_units("mm")
    nibabel.save(image, tmp_path / "in.nii")
    scan = read_image(tmp_path / "in.nii")
    write_heatmap(tmp_path / "h.mrc", data, scan, "mrc")
    with mrcfile.open(tmp_path / "h.mrc") as mrc:  # mm → Å
        assert tuple(float(v) for v in mrc.voxel_size.item()) == (2e7, 3e7, 4e7)
    write_heatmap(tmp_path / "h.tif", data, scan, "tiff")
    again = read_image(tmp_path / "h.tif")
    assert again.spacing == pytest.approx((2.0, 3.0, 4.0)) and again.details["unit"] == "mm"
    bare = nibabel.Nifti1Image(data, np.diag([2.0, 3.0, 4.0, 1.0]))  # no unit in the header
    nibabel.save(bare, tmp_path / "bare.nii")
    scan = read_image(tmp_path / "bare.nii")
    write_heatmap(tmp_path / "b.nii.gz", data, scan, "nifti")
    assert nibabel.load(tmp_path / "b.nii.gz").header.get_xyzt_units()[0] == "unknown"
    write_heatmap(tmp_path / "b.mrc", data, scan, "mrc")
    with mrcfile.open(tmp_path / "b.mrc") as mrc:  # unknown unit: not passed off as Å
        assert float(mrc.voxel_size.x) == 0.0
