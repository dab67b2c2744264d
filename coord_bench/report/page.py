"""The report's HTML page: the build's counts as tables, then the figures with their captions and what was not drawn.

Kept apart from the figures so the page's markup and style are in one place and the figures stay plotting only.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from coord_bench.report.figures import Report

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f2f2f2}td.num{text-align:right}
tr.total td{font-weight:bold;background:#fafafa}
figure{margin:1.4em 0;padding:.6em;border:1px solid #e4e4e4;border-radius:4px}
figure img{max-width:100%;height:auto;display:block}figcaption{font-size:.9em;color:#444;margin-top:.4em}
.warning{background:#fff3cd;border:1px solid #e0b800;padding:.4em .6em}
.meta{color:#555;font-size:.9em}li{margin:.2em 0}code{background:#f4f4f4;padding:0 .2em}
"""


def _html_table(header: list[str], rows: list[list[Any]], total: list[Any] | None = None) -> str:
    def cells(tag: str, row: list[Any]) -> str:
        numeric = ' class="num"'
        return "".join(
            f"<{tag}{numeric if isinstance(cell, (int, float)) else ''}>{html.escape(str(cell))}</{tag}>"
            for cell in row
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    if total:
        body += f'<tr class="total">{cells("td", total)}</tr>'
    return f"<table><thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"


def counts_tables(manifest: dict[str, Any]) -> str:
    splits = list((manifest.get("split_method") or {}).get("ratios") or {})
    sources = manifest.get("sources", {})
    rows = []
    for name, s in sources.items():
        kinds = ", ".join(f"{k} {v}" for k, v in (s.get("rejects_by_kind") or {}).items()) or "-"
        rows.append(
            [
                name,
                s.get("read"),
                s.get("normalized"),
                s.get("rejected"),
                s.get("filtered", 0),
                *[(s.get("splits") or {}).get(split, 0) for split in splits],
                kinds,
            ]
        )
    totals = manifest.get("totals") or {}
    total = [
        "total",
        *[totals.get(k) for k in ("read", "normalized", "rejected", "filtered")],
        *[sum((s.get("splits") or {}).get(split, 0) for s in sources.values()) for split in splits],
        "",
    ]
    warnings = [f"{name}: {w}" for name, s in sources.items() for w in s.get("warnings", [])]
    parts = [f'<p class="warning"><b>Warning</b> {html.escape(w)}</p>' for w in warnings]
    parts.append(
        _html_table(["source", "read", "normalized", "rejected", "filtered", *splits, "rejected by kind"], rows, total)
    )
    configs = manifest.get("configs") or {}
    if configs:
        parts.append(
            _html_table(
                ["config", "sources", *splits, "rows"],
                [
                    [
                        name,
                        ", ".join(c.get("sources", [])),
                        *[(c.get("splits") or {}).get(s, 0) for s in splits],
                        c.get("num_rows"),
                    ]
                    for name, c in configs.items()
                ],
            )
        )
    return "\n".join(parts)


def render_html(folder: Path, manifest: dict[str, Any], report: Report) -> str:
    title = f"coord_bench report: {Path(folder).resolve().name}"
    recipe = manifest.get("recipe") or {}
    meta = (
        f"Built {manifest.get('built_at')} by coord_bench {manifest.get('coord_bench_version')} "
        f"(schema {manifest.get('schema_version')})"
        + (
            f" from recipe <code>{html.escape(str(recipe.get('name')))}</code> (sha256 "
            f"<code>{html.escape(str(manifest.get('recipe_hash', ''))[:12])}</code>)"
            if recipe
            else ""
        )
        + ". Annotation layers: "
        + html.escape(", ".join(manifest.get("annotations") or {}) or "none")
        + "."
    )
    figures = "\n".join(
        f'<figure id="{html.escape(Path(f.file).stem)}"><img src="{html.escape(f.file)}" '
        f'alt="{html.escape(f.title)}"><figcaption><b>Figure {i}. {html.escape(f.title)}.</b> '
        f"{html.escape(f.caption)}</figcaption></figure>"
        for i, f in enumerate(report.figures, 1)
    )
    missing = "".join(f"<li>{html.escape(line)}</li>" for line in report.not_drawn)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">{meta} Every number on this page comes from <code>build_manifest.json</code>, the Parquet
rows and the build's reports.</p>
<h2>Counts</h2>
<p>Records per source (read = normalized + rejected + filtered) and per split, then rows per config.</p>
{counts_tables(manifest)}
<h2>Figures</h2>
{figures or "<p>No figure: the build has no data to draw.</p>"}
<h2>Not drawn</h2>
{f"<ul>{missing}</ul>" if missing else "<p>Every figure was drawn.</p>"}
</body></html>
"""
