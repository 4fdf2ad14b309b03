"""Reproductions of the papers' experiments (``camscope reproduce ...``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from camscope.errors import CamscopeError

__all__ = ["SHOWCASE_CLASSIFIER", "showcase_classifier", "trained_model"]

#: Where ``camscope reproduce respond-cam`` writes by default.
RESPOND_CAM_OUT = "runs/respond-cam"


def trained_model(model_path: str | os.PathLike[str] | None, snr: float) -> Path:
    """The stem of a saved model: ``model_path`` (with or without ``.json``/``.safetensors``),
    or by default the reproduction's CNN-2 trained at ``snr``.

    Raises:
        CamscopeError: no model there, with how to make one.
    """
    from camscope.simulate.subtomogram import snr_label

    default = Path(RESPOND_CAM_OUT) / "models" / f"cnn2_snr-{snr_label(snr)}"
    text = str(model_path if model_path is not None else default)
    stem = Path(text.removesuffix(".json").removesuffix(".safetensors"))
    if not stem.with_name(stem.name + ".json").exists():
        raise CamscopeError(
            f"no trained model at {stem}.json: run `camscope reproduce respond-cam` first, or "
            "pass --model"
        )
    return stem


#: The built-in names a classifier of subtomograms can be given by.
BUILT_IN = ("cnn1", "cnn2")


def _small_config(snr: float) -> Any:
    """CNN-2 at 24³, trained on 40 subtomograms of each class (a few minutes on 2 cores)."""
    import math

    from camscope.reproduce.respond_cam import ModelSpec, ReproduceConfig

    return ReproduceConfig(
        scale="showcase",
        models=(
            ModelSpec(
                "CNN-2 (small)", "cnn2", {}, per_class=40, epochs=5, noisy_epochs=3, batch_size=16
            ),
        ),
        snrs=(math.inf,) if math.isinf(snr) else (math.inf, snr),
        test_per_class=1,
        size=24,
    )


#: What :func:`showcase_classifier` trains when no trained classifier is there.
SHOWCASE_CLASSIFIER = "CNN-2 at 24³, 40 subtomograms of each class (a few minutes on 2 cores)"


def showcase_classifier(
    model: str | os.PathLike[str] | None,
    snr: float,
    folder: Path,
    *,
    progress: bool = True,
    log: Any = print,
) -> Path:
    """The stem of the subtomogram classifier a showcase uses.

    ``model``: a saved model's path; a built-in name (``cnn2``, ``cnn1``) for the reproduction's
    trained network of that name at ``snr`` (``camscope reproduce respond-cam``); ``None`` for its
    CNN-2. When the reproduction's CNN-2 is not there, a small one is trained into
    ``folder/model`` (:data:`SHOWCASE_CLASSIFIER`; kept, so a second run reuses it) and the log
    says so.

    Raises:
        CamscopeError: no saved model at a path given, or no trained CNN-1 (it is not trained
            here: it takes the reproduction).
    """
    from camscope.simulate.subtomogram import snr_label

    name = None if model is None else str(model).strip().lower()
    if name is not None and name not in BUILT_IN:
        return trained_model(model, snr)
    architecture = name or "cnn2"
    stem = Path(RESPOND_CAM_OUT) / "models" / f"{architecture}_snr-{snr_label(snr)}"
    if stem.with_name(stem.name + ".json").exists():
        return stem
    if architecture == "cnn1":
        raise CamscopeError(
            f"no trained cnn1 at {stem}.json: run `camscope reproduce respond-cam` first (it "
            "trains CNN-1 and CNN-2), or leave --model out for a small CNN-2 trained here"
        )
    from camscope.reproduce.respond_cam import reproduce_table

    small = folder / "model"
    trained = small / "models" / f"cnn2_snr-{snr_label(snr)}"
    if trained.with_name(trained.name + ".json").exists():
        log(f"using the small CNN-2 trained before in {small}")
        return trained
    log(
        f"no trained CNN-2 at {stem}.json (`camscope reproduce respond-cam` trains it): training "
        f"a small one into {small} ({SHOWCASE_CLASSIFIER})"
    )
    reproduce_table(small, _small_config(snr), force=True, progress=progress, log=lambda text: None)
    return trained
