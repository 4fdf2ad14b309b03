"""Metrics that judge explanations: plain functions over batches, per-sample results with a
``summary()`` (mean ± std), in 2D and 3D. Definitions: each metric's docstring.

* sum-to-score: :func:`sum_to_score` (L1, Kendall τ)
* faithfulness: :func:`average_drop` / :func:`increase_in_confidence` (absolute or relative
  masking), :func:`deletion`, :func:`insertion`, :func:`fidelity`
* localisation: :func:`localization` (IoU, hit), :func:`pointing_game`
* correlation: :func:`faithfulness_correlation`, :func:`infidelity`, :func:`occlusion_agreement`
* ROAD: :func:`road` (MoRF/LeRF under :func:`noisy_linear_imputation`)
* localisation with masks: :func:`relevance_mass_accuracy`, :func:`relevance_rank_accuracy`,
  :func:`energy_pointing_game`
* localisation by ranks and shares: :func:`top_k_intersection`, :func:`auc`,
  :func:`attribution_localisation`
* complexity: :func:`sparseness`, :func:`complexity`, :func:`effective_complexity`
* robustness: :func:`contrastivity`, :func:`max_sensitivity`, :func:`one_pixel_sensitivity`
* sanity checks (does the map depend on the model?): :func:`mprt`, :func:`efficient_mprt`,
  :func:`random_logit`
"""

from __future__ import annotations

from camscope.metrics.complexity import complexity, effective_complexity, sparseness
from camscope.metrics.correlation import (
    faithfulness_correlation,
    infidelity,
    occlusion_agreement,
)
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
    RelevanceResult,
    attribution_localisation,
    auc,
    energy_pointing_game,
    localization,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)
from camscope.metrics.randomization import (
    MPRTResult,
    efficient_mprt,
    map_similarity,
    mprt,
    random_logit,
    randomizable_blocks,
    randomizable_layers,
)
from camscope.metrics.road import RoadResult, noisy_linear_imputation, road
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
    "MPRTResult",
    "PointingResult",
    "RelevanceResult",
    "RoadResult",
    "SensitivityResult",
    "SumToScore",
    "attribution_localisation",
    "auc",
    "average_drop",
    "complexity",
    "contrastivity",
    "deletion",
    "effective_complexity",
    "efficient_mprt",
    "energy_pointing_game",
    "faithfulness_correlation",
    "fidelity",
    "increase_in_confidence",
    "infidelity",
    "insertion",
    "kendall_tau",
    "localization",
    "map_similarity",
    "max_sensitivity",
    "mprt",
    "noisy_linear_imputation",
    "occlusion_agreement",
    "one_pixel_sensitivity",
    "pointing_game",
    "random_logit",
    "randomizable_blocks",
    "randomizable_layers",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "sparseness",
    "sum_to_score",
    "target_probabilities",
    "top_k_intersection",
]
