"""Shared fixtures. `hub_server`: a loopback Hub (tests/hub_server.py) that both HF libraries point at;
`llama`: the llama.cpp server of the judge tests (tests/llm_server.py); `real_build`, `small_build` and
`small_records`: the base-columns builds of real records that the judge and `label` tests read
(tests/judge_helpers.py)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so tests can `from hub_server import HubServer`

from hub_server import HubServer  # noqa: E402
from llm_server import LlamaServer  # noqa: E402


@pytest.fixture(scope="session")
def llama(tmp_path_factory):
    """ONE llama.cpp server (SmolLM2 GGUF, 127.0.0.1) for the whole test session: the judge tests share it."""
    server = LlamaServer(tmp_path_factory.mktemp("llama") / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def real_build(tmp_path_factory):
    """3 real records of each source, no annotations."""
    from judge_helpers import build_sources

    return build_sources(
        tmp_path_factory.mktemp("b") / "all3", ("chatbot_arena", "debate", "multi_character_dialogue"), 3
    )


@pytest.fixture(scope="session")
def small_build(tmp_path_factory):
    """3 arena and 3 dialogue records (short prompts: the fault tests stay fast)."""
    from judge_helpers import build_sources

    return build_sources(tmp_path_factory.mktemp("b") / "small", ("chatbot_arena", "multi_character_dialogue"), 3)


@pytest.fixture(scope="session")
def small_records(small_build):
    from judge_helpers import records_of

    return records_of(small_build)


@pytest.fixture
def hub_server(tmp_path, monkeypatch):
    """A started `HubServer`; huggingface_hub and datasets talk only to it, with caches under tmp_path.

    Non-loopback name lookups fail and are listed in `hub_server.outbound_attempts` (assert it is empty).

    Both libraries read HF_ENDPOINT / HF_HOME / HF_HUB_OFFLINE at import time, so setting env vars here would
    be too late: the module-level copies are patched instead (env vars are set too, for subprocesses).
    """
    import datasets.config as dconfig
    from huggingface_hub import constants, hf_api, hf_file_system

    server = HubServer().start()
    endpoint = server.endpoint
    home = tmp_path / "hf_home"
    hub_cache = home / "hub"
    datasets_cache = home / "datasets"

    for name, value in {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(home),
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    for name in (
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_CACHE",
        "HF_DATASETS_CACHE",
        "TRANSFORMERS_OFFLINE",
    ):
        monkeypatch.delenv(name, raising=False)

    for name, value in {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": constants.HF_URL_HOSTS | {"127.0.0.1"},
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(hub_cache),
        "HUGGINGFACE_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),  # never send a developer's saved token to the test server
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
    }.items():
        monkeypatch.setattr(constants, name, value)
    # `huggingface_hub.dataset_info`, `list_repo_refs`, ... are methods of one HfApi made at import time.
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    monkeypatch.setattr(hf_file_system.hffs, "endpoint", endpoint)  # the `huggingface_hub.hffs` singleton
    monkeypatch.setattr(hf_file_system.hffs._api, "endpoint", endpoint)
    monkeypatch.setattr(hf_file_system.hffs, "dircache", {})

    for name, value in {
        "HF_ENDPOINT": endpoint,
        "HUB_DATASETS_URL": endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}",
        "HF_HUB_OFFLINE": False,
        "HF_DATASETS_OFFLINE": False,
        "USE_PARQUET_EXPORT": False,  # else datasets asks http://datasets-server.<endpoint host> for exports
        "HF_UPDATE_DOWNLOAD_COUNTS": False,  # else datasets HEADs an S3 URL on every load
        "HF_CACHE_HOME": str(home),
        "HF_DATASETS_CACHE": datasets_cache,
        "HF_MODULES_CACHE": home / "modules",
        "DOWNLOADED_DATASETS_PATH": datasets_cache / "downloads",
        "EXTRACTED_DATASETS_PATH": datasets_cache / "downloads" / "extracted",
    }.items():
        monkeypatch.setattr(dconfig, name, value)

    # Fail fast (instead of hanging on DNS) if anything tries to leave the machine, and keep a record of it.
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            server.outbound_attempts.append(str(host))
            raise socket.gaierror(f"hub_server fixture: no network, refused to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)

    yield server
    server.stop()
