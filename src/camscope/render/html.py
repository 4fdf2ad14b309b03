"""A self-contained HTML page: inline CSS, images as data URIs; opens without a network."""

from __future__ import annotations

import base64
import html

__all__ = ["data_uri", "html_page", "image_tag"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; text-align: right; }
th { background: #eee; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.note { color: #555; font-size: 0.92em; }
"""


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI (an image inside the page, no file beside it)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` holding the PNG inline."""
    return f'<img alt="{html.escape(alt)}" src="{data_uri(png)}">'


def html_page(title: str, body: str) -> str:
    """Wrap already-escaped body HTML into a complete page."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )
