"""What `coord-bench build` shows a newcomer: the default build runs every offline layer and says where to look."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from coord_bench.cli import main


def _rows(out, config="all"):
    return [row for path in sorted((out / config).glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def test_the_default_build_runs_every_offline_layer_and_the_report_and_says_where_to_look(tmp_path, capsys):
    out = tmp_path / "coord_bench"
    assert main(["build", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "build_manifest.json").read_text())
    assert list(manifest["annotations"]) == ["tokens", "embeddings", "latents", "rules"]  # no judge: it needs a server
    rows = _rows(out)
    assert len(rows) == manifest["totals"]["normalized"] > 0
    for row in rows:
        layers = row["annotations"]
        assert layers["token_usage"]["total_tokens"] > 0
        k = manifest["annotations"]["latents"]["k"]
        assert len(layers["latents"]["smoothed"]) == row["n_turns"] and layers["latents"]["k"] == k
        assert layers["coordination"]["rules"]["version"]
        assert layers["coordination"]["judges"] == []
    assert (out / "report" / "index.html").is_file() and (out / "README.md").is_file()
    where = printed[printed.index("where to look:"):]
    assert f"the dataset card:  {out / 'README.md'}" in where
    assert f"the HTML report:   {out / 'report' / 'index.html'}" in where
    example_id = where.split("one example row:")[1].split()[0]
    example = next(r for r in rows if r["id"] == example_id)
    assert f"token_usage: {example['annotations']['token_usage']['total_tokens']} tokens" in where
    first = round(example["annotations"]["latents"]["smoothed"][0][0], 3)
    assert f"latents (delta-lds-em, k={k}): turn 1 smoothed state [{first}" in where
    assert f"rules: success {example['annotations']['coordination']['rules']['success']}" in where
    assert example["n_agents"] == max(r["n_agents"] for r in rows)  # the richest row of the first shard is shown


def test_a_corpus_too_small_for_k_skips_the_latent_layer_with_the_reason(tmp_path, capsys):
    out = tmp_path / "small"
    args = ["build", "--out", str(out), "--no-progress", "--sources", "debate", "--set", "annotations.latents.k=64"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "build_manifest.json").read_text())
    skipped = manifest["annotations"]["latents"]["quality"]["skipped"]
    assert "fewer than k=64" in skipped and "lower annotations.latents.k" in skipped
    assert f"latent layer skipped: {skipped}" in printed
    assert all(row["annotations"]["latents"] is None for row in _rows(out, "debate"))
    assert all(row["annotations"]["token_usage"] is not None for row in _rows(out, "debate"))  # the others ran
    assert main(["validate", str(out)]) == 0
