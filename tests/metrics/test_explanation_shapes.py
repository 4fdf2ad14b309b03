"""Metrics take an Explanation's maps and targets as they come, or the Explanation itself."""

from __future__ import annotations

import pytest
import torch

import camscope
from camscope import metrics
from camscope.errors import InputError
from camscope.models import create_model


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_every_metric_takes_explanations_as_they_come(spatial_dims):
    torch.manual_seed(0)
    name = "tiny2d" if spatial_dims == 2 else "tiny3d"
    model = create_model(name, num_classes=3, input_size=16)
    x = torch.randn(2, 1, *[16] * spatial_dims)
    y = torch.tensor([0, 2])
    e = camscope.explain(model, x, method="grad_cam", targets=y).upsample()
    plain = e.maps[:, 0]
    reference = metrics.average_drop(model, x, plain, y)
    for maps, targets in ((e.maps, e.targets), (e, None), (e, y)):
        result = metrics.average_drop(model, x, maps, targets)
        torch.testing.assert_close(result.drop, reference.drop)
    torch.testing.assert_close(
        metrics.deletion(model, x, e).auc, metrics.deletion(model, x, plain, y).auc
    )
    torch.testing.assert_close(
        metrics.fidelity(model, x, e.maps, e.targets).drop,
        metrics.fidelity(model, x, plain, y).drop,
    )
    box = torch.tensor([[2] * spatial_dims + [9] * spatial_dims] * 2)
    assert torch.equal(metrics.pointing_game(e, box).hit, metrics.pointing_game(plain, box).hit)
    assert torch.equal(metrics.localization(e.maps, box).iou, metrics.localization(plain, box).iou)
    every = camscope.explain(model, x, method="grad_cam", targets="all")
    torch.testing.assert_close(
        metrics.contrastivity(every, y[:, None]).values,  # an Explanation: its maps as shown
        metrics.contrastivity(every.upsample().maps, y).values,
    )
    torch.testing.assert_close(
        metrics.sum_to_score(every).l1, metrics.sum_to_score(every.maps, every.scores).l1
    )
    saliency = camscope.explain(model, x, method="saliency", targets="all")
    torch.testing.assert_close(
        metrics.sum_to_score(saliency).l1,
        metrics.sum_to_score(saliency.maps.sum(2), saliency.scores).l1,
    )


def test_several_targets_per_sample_say_how_to_pick_one():
    model = create_model("tiny2d", num_classes=3, input_size=16)
    x = torch.randn(2, 1, 16, 16)
    every = camscope.explain(model, x, method="grad_cam", targets="all").upsample()
    with pytest.raises(InputError, match=r"maps\[:, t\]"):
        metrics.average_drop(model, x, every)
    saliency = camscope.explain(model, x, method="saliency", targets=[0, 1])
    with pytest.raises(InputError, match="reduce_channels"):
        metrics.deletion(model, x, saliency.maps, saliency.targets)
    metrics.deletion(model, x, saliency)  # the Explanation: reduced the method's own way
    three = torch.rand(2, 3, 16, 16)  # e.g. maps[:, 0] of an input-space method on RGB inputs
    with pytest.raises(InputError, match=r"if the axis is the input's channels .*\(\.sum\(1\)\)"):
        metrics.deletion(model, x, three, torch.tensor([0, 1]))
    with pytest.raises(InputError, match="class of each sample"):
        metrics.contrastivity(every.maps, every.targets)
