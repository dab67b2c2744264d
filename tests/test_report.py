"""`coord-bench report`: the HTML report of a build, its PNG figures, the card's figure links, and a real browser.

How the browser check works (Debian's `chromium`, installed by `.ci/run`; the flags `--headless --no-sandbox
--disable-gpu --disable-background-networking`, each run with its own throwaway `--user-data-dir`):

1. The report page itself, untouched, is rendered once with `--screenshot --window-size=1200,3000` and
   `--enable-logging=stderr --v=0`: Chromium writes every console message of the page to stderr as a
   `:CONSOLE` line. The page has no script, so any such line fails the test. The screenshot must be a
   1200x3000 PNG that is not blank.
2. Console lines on stderr do not include failed image loads, and stderr cannot say whether an image decoded.
   So a copy of the report folder gets a probe: a copy of `index.html` with one inline `<script>` first in
   `<head>` that records `window.onerror`, resource `error` events (capture phase: broken `<img>`),
   unhandled rejections and `console.error` calls, and on `window.onload` writes
   `{"imgs": [[src, complete, naturalWidth], ...], "errors": [...]}` into `document.title`. Chromium's
   `--dump-dom` (with `--virtual-time-budget`, so loading finishes first) prints the DOM after load; the test
   reads the title back. Every `<img>` must have naturalWidth > 0 and the error list must be empty. Only the
   copy has the script; the report stays script-free. No extra Python package and no DevTools socket.

`test_a_broken_image_fails_the_browser_check` proves the probe catches a broken image by pointing an `<img>`
of a throwaway copy at a missing file.
"""

from __future__ import annotations

import html
import json
import random
import re
import shutil
import struct
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coord_bench.build_folder import iter_rows, read_manifest, shard_files
from coord_bench.cli import main
from coord_bench.mappers.latents.quality import probe_report
from coord_bench.report import FIGURES_FILE, card_figures, probe_estimates, r2_estimates

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

PROBE = """<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    var t = e.target;
    errors.push(t && t !== window && t.src ? "failed to load " + t.getAttribute("src") : String(e.message));
  }, true);
  window.addEventListener("unhandledrejection", function (e) { errors.push("unhandled rejection: " + e.reason); });
  var consoleError = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return consoleError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var imgs = Array.prototype.map.call(document.images, function (i) {
      return [i.getAttribute("src"), i.complete, i.naturalWidth];
    });
    document.title = JSON.stringify({imgs: imgs, errors: errors});
  });
})();
</script>"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The embedded default built with token counts, then `coord-bench report` on it (timed)."""
    out = tmp_path_factory.mktemp("report") / "coord_bench"
    no_report = ["--set", "output.report=false"]
    assert main(["build", "--out", str(out), "--no-progress", "--annotate", "tokens", *no_report]) == 0
    start = time.perf_counter()
    assert main(["report", str(out)]) == 0
    seconds = time.perf_counter() - start
    print(f"coord-bench report on the embedded default: {seconds:.2f} s")
    return out


class _Page(HTMLParser):
    """The <img> sources and the tables (rows of cell texts) of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def browser_probe(report_dir: Path, work: Path, mutate=None) -> dict:
    """Load a probed copy of ``report_dir/index.html`` in Chromium; return {"imgs": [...], "errors": [...]}."""
    copy = work / "probe"
    shutil.copytree(report_dir, copy)
    page = (copy / "index.html").read_text(encoding="utf-8")
    if mutate:
        page = mutate(page)
    (copy / "probe.html").write_text(page.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    result = chromium(
        work / "profile-probe", "--virtual-time-budget=10000", "--dump-dom", (copy / "probe.html").as_uri()
    )
    match = re.search(r"<title>(.*?)</title>", result.stdout, re.S)
    assert match, f"no DOM from chromium (rc {result.returncode}): {result.stderr[-2000:]}"
    try:
        return json.loads(html.unescape(match.group(1)))
    except ValueError:
        raise AssertionError(f"the page's load event never ran; title is {match.group(1)!r}") from None


def test_report_figures_exist_and_the_counts_match_the_manifest(built):
    manifest = read_manifest(built)
    index = built / "report" / "index.html"
    page = parse(index)
    listed = json.loads((built / "report" / FIGURES_FILE).read_text())
    assert page.imgs == [f["file"] for f in listed["figures"]]
    # the embedded default with token counts has these; annotations it lacks are explained, not drawn
    assert {"turns.png", "agents.png", "tokens_per_message.png", "arena_winner.png", "debate_outcomes.png"} <= set(
        page.imgs
    )
    for src in page.imgs:
        path = index.parent / src
        width, height = png_size(path)
        assert width >= 300 and height >= 200 and path.stat().st_size > 5_000, src
    text = index.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text
    for line in listed["not_drawn"]:
        assert html.escape(line) in text
    assert any("latent_quality.json is absent" in line for line in listed["not_drawn"])
    assert any(line.startswith("Latent trajectories") for line in listed["not_drawn"])
    assert "latent_trajectories.png" not in page.imgs and "coordination_labels.png" not in page.imgs
    # the counts table shows the manifest's numbers
    splits = list(manifest["split_method"]["ratios"])
    sources_table, configs_table = page.tables
    rows = {row[0]: row for row in sources_table}
    for name, s in manifest["sources"].items():
        expected = [name, s["read"], s["normalized"], s["rejected"], s["filtered"], *[s["splits"][x] for x in splits]]
        assert rows[name][: len(expected)] == [str(v) for v in expected]
    totals = manifest["totals"]
    assert rows["total"][1:5] == [str(totals[k]) for k in ("read", "normalized", "rejected", "filtered")]
    configs = {row[0]: row for row in configs_table}
    for name, c in manifest["configs"].items():
        assert configs[name][2:] == [str(c["splits"][x]) for x in splits] + [str(c["num_rows"])]
    # captions carry numbers from the data: the arena votes add up to the arena's normalized records
    arena = next(f for f in listed["figures"] if f["file"] == "arena_winner.png")["caption"]
    votes = sum(int(n) for n in re.findall(r"(?:model_a|model_b|tie|tie \(bothbad\)|no vote) (\d+)", arena))
    assert votes == manifest["sources"]["chatbot_arena"]["normalized"]


@needs_chromium
def test_report_renders_in_headless_chromium(built, tmp_path):
    report_dir = built / "report"
    n_figures = len(json.loads((report_dir / FIGURES_FILE).read_text())["figures"])
    shot = tmp_path / "report.png"
    result = chromium(
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1200,3000",
        "--enable-logging=stderr",
        "--v=0",
        (report_dir / "index.html").as_uri(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    assert png_size(shot) == (1200, 3000)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    assert (pixels.min(axis=2) < 0.9).mean() > 0.02, "the screenshot is (almost) blank"

    probe = browser_probe(report_dir, tmp_path)
    assert len(probe["imgs"]) == n_figures > 0
    broken = [src for src, complete, width in probe["imgs"] if not complete or width <= 0]
    assert broken == [], broken
    assert probe["errors"] == []


@needs_chromium
def test_a_broken_image_fails_the_browser_check(built, tmp_path):
    probe = browser_probe(
        built / "report", tmp_path, mutate=lambda page: page.replace('src="turns.png"', 'src="no_such_figure.png"', 1)
    )
    widths = {src: width for src, _, width in probe["imgs"]}
    assert widths["no_such_figure.png"] == 0
    assert all(width > 0 for src, width in widths.items() if src != "no_such_figure.png")
    assert probe["errors"] == ["failed to load no_such_figure.png"]


def _annotated_copy(built: Path, dest: Path) -> Path:
    """A copy of the build whose `all` config has latents and coordination labels (synthetic, deterministic)."""
    from coord_bench.schema import features

    shutil.copytree(built, dest)
    shutil.rmtree(dest / "report")
    rng = random.Random(7)
    rows = [row for path in shard_files(dest, "all") for row in iter_rows(path)]
    for i, row in enumerate(rows):
        drift = rng.choice([-1.0, 1.0])
        row["annotations"]["latents"] = {
            "method": "lds",
            "model_hash": "0" * 64,
            "k": 3,
            "smoothed": [[drift * t + rng.random(), t * 0.5 + rng.random(), 0.0] for t in range(row["n_turns"])],
            "filtered": [[0.0, 0.0, 0.0] for _ in range(row["n_turns"])],
        }
        levels = ["full", "partial", "none"]
        judge = {
            "prompt_version": "v1",
            "schema_version": "1",
            "reason": None,
            "success_score": 0.5,
            "efficiency_score": 0.5,
            "rationale": "r",
            "cached": False,
            "cost_usd": 0.0,
        }
        row["annotations"]["coordination"] = {
            "rules": {
                "version": "1",
                "success": i % 2 == 0,
                "efficiency": 0.5,
                "agreement_level": levels[i % 3],
                "events": [],
            },
            "judges": [
                {**judge, "model": "judge-a", "status": "ok", "agreement_level": levels[i % 3]},
                {
                    **judge,
                    "model": "judge-b",
                    "status": "ok" if i % 4 else "not_sampled",
                    "agreement_level": levels[(i // 2) % 3] if i % 4 else None,
                },
            ],
            "consensus": {"agreement_level": levels[i % 3]},  # other consensus fields: null
        }
    for path in shard_files(dest, "all"):
        path.unlink()
    pq.write_table(
        pa.Table.from_pylist(rows, schema=features().arrow_schema), dest / "all" / "train-00000-of-00001.parquet"
    )
    (dest / "reports").mkdir(exist_ok=True)  # `report` wrote reports/labels.json into the build copied
    (dest / "reports" / "latent_quality.json").write_text(json.dumps(latent_quality()))
    return dest


def latent_quality() -> dict:
    """A latent quality report in the layout the latents mapper writes; the probes come from the real
    ``probe_report`` (one fitted with a token baseline, one with too little data)."""
    rng = np.random.default_rng(3)
    y = np.array(["model_a", "model_b"] * 20)
    groups = np.repeat(np.arange(10), 4)
    signal = (y == "model_a").astype(float)[:, None]
    features = {
        "tokens": rng.normal(size=(40, 2)),
        "latents": signal + rng.normal(scale=0.8, size=(40, 3)),
        "latents_plus_tokens": signal + rng.normal(scale=0.8, size=(40, 5)),
    }
    return {
        "method": "lds-em",
        "model_hash": "0" * 64,
        "k": 3,
        "train_sequences": 18,
        "held_out_sequences": 5,
        "next_turn_r2": {
            "method": "lds-em",
            "model_hash": "0" * 64,
            "n_predicted_turns": 12,
            "model": 0.42,
            "train_mean": 0.0,
            "copy_last": 0.20,
            "pca_no_dynamics": float("nan"),  # what _pooled_r2 gives when the held-out turns do not vary
            "pca_rrr": 0.12,
        },
        "stability": {"method": "lds-em", "max_angle_deg": 4.31, "mean_angle_deg": 2.0, "angles_deg": [1.0, 4.31]},
        "probes": {
            "arena_winner": probe_report(features, y, groups, seed=0, n_boot=50, baseline="tokens"),
            "debate_answer_correct": probe_report(
                {"tokens": np.zeros((6, 2))}, np.array(["T", "F"] * 3), np.arange(6), 0
            ),
            "debate_decision_success": {
                "status": "insufficient data",
                "reason": "no grouped split keeps every class in training",
                "n_rows": 12,
                "n_groups": 4,
                "class_counts": {"False": 9, "True": 3},
                "groups_per_class": {"False": 4, "True": 2},
            },
        },
    }


def test_annotation_figures_are_drawn_when_their_data_exists(built, tmp_path, capsys):
    folder = _annotated_copy(built, tmp_path / "annotated")
    assert main(["report", str(folder)]) == 0
    listed = json.loads((folder / "report" / FIGURES_FILE).read_text())
    files = [f["file"] for f in listed["figures"]]
    for name in (
        "coordination_labels.png",
        "judge_agreement.png",
        "latent_trajectories.png",
        "latent_next_turn_r2.png",
        "latent_probe_auc.png",
    ):
        assert name in files
        png_size(folder / "report" / name)
    labels = next(f for f in listed["figures"] if f["file"] == "coordination_labels.png")["caption"]
    for name, source in read_manifest(folder)["sources"].items():  # every row has one label of each judge
        part = labels.split(f"{name}: rules on ")[1].split(";")[0:3]
        assert part[0].startswith(f"{source['normalized']} conversations")
        assert part[1].strip() == f"judge statuses judge-a: ok {source['normalized']}"
        assert sum(int(n) for n in re.findall(r"\d+", part[2])) == source["normalized"]
    r2 = next(f for f in listed["figures"] if f["file"] == "latent_next_turn_r2.png")
    assert "(lds-em) and its baselines on 12 predicted turns" in r2["caption"]
    assert "Not a finite number, not drawn: pca_no_dynamics." in r2["caption"]
    assert "at most 4.3° apart" in r2["caption"]  # the stability section
    auc = next(f for f in listed["figures"] if f["file"] == "latent_probe_auc.png")
    assert "arena_winner: 40 rows, StratifiedGroupKFold with 5 folds" in auc["caption"]
    assert "AUC gain over tokens: latents +" in auc["caption"]  # the paired differences to the token baseline
    # probes with too little data: their status, their reason when they give one, and the counts
    insufficient = [line for line in listed["not_drawn"] if line.startswith("Probe AUC, insufficient data: ")]
    assert insufficient == [
        "Probe AUC, insufficient data: debate_answer_correct (6 rows in 6 groups; groups per class F 3, T 3), "
        "debate_decision_success (no grouped split keeps every class in training; 12 rows in 4 groups; "
        "groups per class False 4, True 2)."
    ]
    # the card links the figures repo-relatively
    from coord_bench.card import render_card

    card = render_card(read_manifest(folder), "me/coord_bench", folder)
    links = re.findall(r"!\[[^\]]*\]\((report/[^)]+\.png)\)", card)
    assert links == [f"report/{name}" for name in files]
    assert card_figures(folder) in card and "${" not in card
    bare = shutil.copytree(built, tmp_path / "bare", ignore=shutil.ignore_patterns("report"))  # no report/
    assert "## Figures" not in render_card(read_manifest(bare), "me/coord_bench", bare)


def test_card_has_no_figures_section_without_a_report(tmp_path):
    assert card_figures(tmp_path) == ""


def test_latent_quality_is_read_in_the_layout_the_mapper_writes():
    quality = latent_quality()
    r2, not_finite = r2_estimates(quality["next_turn_r2"])
    assert [(e.label, e.value, e.low, e.high) for e in r2] == [
        ("model", 0.42, None, None),
        ("train_mean", 0.0, None, None),
        ("copy_last", 0.2, None, None),
        ("pca_rrr", 0.12, None, None),
    ]  # method, model_hash and n_predicted_turns are not estimates
    assert not_finite == ["pca_no_dynamics"]
    probe = quality["probes"]["arena_winner"]
    assert probe["status"] == "ok"
    found = probe_estimates(probe)
    assert [e.label for e in found] == ["tokens", "latents", "latents_plus_tokens"]
    for estimate in found:
        result = probe["features"][estimate.label]
        assert (estimate.value, estimate.low, estimate.high) == (result["auc"], *result["auc_ci"])
        assert estimate.low <= estimate.value <= estimate.high
    assert probe_estimates(quality["probes"]["debate_answer_correct"]) == []  # insufficient data: no features


def test_report_of_a_build_with_latents(tmp_path, monkeypatch):
    """The report of a real `--annotate latents` build reads the quality report the build wrote."""
    monkeypatch.setenv("COORD_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "latents"
    no_report = ["--set", "output.report=false"]
    with_test = ["--set", "splits.ratios={train: 0.5, validation: 0.2, test: 0.3}"]  # the sample's test split is empty
    assert main(["build", "--out", str(out), "--no-progress", "--annotate", "latents", *no_report, *with_test]) == 0
    assert main(["report", str(out)]) == 0
    quality = json.loads((out / "reports" / "latent_quality.json").read_text())
    listed = json.loads((out / "report" / FIGURES_FILE).read_text())
    files = [f["file"] for f in listed["figures"]]
    assert "latent_trajectories.png" in files and "latent_next_turn_r2.png" in files
    r2 = next(f for f in listed["figures"] if f["file"] == "latent_next_turn_r2.png")
    assert f"on {quality['next_turn_r2']['n_predicted_turns']} predicted turns" in r2["caption"]
    for target, probe in quality["probes"].items():
        if probe["status"] == "ok":
            assert "latent_probe_auc.png" in files and f"{target}: {probe['n_rows']} rows" in "".join(
                f["caption"] for f in listed["figures"]
            )
        else:  # the embedded default is small: the probes say why they were not fitted
            line = next(x for x in listed["not_drawn"] if x.startswith(f"Probe AUC, {probe['status']}: "))
            reason = f"{probe['reason']}; " if probe.get("reason") else ""
            assert f"{target} ({reason}{probe['n_rows']} rows in {probe['n_groups']} groups; " in line
