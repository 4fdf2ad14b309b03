"""Sanity checks on a network without ReLU: the ReLU-rule methods are skipped and named."""

from __future__ import annotations

import torch

from camscope.evaluation.sanity import sanity_check, sanity_table


def test_relu_rule_methods_are_skipped_on_a_prelu_network():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.PReLU(), torch.nn.Conv2d(4, 4, 3, padding=1),
        torch.nn.PReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3),
    ).eval()  # fmt: skip
    inputs = torch.randn(4, 1, 12, 12)
    results = sanity_check(
        model, inputs, torch.tensor([0, 1, 2, 0]), ["saliency", "guided_backprop", "deconvnet"],
        progress=False, road_percentages=(50,),
    )  # fmt: skip
    assert [r.method for r in results] == ["saliency"]
    assert set(results.skipped) == {"guided_backprop", "deconvnet"}
    assert "PReLU" in results.skipped["deconvnet"]
    assert (
        "Does not apply to this model (no ReLU ran; its activations: PReLU): guided_backprop"
        in (sanity_table(results))
    )


def test_the_maps_figure_of_a_deep_network_shows_a_dozen_steps_and_the_last():
    import io

    from PIL import Image

    from camscope.evaluation.sanity import MAP_COLUMNS, SanityResult, sanity_figures

    layers = [f"layer{i}" for i in range(41)]
    result = SanityResult(
        "saliency", layers, torch.rand(2, 41), torch.rand(2), torch.rand(2), None,
        torch.rand(2, 8, 8), torch.rand(41, 2, 8, 8),
    )  # fmt: skip
    _, (_, maps) = sanity_figures([result])
    width = Image.open(io.BytesIO(maps)).size[0]
    narrow = SanityResult(
        "saliency", layers[:11], torch.rand(2, 11), torch.rand(2), torch.rand(2), None,
        torch.rand(2, 8, 8), torch.rand(11, 2, 8, 8),
    )  # fmt: skip
    same = Image.open(io.BytesIO(sanity_figures([narrow])[1][1])).size[0]
    assert MAP_COLUMNS == 12 and width == same  # 41 steps drawn in as many columns as 11
    assert sanity_figures([]) == []  # every method skipped: no figure, no error


def test_the_curves_figure_of_thirty_methods_keeps_its_axes_and_a_legend_beside_them():
    """A legend of 31 methods once squeezed the axes to nothing (a Matplotlib warning, an error
    under this suite's settings); it now stands beside them in columns of 12."""
    import io

    from PIL import Image

    from camscope.evaluation.sanity import SanityResult, sanity_figures

    def result(name: str) -> SanityResult:
        return SanityResult(
            name, ["a", "b", "c"], torch.rand(2, 3), torch.rand(2), torch.rand(2), None,
            torch.rand(2, 8, 8), torch.rand(3, 2, 8, 8),
        )  # fmt: skip

    (_, many), _ = sanity_figures([result(f"method{i}") for i in range(31)])
    (_, one), _ = sanity_figures([result("saliency")])
    wide, narrow = (Image.open(io.BytesIO(png)).size[0] for png in (many, one))
    assert wide > narrow  # three legend columns beside the axes
