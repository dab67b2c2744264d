"""The staged corpus between a build's two passes: records in, batches out, as often as asked."""

from __future__ import annotations

from synthetic import arena, debate

from coord_bench.staging import BATCH_ROWS, AnnotatedView, StagedCorpus


def staged(folder, records) -> StagedCorpus:
    corpus = StagedCorpus(folder)
    for record in records:
        corpus.add(record)
    corpus.close_writing()
    return corpus


def mixed(n_arena: int, n_debate: int) -> list[dict]:
    """Arena and debate records interleaved, the way a build stages sources read one after the other."""
    arenas = [arena(i, "train", "model_a", f"a{i}", f"b{i}") for i in range(n_arena)]
    debates = [debate(i, "test", [[("A", None)]], True) for i in range(n_debate)]
    return [r for pair in zip(debates, arenas[:n_debate], strict=True) for r in pair] + arenas[n_debate:]


def test_every_record_comes_back_grouped_by_source_in_the_order_staged(tmp_path):
    records = mixed(BATCH_ROWS + 30, 5)  # the arena source fills one batch and buffers the rest
    corpus = staged(tmp_path / ".staging", records)
    rows = [row for batch in corpus.batches() for row in batch]
    by_source = sorted(records, key=lambda r: r["source"])  # one file per source, in name order; stable within
    assert [r["id"] for r in rows] == [r["id"] for r in by_source]
    assert rows[0] == by_source[0]  # whole records, every column as staged
    assert sorted(p.name for p in (tmp_path / ".staging").iterdir()) == ["chatbot_arena.parquet", "debate.parquet"]


def test_batches_are_bounded_and_can_be_read_again(tmp_path):
    corpus = staged(tmp_path / ".staging", mixed(2 * BATCH_ROWS + 1, 0))
    sizes = [len(batch) for batch in corpus.batches(["id"])]
    assert sizes == [BATCH_ROWS, BATCH_ROWS, 1]
    assert [len(batch) for batch in corpus.batches(["id"])] == sizes  # a second pass reads it all again


def test_only_the_columns_asked_are_read(tmp_path):
    corpus = staged(tmp_path / ".staging", mixed(3, 0))
    batch = next(corpus.batches(["id", "outcome"]))
    assert [set(row) for row in batch] == [{"id", "outcome"}] * 3
    assert batch[0]["outcome"]["winner"] == "model_a"


def test_a_new_corpus_replaces_what_a_killed_build_staged_and_remove_deletes_it(tmp_path):
    folder = tmp_path / ".staging"
    folder.mkdir()
    (folder / "debate.parquet").write_text("left by a killed build")
    corpus = staged(folder, mixed(2, 0))
    assert [p.name for p in folder.iterdir()] == ["chatbot_arena.parquet"]
    assert sum(len(b) for b in corpus.batches()) == 2
    corpus.remove()
    assert not folder.exists()


class CountTurns:
    """A stand-in layer: reads ``turns``, writes ``n_turns``."""

    name, reads, writes = "count_turns", ("turns",), ("n_turns",)

    def apply(self, batch):
        for record in batch:
            record["n_turns"] = 100 + len(record["turns"])


def test_an_annotated_view_applies_the_needed_layers_and_reads_what_they_need(tmp_path):
    corpus = staged(tmp_path / ".staging", mixed(2, 0))
    view = AnnotatedView(corpus, reads=("id",), needed=[CountTurns()])
    rows = [row for batch in view.batches() for row in batch]
    assert [set(row) for row in rows] == [{"id", "turns", "n_turns"}] * 2
    assert [row["n_turns"] for row in rows] == [101, 101]
    asked = next(view.batches(columns=["split"]))  # explicit columns replace the layer's reads
    assert set(asked[0]) == {"split", "turns", "n_turns"}
    assert [row["n_turns"] for row in next(corpus.batches(["n_turns"]))] == [1, 1]  # the staged rows are unchanged
