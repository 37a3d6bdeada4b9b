"""Figures as embedded PNGs (matplotlib Agg) and the small HTML helpers the reports share."""

from __future__ import annotations

import base64
import functools
import html
import io
from typing import Any

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#222;max-width:1200px}
h1{font-size:1.6rem} h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}
th{background:#f3f3f3} .pass{color:#07692c;font-weight:bold} .fail{color:#b00020;font-weight:bold}
img{max-width:100%;height:auto} .grid{display:flex;flex-wrap:wrap;gap:1rem}
"""


@functools.cache
def pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use: most reports (validation, monitoring, ground
    truth, the model card) are tables only, and their jobs should not pay matplotlib's import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(figure) -> str:
    """An <img> with the figure as a base64 PNG; closes the figure."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    pyplot().close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>(none)</p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return html.escape(", ".join(map(str, value)) if isinstance(value, list) else str(value))
    return html.escape("" if value is None else str(value))


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
