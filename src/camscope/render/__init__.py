"""Pictures and reports: arrays in, PNG bytes / HTML text out (written atomically by callers)."""

from __future__ import annotations

from camscope.render.html import html_page, image_tag
from camscope.render.volumes import figure_png, isosurface, signed_limits, slice_image

__all__ = ["figure_png", "html_page", "image_tag", "isosurface", "signed_limits", "slice_image"]
