"""A loopback Hugging Face Hub for tests: the real `huggingface_hub` and `datasets` clients talk to it.

No installable server accepts both reads and uploads, and mocks cannot intercept `httpx2`, so the suite runs
this small server (stdlib only) on 127.0.0.1. It speaks the read side of the Hub API: repo info, tree,
paths-info, refs, commits and `resolve` (HEAD/GET, Range). Routes live in one table (`HubServer.routes`).

Write side (what `HfApi.create_repo` / `create_commit` / `upload_folder` / `create_branch` send):
`POST /api/repos/create`, `POST /api/validate-yaml`, `POST .../preupload/{rev}`, the LFS batch API
(`POST /{prefix}{repo}.git/info/lfs/objects/batch`, then a presigned `PUT /lfs-upload/...` and `POST .../verify`),
`POST .../commit/{rev}` (NDJSON: header, file, lfsFile, deletedFile, deletedFolder), `POST .../branch/{b}`,
`PUT .../settings`, `GET /api/whoami-v2`. Writes need a token registered with `add_token(token, user)` whose
user owns the namespace: none or an unknown one -> 401 "Invalid credentials in Authorization header".

Xet: with `HF_HUB_DISABLE_XET=1` the client uploads through the LFS batch API. With hf_xet enabled the client
uploads to the CAS itself: `GET .../xet-write-token/{rev}` (and `xet-read-token`) answer `casUrl=local://DIR`
(`HubServer.xet_dir`), which makes hf_xet keep xorbs and shards in DIR. The commit's `lfsFile` only names the
sha256, so the server reads DIR's shards to map sha256 -> xet hash and reads the bytes back with hf_xet. Files
stored that way carry `xetHash` in tree/paths-info and `X-Xet-Hash` + `Link: <xet-read-token>; rel="xet-auth"`
on resolve, so xet-enabled clients download them through hf_xet as well.

Faults, for resumability tests: `fail_next(route, times, status)` answers an error status;
`drop_connection_after_bytes(n, route, times)` reads n bytes of the request body and cuts the connection.
`lfs_uploads` records every LFS PUT (oid, bytes received, completed).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import shutil
import socket
import struct
import tempfile
import threading
import time
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
    message: str = ""


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
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes uploaded (LFS PUT or xet)
    xet_hashes: dict[str, str] = field(default_factory=dict)  # sha256 -> xet file hash, for files sent via xet

    def commit(
        self, revision: str, files: dict[str, bytes], title: str, deleted: tuple[str, ...] = (), message: str = ""
    ) -> str:
        """Add/overwrite `files` on top of `revision` (a new branch starts from main) and move the branch."""
        for path, data in files.items():
            if is_lfs(path, data):  # the repo's LFS store knows every LFS file it holds
                self.lfs_objects.setdefault(hashlib.sha256(data).hexdigest(), data)
        parent = self.refs.get(revision) or self.refs.get("main")
        tree = dict(self.commits[parent].files) if parent else {}
        tree.update(files)
        for path in deleted:
            tree.pop(path, None)
        content = json.dumps([parent, title, sorted((p, git_blob_oid(d)) for p, d in tree.items())])
        sha = hashlib.sha1(content.encode()).hexdigest()
        self.commits[sha] = Commit(sha, parent, title, _now(), tree, message)
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


@dataclass
class Fault:
    """An injected failure for requests whose path matches `route` (a regex, searched)."""

    route: str
    method: str | None
    times: int | None  # None: until `clear_faults()`
    status: int | None = None  # answer this status...
    drop_after: int | None = None  # ...or read this many body bytes, then cut the connection
    hits: int = 0


@dataclass
class LfsUpload:
    repo_id: str
    oid: str
    received: int
    completed: bool


_REPO = r"/api/(?P<kind>datasets|models|spaces)/(?P<repo>[^/]+/[^/]+)"
_RESOLVE = r"/(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)"
_GIT_LFS = r"/(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects"
_LFS_PUT = r"/lfs-upload/(?P<kind>datasets|models|spaces)/(?P<repo>[^/]+/[^/]+)/(?P<oid>[0-9a-f]{64})"


class HubServer:
    """Threaded loopback Hub. `requests` logs `(method, path)` of every request (path without query)."""

    tree_page_size = 1000  # the Hub's page size for /tree (50 with expand); lower it to exercise pagination

    def __init__(self, xet_dir: Path | None = None):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.tokens: dict[str, str] = {}  # write-capable token -> user name (see `add_token`)
        self.faults: list[Fault] = []
        self.lfs_uploads: list[LfsUpload] = []
        self.xet_dir = Path(xet_dir) if xet_dir else None  # local CAS for hf_xet (a temp dir by default)
        self._own_xet_dir = False
        self._secret = secrets.token_bytes(16)  # signs the presigned LFS upload URLs
        self._xet_session = None
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
            ("GET", _REPO + r"/commits/(?P<rev>[^/]+)", self._commits, True),
            ("GET", _REPO + r"/xet-read-token/(?P<rev>[^/]+)", self._xet_token, False),
            # Write routes: a 5th field says who may call them ("write": a token owning the namespace).
            ("GET", r"/api/whoami-v2", self._whoami, False, "none"),
            ("POST", r"/api/repos/create", self._create_repo, False, "none"),
            ("POST", r"/api/validate-yaml", self._validate_yaml, False, "none"),
            ("PUT", _REPO + r"/settings", self._settings, False, "write"),
            ("POST", _REPO + r"/branch/(?P<branch>[^/]+)", self._create_branch, False, "write"),
            ("POST", _REPO + r"/preupload/(?P<rev>[^/]+)", self._preupload, True, "write"),
            ("GET", _REPO + r"/xet-write-token/(?P<rev>[^/]+)", self._xet_token, False, "write"),
            ("POST", _REPO + r"/commit/(?P<rev>[^/]+)", self._commit, False, "write"),
            ("POST", _GIT_LFS + r"/batch", self._lfs_batch, False, "write"),
            ("POST", _GIT_LFS + r"/verify", self._lfs_verify, False, "write"),
            ("PUT", _LFS_PUT, self._lfs_put, False, "presigned"),
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

        if self.xet_dir is None:
            self.xet_dir, self._own_xet_dir = Path(tempfile.mkdtemp(prefix="hub_server_xet_")), True
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
        if self._own_xet_dir and self.xet_dir is not None:
            shutil.rmtree(self.xet_dir, ignore_errors=True)

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

    def add_token(self, token: str, user: str) -> None:
        """Register a token: it may write to (and read private repos of) the namespace `user`."""
        with self._lock:
            self.tokens[token] = user

    def fail_next(self, route: str, times: int | None = 1, *, status: int = 500, method: str | None = None) -> Fault:
        """The next `times` requests whose path matches `route` (regex) get `status` (None: until cleared)."""
        fault = Fault(route, method, times, status=status)
        with self._lock:
            self.faults.append(fault)
        return fault

    def drop_connection_after_bytes(
        self, n: int, route: str = r"^/lfs-upload/", times: int | None = 1, *, method: str | None = "PUT"
    ) -> Fault:
        """The next `times` matching requests die mid-upload: n body bytes are read, then the socket is cut."""
        fault = Fault(route, method, times, drop_after=n)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> str:
        """The commit sha a branch points at."""
        return self.repos[(repo_type, repo_id)].refs[revision]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        """The tree of a branch: path -> bytes."""
        repo = self.repos[(repo_type, repo_id)]
        return dict(repo.commits[repo.refs[revision]].files)

    # -- dispatch --------------------------------------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if (fault.method in (None, method)) and re.search(fault.route, path):
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    def _cut(self, handler: BaseHTTPRequestHandler, n: int, path: str) -> None:
        """Read at most n bytes of the body, then cut the connection without answering (a dropped upload)."""
        got = b""
        if handler.headers.get("Transfer-Encoding", "").lower() != "chunked":
            got = handler.rfile.read(min(n, int(handler.headers.get("Content-Length") or 0)))
        else:
            handler.connection.settimeout(2)
            with contextlib.suppress(OSError):
                while len(got) < n and (chunk := handler.rfile.read1(n - len(got))):
                    got += chunk
        m = re.fullmatch(_LFS_PUT, path)
        if m:
            with self._lock:
                self.lfs_uploads.append(LfsUpload(m["repo"], m["oid"], len(got), False))
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)

    def _handle(self, handler: BaseHTTPRequestHandler):
        url = urlsplit(handler.path)
        self.requests.append((handler.command, url.path))
        fault = self._take_fault(handler.command, url.path)
        if fault is not None and fault.drop_after is not None:
            self._cut(handler, fault.drop_after, url.path)
            return
        try:
            req = Request(handler.command, url.path, parse_qs(url.query), handler.headers, _read_body(handler), {})
            if fault is not None:
                raise HubError(fault.status or 500, None, f"hub_server: injected fault on {url.path}")
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
        for method, pattern, func, needs_rev, *access in self.routes:
            m = re.fullmatch(pattern, req.path)
            if method != req.method or m is None:
                continue
            req.params = {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
            access = access[0] if access else "read"
            if "repo" in req.params and access in ("read", "write"):
                kind = KINDS[req.params.get("kind", "models")]
                auth = req.headers.get("Authorization")
                if access == "write":
                    req.repo = self._authorize_write(kind, req.params["repo"], auth)
                else:
                    req.repo = self._authorize(kind, req.params["repo"], auth)
                if needs_rev:
                    req.commit = req.repo.resolve(req.params.get("rev", "main"))
            return func(req)
        raise HubError(404, None, "Sorry, we can't find the page you are looking for.")

    def _authorize(self, repo_type: str, repo_id: str, auth: str | None) -> Repo:
        """Unknown, or private without the token -> RepoNotFound; gated without the token -> GatedRepo."""
        repo = self.repos.get((repo_type, repo_id))
        allowed = repo is not None and (
            (repo.token is not None and auth == f"Bearer {repo.token}") or self._user(auth) == repo_id.split("/")[0]
        )
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

    # -- write side ------------------------------------------------------------------------------------------

    def _user(self, auth: str | None) -> str | None:
        if not auth or not auth.startswith("Bearer "):
            return None
        return self.tokens.get(auth[len("Bearer ") :])

    def _require_user(self, auth: str | None) -> str:
        user = self._user(auth)
        if user is None:  # the exact message makes the client raise a plain 401, not RepositoryNotFound
            raise HubError(401, None, "Invalid credentials in Authorization header")
        return user

    def _authorize_write(self, repo_type: str, repo_id: str, auth: str | None) -> Repo:
        user = self._require_user(auth)
        repo = self.repos.get((repo_type, repo_id))
        namespace = repo_id.split("/")[0]
        if repo is None or (repo.private and namespace != user):
            raise HubError(404, "RepoNotFound", "Repository not found")
        if namespace != user:
            raise HubError(403, None, f"You don't have the rights to write to {repo_type} {repo_id}")
        return repo

    def _whoami(self, req: Request) -> Response:
        user = self._require_user(req.headers.get("Authorization"))
        auth = {"type": "access_token", "accessToken": {"displayName": "hub_server", "role": "write"}}
        return _json({"type": "user", "id": _short_id(user), "name": user, "fullname": user, "orgs": [], "auth": auth})

    def _create_repo(self, req: Request) -> Response:
        user = self._require_user(req.headers.get("Authorization"))
        form = json.loads(req.body or b"{}")
        namespace, name = form.get("organization") or user, form.get("name", "")
        repo_type = form.get("type") or "model"
        if repo_type not in KINDS.values() or not re.fullmatch(r"[\w.-]+", name):
            raise HubError(400, None, f"Invalid repo type or name: {repo_type} {name!r}")
        if namespace != user:
            raise HubError(403, None, f"You don't have the rights to create a {repo_type} under {namespace}")
        repo_id = f"{namespace}/{name}"
        private = bool(form.get("private")) or form.get("visibility") == "private"
        with self._lock:
            repo = self.repos.get((repo_type, repo_id))
            url = f"{self.endpoint}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
            if repo is not None:
                error = {"error": f"You already created this {repo_type} repo", "url": url}
                headers = {"Content-Type": "application/json", "X-Error-Message": "Repo already exists"}
                return 409, headers, json.dumps(error).encode()
            repo = self.repos[(repo_type, repo_id)] = Repo(repo_id, repo_type, private=private)
            repo.commit("main", {".gitattributes": GITATTRIBUTES}, "initial commit")
        return _json({"url": url, "name": repo_id, "id": _short_id(repo_id)})

    def _validate_yaml(self, req: Request) -> Response:
        """The Hub checks a README's front matter before a commit: invalid YAML -> 400 with `errors`."""
        content = json.loads(req.body or b"{}").get("content", "")
        errors = []
        m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
        if m:
            try:
                data = yaml.safe_load(m.group(1))
            except yaml.YAMLError as e:
                data, errors = None, [{"message": f"Invalid YAML: {e}"}]
            if data is not None and not isinstance(data, dict):
                errors.append({"message": "The metadata must be a YAML mapping"})
            for config in (data or {}).get("configs", []) if isinstance(data, dict) else []:
                if not isinstance(config, dict) or not isinstance(config.get("config_name"), str):
                    errors.append({"message": f"configs: each entry needs a config_name: {config!r}"})
        body = json.dumps({"errors": errors, "warnings": []}).encode()
        return (400 if errors else 200), {"Content-Type": "application/json"}, body

    def _settings(self, req: Request) -> Response:
        form = json.loads(req.body or b"{}")
        with self._lock:
            if "private" in form:
                req.repo.private = bool(form["private"])
            if "visibility" in form:
                req.repo.private = form["visibility"] == "private"
            if "gated" in form:
                req.repo.gated = form["gated"] not in (False, None, "false")
        return _json({})

    def _create_branch(self, req: Request) -> Response:
        branch = req.params["branch"]
        start = json.loads(req.body or b"{}").get("startingPoint") or "main"
        with self._lock:
            if branch in req.repo.refs:
                raise HubError(409, None, f"Reference refs/heads/{branch} already exists")
            req.repo.refs[branch] = req.repo.resolve(start).sha
        return _json({})

    def _commits(self, req: Request) -> Response:
        out, commit = [], req.commit
        while commit is not None:
            authors = [{"user": req.repo.repo_id.split("/")[0]}]
            info = {"title": commit.title, "message": commit.message, "date": commit.date, "authors": authors}
            out.append({"id": commit.sha, **info})
            commit = req.repo.commits.get(commit.parent) if commit.parent else None
        return _json(out)

    def _preupload(self, req: Request) -> Response:
        """Upload mode per file (LFS by extension or size, as the Hub's .gitattributes), and the remote oid
        (sha256 for LFS, git blob id otherwise), which the client compares with its own to skip unchanged files."""
        files = json.loads(req.body or b"{}").get("files", [])
        out = []
        for f in files:
            path, size = f["path"], int(f.get("size", 0))
            mode = "lfs" if path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE else "regular"
            entry = {"path": path, "uploadMode": mode, "shouldIgnore": False}
            remote = req.commit.files.get(path)
            if remote is not None:
                entry["oid"] = hashlib.sha256(remote).hexdigest() if mode == "lfs" else git_blob_oid(remote)
            out.append(entry)
        return _json({"files": out, "commitOid": req.commit.sha})

    def _lfs_sig(self, repo: Repo, oid: str, size: int) -> str:
        return hmac.new(self._secret, f"{repo.repo_type}/{repo.repo_id}/{oid}/{size}".encode(), "sha256").hexdigest()

    def _lfs_batch(self, req: Request) -> Response:
        """git-lfs batch API: objects the repo already holds get no `actions` (the client skips them)."""
        form = json.loads(req.body or b"{}")
        if form.get("operation") != "upload":
            raise HubError(400, None, "hub_server: only the upload operation is supported")
        repo, objects, seen = req.repo, [], set()
        for obj in form.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            if oid in seen:  # two paths with the same content: one object, one upload
                continue
            seen.add(oid)
            held = repo.lfs_objects.get(oid)
            if held is not None and len(held) == size:
                objects.append({"oid": oid, "size": size})
                continue
            query = urlencode({"size": size, "sig": self._lfs_sig(repo, oid, size)})
            upload = f"{self.endpoint}/lfs-upload/{repo.repo_type}s/{repo.repo_id}/{oid}?{query}"
            verify = f"{self.endpoint}/{_url_prefix(repo)}{repo.repo_id}.git/info/lfs/objects/verify"
            actions = {"upload": {"href": upload}, "verify": {"href": verify}}
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": actions})
        body = json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()
        return 200, {"Content-Type": "application/vnd.git-lfs+json"}, body

    def _lfs_put(self, req: Request) -> Response:
        """The presigned upload URL (an S3 stand-in): no Authorization, a signature in the query instead."""
        repo = self.repos.get((KINDS[req.params["kind"]], req.params["repo"]))
        oid, size = req.params["oid"], int(req.query.get("size", ["-1"])[0])
        if repo is None or not hmac.compare_digest(req.query.get("sig", [""])[0], self._lfs_sig(repo, oid, size)):
            raise HubError(403, None, "SignatureDoesNotMatch")
        data = req.body
        ok = len(data) == size and hashlib.sha256(data).hexdigest() == oid
        with self._lock:
            self.lfs_uploads.append(LfsUpload(repo.repo_id, oid, len(data), ok))
            if ok:
                repo.lfs_objects[oid] = data
        if not ok:
            raise HubError(400, None, f"Uploaded content does not match oid {oid} and size {size}")
        return 200, {"ETag": f'"{hashlib.md5(data).hexdigest()}"'}, b""

    def _lfs_verify(self, req: Request) -> Response:
        form = json.loads(req.body or b"{}")
        held = req.repo.lfs_objects.get(form.get("oid", ""))
        if held is None or len(held) != form.get("size"):
            raise HubError(404, None, f"LFS object {form.get('oid')} not found")
        return _json({"message": "ok"})

    def _xet_token(self, req: Request) -> Response:
        """A short-lived CAS token; `casUrl=local://DIR` makes hf_xet use DIR as its CAS. Both forms are sent:
        hf_xet reads the JSON body, huggingface_hub the `X-Xet-*` headers."""
        exp = int(time.time()) + 3600
        token = "xet_" + hmac.new(self._secret, f"{req.params['repo']}/{exp}".encode(), "sha256").hexdigest()[:32]
        cas = f"local://{self.xet_dir}"
        headers = {"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(exp)}
        return _json({"accessToken": token, "exp": exp, "casUrl": cas}, headers)

    def _commit(self, req: Request) -> Response:
        """NDJSON commit: a header line, then `file` (base64), `lfsFile` (sha256 of an uploaded object),
        `deletedFile` and `deletedFolder` lines. `parentCommit` must be the branch head (else 412)."""
        repo, rev = req.repo, req.params["rev"]
        if req.query.get("create_pr"):
            raise HubError(400, None, "hub_server: pull requests are not supported")
        lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, None, "The first line of a commit must be its header")
        header = lines[0]["value"]
        files: dict[str, bytes] = {}
        deleted: list[tuple[str, str]] = []
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            if key == "file":
                content = value.get("content", "")
                files[value["path"]] = (
                    base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                )
            elif key == "lfsFile":
                data = self._lfs_data(repo, value["oid"])
                if data is None or ("size" in value and len(data) != value["size"]):
                    raise HubError(400, None, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                files[value["path"]] = data
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append((key, value["path"].rstrip("/")))
            else:
                raise HubError(400, None, f"Unknown commit operation {key!r}")
        with self._lock:
            if rev not in repo.refs:
                raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            head = repo.commits[repo.refs[rev]]
            parent = header.get("parentCommit")
            if parent and not head.sha.startswith(parent):
                raise HubError(412, None, "A commit has happened since. Please refresh and try again.")
            removed = []
            for key, path in deleted:
                hit = [p for p in head.files if p == path or (key == "deletedFolder" and p.startswith(path + "/"))]
                if not hit:
                    raise HubError(404, "EntryNotFound", f"A file with this name doesn't exist: {path}")
                removed += hit
            sha = repo.commit(rev, files, header.get("summary", ""), tuple(removed), header.get("description", ""))
        url = f"{self.endpoint}/{_url_prefix(repo)}{repo.repo_id}/commit/{sha}"
        return _json({"success": True, "commitOid": sha, "commitUrl": url, "hookOutput": "", "pullRequestUrl": None})

    def _lfs_data(self, repo: Repo, oid: str) -> bytes | None:
        """The bytes of an uploaded object: from the LFS store, else from the xet CAS (recorded as xet)."""
        if oid in repo.lfs_objects:
            return repo.lfs_objects[oid]
        found = xet_files(self.xet_dir).get(oid) if self.xet_dir else None
        if found is None:
            return None
        data = self._xet_read(*found)
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(500, None, f"hub_server: xet file for {oid} does not match its sha256")
        with self._lock:
            repo.lfs_objects[oid], repo.xet_hashes[oid] = data, found[0]
        return data

    def _xet_read(self, xet_hash: str, size: int) -> bytes:
        import hf_xet

        if self._xet_session is None:
            self._xet_session = hf_xet.XetSession()
        with self._xet_session.new_download_stream_group(
            endpoint=f"local://{self.xet_dir}", token="hub_server", token_expiry_unix_secs=int(time.time()) + 3600
        ) as group:
            return b"".join(group.download_stream(hf_xet.XetFileInfo(xet_hash, size)))

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
                if sha256 in repo.xet_hashes:
                    entry["xetHash"] = repo.xet_hashes[sha256]
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
            if sha256 in req.repo.xet_hashes:  # stored through xet: xet-enabled clients read it with hf_xet
                refresh = f"{self.endpoint}/api/{req.repo.repo_type}s/{req.repo.repo_id}/xet-read-token/{commit.sha}"
                headers.update({"X-Xet-Hash": req.repo.xet_hashes[sha256], "Link": f'<{refresh}>; rel="xet-auth"'})
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


def _short_id(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:24]


GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES).encode()


def _xet_hash_hex(raw: bytes) -> str:
    """Xet hashes are four little-endian u64 words, printed word by word."""
    return "".join(f"{word:016x}" for word in struct.unpack("<4Q", raw))


def xet_files(cas_dir: Path) -> dict[str, tuple[str, int]]:
    """sha256 -> (xet file hash, size) of every file recorded in the MDB shards hf_xet wrote under a local CAS.

    Shard layout (xet-core `mdb_shard`): a 48-byte header, then per file a 48-byte record (file hash, flags u32,
    entry count u32, 8 spare), its entries (48 bytes: xorb hash, flags, unpacked bytes u32, chunk range), then
    one 48-byte verification record per entry if flag bit 31, and a 48-byte metadata record (sha256) if bit 30;
    a record whose hash is all 0xff ends the file section.
    """
    out: dict[str, tuple[str, int]] = {}
    for shard in sorted(Path(cas_dir).rglob("*.mdb")):
        data = shard.read_bytes()
        offset = 48
        with contextlib.suppress(struct.error, IndexError):
            while offset + 48 <= len(data) and data[offset : offset + 32] != b"\xff" * 32:
                file_hash = _xet_hash_hex(data[offset : offset + 32])
                flags, n = struct.unpack_from("<II", data, offset + 32)
                offset += 48
                size = sum(struct.unpack_from("<I", data, offset + i * 48 + 36)[0] for i in range(n))
                offset += 48 * n
                if flags & 0x80000000:
                    offset += 48 * n
                if flags & 0x40000000:
                    out[_xet_hash_hex(data[offset : offset + 32])] = (file_hash, size)
                    offset += 48
    return out


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
