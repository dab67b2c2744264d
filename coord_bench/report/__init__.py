"""``coord-bench report DIR``: an HTML quality report of a build, with PNG figures beside it.

Writes ``DIR/report/index.html``, one PNG per figure and ``DIR/report/figures.json`` (the figures, their
captions and the figures left out, for the dataset card: :func:`card_figures`). Every number comes from the
build: the manifest (counts), the Parquet rows (distributions) and the latent quality report
(``reports/latent_quality.json``). A figure whose data is absent is not drawn; the page says in one line why.

One module per part: :mod:`.stats` reads the rows once into per-source counts, :mod:`.latent_quality` reads
and renders the latent quality report (for the figures, the card and the terminal), :mod:`.figures` draws,
:mod:`.page` lays out the HTML, and :mod:`.writer` writes the folder and reads it back for the card.
"""

from __future__ import annotations

from coord_bench.report.latent_quality import probe_estimates, r2_estimates
from coord_bench.report.writer import FIGURES_FILE, INDEX_FILE, REPORT_DIR, card_figures, main, write_report

__all__ = [
    "FIGURES_FILE",
    "INDEX_FILE",
    "REPORT_DIR",
    "card_figures",
    "main",
    "probe_estimates",
    "r2_estimates",
    "write_report",
]
