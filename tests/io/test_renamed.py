"""The names ``camscope.io`` exported before a rename still resolve, with a warning."""

from __future__ import annotations

import pytest

import camscope.io


def test_old_names_warn_and_resolve() -> None:
    with pytest.warns(DeprecationWarning, match=r"camscope\.io\.LoadedImage"):
        old = camscope.io.Scan
    assert old is camscope.io.LoadedImage
    with pytest.warns(DeprecationWarning, match=r"camscope\.io\.read_image"):
        assert camscope.io.read_scan is camscope.io.read_image


def test_old_names_also_come_from_the_reading_module() -> None:
    import camscope.io.inputs

    with pytest.warns(DeprecationWarning, match=r"read_scan is now"):
        from camscope.io.inputs import read_scan  # type: ignore[attr-defined]
    assert read_scan is camscope.io.inputs.read_image


def test_unknown_name_raises() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = camscope.io.nothing  # type: ignore[attr-defined]
