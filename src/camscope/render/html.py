"""Self-contained HTML pages from Jinja2 templates (``render/templates``): inline CSS and
JavaScript, images as data URIs; a page opens from disk without a network. Markup lives in the
templates, never in Python strings, and every value is escaped by the template engine."""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from typing import Any

__all__ = ["data_uri", "metrics_table", "render_page"]


def data_uri(image: bytes, kind: str = "image/png") -> str:
    """Image bytes (PNG unless ``kind`` says otherwise) as a ``data:`` URI (an image inside the
    page, no file beside it)."""
    return f"data:{kind};base64," + base64.b64encode(image).decode("ascii")


@functools.cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("camscope.render", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_page(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context`` (values are escaped)."""
    return str(_environment().get_template(template).render(**context))


def metrics_table(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{columns, rows}`` of text cells for ``metrics.html.j2`` (floats to 4 significant
    digits; list values, such as curves, left out)."""
    columns = [key for key, value in rows[0].items() if not isinstance(value, list)]
    cells = [
        [
            f"{row.get(c, ''):.4g}" if isinstance(row.get(c), float) else str(row.get(c, ""))
            for c in columns
        ]
        for row in rows
    ]
    return {"columns": columns, "rows": cells}
