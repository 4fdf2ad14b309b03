"""sum_to_score: L1 and Kendall τ against hand values and scipy."""

from __future__ import annotations

import pytest
import scipy.stats
import torch

from camscope.errors import InputError
from camscope.metrics import kendall_tau, sum_to_score


def test_hand_values():
    # Two classes, 2×2 maps summing to 3 and 1; scores 2 and 4: L1 = (|3−2| + |1−4|)/2 = 2;
    # the only pair is ordered oppositely, so τ = −1.
    maps = torch.tensor([[[[1.0, 2.0], [0.0, 0.0]], [[0.5, 0.5], [0.0, 0.0]]]])
    scores = torch.tensor([[2.0, 4.0]])
    result = sum_to_score(maps, scores)
    assert result.l1.tolist() == [2.0]
    assert result.kendall_tau.tolist() == [-1.0]
    assert result.sums.tolist() == [[3.0, 1.0]]


def test_kendall_tau_matches_scipy_tau_a_without_ties():
    generator = torch.Generator().manual_seed(0)
    first = torch.randn(6, 23, generator=generator, dtype=torch.float64)
    second = first + 0.8 * torch.randn(6, 23, generator=generator, dtype=torch.float64)
    ours = kendall_tau(first, second)
    for row in range(6):
        expected = scipy.stats.kendalltau(first[row], second[row], variant="b").statistic
        assert ours[row].item() == pytest.approx(expected, abs=1e-12)


def test_perfect_and_reversed_and_bounds():
    scores = torch.arange(10.0)[None].repeat(3, 1)
    assert kendall_tau(scores, 2 * scores + 1).tolist() == [1.0] * 3
    assert kendall_tau(scores, -scores).tolist() == [-1.0] * 3
    assert kendall_tau(scores, torch.zeros_like(scores)).tolist() == [0.0] * 3  # all tied


def test_summary_mean_and_std():
    maps = torch.zeros(4, 3, 2, 2)
    scores = torch.tensor([[1.0, 2, 3], [1, 1, 1], [0, 0, 0], [2, 2, 2]])
    summary = sum_to_score(maps, scores).summary()
    l1 = torch.tensor([2.0, 1.0, 0.0, 2.0])
    assert summary["l1"] == pytest.approx(float(l1.mean()))
    assert summary["l1_std"] == pytest.approx(float(l1.std()))


def test_shape_errors():
    with pytest.raises(InputError, match=r"maps \(B, K, \*s\) and scores \(B, K\)"):
        sum_to_score(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4))
