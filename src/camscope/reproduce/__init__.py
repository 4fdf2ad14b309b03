"""Reproductions of the papers' experiments (``camscope reproduce ...``)."""

from __future__ import annotations

import os
from pathlib import Path

from camscope.errors import CamscopeError

__all__ = ["trained_model"]

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
