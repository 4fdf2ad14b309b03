"""Simulated 3D data. ``toy``: quick shape volumes for demos and tests."""

from __future__ import annotations

from camscope.simulate.toy import TOY_CLASSES, ToyVolumes, toy_volume

__all__ = ["TOY_CLASSES", "ToyVolumes", "toy_volume"]
