"""Faithfulness, localisation and robustness metrics against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from camscope.errors import InputError
from camscope.metrics import (
    average_drop,
    contrastivity,
    deletion,
    fidelity,
    increase_in_confidence,
    insertion,
    localization,
    max_sensitivity,
    one_pixel_sensitivity,
    pointing_game,
)

SIGMOID_1 = 1 / (1 + math.exp(-1))  # softmax of logits (1, 0) for class 0 = 0.7310586


def _reader(shape) -> nn.Module:
    """Logits (x at the first position, 0): class 0 reads one pixel, class 1 nothing; no bias."""
    positions = math.prod(shape)
    linear = nn.Linear(positions, 2, bias=False).double()
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[0, 0] = 1.0
    return nn.Sequential(nn.Flatten(), linear)


X2 = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)  # (1, 1, 2, 2)
TARGET = torch.tensor([0])


def test_average_drop_and_increase_by_hand():
    model = _reader((1, 2, 2))
    on_pixel = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    kept = average_drop(model, X2, on_pixel, TARGET)
    assert kept.original.item() == pytest.approx(SIGMOID_1)
    assert kept.drop.item() == pytest.approx(0.0) and not kept.increase.item()
    # the map points elsewhere: the pixel is masked out, logits (0, 0), O = 0.5
    elsewhere = average_drop(model, X2, torch.tensor([[[0.0, 1.0], [0.0, 0.0]]]), TARGET)
    assert elsewhere.masked.item() == pytest.approx(0.5)
    assert elsewhere.drop.item() == pytest.approx(100 * (SIGMOID_1 - 0.5) / SIGMOID_1)
    assert elsewhere.summary()["average_drop"] == pytest.approx(31.606, abs=1e-3)
    # relative masking keeps the top 50 %: (0, 0) and (1, 0) → the pixel survives
    graded = torch.tensor([[[0.9, 0.1], [0.8, 0.2]]])
    relative = increase_in_confidence(model, X2, graded, TARGET, masking="relative")
    assert relative.drop.item() == pytest.approx(0.0)
    # absolute masking scales the pixel by its min-max value 1 → also kept
    assert average_drop(model, X2, graded, TARGET).drop.item() == pytest.approx(0.0)


def test_increase_when_masking_helps():
    model = _reader((1, 2, 2))
    x = torch.tensor([[[[-1.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)  # logit −1 for class 0
    result = average_drop(model, x, torch.tensor([[[0.0, 1.0], [0.0, 0.0]]]), TARGET)
    assert result.increase.item() and result.summary()["increase_in_confidence"] == 100.0


def test_deletion_and_insertion_by_hand_and_perfect_beats_worst():
    model = _reader((1, 2, 2))
    perfect = torch.tensor([[[1.0, 0.2], [0.3, 0.1]]])
    worst = torch.tensor([[[0.0, 0.2], [0.3, 0.1]]])
    d_perfect = deletion(model, X2, perfect, TARGET, steps=4)
    # curve 0.731, 0.5, 0.5, 0.5, 0.5 (the pixel goes first)
    assert d_perfect.curves[0].tolist() == pytest.approx([SIGMOID_1] + [0.5] * 4)
    assert d_perfect.auc.item() == pytest.approx(((SIGMOID_1 + 0.5) / 2 + 1.5) / 4)
    d_worst = deletion(model, X2, worst, TARGET, steps=4)
    assert d_worst.curves[0].tolist() == pytest.approx([SIGMOID_1] * 4 + [0.5])
    assert d_perfect.auc < d_worst.auc  # lower is better
    i_perfect = insertion(model, X2, perfect, TARGET, steps=4, baseline=0.0)
    i_worst = insertion(model, X2, worst, TARGET, steps=4, baseline=0.0)
    assert i_perfect.auc.item() == pytest.approx(((0.5 + SIGMOID_1) / 2 + 3 * SIGMOID_1) / 4)
    assert i_perfect.auc > i_worst.auc  # higher is better
    assert d_perfect.fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_fidelity_by_hand():
    model = _reader((1, 2, 2))
    # positive values {1, 0.5, 0.2}: median 0.5; only (0, 0) is above it and is zeroed
    result = fidelity(model, X2, torch.tensor([[[1.0, 0.5], [0.2, -1.0]]]), TARGET)
    assert result.drop.item() == pytest.approx(SIGMOID_1 - 0.5)
    nothing = fidelity(model, X2, -torch.ones(1, 2, 2), TARGET)
    assert nothing.drop.item() == pytest.approx(0.0)


def test_three_d_at_depth_one_equals_two_d():
    model2, model3 = _reader((1, 2, 2)), _reader((1, 1, 2, 2))
    maps = torch.tensor([[[0.0, 1.0], [0.4, 0.2]]])
    flat = deletion(model2, X2, maps, TARGET, steps=4).curves
    deep = deletion(model3, X2[:, :, None], maps[:, None], TARGET, steps=4).curves
    torch.testing.assert_close(flat, deep)
    a2 = average_drop(model2, X2, maps, TARGET).drop
    a3 = average_drop(model3, X2[:, :, None], maps[:, None], TARGET).drop
    torch.testing.assert_close(a2, a3)


def test_samples_are_independent_and_maps_are_upsampled():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).double()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    maps = torch.rand(4, 2, 2)  # layer resolution: upsampled to 8×8 inside
    targets = torch.tensor([0, 2, 1, 0])
    together = deletion(model, x, maps, targets, steps=5, batch_size=7)
    for b in range(4):
        alone = deletion(model, x[b : b + 1], maps[b : b + 1], targets[b : b + 1], steps=5)
        torch.testing.assert_close(together.curves[b], alone.curves[0])


def test_localization_exact_box_is_iou_one_in_two_and_three_d():
    saliency = torch.zeros(1, 10, 12)
    saliency[0, 2:6, 3:8] = 1.0
    box = torch.tensor([[2, 3, 6, 8]])
    result = localization(saliency, box)
    assert result.iou.item() == 1.0 and result.hit.item()
    assert result.boxes.tolist() == [[2, 3, 6, 8]]
    volume = torch.zeros(1, 6, 7, 8)
    volume[0, 1:4, 2:5, 3:7] = 0.7
    result3 = localization(volume, torch.tensor([[1, 2, 3, 4, 5, 7]]))
    assert result3.iou.item() == 1.0 and result3.hit.item()


def test_localization_keeps_the_largest_component_and_small_box_rule():
    saliency = torch.zeros(1, 20, 20)
    saliency[0, 0:2, 0:2] = 1.0  # small, brightest
    saliency[0, 10:16, 10:16] = 0.5  # large: kept (26/8-connected components by size)
    truth = torch.tensor([[10, 10, 14, 14]])  # IoU = 16 / 36
    result = localization(saliency, truth)
    assert result.boxes.tolist() == [[10, 10, 16, 16]]
    assert result.iou.item() == pytest.approx(16 / 36)
    assert not result.hit.item()
    # 4×4 box: needed IoU = min(0.5, 16 / (14·14)) = 0.0816
    assert localization(saliency, truth, small_box_rule=True).hit.item()
    # diagonal neighbours join in 2D (8-connectivity)
    diagonal = torch.zeros(1, 5, 5)
    diagonal[0, 0, 0] = diagonal[0, 1, 1] = diagonal[0, 2, 2] = 1.0
    assert localization(diagonal, torch.tensor([[0, 0, 3, 3]])).boxes.tolist() == [[0, 0, 3, 3]]


def test_localization_with_masks():
    saliency = torch.zeros(1, 6, 6)
    saliency[0, 0:3, 0:3] = 1.0
    mask = torch.zeros(1, 6, 6, dtype=torch.bool)
    mask[0, 0:3, 0:2] = True
    assert localization(saliency, mask).iou.item() == pytest.approx(6 / 9)


def test_pointing_game_with_tolerance():
    saliency = torch.zeros(2, 10, 10)
    saliency[0, 4, 4] = 1.0
    saliency[1, 0, 0] = 1.0
    boxes = torch.tensor([[3, 3, 6, 6], [3, 4, 6, 6]])
    result = pointing_game(saliency, boxes)
    assert result.hit.tolist() == [True, False]
    # (0, 0) to the box's nearest pixel (3, 4): distance 5
    assert pointing_game(saliency, boxes, tolerance=5).hit.tolist() == [True, True]
    assert pointing_game(saliency, boxes, tolerance=4.9).hit.tolist() == [True, False]
    assert result.summary()["accuracy"] == 0.5


def test_contrastivity_bounds():
    maps = torch.zeros(2, 3, 4, 4)
    maps[0, 0, 0, 0] = maps[0, 1, 3, 3] = maps[0, 2, 1, 1] = 1.0  # disjoint → 1
    maps[1] = 1.0
    maps[1, :, 0, 0] = 2.0  # identical maps → 0
    result = contrastivity(maps, torch.tensor([0, 1]))
    assert result.values.tolist() == pytest.approx([1.0, 0.0])
    assert result.summary()["contrastivity"] == pytest.approx(0.5)


def test_sensitivity():
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    constant = max_sensitivity(lambda v: torch.ones(v.shape[0], 4, 4), x, radius=0.1)
    assert constant.values.tolist() == [0.0, 0.0, 0.0]
    linear = max_sensitivity(lambda v: 2 * v[:, 0], x, radius=0.1, relative=False)
    assert ((linear.values > 0) & (linear.values <= 2 * 0.1 * 4 + 1e-12)).all()
    pixel = one_pixel_sensitivity(lambda v: v[:, 0], x, delta=0.5)
    peaks = x.flatten(1).amax(1)
    torch.testing.assert_close(pixel.values, 0.5 / peaks)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: localization(torch.zeros(1, 4, 4), torch.tensor([[0, 0, 2]])), r"\(B, 4\)"),
        (lambda: localization(torch.zeros(1, 4, 4), torch.tensor([[0, 0, 9, 9]])), "outside"),
        (lambda: pointing_game(torch.zeros(4, 4), torch.tensor([[0, 0, 1, 1]])), r"\(B, H, W\)"),
        (
            lambda: average_drop(
                _reader((1, 2, 2)), X2, torch.zeros(1, 2, 2), torch.tensor([0, 1])
            ),
            "targets must be",
        ),
        (lambda: average_drop(_reader((1, 2, 2)), X2, torch.zeros(1, 2), TARGET), "maps must be"),
        (
            lambda: deletion(_reader((1, 2, 2)), X2, torch.zeros(1, 2, 2), TARGET, baseline="grey"),
            "baseline",
        ),
        (lambda: contrastivity(torch.zeros(1, 1, 2, 2), torch.tensor([0])), "K ≥ 2"),
    ],
)
def test_errors(call, message):
    with pytest.raises(InputError, match=message):
        call()
