"""Shared fixtures: seeded RNG, dtype tolerances, small reference networks."""

from __future__ import annotations

import pytest
import torch

pytest_plugins = ["tests.browser"]  # the headless Chromium fixture, ``browser``

#: Per-dtype tolerances (rtol, atol) for comparing two computations of the same quantity.
TOLERANCES = {torch.float32: (1e-5, 1e-6), torch.float64: (1e-10, 1e-12)}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None):
    rtol, atol = TOLERANCES[dtype or actual.dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request) -> torch.dtype:
    return request.param
