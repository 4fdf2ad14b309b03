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
