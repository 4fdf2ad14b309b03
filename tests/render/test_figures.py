"""Pictures: colour maps follow the sign, every figure kind renders, the layer grid runs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import camscope
from camscope.models import create_model
from camscope.render import (
    figure_png,
    isosurface_figure,
    layer_grid,
    methods_figure,
    montage_figure,
    overlay_figure,
    slice_figure,
)
from camscope.render.report import ReportEntry, ReportMap, colorize, write_report

PNG = b"\x89PNG\r\n\x1a\n"
RNG = np.random.default_rng(0)


def test_signed_maps_use_a_diverging_map_centred_on_zero():
    heat = np.array([[-2.0, 0.0, 2.0]])
    rgb = colorize(heat, signed=True, limits=(-2.0, 2.0)).astype(int)
    negative, zero, positive = rgb[0]
    assert negative[2] > negative[0] and positive[0] > positive[2]  # blue below, red above
    assert zero.min() > 200  # zero is (near) white
    ramp = colorize(np.array([[0.0, 1.0]]), signed=False, limits=(0.0, 1.0)).astype(int)
    assert ramp[0, 0].sum() < 60 and ramp[0, 1].sum() > 400  # inferno: black → bright yellow


@pytest.mark.parametrize("signed", [True, False])
def test_every_figure_kind_renders(signed):
    volume = RNG.standard_normal((1, 12, 14, 16))
    heat = RNG.standard_normal((12, 14, 16))
    heat = heat if signed else np.abs(heat)
    image = RNG.random((3, 20, 24))
    figures = [  # (figure, panels showing an image: the colour bar is an axis without one)
        (overlay_figure(image, RNG.standard_normal((20, 24)), signed=signed), 1),
        (overlay_figure(volume, heat, signed=signed), 3),
        (slice_figure(volume, heat, signed=signed, position=(1, 2, 3)), 3),
        (montage_figure(volume, heat, signed=signed, axis=2, count=5), 5),
        (methods_figure(volume, {"a": (heat, signed), "b": (heat * 2, signed)}), 3),
        (methods_figure(image, {"a": (image[0], signed)}), 2),
    ]
    for figure, panels in figures:
        assert sum(1 for axis in figure.axes if axis.images) == panels
        png = figure_png(figure)
        assert png.startswith(PNG)
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)
        width, height = figure.get_size_inches() * 80  # figure_png's default dpi
        assert abs(pixels.shape[1] - width) <= 2 and abs(pixels.shape[0] - height) <= 2
        assert pixels.std() > 10  # something is drawn, not a blank page


def test_isosurface_figure_draws_positive_and_negative_levels():
    grid = np.indices((16, 16, 16)).astype(float) - 8
    blob = np.exp(-(grid**2).sum(0) / 10)
    heat = blob - np.roll(blob, 6, axis=0)
    figure = isosurface_figure(blob, heat)
    right = figure.axes[1]
    colours = {tuple(np.round(c.get_facecolor()[0][:3], 2)) for c in right.collections}
    assert len(right.collections) == 2 and len(colours) == 2
    assert figure_png(figure).startswith(PNG)


def test_layer_grid_runs_the_method_at_every_spatial_layer():
    model = create_model("tiny3d", num_classes=3, input_size=16)
    figure = layer_grid(model, torch.randn(1, 1, 16, 16, 16), method="grad_cam")
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert [t.split()[0] for t in titles] == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2"]
    assert titles[0].endswith("16×16×16") and titles[-1].endswith("4×4×4")
    with pytest.raises(camscope.MethodError, match="layer method"):
        layer_grid(model, torch.randn(1, 1, 16, 16, 16), method="saliency")


def test_drawing_leaves_matplotlib_backend_alone():
    import matplotlib

    import camscope.render as render

    before = matplotlib.get_backend()
    figure = render.overlay_figure(np.zeros((1, 8, 8)), np.ones((8, 8)), signed=False)
    assert render.figure_png(figure)[:4] == b"\x89PNG"
    assert matplotlib.get_backend() == before


def test_maps_shown_non_negative_get_a_sequential_colour_map():
    import camscope

    for name in ("saliency", "guided_backprop", "deconvnet", "guided_grad_cam"):
        assert not camscope.get_method(name).shown_signed, name
    for name in ("respond_cam", "grad_cam", "integrated_gradients", "occlusion"):
        assert camscope.get_method(name).shown_signed, name


def test_a_report_of_many_volume_maps_stays_small_and_links_the_full_maps(tmp_path):
    """23 classes over a 64×160×160 scan: slices shared out, JPEG previews, each map linked."""
    rng = np.random.default_rng(0)
    scan = rng.standard_normal((1, 64, 160, 160)).astype(np.float32)
    grid = np.indices((64, 160, 160)).sum(0).astype(np.float32)
    maps = [
        ReportMap("grad_cam", f"class{c}", np.sin(grid / (7 + c)), True, file=f"s.class{c}.nii.gz")
        for c in range(23)
    ]
    path = write_report(tmp_path / "report.html", [ReportEntry("scan", scan, maps)])
    text = path.read_text()
    assert path.stat().st_size < 6 * 2**20, path.stat().st_size  # 64 PNG slices a map: 127 MB
    # the budget of 256 slices shared out (11 each), and each slider's first picture
    assert text.count("data:image/jpeg;base64,") == 23 * (11 + 1)
    assert all(f'href="s.class{c}.nii.gz"' in text for c in range(23))
