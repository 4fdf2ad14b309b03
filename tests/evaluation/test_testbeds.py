"""One table of built-in test beds drives `camscope evaluate <name>` and the sanity checks."""

from __future__ import annotations

import pytest

from camscope.errors import CamscopeError
from camscope.evaluation import testbeds


def test_every_bed_has_sanity_sizes_and_the_cli_offers_them_all():
    from camscope.cli.evaluate import evaluate
    from camscope.cli.sanity import sanity

    assert set(testbeds.SANITY_SETTINGS) == set(testbeds.TESTBEDS)
    assert set(testbeds.TESTBEDS) <= set(evaluate.commands)  # type: ignore[attr-defined]
    choice = next(p for p in sanity.params if p.name == "benchmark")
    assert sorted(choice.type.choices) == sorted(testbeds.TESTBEDS)  # type: ignore[attr-defined]


def test_sanity_sizes_win_and_options_reach_only_the_beds_that_take_them(monkeypatch, tmp_path):
    calls = {}

    def bed(folder, *, log, quiet, train_count, epochs, layer=None):
        calls.update(folder=folder, train_count=train_count, epochs=epochs, layer=layer)
        return "built"

    monkeypatch.setitem(testbeds.TESTBEDS, "fake", bed)
    monkeypatch.setitem(testbeds.SANITY_SETTINGS, "fake", {"train_count": 7, "epochs": 2})
    built = testbeds.build_for_sanity(
        "fake", tmp_path, log=print, quiet=True, epochs=10, layer="conv", network="vit2d"
    )
    assert built == "built"
    # epochs is fixed by the bed's sanity sizes; layer is taken; network is not a parameter
    assert calls == {"folder": tmp_path, "train_count": 7, "epochs": 2, "layer": "conv"}


def test_an_unknown_bed_is_refused_with_the_known_names(tmp_path):
    with pytest.raises(CamscopeError, match="no built-in benchmark 'nope'; choose one of"):
        testbeds.build_for_sanity("nope", tmp_path, log=print, quiet=True)
