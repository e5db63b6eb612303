"""A stand-in for the Kaggle API on 127.0.0.1, for driving the REAL ``kaggle`` client in tests and the demo.

Standard library only. It speaks the wire protocol of ``kaggle`` 2.2.x / ``kagglesdk`` 0.1.x (as their own
``kagglesdk/competitions`` services send it): ``POST /api/v1/competitions.CompetitionApiService/<Method>`` with camelCase
JSON, the blob ``PUT`` of an upload, and ``302`` redirects to a ``.zip`` blob for data downloads.

How the client reaches it: ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` makes the client call ``http://localhost/api``;
``HTTP_PROXY=http://127.0.0.1:PORT`` (with ``NO_PROXY`` empty) makes ``requests`` send every call to this
server with the absolute URL in the request line, which the handler accepts. :meth:`StandIn.client_env`
returns exactly these variables (HTTPS_PROXY and ALL_PROXY too, so that even a stray ``https://`` call would
land here as a recorded ``CONNECT`` instead of leaving the machine).

Everything it receives is recorded with its arrival time (:attr:`StandIn.requests`, :attr:`StandIn.uploads`),
and failures are configurable per method (:meth:`StandIn.fail`), for the blob PUT (:attr:`StandIn.put_status`)
and for the daily limit (:attr:`StandIn.daily_limit`).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import io
import json
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from collections.abc import Callable
from urllib.parse import urlsplit

API_PREFIX = "/api/v1/"
COMPETITION_SERVICE = "competitions.CompetitionApiService"
LOCAL_HOSTS = ("localhost", "127.0.0.1")


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str  # HTTP verb (POST, PUT, GET, CONNECT)
    target: str  # the request line's target (absolute URL when proxied)
    host: str  # host the client meant to reach
    path: str
    rpc: str | None  # e.g. "CreateSubmission" for API calls
    body: Any  # parsed JSON for API calls, byte count for PUT
    auth: str | None  # "basic:<user>", "bearer" or None (the secret itself is never stored)
    range: str | None = None  # the Range header of a blob GET (a resumed download)
    at: float = field(default_factory=time.monotonic)  # when it arrived (time.monotonic), to check poll spacing


@dataclass
class Failure:
    status: int
    message: str
    retry_after: str | None = None
    times: int | None = None  # None: every call; N: the next N calls only
    after: int = 0  # calls that still succeed before the failures start


@dataclass
class _Submission:
    ref: int
    file_name: str
    description: str
    date: datetime
    blob: str = ""
    status: str = "PENDING"
    public_score: str = ""
    error_description: str = ""
    reads: int = 0  # status reads so far (GetSubmission / ListSubmissions)

    def to_json(self) -> dict[str, Any]:
        out = {
            "ref": self.ref,
            "fileName": self.file_name,
            "date": self.date.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.date.microsecond // 1000:03d}Z",
            "description": self.description,
            "status": self.status,
            "submittedBy": "tester",
        }
        if self.public_score:
            out["publicScore"] = self.public_score
        if self.error_description:
            out["errorDescription"] = self.error_description
        return out


@dataclass
class StandIn:
    """The server and its state. Use as a context manager; ``port`` is chosen by the OS.

    Attributes:
        competition: the one competition it knows (others answer 404).
        username, key: accepted HTTP Basic credentials; ``token``: accepted Bearer token.
        daily_limit: submissions allowed per day; ``submitted_before`` counts earlier ones today.
        reads_until_scored: status reads a new submission stays PENDING for.
        final_status, public_score, error_description: what a scored submission becomes.
        put_status: answer to the blob PUT (200 = accepted; anything else fails the upload).
        hide_new_submissions: ListSubmissions/GetSubmission act as if a created ref did not exist.
        cut_blob_after: the next full blob GET sends only this many bytes, then drops the connection.
        data_files: name -> bytes of the competition's data; served as one zip and listed by ListDataFiles.
        scorer: scores a submission from its uploaded bytes (the demo scores against the synthetic truth).
    """

    competition: str = "rfcx-species-audio-detection"
    username: str = "tester"
    key: str = "0123456789abcdef0123456789abcdef"
    token: str | None = None
    daily_limit: int = 5
    submitted_before: int = 0
    reads_until_scored: int = 1
    final_status: str = "COMPLETE"
    public_score: str = "0.87654"
    error_description: str = ""
    put_status: int = 200
    hide_new_submissions: bool = False
    cut_blob_after: int | None = None
    data_files: dict[str, bytes] = field(default_factory=dict)
    scorer: Callable[[bytes], str] | None = None  # uploaded bytes -> public score (else public_score)
    last_modified: datetime = field(default_factory=lambda: datetime(2021, 1, 15, 12, 0, 0, tzinfo=timezone.utc))

    requests: list[Recorded] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)  # blob token -> bytes received
    submissions: list[_Submission] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)
    blob_gets: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._upload_names: dict[str, str] = {}
        self._zip: bytes | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------
    def __enter__(self) -> StandIn:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        assert self._server is not None, "start the stand-in with 'with StandIn() as server:'"
        return int(self._server.server_address[1])

    def client_env(self) -> dict[str, str]:
        """Environment variables that point the unmodified ``kaggle`` client at this server."""
        proxy = f"http://127.0.0.1:{self.port}"
        return {
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "HTTP_PROXY": proxy,
            "http_proxy": proxy,
            "HTTPS_PROXY": proxy,
            "https_proxy": proxy,
            "ALL_PROXY": proxy,
            "all_proxy": proxy,
            "NO_PROXY": "",
            "no_proxy": "",
        }

    # -- configuration ----------------------------------------------------------------------------------
    def fail(
        self, rpc: str, status: int, message: str, retry_after: str | None = None, times: int | None = None, after: int = 0
    ) -> None:
        """Make API method ``rpc`` (``"*"``: every method) answer ``status`` with ``{"code", "message"}``:
        after ``after`` more successful calls, for ``times`` calls (None: for good)."""
        self.failures[rpc] = Failure(status, message, retry_after, times, after)

    @property
    def zip_bytes(self) -> bytes:
        """The data files as one zip archive (stored, not compressed: deterministic and fast)."""
        if self._zip is None:
            self._zip = _zip_of(self.data_files)
        return self._zip

    # -- views for assertions ---------------------------------------------------------------------------
    def rpcs(self) -> list[str]:
        return [r.rpc for r in self.requests if r.rpc]

    def foreign_requests(self) -> list[Recorded]:
        """Requests aimed anywhere but localhost / 127.0.0.1, or tunnels (CONNECT): must stay empty."""
        return [r for r in self.requests if r.host not in LOCAL_HOSTS or r.method == "CONNECT"]


class _Handler(BaseHTTPRequestHandler):
    standin: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    # -- plumbing -----------------------------------------------------------------------------------------
    def _where(self) -> tuple[str, str, str]:
        """(host, path, query) from an absolute-form target (proxied) or the Host header."""
        if self.path.startswith(("http://", "https://")):
            parts = urlsplit(self.path)
            return parts.hostname or "", parts.path, parts.query
        parts = urlsplit(self.path)
        host = (self.headers.get("Host") or "").split(":")[0]
        return host, parts.path, parts.query

    def _auth(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        s = self.standin
        if header.startswith("Basic "):
            try:
                user, _, key = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return f"basic:{user}" if (user == s.username and key == s.key) else None
        if header.startswith("Bearer ") and s.token is not None:
            return "bearer" if header[7:] == s.token else None
        return None

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, status: int, message: str, retry_after: str | None = None) -> None:
        self._json(status, {"code": status, "message": message}, {"Retry-After": retry_after} if retry_after else None)

    def _record(self, rpc: str | None, body: Any) -> tuple[str, str, str]:
        host, path, query = self._where()
        with self.standin._lock:
            self.standin.requests.append(
                Recorded(self.command, self.path, host, path, rpc, body, self._auth(), self.headers.get("Range"))
            )
        return host, path, query

    # -- verbs --------------------------------------------------------------------------------------------
    def do_CONNECT(self) -> None:  # an https:// call through the proxy: refuse, but remember it
        self._record(None, None)
        self._send(405, b"", content_type="text/plain")

    def do_PUT(self) -> None:
        data = self._read_body()
        host, path, _ = self._record(None, len(data))
        if host not in LOCAL_HOSTS:
            return self._error(502, f"stand-in refuses non-local host {host}")
        token = path.rsplit("/", 1)[-1]
        if not path.startswith("/upload/") or token not in self.standin._upload_names:
            return self._error(404, "unknown upload url")
        if self.standin.put_status not in (200, 201):
            return self._send(self.standin.put_status, b"upload rejected", content_type="text/plain")
        with self.standin._lock:
            self.standin.uploads[token] = data
        self._send(200, b"", content_type="text/plain")

    def do_GET(self) -> None:
        host, path, _ = self._record(None, None)
        if host not in LOCAL_HOSTS:
            return self._error(502, f"stand-in refuses non-local host {host}")
        s = self.standin
        if path == f"/blobs/{s.competition}.zip":
            blob = s.zip_bytes
        elif path.startswith("/blobs/files/") and path.endswith(".zip") and path[13:-4] in s.data_files:
            blob = _zip_of({path[13:-4]: s.data_files[path[13:-4]]})
        else:
            return self._error(404, "no such blob")
        with s._lock:
            s.blob_gets += 1
        headers = {
            "Last-Modified": email.utils.format_datetime(s.last_modified, usegmt=True),
            "ETag": '"' + hashlib.sha256(blob).hexdigest()[:16] + '"',
            "Accept-Ranges": "bytes",
        }
        start = 0
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes=") and self.headers.get("If-Range", headers["ETag"]) in (headers["ETag"], headers["Last-Modified"]):
            start = int(ranged[6:].split("-")[0])
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(blob) - 1}/{len(blob)}"
            return self._send(206, blob[start:], headers, content_type="application/zip")
        if s.cut_blob_after is not None:  # announce the whole blob, send a part, hang up
            cut, s.cut_blob_after = s.cut_blob_after, None
            self.send_response(200)
            for k, v in {**headers, "Content-Type": "application/zip", "Content-Length": str(len(blob))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(blob[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(200, blob, headers, content_type="application/zip")

    def do_POST(self) -> None:
        raw = self._read_body()
        host, path, _ = self._where()
        rpc = path.rsplit("/", 1)[-1] if path.startswith(API_PREFIX) else None
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = None
        self._record(rpc, body)
        if host not in LOCAL_HOSTS:
            return self._error(502, f"stand-in refuses non-local host {host}")
        if not isinstance(body, dict) or rpc is None:
            return self._error(400, "bad request")
        if path == f"{API_PREFIX}security.OAuthService/IntrospectToken":
            token_ok = self.standin.token is not None and body.get("token") == self.standin.token
            return self._json(200, {"active": True, "username": self.standin.username} if token_ok else {"active": False})
        if not path.startswith(f"{API_PREFIX}{COMPETITION_SERVICE}/"):
            return self._error(404, f"unknown service {path}")
        failure = self.standin.failures.get(rpc) or self.standin.failures.get("*")
        if failure is not None and failure.after > 0:
            failure.after -= 1
            failure = None
        if failure is not None:
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self.standin.failures = {k: v for k, v in self.standin.failures.items() if v is not failure}
            return self._error(failure.status, failure.message, failure.retry_after)
        if self._auth() is None:
            return self._error(401, "Unauthenticated")
        competition = body.get("competitionName")
        if rpc != "GetSubmission" and competition != self.standin.competition:
            return self._error(404, f"Competition '{competition}' not found")
        handler = getattr(self, f"rpc_{rpc}", None)
        if handler is None:
            return self._error(404, f"unknown method {rpc}")
        with self.standin._lock:
            handler(body)

    # -- API methods (called under the lock) -----------------------------------------------------------
    def rpc_StartSubmissionUpload(self, body: dict[str, Any]) -> None:
        token = f"blob-{len(self.standin._upload_names) + 1}-{int(time.time() * 1000)}"
        self.standin._upload_names[token] = str(body.get("fileName", ""))
        self._json(200, {"token": token, "createUrl": f"http://localhost/upload/{token}"})

    def rpc_CreateSubmission(self, body: dict[str, Any]) -> None:
        s = self.standin
        token = body.get("blobFileTokens")
        if token not in s.uploads:
            return self._error(400, "blob token was never uploaded")
        if self._allowed_now() <= 0:
            return self._error(400, "Submission limit reached for today")
        ref = 50_000_000 + len(s.submissions) + 1
        s.submissions.append(
            _Submission(ref, s._upload_names[token], str(body.get("submissionDescription", "")), datetime.now(timezone.utc),
                        blob=token)
        )
        self._json(200, {"message": "Successfully submitted to Rainforest Connection Species Audio Detection", "ref": ref})

    def _allowed_now(self) -> int:
        return max(0, self.standin.daily_limit - self.standin.submitted_before - len(self.standin.submissions))

    def rpc_GetSubmissionLimits(self, body: dict[str, Any]) -> None:
        today = self.standin.submitted_before + len(self.standin.submissions)
        self._json(200, {"numToday": today, "numTotal": today + 40, "numAllowedNow": self._allowed_now(), "limitedByTotal": False})

    def _visible(self) -> list[_Submission]:
        return [] if self.standin.hide_new_submissions else list(self.standin.submissions)

    def _read_status(self, sub: _Submission) -> dict[str, Any]:
        sub.reads += 1
        if sub.status == "PENDING" and sub.reads > self.standin.reads_until_scored:
            sub.status = self.standin.final_status
            if sub.status == "COMPLETE":
                scorer = self.standin.scorer
                sub.public_score = scorer(self.standin.uploads[sub.blob]) if scorer else self.standin.public_score
            else:
                sub.error_description = self.standin.error_description
        return sub.to_json()

    def rpc_ListSubmissions(self, body: dict[str, Any]) -> None:
        subs = sorted(self._visible(), key=lambda x: x.date, reverse=True)
        size = int(body.get("pageSize") or 20)
        page = int(body.get("page") or 1)
        chunk = subs[(page - 1) * size : page * size]
        self._json(200, {"submissions": [self._read_status(x) for x in chunk]})

    def rpc_GetSubmission(self, body: dict[str, Any]) -> None:
        for sub in self._visible():
            if sub.ref == int(body.get("ref") or 0):
                return self._json(200, self._read_status(sub))
        self._error(404, f"Submission {body.get('ref')} not found")

    def rpc_ListDataFiles(self, body: dict[str, Any]) -> None:
        names = sorted(self.standin.data_files)
        size = int(body.get("pageSize") or 20)
        start = int(body.get("pageToken") or 0)
        files = [
            {"name": n, "totalBytes": len(self.standin.data_files[n]), "creationDate": "2021-01-15T12:00:00.000Z"}
            for n in names[start : start + size]
        ]
        payload: dict[str, Any] = {"files": files}
        if start + size < len(names):
            payload["nextPageToken"] = str(start + size)
        self._json(200, payload)

    def rpc_DownloadDataFiles(self, body: dict[str, Any]) -> None:
        self._send(302, b"", {"Location": f"http://localhost/blobs/{self.standin.competition}.zip?token=t0"}, content_type="text/plain")

    def rpc_DownloadDataFile(self, body: dict[str, Any]) -> None:
        name = str(body.get("fileName", ""))
        if name not in self.standin.data_files:
            return self._error(404, f"Data file '{name}' not found")
        # Kaggle serves single files zipped, as <name>.zip; the client names the local file after the URL.
        self._send(302, b"", {"Location": f"http://localhost/blobs/files/{name}.zip?token=t1"}, content_type="text/plain")


def _zip_of(files: dict[str, bytes]) -> bytes:
    """A zip archive of ``files`` (stored, not compressed: deterministic and fast)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2021, 1, 15, 12, 0, 0)), data)
    return buffer.getvalue()
