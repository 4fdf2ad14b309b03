"""camscope's warnings are said once per public call, at the caller's line, and nothing global
changes (camscope.engine.relay)."""

import sys
import threading
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import camscope
from camscope.engine import relay
from camscope.engine.relay import said_so_far
from tests.engine.relayed import steps as relayed


@pytest.fixture(autouse=True)
def ours(monkeypatch):
    """The functions of tests/engine/relayed stand for camscope's own code."""
    monkeypatch.setattr(relay, "PACKAGE", str(Path(relayed.__file__).parent))


def _line() -> int:
    return sys._getframe(1).f_lineno


def test_a_warning_is_said_once_per_call_by_its_key_at_the_callers_line():
    texts = [f"{k} of 64 maps are 0 at layer {k % 2}" for k in range(6)]
    keys = [("maps are 0", k % 2) for k in range(6)]  # the counts left out, the layer kept
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = _line() + 1
        assert relayed.outer(texts, keys) == 12
    assert [str(w.message) for w in record] == texts[:2]  # one per layer, nested calls too
    assert {(w.filename, w.lineno) for w in record} == {(__file__, line)}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        relayed.steps(["a", "a", "b", "a"])  # by default the key is the text
        relayed.steps(["a"])  # a new call says it again
    assert [str(w.message) for w in record] == ["a", "b", "a"]


def test_what_was_said_is_kept_for_the_calls_records():
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert relayed.recorded(["one", "one", "other"]) == ["one", "other"]
        assert relayed.recorded(["new"]) == ["new"]  # each call its own
        warnings.filterwarnings("ignore", message="hidden")
        assert relayed.recorded(["hidden", "shown"]) == ["shown"]  # what filters hide: not kept
    assert said_so_far() == []  # outside a call


def test_the_callers_filters_and_pythons_display_hold():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning, match="first"):
            relayed.steps(["first", "never reached"])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("default")  # Python's own: once per line of code
        for _ in range(3):
            relayed.steps(["same each time"])
            warnings.warn("the user's own", UserWarning, stacklevel=1)
    assert [str(w.message) for w in record] == ["same each time", "the user's own"]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", module=__name__)  # by the module the warning is at
        relayed.steps(["hidden by module"])
    assert record == []


def test_calls_in_threads_keep_their_own_records():
    said = {}

    def run(name):
        said[name] = relayed.recorded([f"from {name}", "shared"])

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert said == {"a": ["from a", "shared"], "b": ["from b", "shared"]}
    assert len(record) == 4
    assert warnings.showwarning is warnings._showwarning_orig  # nothing global left changed


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
def test_a_warning_at_every_step_of_a_metric_is_said_once(dims, monkeypatch):
    monkeypatch.undo()  # camscope's own code, this time
    torch.manual_seed(0)
    model, x = _LayerNormNet(dims).eval(), torch.randn(2, 1, *[6] * dims)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = _line() + 1
        test = camscope.metrics.mprt(model, x, method="lrp", targets=0)
    assert len(test.layers) == 3  # so four explanations, each of which warns
    assert [str(w.message)[:42] for w in record] == ["camscope: lrp has no rule for layer_norm ("]
    assert [(w.filename, w.lineno) for w in record] == [(__file__, line)]
