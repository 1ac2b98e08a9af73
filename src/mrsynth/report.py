"""Reports: number formats, Markdown tables, and documents rendered as Markdown and self-contained HTML.

A document is a list of blocks ``(kind, content)``: ``("h1", text)``, ``("h2", text)``,
``("p", text)``, ``("table", rows)`` (the first row is the header) and ``("img", path)``.
Whoever builds a report computes every text from its numbers; this module only renders.
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path


def fmt(value: float | None) -> str:
    """The one number format of reports (a test checks every number against results.json)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.3f}"
    return f"{value:.5f}"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def format_table(
    results: dict[str, dict], keys=("mse_fov", "mse", "mae", "psnr", "psnr_p99", "psnr_optimal", "ssim_3d", "ssim_2d")
) -> str:
    """A Markdown table: one row per method (or subject), columns ``keys``; values or mean +- SD."""

    def cell(value):
        if isinstance(value, dict):
            return f"{value['mean']:.4g} ± {value['sd']:.2g}" if value["n"] > 1 else f"{value['mean']:.4g}"
        return "-" if value is None else f"{value:.4g}"

    lines = ["| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(cell(scores.get(k)) for k in keys) + " |" for name, scores in results.items()]
    return "\n".join(lines)


def render_markdown(blocks: list, base: Path) -> str:
    """The document as Markdown; images are linked relative to ``base`` (the report's folder)."""
    out = []
    for kind, content in blocks:
        if kind == "h1":
            out.append(f"# {content}\n")
        elif kind == "h2":
            out.append(f"## {content}\n")
        elif kind == "p":
            out.append(f"{content}\n")
        elif kind == "table":
            out.append("| " + " | ".join(content[0]) + " |")
            out.append("|" + "---|" * len(content[0]))
            out += ["| " + " | ".join(row) + " |" for row in content[1:]]
            out.append("")
        elif kind == "img":
            out.append(f"![{content.stem}]({content.relative_to(base).as_posix()})\n")
    return "\n".join(out)


def render_html(blocks: list, title: str) -> str:
    """The document as one self-contained HTML page (images embedded)."""
    body = []
    for kind, content in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{escape(content)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{escape(content)}</p>")
        elif kind == "table":
            head = "".join(f"<th>{escape(c)}</th>" for c in content[0])
            rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in content[1:])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(content.read_bytes()).decode()
            body.append(f'<img alt="{escape(content.stem)}" src="data:image/png;base64,{data}">')
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
