"""A small document model (headings, paragraphs, tables, images) rendered to Markdown and to one
self-contained HTML page (images as data: URIs, inline CSS, no script, nothing fetched)."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    best: frozenset[tuple[int, int]] = frozenset()  # (row, column) cells marked best
    caption: str = ""


@dataclass(frozen=True)
class Image:
    name: str  # file name under figures/
    png: bytes
    alt: str


Block = Heading | Paragraph | Table | Image

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.2em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
td.best{font-weight:bold;background:#e6f4e6}
caption{caption-side:bottom;font-size:12px;color:#555;text-align:left;padding-top:4px}
img{max-width:100%;border:1px solid #eee;margin:0.4em 0}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:2px;margin-top:1.6em}
"""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(blocks: list[Block], figures_dir: str = "figures") -> str:
    """Markdown; best cells in bold; images referenced as figures_dir/<name>."""
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(map(_md_cell, block.headers)) + " |",
                     "|" + "|".join("---" for _ in block.headers) + "|"]
            for i, row in enumerate(block.rows):
                cells = [f"**{_md_cell(c)}**" if (i, j) in block.best else _md_cell(c) for j, c in enumerate(row)]
                lines.append("| " + " | ".join(cells) + " |")
            out.append("\n".join(lines) + (f"\n\n*{block.caption}*" if block.caption else ""))
        else:
            out.append(f"![{block.alt}]({figures_dir}/{block.name})")
    return "\n\n".join(out) + "\n"


def to_html(blocks: list[Block], title: str) -> str:
    """One self-contained page: inline CSS, images embedded as base64 data: URIs."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            out.append("<table>")
            if block.caption:
                out.append(f"<caption>{html.escape(block.caption)}</caption>")
            out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block.headers) + "</tr>")
            for i, row in enumerate(block.rows):
                out.append("<tr>" + "".join(
                    f'<td class="best">{html.escape(c)}</td>' if (i, j) in block.best else f"<td>{html.escape(c)}</td>"
                    for j, c in enumerate(row)) + "</tr>")
            out.append("</table>")
        else:
            data = base64.b64encode(block.png).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}"></figure>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"
