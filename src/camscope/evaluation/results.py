"""An evaluation's table as text, CSV, JSON and plots (one bar chart per metric, the curves)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import camscope
from camscope.evaluation.scoring import KIM_2020_AVERAGE_DROP, TABLE_KEYS, EvaluationRow
from camscope.render.text import text_table

__all__ = ["format_rows", "write_results"]


def format_rows(rows: list[EvaluationRow], *, reference: bool = False) -> str:
    """The rows as a text table (means); with ``reference``, Kim et al. 2020's Average Drop numbers
    (VGG-16 on PASCAL VOC) after it, for the built-in benchmarks that compare with them."""
    keys = [k for k in TABLE_KEYS if k in rows[0]]
    cells = [[row["method"], row["upsample"], *(f"{row[k]:.3f}" for k in keys)] for row in rows]
    text = text_table(["method", "upsample", *keys], cells)
    if reference:
        lines = ["", "Kim et al. 2020 (VGG-16, PASCAL VOC), Average Drop % / Increase %:"]
        for (method, mode, masking), (drop, increase) in KIM_2020_AVERAGE_DROP.items():
            lines.append(f"  {method:<13} {mode:<9} {masking:<9} {drop:6.2f} / {increase:5.2f}")
        text += "\n".join(lines)
    return text


def write_results(
    folder: Any, rows: list[EvaluationRow], *, title: str, extra: dict[str, Any]
) -> None:
    """``results.csv``, ``results.json`` and ``plots/<metric>.png`` (methods side by side)."""
    import csv
    import io

    from camscope.io import write_json
    from camscope.io.atomic import atomic_write
    from camscope.render.volumes import figure_png

    folder = Path(folder)
    text = io.StringIO()
    columns = [key for key in rows[0] if not key.endswith("_curve")]
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(folder / "results.csv", mode="w") as handle:
        handle.write(text.getvalue())
    write_json(
        folder / "results.json",
        {
            "camscope": camscope.__version__,
            **extra,
            "rows": rows,
            "kim_2020": [
                {"method": m, "upsample": u, "masking": k, "average_drop": d, "increase": i}
                for (m, u, k), (d, i) in KIM_2020_AVERAGE_DROP.items()
            ],
        },
    )
    from matplotlib.figure import Figure

    if "deletion_curve" in rows[0]:
        figure = Figure(figsize=(11, 3.8))
        axes = figure.subplots(1, 2)
        for axis, key in zip(axes, ("deletion_curve", "insertion_curve"), strict=True):
            for row in rows:
                curve = row[key]
                fractions = [i / (len(curve) - 1) for i in range(len(curve))]
                axis.plot(fractions, curve, label=f"{row['method']} ({row['upsample']})")
            axis.set_xlabel(
                "fraction of positions removed"
                if key == "deletion_curve"
                else "fraction of positions inserted"
            )
            axis.set_ylabel("target probability (mean)")
            axis.set_title(key.replace("_", " "), fontsize=9)
        axes[1].legend(fontsize=7)
        figure.suptitle(title, fontsize=9)
        figure.tight_layout()
        with atomic_write(folder / "plots" / "curves.png", mode="wb") as handle:
            handle.write(figure_png(figure))
    names = [f"{r['method']}\n{r['upsample']}" for r in rows]
    for key in (k for k in TABLE_KEYS if k in rows[0]):
        figure = Figure(figsize=(max(6, 1.1 * len(rows)), 3.4))
        axis = figure.subplots()
        axis.bar(
            range(len(rows)),
            [r[key] for r in rows],
            yerr=[r[f"{key}_std"] for r in rows],
            color="#4c72b0",
            capsize=3,
        )
        axis.set_xticks(range(len(rows)), names, fontsize=7)
        axis.set_title(f"{key} (mean ± std), {title}", fontsize=9)
        figure.tight_layout()
        with atomic_write(folder / "plots" / f"{key}.png", mode="wb") as handle:
            handle.write(figure_png(figure))
