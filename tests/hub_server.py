"""A loopback Hugging Face Hub for tests: the real `huggingface_hub` and `datasets` clients talk to it.

No installable server accepts both reads and uploads, and mocks cannot intercept `httpx2`, so the suite runs
this small server (stdlib only) on 127.0.0.1. It speaks the read side of the Hub API: repo info, tree,
paths-info, refs and `resolve` (HEAD/GET, Range). Xet is never advertised, so clients use plain HTTP.
Routes live in one table (`HubServer.routes`) so write routes (preupload, LFS batch, commit) can be added.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import yaml

# Extensions the Hub's default .gitattributes stores in LFS (a subset); big files go to LFS as well.
LFS_SUFFIXES = (".parquet", ".arrow", ".gz", ".zst", ".bz2", ".xz", ".zip", ".tar", ".bin", ".npy", ".pt")
LFS_MIN_SIZE = 10 * 1024 * 1024
KINDS = {"datasets": "dataset", "models": "model", "spaces": "space"}


def git_blob_oid(data: bytes) -> str:
    """Git's blob id: what the Hub reports as `oid`/`blobId` and as the ETag of non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
        hashlib.sha256(data).hexdigest().encode(),
        len(data),
    )


def is_lfs(path: str, data: bytes) -> bool:
    return path.endswith(LFS_SUFFIXES) or len(data) >= LFS_MIN_SIZE


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubError(Exception):
    """An error answer; the client maps `X-Error-Code` to its exceptions (see `hf_raise_for_status`)."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass
class Commit:
    sha: str
    parent: str | None
    title: str
    date: str
    files: dict[str, bytes]  # full snapshot of the tree at this commit


@dataclass
class Repo:
    """One repo: branches point at commits; each commit holds the whole tree as in-memory bytes."""

    repo_id: str
    repo_type: str = "dataset"
    gated: bool = False
    private: bool = False
    token: str | None = None
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    created_at: str = field(default_factory=_now)

    def commit(self, revision: str, files: dict[str, bytes], title: str, deleted: tuple[str, ...] = ()) -> str:
        """Add/overwrite `files` on top of `revision` (a new branch starts from main) and move the branch."""
        parent = self.refs.get(revision) or self.refs.get("main")
        tree = dict(self.commits[parent].files) if parent else {}
        tree.update(files)
        for path in deleted:
            tree.pop(path, None)
        content = json.dumps([parent, title, sorted((p, git_blob_oid(d)) for p, d in tree.items())])
        sha = hashlib.sha1(content.encode()).hexdigest()
        self.commits[sha] = Commit(sha, parent, title, _now(), tree)
        self.refs[revision] = sha
        return sha

    def resolve(self, revision: str) -> Commit:
        """Branch name, full sha or unambiguous sha prefix -> commit, as the Hub accepts all three."""
        if revision in self.refs:
            return self.commits[self.refs[revision]]
        matches = [c for sha, c in self.commits.items() if len(revision) >= 7 and sha.startswith(revision)]
        if len(matches) != 1:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return matches[0]

    def last_commit(self, commit: Commit, path: str) -> Commit:
        """Oldest ancestor since which `path` (file or folder) is unchanged: the tree's `lastCommit`."""

        def view(c: Commit) -> dict[str, bytes]:
            return {p: d for p, d in c.files.items() if p == path or p.startswith(path + "/")}

        current = commit
        while current.parent and view(self.commits[current.parent]) == view(commit):
            current = self.commits[current.parent]
        return current


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message  # case-insensitive: the client sends `authorization` in lower case
    body: bytes
    params: dict[str, str]  # route groups, percent-decoded
    repo: Repo | None = None
    commit: Commit | None = None


Response = tuple[int, dict[str, str], bytes]

_REPO = r"/api/(?P<kind>datasets|models|spaces)/(?P<repo>[^/]+/[^/]+)"
_RESOLVE = r"/(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)"


class HubServer:
    """Threaded loopback Hub. `requests` logs `(method, path)` of every request (path without query)."""

    tree_page_size = 1000  # the Hub's page size for /tree (50 with expand); lower it to exercise pagination

    def __init__(self):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.outbound_attempts: list[str] = []  # hosts the `hub_server` fixture refused to resolve
        self.endpoint = ""
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._connections: set = set()
        # (method, regex, handler, needs a resolved revision): first full match wins.
        self.routes = [
            ("GET", _REPO + r"(?:/revision/(?P<rev>[^/]+))?", self._repo_info, True),
            ("GET", _REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", self._tree, True),
            ("POST", _REPO + r"/paths-info/(?P<rev>[^/]+)", self._paths_info, True),
            ("GET", _REPO + r"/refs", self._refs, False),
            ("HEAD", _RESOLVE, self._resolve, True),
            ("GET", _RESOLVE, self._resolve, True),
        ]

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> HubServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the Hub; every answer carries Content-Length

            def setup(self):
                super().setup()
                server._connections.add(self.connection)

            def finish(self):
                server._connections.discard(self.connection)
                super().finish()

            def do_GET(self):
                server._handle(self)

            do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        """Stop serving and cut kept-alive connections, so no handler thread outlives the test."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.shutdown(2)
        self._httpd = None

    # -- fixtures' API ---------------------------------------------------------------------------------------

    def add_dataset_repo(
        self,
        repo_id: str,
        folder: Path,
        *,
        revision: str = "main",
        gated: bool = False,
        private: bool = False,
        token: str | None = None,
    ) -> str:
        """Commit every file under `folder` onto `revision` and return the commit sha.

        Creates the repo if needed; files are added on top of the branch (a new branch starts from main),
        like `upload_folder`. The access flags apply to the whole repo and the last call wins.
        """
        folder = Path(folder)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        with self._lock:
            repo = self.repos.setdefault(("dataset", repo_id), Repo(repo_id, "dataset"))
            repo.gated, repo.private, repo.token = gated, private, token
            return repo.commit(revision, files, f"Upload folder {folder.name}")

    # -- dispatch --------------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler):
        url = urlsplit(handler.path)
        self.requests.append((handler.command, url.path))
        try:
            req = Request(handler.command, url.path, parse_qs(url.query), handler.headers, _read_body(handler), {})
            status, headers, body = self._dispatch(req)
        except Exception as e:  # a bug in a route must reach the test as an error, not as a dropped socket
            e = e if isinstance(e, HubError) else HubError(500, None, f"hub_server: {e!r}")
            headers = {**e.headers, "X-Error-Message": e.message, "Content-Type": "application/json"}
            if e.code:
                headers["X-Error-Code"] = e.code
            status, body = e.status, json.dumps({"error": e.message}).encode()
        handler.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            handler.send_header(name, value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def _dispatch(self, req: Request) -> Response:
        for method, pattern, func, needs_rev in self.routes:
            m = re.fullmatch(pattern, req.path)
            if method != req.method or m is None:
                continue
            req.params = {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
            if "repo" in req.params:
                kind = KINDS[req.params.get("kind", "models")]
                req.repo = self._authorize(kind, req.params["repo"], req.headers.get("Authorization"))
                if needs_rev:
                    req.commit = req.repo.resolve(req.params.get("rev", "main"))
            return func(req)
        raise HubError(404, None, "Sorry, we can't find the page you are looking for.")

    def _authorize(self, repo_type: str, repo_id: str, auth: str | None) -> Repo:
        """Unknown, or private without the token -> RepoNotFound; gated without the token -> GatedRepo."""
        repo = self.repos.get((repo_type, repo_id))
        allowed = repo is not None and repo.token is not None and auth == f"Bearer {repo.token}"
        if repo is None or (repo.private and not allowed):
            # The real Hub answers 401 to anonymous callers here; both map to RepositoryNotFoundError.
            raise HubError(404 if repo is None or auth else 401, "RepoNotFound", "Repository not found")
        if repo.gated and not allowed:
            if auth is None:
                msg = (
                    f"Access to {repo_type} {repo_id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in."
                )
            else:
                msg = (
                    f"Access to {repo_type} {repo_id} is restricted and you are not in the authorized list. "
                    f"Visit {self.endpoint}/{_url_prefix(repo)}{repo_id} to ask for access."
                )
            raise HubError(403, "GatedRepo", msg)
        return repo

    # -- routes ----------------------------------------------------------------------------------------------

    def _repo_info(self, req: Request) -> Response:
        repo, commit = req.repo, req.commit
        blobs = req.query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path, data in sorted(commit.files.items()):
            sib = {"rfilename": path}
            if blobs:
                sib.update(size=len(data), blobId=git_blob_oid(data))
                if is_lfs(path, data):
                    sib["lfs"] = {
                        "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "pointerSize": len(lfs_pointer(data)),
                    }
            siblings.append(sib)
        info = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": "auto" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "cardData": _card_data(commit.files.get("README.md")),
            "siblings": siblings,
            "usedStorage": sum(len(d) for d in commit.files.values()),
        }
        expand = req.query.get("expand", []) + req.query.get("expand[]", [])
        if expand:
            info = {k: v for k, v in info.items() if k in ("_id", "id", *expand)}
        return _json(info)

    def _entries(self, repo: Repo, commit: Commit, expand: bool) -> dict[str, dict]:
        """Every file and folder of the commit as the Hub's tree/paths-info JSON objects, keyed by path."""
        entries: dict[str, dict] = {}
        for path, data in commit.files.items():
            entry = {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}
            if is_lfs(path, data):
                sha256 = hashlib.sha256(data).hexdigest()
                entry["lfs"] = {"oid": sha256, "size": len(data), "pointerSize": len(lfs_pointer(data))}
            entries[path] = entry
            parts = path.split("/")
            for i in range(1, len(parts)):
                folder = "/".join(parts[:i])
                entries.setdefault(folder, {"type": "directory", "size": 0, "path": folder})
        for path, entry in entries.items():
            if entry["type"] == "directory":
                children = sorted(e["oid"] for p, e in entries.items() if p.startswith(path + "/") and "oid" in e)
                entry["oid"] = hashlib.sha1(" ".join(children).encode()).hexdigest()
            if expand:
                last = repo.last_commit(commit, path)
                entry["lastCommit"] = {"id": last.sha, "title": last.title, "date": last.date}
        return entries

    def _tree(self, req: Request) -> Response:
        expand = req.query.get("expand", ["false"])[0].lower() == "true"
        recursive = req.query.get("recursive", ["false"])[0].lower() == "true"
        entries = self._entries(req.repo, req.commit, expand)
        base = req.params.get("path", "").strip("/")
        if base and entries.get(base, {}).get("type") != "directory":
            raise HubError(404, "EntryNotFound", f"Entry not found: {base}", {"X-Repo-Commit": req.commit.sha})
        prefix = base + "/" if base else ""
        listing = [
            e for p, e in sorted(entries.items()) if p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])
        ]
        # Cursor pagination through a GitHub-style `Link` header, which the client follows verbatim.
        start = int(req.query.get("cursor", ["0"])[0])
        page_size = min(self.tree_page_size, 50) if expand else self.tree_page_size
        headers = {}
        if start + page_size < len(listing):
            query = {k: v[0] for k, v in req.query.items()} | {"cursor": start + page_size}
            headers["Link"] = f'<{self.endpoint}{req.path}?{urlencode(query)}>; rel="next"'
        return _json(listing[start : start + page_size], headers)

    def _paths_info(self, req: Request) -> Response:
        ctype = req.headers.get("Content-Type", "")
        if "json" in ctype:
            form = json.loads(req.body or b"{}")
            paths, expand = form.get("paths", []), bool(form.get("expand"))
        else:
            form = parse_qs(req.body.decode())
            paths, expand = form.get("paths", []), form.get("expand", ["false"])[0].lower() == "true"
        entries = self._entries(req.repo, req.commit, expand)
        return _json([entries[p.strip("/")] for p in paths if p.strip("/") in entries])

    def _refs(self, req: Request) -> Response:
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in req.repo.refs.items()]
        refs = {"branches": branches, "converts": [], "tags": []}
        if req.query.get("include_prs"):
            refs["pullRequests"] = []
        return _json(refs)

    def _resolve(self, req: Request) -> Response:
        """File bytes with the headers `hf_hub_download` checks: X-Repo-Commit, ETag, sizes; Range -> 206."""
        path, commit = req.params["path"], req.commit
        if path not in commit.files:
            raise HubError(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit.sha})
        data = commit.files[path]
        headers = {
            "X-Repo-Commit": commit.sha,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "ETag": f'"{git_blob_oid(data)}"',
        }
        if is_lfs(path, data):
            sha256 = hashlib.sha256(data).hexdigest()
            headers.update({"ETag": f'"{sha256}"', "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data))})
        byte_range = req.headers.get("Range")
        if not byte_range:
            return 200, headers, data
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", byte_range.strip())
        size = len(data)
        if m is None or m.groups() == ("", ""):
            raise HubError(416, None, "Invalid range", {"Content-Range": f"bytes */{size}"})
        if m.group(1) == "":  # suffix range: the last N bytes
            start, end = max(size - int(m.group(2)), 0), size - 1
        else:
            start, end = int(m.group(1)), min(int(m.group(2) or size - 1), size - 1)
        if start >= size or start > end:
            raise HubError(416, None, "Range not satisfiable", {"Content-Range": f"bytes */{size}"})
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return 206, headers, data[start : end + 1]


def _url_prefix(repo: Repo) -> str:
    return "" if repo.repo_type == "model" else f"{repo.repo_type}s/"


def _card_data(readme: bytes | None) -> dict | None:
    """The README's YAML front matter: the Hub returns it as `cardData` (datasets reads `configs` there)."""
    if not readme:
        return None
    m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", readme.decode("utf-8", "replace"), re.DOTALL)
    data = yaml.safe_load(m.group(1)) if m else None
    return data if isinstance(data, dict) else None


def _json(obj, headers: dict[str, str] | None = None) -> Response:
    return 200, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj).encode()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """Drain the request body (Content-Length or chunked) so keep-alive connections stay in sync."""
    if handler.headers.get("Transfer-Encoding", "").lower() != "chunked":
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    chunks = []
    while size := int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16):
        chunks.append(handler.rfile.read(size))
        handler.rfile.readline()
    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
        pass  # trailers
    return b"".join(chunks)
