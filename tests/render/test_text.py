"""Text tables: one formatter for every table camscope prints."""

from __future__ import annotations

from camscope.render.text import summary_table, text_table


def test_text_table_aligns_and_never_cuts_a_header():
    table = text_table(["method", "a long title"], [["grad_cam", "0.5"], ["x"]])
    header, rule, first, second = table.splitlines()
    assert header == "method    a long title"
    assert set(rule) == {"-"} and len(rule) == len(header)
    assert first == "grad_cam           0.5"  # values right-aligned under their title
    assert second == "x"  # a short row: blank cells, trailing space stripped


def test_summary_table_formats_each_column_by_its_spec():
    summary = {
        "grad_cam": {"layer": "layer4", "mass": 0.123456, "seconds": 12.0},
        "saliency": {"layer": "input", "mass": 0.5, "seconds": 3.25},
    }
    columns = [("layer", "layer", ""), ("mass", "mass", ".3f"), ("seconds", "seconds", ".1f")]
    table = summary_table(summary, columns)
    assert table == text_table(
        ["method", "layer", "mass", "seconds"],
        [["grad_cam", "layer4", "0.123", "12.0"], ["saliency", "input", "0.500", "3.2"]],
    )
