"""Metrics that judge explanations: plain functions over batches, per-sample results with a
``summary()`` (mean ± std), in 2D and 3D. Definitions: ``shared/spec/METHODS.md`` (Metrics).

* sum-to-score: :func:`sum_to_score` (L1, Kendall τ)
* faithfulness: :func:`average_drop` / :func:`increase_in_confidence` (absolute or relative
  masking), :func:`deletion`, :func:`insertion`, :func:`fidelity`
* localisation: :func:`localization` (IoU, hit), :func:`pointing_game`
* robustness: :func:`contrastivity`, :func:`max_sensitivity`, :func:`one_pixel_sensitivity`
"""

from __future__ import annotations

from camscope.metrics.faithfulness import (
    ConfidenceResult,
    CurveResult,
    FidelityResult,
    average_drop,
    deletion,
    fidelity,
    increase_in_confidence,
    insertion,
    target_probabilities,
)
from camscope.metrics.localization import (
    LocalizationResult,
    PointingResult,
    localization,
    pointing_game,
)
from camscope.metrics.robustness import (
    ContrastivityResult,
    SensitivityResult,
    contrastivity,
    max_sensitivity,
    one_pixel_sensitivity,
)
from camscope.metrics.sum_to_score import SumToScore, kendall_tau, sum_to_score

__all__ = [
    "ConfidenceResult",
    "ContrastivityResult",
    "CurveResult",
    "FidelityResult",
    "LocalizationResult",
    "PointingResult",
    "SensitivityResult",
    "SumToScore",
    "average_drop",
    "contrastivity",
    "deletion",
    "fidelity",
    "increase_in_confidence",
    "insertion",
    "kendall_tau",
    "localization",
    "max_sensitivity",
    "one_pixel_sensitivity",
    "pointing_game",
    "sum_to_score",
    "target_probabilities",
]
