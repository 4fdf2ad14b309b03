"""Sanity checks of explanation methods on one model and data: does each method's map depend on
the model (and on the labels it learned), and is it faithful under ROAD?

For every method: the cascading model parameter randomisation test (the Adebayo figure: the
similarity of the maps to the original ones as layers are re-drawn from the top), the random
logit test, optionally the data randomisation test (the maps of a network trained on permuted
labels), ROAD's MoRF/LeRF gap, and beside them the maps' complexity (sparseness) and robustness
(average sensitivity to small input noise). A method **passes** when, once every layer is
randomised, its maps keep a mean absolute Spearman correlation with the original maps below
:data:`PASS_THRESHOLD` (Adebayo et al. judged by eye; this makes the judgement a number).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from camscope.engine import any_model
from camscope.metrics import (
    avg_sensitivity,
    map_similarity,
    mprt,
    random_logit,
    road,
    sparseness,
)

__all__ = [
    "PASS_THRESHOLD",
    "SanityResult",
    "SanityResults",
    "control_note",
    "report_rows",
    "sanity_check",
    "sanity_figures",
    "sanity_notes",
    "sanity_section",
    "sanity_sections",
    "sanity_table",
]

#: Largest mean |Spearman| to the original maps after full randomisation that still passes.
PASS_THRESHOLD = 0.5

#: Columns of the maps figure (the original and evenly spaced steps, the last one included).
MAP_COLUMNS = 12

#: Why layer methods and ReLU rules are skipped on TorchScript.
TORCHSCRIPT_REASON = (
    "TorchScript runs no Python hooks: layer methods cannot record a layer, nor ReLU rules "
    "change a backward pass"
)


@dataclass
class SanityResult:
    """One method's sanity checks (per-sample values, means in :meth:`row`)."""

    method: str
    layers: list[str]
    similarity: torch.Tensor  # (B, L), cascading Spearman
    random_logit: torch.Tensor  # (B,)
    road_gap: torch.Tensor  # (B,)
    data_randomization: torch.Tensor | None  # (B,)
    original: torch.Tensor  # (B, ...)
    steps: torch.Tensor  # (L, B, ...)
    layer: str | None = None  # where a layer method took its maps
    sparseness: torch.Tensor | None = None  # (B,) Gini of the shown maps
    sensitivity: torch.Tensor | None = None  # (B,) average sensitivity

    @property
    def final_similarity(self) -> float:
        """Mean |Spearman| to the original maps once every layer is randomised."""
        return float(self.similarity[:, -1].abs().mean())

    @property
    def passes(self) -> bool:
        """Whether the maps keep a mean ``|ρ| < 0.5`` once every layer is re-drawn."""
        return self.final_similarity < PASS_THRESHOLD

    def row(self) -> dict[str, Any]:
        """The table row: means over the samples."""
        row: dict[str, Any] = {
            "method": self.method,
            "mprt_first": float(self.similarity[:, 0].mean()),
            "mprt_last": float(self.similarity[:, -1].mean()),
            "mprt_last_abs": self.final_similarity,  # what the verdict judges
            "random_logit": float(self.random_logit.mean()),
            "road_gap": float(self.road_gap.mean()),
            "passes": self.passes,
            "mprt_curve": [float(v) for v in self.similarity.mean(0)],
            "layers": self.layers,
        }
        if self.data_randomization is not None:
            row["data_randomization"] = float(self.data_randomization.mean())
        if self.sparseness is not None:
            row["sparseness"] = float(self.sparseness.mean())
        if self.sensitivity is not None:
            row["avg_sensitivity"] = float(self.sensitivity.mean())
        if self.layer is not None:
            row["layer"] = self.layer
        return row


@any_model
def sanity_check(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    methods: Sequence[str],
    *,
    layer: str | None = None,
    control: nn.Module | None = None,
    seed: int = 0,
    road_percentages: Sequence[float] = (10, 30, 50, 70, 90),
    randomize: Literal["layers", "blocks"] = "layers",
    sensitivity_samples: int = 5,
    progress: bool = True,
    done: dict[str, SanityResult] | None = None,
    on_result: Callable[[SanityResult], None] | None = None,
) -> SanityResults:
    """Run every sanity check for every method (see the module docstring). A method that does
    not apply to the model (a ReLU rule on a network without ReLU) is skipped and named in the
    result's ``skipped``.

    Args:
        model: the trained network (never modified).
        inputs: ``(B, C, *S)``.
        targets: ``(B,)``, the classes explained.
        methods: registry names.
        layer: for layer methods (default: their default layer).
        control: the same architecture trained on permuted labels (data randomisation test).
        seed: for every random draw (MPRT's re-drawn weights, the random logit's class, noise).
        road_percentages: ROAD's removal fractions, in percent.
        randomize: MPRT's steps: every layer with parameters, or the model's top-level blocks
            (fewer steps: several times faster on a deep network).
        sensitivity_samples: noisy copies per input for the robustness column (average
            sensitivity, :func:`~camscope.metrics.avg_sensitivity`, uniform noise of a tenth
            of the inputs' standard deviation); 0 leaves it out. The complexity column is the
            sparseness (Gini) of the maps the ROAD gap ranks.
        progress: a bar over the methods (each takes one MPRT, one ROAD and a few explanations).
        done: results already computed (an interrupted run's), by method: not computed again.
        on_result: called with each method's result as soon as it is done (to save it).
    """
    from tqdm.auto import tqdm

    from camscope.explain import explain
    from camscope.methods import get_method

    results = SanityResults()
    bar = tqdm(methods, desc="sanity checks", unit="method", disable=not progress)
    for method in bar:
        info = get_method(method)
        bar.set_postfix_str(info.name)
        if done and info.name in done:
            results.append(done[info.name])
            continue
        ruled = info.gradient_rule not in (None, "gradient")
        if (info.needs_layer or ruled) and isinstance(model, torch.jit.ScriptModule):
            results.skipped[info.name] = (
                f"{TORCHSCRIPT_REASON}; load the model as a module (its weights with "
                "--architecture) to check this method"
            )
            continue
        if info.gradient_rule not in (None, "gradient") or info.name == "guided_grad_cam":
            reason = _rule_does_not_apply(model, inputs[:1], info.name, targets[:1], layer)
            if reason is not None:
                results.skipped[info.name] = reason
                continue
        where: dict[str, Any] = {"layer": layer} if info.needs_layer else {}
        test = mprt(
            model,
            inputs,
            method=info.name,
            targets=targets,
            seed=seed,
            layers=randomize,
            keep_maps=True,
            **where,
        )
        logit = random_logit(
            model, inputs, method=info.name, targets=targets, seed=seed, **where
        ).values
        shown = explain(model, inputs, method=info.name, targets=targets, progress=False, **where)
        shown = shown.reduce_channels() if shown.per_channel else shown.upsample()
        gap = road(model, inputs, shown, targets, percentages=road_percentages, seed=seed).gap
        spread = sparseness(shown).values
        sensitivity = None
        if sensitivity_samples:
            sensitivity = avg_sensitivity(
                model,
                inputs,
                info.name,
                targets,
                radius=0.1 * float(inputs.detach().double().std()),
                n_samples=sensitivity_samples,
                seed=seed,
                options=where,
            ).values
        data = None
        if control is not None:
            other = explain(
                control, inputs, method=info.name, targets=targets, progress=False, **where
            ).reduce_channels()
            data = map_similarity(test.original, other.maps[:, 0], "spearman")
        assert test.maps is not None
        result = SanityResult(
            info.name,
            test.layers,
            test.similarity,
            logit,
            gap,
            data,
            test.original,
            test.maps,
            shown.layer if info.needs_layer else None,
            spread,
            sensitivity,
        )
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


class SanityResults(list[SanityResult]):
    """The results, with ``skipped``: the methods that do not apply to this model and why
    (guided backpropagation and Deconvnet on a network without ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: dict[str, str] = {}


def _rule_does_not_apply(
    model: nn.Module, inputs: torch.Tensor, method: str, targets: torch.Tensor, layer: Any
) -> str | None:
    """Why a ReLU-rule method cannot explain this model (camscope refuses it), or ``None``."""
    from camscope.errors import MethodError
    from camscope.explain import explain
    from camscope.methods import get_method

    where: dict[str, Any] = {"layer": layer} if get_method(method).needs_layer else {}
    try:
        explain(model, inputs, method=method, targets=targets, progress=False, **where)
    except MethodError as error:
        if "rule changes the backward pass of ReLUs" in str(error):
            return str(error)
        raise
    return None


def sanity_table(results: Sequence[SanityResult]) -> str:
    """The results as a text table, then one line naming the methods that pass and fail."""
    from camscope.render.text import text_table

    data = any(r.data_randomization is not None for r in results)
    header = ["method", "MPRT top layer", "MPRT all layers", "|ρ| all", "random logit"]
    header += ["ROAD gap"]
    header += ["data rand."] if data else []
    sensitive = any(r.sensitivity is not None for r in results)
    header += ["sparseness"] + (["avg. sensitivity"] if sensitive else [])
    header += ["sanity"]
    cells = []
    for result in results:
        row = result.row()
        line = [
            result.method,
            f"{row['mprt_first']:.2f}",
            f"{row['mprt_last']:.2f}",
            f"{row['mprt_last_abs']:.2f}",
            f"{row['random_logit']:.2f}",
            f"{row['road_gap']:.3f}",
        ]
        if data:
            line.append(f"{row.get('data_randomization', float('nan')):.2f}")
        line.append(f"{row.get('sparseness', float('nan')):.2f}")
        if sensitive:
            line.append(f"{row.get('avg_sensitivity', float('nan')):.2f}")
        line.append("passes" if result.passes else "FAILS")
        cells.append(line)
    passing = [r.method for r in results if r.passes]
    failing = [r.method for r in results if not r.passes]
    verdict = (
        f"passes the sanity check on this model: {', '.join(passing) or 'none'}; fails: "
        f"{', '.join(failing) or 'none'}. (A method passes when, after every layer is "
        f"randomised, its maps keep a mean |Spearman ρ| < {PASS_THRESHOLD} with the original "
        "ones: the |ρ| all column.)"
    )
    groups: dict[str, list[str]] = {}
    for method, reason in getattr(results, "skipped", {}).items():
        groups.setdefault(_short_reason(reason), []).append(method)
    for why, methods in groups.items():
        verdict += f" Does not apply to this model ({why}): {', '.join(methods)}."
    return text_table(header, cells) + "\n" + verdict


def _short_reason(reason: str) -> str:
    """The verdict's few words for why a method was skipped (the full reason is in results)."""
    import re

    if reason.startswith(TORCHSCRIPT_REASON):
        return TORCHSCRIPT_REASON
    found = re.search(r"activations: ([^)]*)", reason)
    return f"no ReLU ran; its activations: {found.group(1)}" if found else "no ReLU ran"


def sanity_figures(results: Sequence[SanityResult]) -> list[tuple[str, bytes]]:
    """The Adebayo figure: similarity against randomised depth for every method, and the maps of
    the first input at each step (rows: methods; columns: original, then each step)."""
    if not results:  # every method was skipped: nothing to draw
        return []
    import numpy as np

    from camscope.render.overlays import show_map
    from camscope.render.volumes import figure_png, subplots

    # the legend beside the axes, 12 methods a column; past the 10 colours, other line styles
    legend_columns = -(-len(results) // 12)
    figure, axis = subplots(figsize=(6.0 + 1.6 * legend_columns, 3.8), constrained_layout=True)
    for index, result in enumerate(results):
        curve = result.similarity.mean(0).numpy()
        style = ("-", "--", ":", "-.")[index // 10 % 4]
        axis.plot(range(1, len(curve) + 1), curve, marker="o", linestyle=style, label=result.method)
    axis.axhline(PASS_THRESHOLD, color="grey", linestyle="--", linewidth=0.8)
    axis.axhline(-PASS_THRESHOLD, color="grey", linestyle="--", linewidth=0.8)
    names = results[0].layers
    every = max(1, -(-len(names) // 16))  # at most 16 labels: 41 ResNet layers stay readable
    ticks = list(range(1, len(names) + 1, every))
    axis.set_xticks(ticks, [f"+{names[t - 1]}" for t in ticks], rotation=45, fontsize=7)
    axis.set_ylabel("Spearman ρ to the original maps")
    axis.set_xlabel("layers randomised, cumulatively from the top")
    axis.legend(fontsize=7, ncols=legend_columns, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    curves = figure_png(figure)
    steps = max(len(r.layers) for r in results)
    # at most MAP_COLUMNS - 1 steps shown, evenly spaced, the last (fully random) one included
    shown = sorted(
        {round(i * (steps - 1) / max(1, MAP_COLUMNS - 2)) for i in range(MAP_COLUMNS - 1)}
    )
    shown = shown if steps >= MAP_COLUMNS else list(range(steps))
    columns = 1 + len(shown)
    grid, axes = subplots(
        len(results),
        columns,
        figsize=(1.6 * columns, 1.6 * len(results)),
        squeeze=False,
        constrained_layout=True,
    )
    for row, result in enumerate(results):
        steps_here = [i for i in shown if i < len(result.layers)]
        maps = [result.original[0], *(result.steps[i, 0] for i in steps_here)]
        for column in range(columns):
            panel = axes[row, column]
            if column >= len(maps):
                panel.axis("off")
                continue
            plane = maps[column].numpy()
            if plane.ndim == 3:  # a volume: its middle slice
                plane = plane[plane.shape[0] // 2]
            show_map(panel, np.abs(plane), signed=False)
            if row == 0:
                label = "original" if column == 0 else f"+{result.layers[steps_here[column - 1]]}"
                panel.set_title(label, fontsize=7)
            if column == 0:
                panel.set_ylabel(result.method, fontsize=7)
    return [
        ("MPRT: similarity as layers are randomised", curves),
        (
            "maps of the first input as layers are randomised (|map|; a volume's middle slice)",
            figure_png(grid),
        ),
    ]


#: The report's column names for the keys of :meth:`SanityResult.row`.
COLUMNS = {
    "method": "method",
    "mprt_first": "MPRT, top layer",
    "mprt_last": "MPRT, all layers",
    "mprt_last_abs": "|ρ|, all layers (the verdict's)",
    "layer": "layer",
    "random_logit": "random logit",
    "road_gap": "ROAD gap",
    "data_randomization": "data randomisation",
    "sparseness": "sparseness (Gini)",
    "avg_sensitivity": "average sensitivity",
    "passes": "sanity",
}

#: Fewer map positions than this make a rank correlation noisy (a note says so).
FEW_POSITIONS = 64


def report_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of :meth:`SanityResult.row` as the report shows them: named columns, the verdict
    as a word, the curves left out."""
    return [
        {
            COLUMNS[key]: ("passes" if value else "FAILS") if key == "passes" else value
            for key, value in row.items()
            if key in COLUMNS
        }
        for row in rows
    ]


def sanity_sections(results: dict[str, Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """The evaluation report's sanity section (title, verdict, rows), if the results hold one."""
    if not results.get("sanity"):
        return []
    verdict = str(results.get("sanity_verdict", ""))
    return [("Sanity checks", verdict, report_rows(results["sanity"]))]


def sanity_notes(
    results: Sequence[SanityResult],
    *,
    inputs: int,
    accuracy: float | None = None,
    fit: dict[str, Any] | None = None,
) -> list[str]:
    """What makes these verdicts less certain, one sentence each: few inputs, small maps, a
    barely trained model, a control that has not fitted its labels."""
    notes = []
    if inputs < 4:
        notes.append(f"only {inputs} input(s): the means, and so the verdicts, are noisy")
    small = {r.method: int(r.original[0].numel()) for r in results}
    small = {m: n for m, n in small.items() if n < FEW_POSITIONS}
    if small:
        listed = ", ".join(f"{m} ({n})" for m, n in small.items())
        notes.append(
            f"maps with few positions, where a rank correlation is noisy: {listed}; use larger "
            "inputs or an earlier layer"
        )
    if accuracy is not None and accuracy < 0.8:
        notes.append(
            f"the model's test accuracy is {accuracy:.2f}: checks of a barely trained model "
            "say little about a trained one (train it longer, e.g. more --epochs)"
        )
    if fit is not None:
        notes.append(f"data randomisation control: {control_note(fit)}")
    return notes


def control_note(fit: dict[str, Any]) -> str:
    """One line on the data randomisation control: how well it fits its permuted labels (a
    control that has not fitted them learned nothing, and is a weaker test)."""
    share = float(fit["train_accuracy"])
    line = (
        f"trained {fit['epochs']} epochs on {fit['n_train']} inputs with permuted labels; "
        f"fits {share:.0%} of them"
    )
    if share < 0.9:
        line += " (it has not memorised its labels: a weaker control than Adebayo et al.'s)"
    return line


def sanity_section(
    folder: Path,
    benchmark: Any,
    methods: Sequence[str],
    *,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the sanity checks on 8 of the benchmark's inputs; their figures go to ``plots/``
    (the report shows every plot there), their rows and verdict to the results."""
    from camscope.io.atomic import atomic_write

    control = getattr(benchmark, "control", None)
    results = sanity_check(
        benchmark.model,
        benchmark.inputs[:8],
        benchmark.labels[:8],
        [m.replace("-", "_") for m in methods],
        layer=benchmark.layer,
        control=None if control is None else control.eval(),
        seed=0,
        progress=progress,
    )
    table = sanity_table(results)
    log(table)
    names = ("sanity_mprt_curves", "sanity_mprt_maps")  # the report's headings, from the names
    for name, (_, png) in zip(names, sanity_figures(results), strict=True):
        with atomic_write(folder / "plots" / f"{name}.png", mode="wb") as handle:
            handle.write(png)
    extra = getattr(benchmark, "extra", {})
    fit = extra.get("control")
    notes = sanity_notes(results, inputs=len(benchmark.inputs[:8]), fit=fit)
    for note in notes:
        log(f"note: {note}")
    return {
        "sanity": [r.row() for r in results],
        "sanity_verdict": " ".join([table.splitlines()[-1], *notes]),
        "sanity_does_not_apply": results.skipped,
        **({} if fit is None else {"sanity_control": control_note(fit)}),
    }
