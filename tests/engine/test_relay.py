"""Warnings are said once per public call, at the caller's line (camscope.engine.relay)."""

import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import camscope
from camscope.engine import relay
from camscope.engine.relay import said_once, said_so_far


@pytest.fixture
def ours(monkeypatch):
    """Warnings raised from this folder count as camscope's own."""
    monkeypatch.setattr(relay, "PACKAGE", str(Path(__file__).resolve().parent))


@said_once
def _steps(texts):
    for text in texts:
        warnings.warn(text, RuntimeWarning, stacklevel=1)
    return len(texts)


@said_once
def _outer(texts):
    return _steps(texts) + _steps(texts)


def _line() -> int:
    return sys._getframe(1).f_lineno


def test_repeats_that_differ_in_numbers_are_said_once_at_the_callers_line(ours):
    texts = [f"{k} of 64 maps are 0 at layer4.1.conv{k % 2 + 1}" for k in range(6)]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = _line() + 1
        assert _outer(texts) == 12
    # conv1 and conv2 are names, not counts: two warnings; the counts 0..5 and the nested
    # call's repeats are dropped
    assert [str(w.message) for w in record] == [texts[0], texts[1]]
    assert {(w.filename, w.lineno) for w in record} == {(__file__, line)}
    with warnings.catch_warnings(record=True) as again:  # a new call says them again
        warnings.simplefilter("always")
        _steps(texts[:1])
    assert len(again) == 1


@said_once
def _recorded(texts):
    _outer(texts)
    return said_so_far()


def test_what_was_said_is_kept_for_the_calls_records(ours):
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert _recorded(["1 of 2", "2 of 2", "other"]) == ["1 of 2", "other"]
        assert _recorded(["new"]) == ["new"]  # each call its own
        warnings.filterwarnings("ignore", message="hidden")
        assert _recorded(["hidden", "shown"]) == ["shown"]  # what the filters hide is not kept
    assert said_so_far() == []  # outside a call


def test_filters_of_the_caller_apply(ours):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning, match="0 of 64"):
            _steps(["0 of 64", "never reached"])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message="quiet")
        _steps(["quiet 1", "loud"])
    assert [str(w.message) for w in record] == ["loud"]
    # the filters are as they were after the call
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        warnings.warn("after", UserWarning, stacklevel=1)
        warnings.warn("after", UserWarning, stacklevel=1)
    assert len(record) == 2


def test_other_code_keeps_its_place(monkeypatch):
    monkeypatch.setattr(relay, "PACKAGE", str(Path(torch.__file__).parent))  # not this file
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _steps(["from the model", "from the model"])
    assert len(record) == 1
    assert record[0].filename == __file__
    assert record[0].lineno == _steps.__wrapped__.__code__.co_firstlineno + 3  # warnings.warn


class _LayerNormNet(nn.Module):
    """A layer norm, which LRP has no rule for: its warning comes at every explanation."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.conv = {2: nn.Conv2d, 3: nn.Conv3d}[dims](1, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(torch.relu(self.conv(x)).flatten(2).mean(-1)))


@pytest.mark.parametrize("dims", [2, 3])
def test_a_warning_at_every_step_of_a_metric_is_said_once(dims):
    torch.manual_seed(0)
    model, x = _LayerNormNet(dims).eval(), torch.randn(2, 1, *[6] * dims)
    with pytest.warns(RuntimeWarning, match=r"no rule for layer_norm \(×1\)") as record:
        line = _line() + 1
        test = camscope.metrics.mprt(model, x, method="lrp", targets=0)
    assert len(test.layers) == 3  # so four explanations, each of which warns
    assert [(w.filename, w.lineno) for w in record] == [(__file__, line)]
