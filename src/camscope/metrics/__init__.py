"""Metrics that judge explanations: plain functions over batches, per-sample results with a
``summary()`` (mean ± std), in 2D and 3D. Definitions: each metric's docstring.

* sum-to-score: :func:`sum_to_score` (L1, Kendall τ)
* faithfulness: :func:`average_drop` / :func:`increase_in_confidence` (absolute or relative
  masking), :func:`deletion`, :func:`insertion`, :func:`fidelity`
* removal curves: :func:`pixel_flipping`, :func:`region_perturbation`, :func:`selectivity`,
  :func:`irof`
* rankings against the model: :func:`faithfulness_estimate`, :func:`monotonicity`,
  :func:`monotonicity_correlation`, :func:`sensitivity_n`, :func:`sensitivity_n_by_step`,
  :func:`sufficiency`
* localisation: :func:`localization` (IoU, hit), :func:`pointing_game`
* correlation: :func:`faithfulness_correlation`, :func:`infidelity`, :func:`occlusion_agreement`
* ROAD: :func:`road` (MoRF/LeRF under :func:`noisy_linear_imputation`)
* localisation with masks: :func:`relevance_mass_accuracy`, :func:`relevance_rank_accuracy`,
  :func:`energy_pointing_game`
* localisation by ranks and shares: :func:`top_k_intersection`, :func:`auc`,
  :func:`attribution_localisation`, :func:`focus` (on :func:`mosaics`)
* complexity: :func:`sparseness`, :func:`complexity`, :func:`effective_complexity`
* robustness: :func:`contrastivity`, :func:`max_sensitivity`, :func:`one_pixel_sensitivity`,
  :func:`avg_sensitivity`, :func:`local_lipschitz_estimate`, :func:`relative_input_stability`,
  :func:`relative_output_stability`, :func:`relative_representation_stability`,
  :func:`consistency`, :func:`continuity`
* axioms: :func:`non_sensitivity`, :func:`input_invariance`
* self-consistency of CAMs: :func:`coherency`, :func:`arcc`
* sanity checks (does the map depend on the model?): :func:`mprt`, :func:`efficient_mprt`,
  :func:`random_logit`
"""

from __future__ import annotations

from camscope.metrics.axiomatic import input_invariance, non_sensitivity
from camscope.metrics.coherency import ARCCResult, arcc, coherency
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
from camscope.metrics.flipping import (
    RemovalResult,
    irof,
    pixel_flipping,
    region_perturbation,
    selectivity,
)
from camscope.metrics.localization import (
    LocalizationResult,
    PointingResult,
    RelevanceResult,
    attribution_localisation,
    auc,
    energy_pointing_game,
    focus,
    localization,
    mosaics,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)
from camscope.metrics.monotonicity import (
    faithfulness_estimate,
    monotonicity,
    monotonicity_correlation,
    sensitivity_n,
    sensitivity_n_by_step,
    sufficiency,
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
from camscope.metrics.stability import (
    avg_sensitivity,
    consistency,
    continuity,
    local_lipschitz_estimate,
    relative_input_stability,
    relative_output_stability,
    relative_representation_stability,
)
from camscope.metrics.sum_to_score import SumToScore, kendall_tau, sum_to_score

__all__ = [
    "ARCCResult",
    "ConfidenceResult",
    "ContrastivityResult",
    "CurveResult",
    "FidelityResult",
    "LocalizationResult",
    "MPRTResult",
    "PointingResult",
    "RelevanceResult",
    "RemovalResult",
    "RoadResult",
    "SensitivityResult",
    "SumToScore",
    "arcc",
    "attribution_localisation",
    "auc",
    "average_drop",
    "avg_sensitivity",
    "coherency",
    "complexity",
    "consistency",
    "continuity",
    "contrastivity",
    "deletion",
    "effective_complexity",
    "efficient_mprt",
    "energy_pointing_game",
    "faithfulness_correlation",
    "faithfulness_estimate",
    "fidelity",
    "focus",
    "increase_in_confidence",
    "infidelity",
    "input_invariance",
    "insertion",
    "irof",
    "kendall_tau",
    "local_lipschitz_estimate",
    "localization",
    "map_similarity",
    "max_sensitivity",
    "monotonicity",
    "monotonicity_correlation",
    "mosaics",
    "mprt",
    "noisy_linear_imputation",
    "non_sensitivity",
    "occlusion_agreement",
    "one_pixel_sensitivity",
    "pixel_flipping",
    "pointing_game",
    "random_logit",
    "randomizable_blocks",
    "randomizable_layers",
    "region_perturbation",
    "relative_input_stability",
    "relative_output_stability",
    "relative_representation_stability",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "selectivity",
    "sensitivity_n",
    "sensitivity_n_by_step",
    "sparseness",
    "sufficiency",
    "sum_to_score",
    "target_probabilities",
    "top_k_intersection",
]
