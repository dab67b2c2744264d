"""The loopback Hub (tests/hub_server.py) driven by the real huggingface_hub and datasets clients."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, list_repo_refs, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in Path(root).rglob("*") if p.is_file()}


@pytest.fixture
def nested(tmp_path) -> dict[str, bytes]:
    return {
        "data/cfg/cfg.json": json.dumps({"name": "cfg", "n": 3}).encode(),
        "train.jsonl.gz": gzip.compress(b"".join(b'{"i": %d}\n' % i for i in range(200)), mtime=0),
        "README.md": b"---\nlicense: mit\n---\n# nested\n",
        "notes/skip.txt": b"not wanted",
    }


def test_snapshot_download_nested_with_allow_patterns(hub_server, tmp_path, nested):
    hub_server.tree_page_size = 2  # force the client through several Link-header pages
    sha = hub_server.add_dataset_repo("ns/nested", write_files(tmp_path / "src", nested))

    out = snapshot_download(
        "ns/nested",
        repo_type="dataset",
        allow_patterns=["data/*", "*.jsonl.gz"],
        cache_dir=tmp_path / "cache",
    )

    assert Path(out).name == sha
    assert read_tree(Path(out)) == {k: nested[k] for k in ("data/cfg/cfg.json", "train.jsonl.gz")}
    tree_calls = [p for m, p in hub_server.requests if m == "GET" and "/tree/" in p]
    assert len(tree_calls) >= 3  # 6 entries (4 files, 2 folders) at 2 per page
    assert ("GET", "/datasets/ns/nested/resolve/" + sha + "/notes/skip.txt") not in hub_server.requests

    info = HfApi().dataset_info("ns/nested", files_metadata=True)
    assert info.sha == sha and info.card_data.license == "mit"
    sizes = {s.rfilename: (s.size, s.lfs is not None) for s in info.siblings}
    assert sizes["train.jsonl.gz"] == (len(nested["train.jsonl.gz"]), True)  # .gz is stored in LFS
    assert sizes["README.md"] == (len(nested["README.md"]), False)

    # Range reads (206) through the filesystem layer that datasets streaming uses.
    assert (
        HfFileSystem().cat_file("datasets/ns/nested/train.jsonl.gz", start=5, end=40) == nested["train.jsonl.gz"][5:40]
    )
    single = hf_hub_download("ns/nested", "data/cfg/cfg.json", repo_type="dataset", cache_dir=tmp_path / "c2")
    assert json.loads(Path(single).read_text()) == {"name": "cfg", "n": 3}
    assert hub_server.outbound_attempts == []


def test_pinned_revisions_resolve_independently(hub_server, tmp_path):
    v1 = hub_server.add_dataset_repo("ns/pinned", write_files(tmp_path / "v1", {"value.txt": b"one"}))
    v2 = hub_server.add_dataset_repo("ns/pinned", write_files(tmp_path / "v2", {"value.txt": b"two"}), revision="v2")
    assert v1 != v2

    def value(revision: str) -> bytes:
        path = hf_hub_download("ns/pinned", "value.txt", repo_type="dataset", revision=revision)
        return Path(path).read_bytes()

    assert (value("main"), value("v2"), value(v1), value(v2)) == (b"one", b"two", b"one", b"two")
    # No cache_dir given: the fixture's temporary HF_HOME is used, never the developer's cache.
    default = hf_hub_download("ns/pinned", "value.txt", repo_type="dataset", revision="v2")
    assert Path(default).is_relative_to(tmp_path / "hf_home" / "hub")
    snap = snapshot_download("ns/pinned", repo_type="dataset", revision=v1, cache_dir=tmp_path / "cache")
    assert read_tree(Path(snap)) == {"value.txt": b"one"}
    assert HfApi().dataset_info("ns/pinned", revision="v2").sha == v2
    refs = list_repo_refs("ns/pinned", repo_type="dataset")
    assert {(b.name, b.target_commit) for b in refs.branches} == {("main", v1), ("v2", v2)}


def test_gated_repo_needs_the_right_token(hub_server, tmp_path):
    files = {"secret.json": b'{"ok": true}'}
    hub_server.add_dataset_repo("ns/gated", write_files(tmp_path / "src", files), gated=True, token="hf_good")

    with pytest.raises(GatedRepoError) as exc:
        snapshot_download("ns/gated", repo_type="dataset", cache_dir=tmp_path / "c1")
    assert exc.value.response.status_code == 403
    assert "Access to dataset ns/gated is restricted" in str(exc.value)
    with pytest.raises(GatedRepoError):
        snapshot_download("ns/gated", repo_type="dataset", token="hf_bad", cache_dir=tmp_path / "c2")
    with pytest.raises(GatedRepoError):
        hf_hub_download("ns/gated", "secret.json", repo_type="dataset", cache_dir=tmp_path / "c2")

    out = snapshot_download("ns/gated", repo_type="dataset", token="hf_good", cache_dir=tmp_path / "c3")
    assert read_tree(Path(out)) == files


def test_missing_repo_revision_and_file(hub_server, tmp_path):
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("ns/absent", repo_type="dataset", cache_dir=tmp_path / "c")
    with pytest.raises(RepositoryNotFoundError) as exc:
        HfApi().dataset_info("ns/absent")
    assert exc.value.response.status_code == 404

    hub_server.add_dataset_repo("ns/present", write_files(tmp_path / "src", {"a.txt": b"a"}))
    with pytest.raises(RevisionNotFoundError):
        snapshot_download("ns/present", repo_type="dataset", revision="nope", cache_dir=tmp_path / "c")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("ns/present", "b.txt", repo_type="dataset", cache_dir=tmp_path / "c")
    assert Path(hf_hub_download("ns/present", "a.txt", repo_type="dataset")).read_bytes() == b"a"


CARD = """---
configs:
- config_name: cfg_name
  data_files:
  - split: train
    path: cfg_name/train-*.parquet
---
# A parquet dataset
"""


@pytest.mark.parametrize("streaming", [False, True])
def test_load_dataset_from_parquet_and_card(hub_server, tmp_path, streaming):
    import datasets

    rows = {"id": [1, 2, 3], "text": ["a", "bb", "ccc"]}
    src = write_files(tmp_path / "src", {"README.md": CARD.encode()})
    (src / "cfg_name").mkdir()
    pq.write_table(pa.table(rows), src / "cfg_name" / "train-00000-of-00001.parquet")
    hub_server.add_dataset_repo("ns/parq", src)

    ds = datasets.load_dataset("ns/parq", "cfg_name", split="train", streaming=streaming)

    assert [dict(r) for r in ds] == [{"id": i, "text": t} for i, t in zip(rows["id"], rows["text"], strict=True)]
    assert any(p.endswith("/cfg_name/train-00000-of-00001.parquet") for _, p in hub_server.requests)
    if not streaming:
        assert all(Path(f["filename"]).is_relative_to(tmp_path / "hf_home") for f in ds.cache_files)
    assert hub_server.outbound_attempts == []
