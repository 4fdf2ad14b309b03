"""Whole scans (a CT, a tomogram) explained window by window, resumable, streamed to disk.

* :mod:`~camscope.wholescan.explain`: :func:`explain_scan`, the loop over window batches.
* :mod:`~camscope.wholescan.windows`: where the windows go and how they are weighted (MONAI's
  ``sliding_window_inference`` placement and Gaussian/constant weights).
* :mod:`~camscope.wholescan.blending`: :class:`Blender`, the band of rows that blends window
  values and hands complete rows on.
* :mod:`~camscope.wholescan.targets`: class lists per window; region and voxel targets over the
  whole scan cropped to each window.
* :mod:`~camscope.wholescan.streaming`: the files of a streamed run (``out=``): rows written as
  they complete, resumed after an interruption.
* :mod:`~camscope.wholescan.identity`: what an interrupted run must share with this one.
* :mod:`~camscope.wholescan.outputs`: the finished maps as heatmap files and report entries
  (``camscope scan``).
"""

from __future__ import annotations

from camscope.wholescan.blending import Blender
from camscope.wholescan.explain import ScanExplanation, explain_scan
from camscope.wholescan.targets import ScanTargets
from camscope.wholescan.windows import WindowPlan, importance_map, plan_windows

__all__ = [
    "Blender",
    "ScanExplanation",
    "ScanTargets",
    "WindowPlan",
    "explain_scan",
    "importance_map",
    "plan_windows",
]
