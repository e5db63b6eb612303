"""A local stand-in of the Hugging Face Hub for tests: an HTTP server on 127.0.0.1 serving given files.

It answers exactly what ``huggingface_hub.hf_hub_download`` (huggingface_hub 2.4) asks of a model repo, and so
what ``timm.create_model(name, pretrained=True)`` asks for a model whose ``pretrained_cfg`` has ``hf_hub_id``:

* ``HEAD /{repo_id}/resolve/{revision}/{filename}``: the metadata call. Answered ``200`` with ``X-Repo-Commit``
  (a fixed fake 40-hex commit, :data:`FAKE_COMMIT`), ``ETag`` (``"<sha256 of the content>"``, which names the
  blob in the cache), ``Content-Length`` and ``Accept-Ranges: bytes``; no ``X-Xet-*`` headers, so the plain HTTP
  download path is used.
* ``GET /{repo_id}/resolve/{revision}/{filename}``: the download, the same headers plus the body (a ``Range:
  bytes=N-`` resume is answered ``206`` with ``Content-Range``).
* A file the repo lacks: ``404`` with ``X-Error-Code: EntryNotFound`` and ``X-Repo-Commit`` (huggingface_hub raises
  ``RemoteEntryNotFoundError``, a subclass of ``EntryNotFoundError``, and caches the absence under ``.no_exist``).
  timm asks for ``model.safetensors`` first and, on ``EntryNotFoundError``, for ``pytorch_model.bin``.
* An unknown repo: ``404`` with ``X-Error-Code: RepoNotFound`` (``RepositoryNotFoundError``).
* A revision other than ``main`` or :data:`FAKE_COMMIT`: ``404`` with ``X-Error-Code: RevisionNotFound``.
* ``GET /api/models/{repo_id}`` and ``GET /api/models/{repo_id}/revision/{revision}`` (``model_info``): a minimal
  JSON (``id``, ``sha``, ``siblings``...); not called by ``hf_hub_download`` or timm's loading, there for
  completeness. Anything else: ``404`` without an error code (a plain ``HfHubHTTPError``).

Every request is recorded in :attr:`HubStandIn.requests` as ``(method, path)`` (path as sent, query included).

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HOME`` and ``HF_HUB_OFFLINE`` when it is imported, so use the stand-in
from a fresh interpreter, e.g. with :func:`run_python`::

    with HubStandIn({("timm/test_resnet.r160_in1k", "model.safetensors"): data}) as hub:
        proc = run_python("import timm; timm.create_model('test_resnet.r160_in1k', pretrained=True)",
                          {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"),
                           "HF_HUB_DISABLE_TELEMETRY": "1"})
    assert proc.returncode == 0, proc.stderr
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["FAKE_COMMIT", "HubStandIn", "run_python"]

#: The commit every repo of the stand-in is at (``X-Repo-Commit``); the cache's ``refs/main`` holds it.
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"

_DEFAULT_REVISION = "main"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class HubStandIn:
    """A Hugging Face Hub on 127.0.0.1 serving given files, for hf_hub_download (and so timm's pretrained=True).

    ``files`` maps ``(repo_id, filename)`` to the file's bytes, e.g.
    ``{("timm/test_resnet.r160_in1k", "model.safetensors"): b"..."}``; a repo exists when it has a file. Every repo
    is at the fake commit :data:`FAKE_COMMIT`, reachable as revision ``main`` or by that hash.
    """

    commit: str = FAKE_COMMIT

    def __init__(self, files: dict[tuple[str, str], bytes]):
        self.files: dict[tuple[str, str], bytes] = {(str(r), str(f)): bytes(b) for (r, f), b in files.items()}
        self.endpoint: str = ""  # "http://127.0.0.1:PORT" once started
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request received, in order
        self.request_headers: list[dict[str, str]] = []  # the headers of each of those requests, same order
        self._lock = threading.Lock()
        self._connections: set = set()  # open client sockets, closed by stop() (keep-alive would outlive it)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def __enter__(self) -> "HubStandIn":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "HubStandIn":
        """Start serving on 127.0.0.1 on a free port; sets :attr:`endpoint`."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, name="hub-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port (the recorded requests stay)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:  # a client's idle keep-alive connection must not be served after stop()
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # -- helpers --------------------------------------------------------------------------------------------------

    @property
    def repos(self) -> set[str]:
        return {repo for repo, _ in self.files}

    def paths(self, method: str | None = None) -> list[str]:
        """The paths of the recorded requests (only those of ``method`` if given)."""
        with self._lock:
            return [p for m, p in self.requests if method is None or m == method]

    @staticmethod
    def etag_of(content: bytes) -> str:
        """The ETag served for ``content`` (without quotes): its sha256, the name of its blob in the hub cache."""
        return hashlib.sha256(content).hexdigest()

    def _record(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append((method, path))
            self.request_headers.append(headers)


def _make_handler(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive; every response carries a Content-Length
        server_version = "hub-standin/1"

        def setup(self):
            super().setup()
            with hub._lock:
                hub._connections.add(self.connection)

        def finish(self):
            with hub._lock:
                hub._connections.discard(self.connection)
            super().finish()

        def log_message(self, format, *args):  # noqa: A002 - quiet: the requests are recorded instead
            pass

        # -- dispatch ---------------------------------------------------------------------------------------------

        def _handle(self, method: str) -> None:
            hub._record(method, self.path, {k: v for k, v in self.headers.items()})
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)  # drain a request body, so the connection stays usable
            path = urlsplit(self.path).path
            body_wanted = method != "HEAD"
            if method in ("GET", "HEAD"):
                if "/resolve/" in path:
                    return self._resolve(path, body_wanted)
                if path.startswith("/api/models/"):
                    return self._model_info(path[len("/api/models/"):], body_wanted)
                return self._error(404, None, "Not Found", body_wanted)
            return self._error(405, None, f"{method} is not served by the hub stand-in", body_wanted)

        def do_HEAD(self):
            self._handle("HEAD")

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

        def do_PUT(self):
            self._handle("PUT")

        def do_DELETE(self):
            self._handle("DELETE")

        def do_PATCH(self):
            self._handle("PATCH")

        def do_OPTIONS(self):
            self._handle("OPTIONS")

        # -- endpoints --------------------------------------------------------------------------------------------

        def _resolve(self, path: str, body_wanted: bool) -> None:
            # /{repo_id}/resolve/{revision}/{filename}: revision is quoted with safe="" (refs/pr/1 -> refs%2Fpr%2F1),
            # filename with safe="/".
            repo_part, _, rest = path.lstrip("/").partition("/resolve/")
            revision, _, filename = rest.partition("/")
            repo_id, revision, filename = unquote(repo_part), unquote(revision), unquote(filename)
            if repo_id not in hub.repos:
                return self._error(404, "RepoNotFound", "Repository not found", body_wanted)
            if revision not in (_DEFAULT_REVISION, FAKE_COMMIT):
                return self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, body_wanted)
            content = hub.files.get((repo_id, filename))
            if content is None:
                return self._error(404, "EntryNotFound", "Entry not found", body_wanted, commit=True)

            total = len(content)
            status, start, end = 200, 0, total
            rng = self.headers.get("Range")
            if rng and body_wanted:
                m = _RANGE.match(rng.strip())
                if m and (m.group(1) or m.group(2)):
                    if m.group(1):
                        start = int(m.group(1))
                        end = min(int(m.group(2)) + 1, total) if m.group(2) else total
                    else:  # suffix range: the last N bytes
                        start = max(total - int(m.group(2)), 0)
                    if start >= total or start >= end:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{total}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
            etag = hub.etag_of(content)
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Repo-Commit", FAKE_COMMIT)
            self.send_header("Content-Disposition", f'inline; filename="{Path(filename).name}"')
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{total}")
            self.end_headers()
            if body_wanted:
                self.wfile.write(content[start:end])

        def _model_info(self, rest: str, body_wanted: bool) -> None:
            # /api/models/{repo_id} or /api/models/{repo_id}/revision/{revision}
            rest = rest.rstrip("/")
            repo_id, revision = rest, _DEFAULT_REVISION
            if "/revision/" in rest:
                repo_id, _, revision = rest.partition("/revision/")
            repo_id, revision = unquote(repo_id), unquote(revision)
            if repo_id not in hub.repos:
                return self._error(404, "RepoNotFound", "Repository not found", body_wanted)
            if revision not in (_DEFAULT_REVISION, FAKE_COMMIT):
                return self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, body_wanted)
            names = sorted(f for r, f in hub.files if r == repo_id)
            info = {
                "_id": repo_id,
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0] if "/" in repo_id else None,
                "sha": FAKE_COMMIT,
                "private": False,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": [{"rfilename": name} for name in names],
            }
            self._json(200, info, body_wanted, {"X-Repo-Commit": FAKE_COMMIT})

        # -- responses --------------------------------------------------------------------------------------------

        def _error(self, status: int, code: str | None, message: str, body_wanted: bool, commit: bool = False):
            headers = {"X-Error-Message": message}
            if code is not None:
                headers["X-Error-Code"] = code
            if commit:
                headers["X-Repo-Commit"] = FAKE_COMMIT
            self._json(status, {"error": message}, body_wanted, headers)

        def _json(self, status: int, obj, body_wanted: bool, headers: dict[str, str]) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if body_wanted:
                self.wfile.write(body)

    return Handler


_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` with ``sys.executable -c`` in a fresh process, its environment ``os.environ`` updated by
    ``env`` (a value of ``None`` removes that variable), and ``PYTHONPATH`` starting with the project root (the
    parent of ``tests/``) so ``import rfcx_kit`` works. Returns the CompletedProcess, stdout and stderr captured
    as text; raises ``subprocess.TimeoutExpired`` past ``timeout`` seconds."""
    full_env = dict(os.environ)
    for key, value in env.items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = str(value)
    paths = [str(_PROJECT_ROOT)] + [p for p in full_env.get("PYTHONPATH", "").split(os.pathsep) if p]
    full_env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
