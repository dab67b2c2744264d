"""The report folder ``DIR/report/``: written in one go (page, PNG figures, ``figures.json``), read back for the card.

``figures.json`` lists the figures, their captions and the figures left out, so the dataset card can show them
(:func:`card_figures`) without drawing anything; :func:`main` is ``coord-bench report DIR``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from coord_bench.build_folder import read_manifest
from coord_bench.report.figures import Report, draw
from coord_bench.report.page import render_html
from coord_bench.report.stats import collect, iter_plot_rows

REPORT_DIR = "report"
INDEX_FILE = "index.html"
FIGURES_FILE = "figures.json"


def write_report(folder: Path) -> tuple[Path, Report]:
    """Write ``folder/report/``: index.html, the PNG figures and figures.json; return the page and the report."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    out = folder / REPORT_DIR
    out.mkdir(exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    stats = collect(iter_plot_rows(folder, manifest), manifest.get("sources", {}))
    report = draw(out, folder, manifest, stats)
    index = out / INDEX_FILE
    index.write_text(render_html(folder, manifest, report), encoding="utf-8")
    (out / FIGURES_FILE).write_text(
        json.dumps(
            {
                "figures": [vars(f) for f in report.figures],
                "not_drawn": report.not_drawn,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    return index, report


def card_figures(folder: Path) -> str:
    """Markdown for the dataset card: the report's figures as repo-relative image links (``report/<name>.png``).

    Empty when the build has no report (run ``coord-bench report DIR`` first).
    """
    out = Path(folder) / REPORT_DIR
    index = out / FIGURES_FILE
    if not index.is_file():
        return ""
    listed = json.loads(index.read_text(encoding="utf-8"))
    figures = [f for f in listed.get("figures", []) if (out / f["file"]).is_file()]
    if not figures:
        return ""
    parts = ["## Figures", "", "Made by `coord-bench report` from this build (the full report is `report/index.html`)."]
    for f in figures:
        parts += ["", f"![{f['title']}]({REPORT_DIR}/{f['file']})", "", f"*{f['caption']}*"]
    if listed.get("not_drawn"):
        parts += ["", "Not drawn:", ""] + [f"- {line}" for line in listed["not_drawn"]]
    return "\n".join(parts) + "\n"


def main(folder: Path) -> int:
    start = time.perf_counter()
    index, report = write_report(folder)
    print(
        f"wrote {index}: {len(report.figures)} figures, {len(report.not_drawn)} not drawn "
        f"({time.perf_counter() - start:.1f} s)"
    )
    for line in report.not_drawn:
        print(f"  not drawn: {line}")
    return 0
