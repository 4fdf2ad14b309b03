"""The lesion showcase: a MONAI UNet on the MNI152 template, explained with region targets."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("nilearn", reason="the showcase's volume is the template inside nilearn")


def test_the_template_is_pooled_with_an_affine_that_keeps_world_positions():
    import nibabel

    from camscope.showcases.lesions import TEMPLATE, _nilearn_data, brain_volume

    scan, white = brain_volume(factor=2)
    full = nibabel.load(_nilearn_data() / TEMPLATE)
    assert scan.data.shape == (1, 98, 116, 94) and white.shape == (98, 116, 94)
    assert 0.0 <= scan.data.min() and scan.data.max() <= 1.0
    assert 0.1 < white.mean() < 0.3  # white matter: a fraction of the box
    # pooled voxel (i, j, k) is the mean of full voxels 2i..2i+1: its world position is theirs
    for index in [(0, 0, 0), (10, 20, 30), (97, 115, 93)]:
        block = [2 * np.array(index) + np.array(o) for o in np.ndindex(2, 2, 2)]
        expected = np.mean([full.affine[:3, :3] @ b + full.affine[:3, 3] for b in block], axis=0)
        got = scan.affine[:3, :3] @ np.array(index) + scan.affine[:3, 3]
        np.testing.assert_allclose(got, expected)


def test_lesions_are_where_asked_apart_and_dark():
    from camscope.showcases.lesions import paste_lesions

    volume = np.ones((40, 44, 36), np.float32)
    allowed = np.zeros(volume.shape, bool)
    allowed[8:32, 8:36, 8:28] = True
    lesions = paste_lesions(volume, allowed, 4, seed=3, noise=0.0)
    assert len(lesions.masks) == 4 and len(lesions.centres) == 4
    for centre, mask in zip(lesions.centres, lesions.masks, strict=True):
        assert allowed[centre] and mask[centre]
        assert 8 <= mask.sum() <= 4 / 3 * np.pi * 5**3 + 1  # semi-axes 2 to 5 voxels
        # dark: 0.1 to 0.3 at full weight (radius ≤ 0.75), at most halfway to 1 on the surface
        assert lesions.volume[mask].min() <= 0.3 and lesions.volume[mask].max() <= 0.65
    for a in range(4):
        for b in range(a + 1, 4):
            assert np.linalg.norm(np.subtract(lesions.centres[a], lesions.centres[b])) >= 12
            assert not (lesions.masks[a] & lesions.masks[b]).any()
    assert lesions.labels.sum() == sum(m.sum() for m in lesions.masks)
    again = paste_lesions(volume, allowed, 4, seed=3, noise=0.0)
    assert again.centres == lesions.centres  # seeded


@pytest.mark.slow
def test_showcase_command_end_to_end(tmp_path):
    import nibabel
    from click.testing import CliRunner

    from camscope.cli.main import cli

    result = CliRunner().invoke(
        cli,
        [
            "showcase", "lesions", "--out", str(tmp_path / "les"), "--steps", "4",
            "--train-volumes", "1", "--lesions", "2", "--methods", "grad-cam,saliency", "--quiet",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "les" / "results.json").read_text())
    assert set(results["summary"]) == {"grad_cam", "saliency"}
    assert len(results["per_lesion"]["saliency"]) == 2
    for rows in results["per_lesion"].values():
        for row in rows:
            assert 0 <= row["mass"] <= 1 or np.isnan(row["mass"])
            assert 0 < row["chance"] < 0.01
    maps = nibabel.load(tmp_path / "les" / "maps" / "saliency.nii.gz")
    volume = nibabel.load(tmp_path / "les" / "volume.nii.gz")
    assert maps.shape == (98, 116, 94, 2)
    np.testing.assert_allclose(maps.affine, volume.affine)
    assert (tmp_path / "les" / "report.html").exists()
    assert (tmp_path / "les" / "figures" / "slices.png").exists()


def test_a_method_that_cannot_work_on_the_unet_is_refused_before_training(tmp_path):
    from click.testing import CliRunner

    from camscope.cli.main import cli

    result = CliRunner().invoke(
        cli,
        ["showcase", "lesions", "--out", str(tmp_path / "les"), "--methods", "guided-backprop"],
    )
    assert result.exit_code == 2
    assert "--methods guided_backprop" in result.output and "PReLU" in result.output
    assert "training" not in result.output and not (tmp_path / "les").exists()
