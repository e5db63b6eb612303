"""``rfcx-kit submit`` and ``rfcx-kit download`` through the official ``kaggle`` package.

This module adds only what the client does not do; everything that talks to Kaggle is a public call of
``kaggle.api.kaggle_api_extended.KaggleApi`` (no hand-built ``kagglesdk`` request, no own credential search):

Submit: validate the file -> ``KaggleApi.authenticate()`` (the client finds the access token, ``kaggle.json``
in ``$KAGGLE_CONFIG_DIR``, ``KAGGLE_USERNAME``/``KAGGLE_KEY`` or the OAuth login in its own order; we only turn
its ``exit(1)`` and page of help into one line) -> ``competition_get_submission_limits`` (stop if none are
left today) -> ``competition_submit`` -> refuse the silent failure of the client (a failed blob upload returns
``"Could not submit to competition"`` with ref 0 instead of raising) -> confirm that the new ref is listed
(``competition_submissions``, else ``get_submission``) -> append it to ``submissions/log.csv`` -> with
``--wait``, poll ``get_submission`` until the submission is ``COMPLETE`` or ``ERROR`` and print the public
score. Nothing is logged unless Kaggle listed the new submission.

Polling is never faster than the client allows (5 s): ``--poll-seconds`` is raised to that minimum unless the
client's endpoint is a loopback address, i.e. a local stand-in (:func:`_poll_interval`). Retrying a
rate-limited (429) or dropped status read, with backoff and Retry-After, is the client's own ``with_retry``.

Download: ``competition_download_files`` (the whole competition as one zip, which the client resumes itself)
-> extract the members of the layout the reader accepts (``train_tp.csv``, ``train_fp.csv``,
``sample_submission.csv``, ``train/*.flac``, ``test/*.flac``; other members such as ``tfrecords/`` are left
out) one file at a time through a temporary file and a rename, skipping files already present with the
member's size -> check every labelled and test recording has its file -> remove the zip. An interrupted run
is resumed by running the same command again. ``--file`` goes through ``competition_download_file``,
``--list`` through ``competition_list_files``.

``kaggle`` is imported inside functions only: it reads ``KAGGLE_CONFIG_DIR``/``KAGGLE_API_ENVIRONMENT`` and
authenticates when first imported, which must not happen for ``--dry-run``, ``--help`` or a bad file.

Exit codes (every error is one line ``Error: ...``):

====  ==========================================================================================
   2  the submission file is invalid (DataError), or a bad option
   3  the client found no Kaggle credentials (the message says where it looks)
   4  401, or an access token the client found but Kaggle did not accept
   5  403: forbidden, usually the competition rules are not accepted (the rules page is named)
   6  404: unknown competition (or data file)
   7  429: rate limited (the message says when to retry, from Retry-After when given)
   8  5xx: Kaggle server error
   9  the upload failed (the client returned "Could not submit ..." / ref 0)
  10  no submissions left today (or the lifetime cap is reached)
  11  Kaggle answered a ref that it does not list: not confirmed, not logged
  12  the submission was scored with status ERROR (logged with that status)
  13  ``--wait`` timed out while still PENDING (logged as PENDING)
  14  Kaggle could not be reached, or a download was cut short
  15  another HTTP error
====  ==========================================================================================
"""

from __future__ import annotations

import contextlib
import csv
import email.utils
import ipaddress
import io
import json
import math
import os
import re
import shutil
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


from rfcx_kit.core.errors import ConfigError, DataError, RfcxError
from rfcx_kit.core.io import atomic_open, sha256_file
from rfcx_kit.core.species import COMPETITION, competition_test_ids
from rfcx_kit.submit.competitions import KNOWN, notebook_steps

__all__ = [
    "KaggleError",
    "SubmitResult",
    "DownloadResult",
    "submit",
    "download",
    "list_data_files",
    "read_log",
    "DEFAULT_LOG",
    "LOG_COLUMNS",
    "CLIENT_MIN_POLL_SECONDS",
]

DEFAULT_LOG = Path("submissions") / "log.csv"
LOG_COLUMNS = ["time", "file", "sha256", "message", "ref", "status", "score"]
UPLOAD_FAILED_MESSAGE = "Could not submit to competition"  # KaggleApi.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE
# The floor under the client's minimum poll interval: kaggle 2.2.5 keeps it as KaggleApi._MIN_POLL_INTERVAL
# (5 s, enforced by its competition_submit_cli) and offers no public accessor; should a later client drop or
# lower that constant, we still never poll the real Kaggle faster than this.
CLIENT_MIN_POLL_SECONDS = 5.0
LAYOUT_FILES = ("train_tp.csv", "train_fp.csv", "sample_submission.csv")
_LAYOUT_AUDIO = re.compile(r"^(train|test)/[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(flac|wav|ogg)$")
_MARKER = ".rfcx-download.json"
STAGING = ".download"
# KaggleApi.authenticate() records how it authenticated as str(AuthMethod.X) under CONFIG_NAME_AUTH_METHOD.
_AUTH_METHODS = {"LEGACY_API_KEY": "api key", "ACCESS_TOKEN": "access token", "OAUTH": "oauth login"}

EXIT_NO_CREDENTIALS = 3
EXIT_UNAUTHENTICATED = 4
EXIT_FORBIDDEN = 5
EXIT_NOT_FOUND = 6
EXIT_RATE_LIMITED = 7
EXIT_SERVER_ERROR = 8
EXIT_UPLOAD_FAILED = 9
EXIT_NO_SUBMISSIONS_LEFT = 10
EXIT_NOT_CONFIRMED = 11
EXIT_SCORING_ERROR = 12
EXIT_WAIT_TIMEOUT = 13
EXIT_NETWORK = 14
EXIT_HTTP_OTHER = 15


class KaggleError(RfcxError):
    """A Kaggle step failed; ``exit_code`` tells which (module docstring), ``status`` is the HTTP status if any."""

    def __init__(self, message: str, exit_code: int, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status


def _rules_url(competition: str) -> str:
    return f"https://www.kaggle.com/c/{competition}/rules"


# ---------------------------------------------------------------------------------------------------------
# The client, and its errors as one line each


def _client() -> Any:
    """A ``KaggleApi`` that has authenticated itself. The import happens here (it authenticates at import time).

    The client searches for credentials in its own order; when it finds none it prints a page of help and
    raises ``SystemExit(1)`` (not an ``Exception``), which becomes one line here.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):  # the client prints a page of help when auth fails
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except ImportError as exc:
        raise KaggleError(f"the official Kaggle client is not installed ({exc}); pip install kaggle six", EXIT_HTTP_OTHER) from None
    except SystemExit:
        raise _no_credentials() from None
    except Exception as exc:  # noqa: BLE001 - network errors of the client's token check
        raise _translate(exc, COMPETITION, "checking the credentials") from None
    for line in captured.getvalue().splitlines():
        if line.startswith("Warning"):  # e.g. "your Kaggle API key is readable by other users"
            warn(line)
    return api


def _no_credentials() -> KaggleError:
    """The one line for a failed ``authenticate()``: a token the client found but Kaggle refused, or nothing.

    Which of the two is asked of ``kagglesdk.get_access_token_from_env`` (the function the client itself
    uses); only the token's source is named, never the token.
    """
    from kaggle.api.kaggle_api_extended import KaggleApi
    from kagglesdk import get_access_token_from_env

    _, token_source = get_access_token_from_env()
    if token_source:
        return KaggleError(
            f"Kaggle did not accept the access token from {token_source} (expired or revoked?) and the kaggle "
            "client found no other credentials; make a new token at https://www.kaggle.com/settings/api",
            EXIT_UNAUTHENTICATED,
        )
    config = KaggleApi.config  # the kaggle.json the client reads ($KAGGLE_CONFIG_DIR, default ~/.kaggle)
    unusable = (f"; {config} exists but the client could not use it (it must be JSON with username and key)"
                if os.path.exists(config) else "")
    return KaggleError(
        "no Kaggle credentials found: the kaggle client looks for KAGGLE_API_TOKEN (a token or a file holding it), "
        f"~/.kaggle/access_token, {config} with username and key (folder: $KAGGLE_CONFIG_DIR), "
        f"KAGGLE_USERNAME + KAGGLE_KEY, then the login saved by 'kaggle auth login'{unusable}; "
        "create a token at https://www.kaggle.com/settings/api",
        EXIT_NO_CREDENTIALS,
    )


def _describe(api: Any) -> str:
    """How the client authenticated, e.g. ``api key (user tester)``, from its public config values (no secret)."""
    method = api.get_config_value(api.CONFIG_NAME_AUTH_METHOD) or ""
    user = api.get_config_value(api.CONFIG_NAME_USER)
    return _AUTH_METHODS.get(method, method or "credentials") + (f" (user {user})" if user else "")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _poll_interval(api: Any, requested: float) -> float:
    """Seconds between status polls: ``requested``, but never under the client's minimum on a real Kaggle.

    The client refuses to poll faster than ``KaggleApi._MIN_POLL_INTERVAL`` (5 s). We apply the same floor
    unless the endpoint the client itself calls (its public ``build_kaggle_client().http_client()
    .get_non_api_endpoint()``: ``https://www.kaggle.com`` in production) is a loopback address, which only
    ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` gives: a stand-in on this machine, never kaggle.com. That is what lets
    the tests and the demo poll in fractions of a second without letting a user hammer the real servers.
    """
    minimum = max(CLIENT_MIN_POLL_SECONDS, float(getattr(type(api), "_MIN_POLL_INTERVAL", CLIENT_MIN_POLL_SECONDS)))
    if requested >= minimum or _is_loopback(api.build_kaggle_client().http_client().get_non_api_endpoint()):
        return requested
    warn(f"warning: --poll-seconds {requested:g} is under the kaggle client's minimum of {minimum:g} s "
         f"between status checks; polling every {minimum:g} s")
    return minimum


def _retry_after(response: Any) -> str:
    """'retry after 120 s (at 12:02:00 UTC)' from a 429's Retry-After header (seconds or an HTTP date)."""
    value = (response.headers.get("Retry-After") if response is not None else None) or ""
    seconds: float | None = None
    try:
        seconds = max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            seconds = None
    if seconds is None:
        return "Kaggle gave no Retry-After; wait a few minutes before retrying"
    at = datetime.fromtimestamp(time.time() + seconds, timezone.utc).strftime("%H:%M:%S UTC")
    return f"retry after {math.ceil(seconds)} s (at {at})"


def _translate(exc: Exception, competition: str, action: str, after: str = "", missing: str | None = None) -> KaggleError:
    """One clear line for an exception of the client. ``after`` is appended (what did or did not happen);
    ``missing`` names what a 404 means when it is not the competition (e.g. a data file)."""
    import requests

    tail = f"; {after}" if after else ""
    response = getattr(exc, "response", None)
    if isinstance(exc, requests.HTTPError) and response is not None:
        status = response.status_code
        said = str(exc).strip() or response.reason or ""
        if status == 401:
            return KaggleError(
                f"Kaggle rejected the credentials (401 {said}) while {action}; check the username and key or make a "
                f"new token at https://www.kaggle.com/settings/api{tail}",
                EXIT_UNAUTHENTICATED, status,
            )
        if status == 403:
            return KaggleError(
                f"Kaggle refused {action} (403 {said}): this account has probably not accepted the rules of "
                f"{competition}; accept them at {_rules_url(competition)}{tail}",
                EXIT_FORBIDDEN, status,
            )
        if status == 404 and missing is not None:
            return KaggleError(f"Kaggle has no {missing} (404 {said}) while {action}{tail}", EXIT_NOT_FOUND, status)
        if status == 404:
            return KaggleError(
                f"Kaggle knows no competition {competition!r} (404 {said}) while {action}; check the name in "
                f"https://www.kaggle.com/c/<name>{tail}",
                EXIT_NOT_FOUND, status,
            )
        if status == 429:
            return KaggleError(
                f"Kaggle rate limit hit while {action} (429 {said}); {_retry_after(response)}{tail}",
                EXIT_RATE_LIMITED, status,
            )
        if status >= 500:
            return KaggleError(
                f"Kaggle server error {status} while {action} ({said}); try again later{tail}", EXIT_SERVER_ERROR, status
            )
        return KaggleError(f"Kaggle answered {status} while {action}: {said}{tail}", EXIT_HTTP_OTHER, status)
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)):
        return KaggleError(f"cannot reach Kaggle while {action} ({type(exc).__name__}){tail}", EXIT_NETWORK)
    if isinstance(exc, ValueError) and "does not match expected size" in str(exc):  # the client's size check
        return KaggleError(f"the download was cut short while {action} ({exc}){tail}", EXIT_NETWORK)
    return KaggleError(f"the Kaggle client failed while {action}: {type(exc).__name__}: {exc}{tail}", EXIT_HTTP_OTHER)


@contextlib.contextmanager
def _step(competition: str, action: str, after: str = "", missing: str | None = None) -> Iterator[None]:
    """Turn any client exception raised in the block into a :class:`KaggleError`."""
    try:
        yield
    except RfcxError:
        raise
    except Exception as exc:  # noqa: BLE001 - every client failure must become one line
        raise _translate(exc, competition, action, after, missing) from exc


# ---------------------------------------------------------------------------------------------------------
# The submission log


def read_log(path: str | Path = DEFAULT_LOG) -> list[dict[str, str]]:
    """Rows of ``submissions/log.csv`` (columns :data:`LOG_COLUMNS`), oldest first; [] if there is none."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != LOG_COLUMNS:
            raise DataError(f"{path}: header must be {','.join(LOG_COLUMNS)}, got {','.join(reader.fieldnames or [])}")
        return list(reader)


@contextlib.contextmanager
def _log_lock(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the log between processes by locking its folder (the log itself is
    replaced by a rename, so it cannot carry the lock; the folder leaves no lock file behind).
    A no-op where ``fcntl`` is missing (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _log_upsert(path: Path, row: dict[str, str]) -> None:
    """Append ``row`` (or update the row with the same ref) atomically: read all, write a temp file, rename."""
    with _log_lock(path):
        rows = read_log(path)
        for existing in rows:
            if existing["ref"] == row["ref"]:
                existing.update(row)
                break
        else:
            rows.append(row)
        with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)


# ---------------------------------------------------------------------------------------------------------
# Submit


@dataclass
class SubmitResult:
    """What happened to one submission.

    ``ref``/``status``/``public_score`` are Kaggle's (``None`` for a dry run); ``logged`` says whether the row
    is in the log; ``remaining_before`` is the day's allowance before this submission.
    """

    file: Path
    size: int
    sha256: str
    competition: str
    message: str
    dry_run: bool = False
    ref: int | None = None
    status: str | None = None
    public_score: str | None = None
    error_description: str | None = None
    remaining_before: int | None = None
    logged: bool = False


def _expected_ids(competition: str, data_dir: Path | None) -> tuple[list[str] | None, str]:
    from rfcx_kit.data.submission import read_expected_ids

    if data_dir is not None:
        return read_expected_ids(data_dir), f"the ids of {data_dir / 'sample_submission.csv'}"
    if competition == COMPETITION:
        return list(competition_test_ids()), f"the real {COMPETITION} test ids"
    return None, "format only (ids not checked: pass --data for another competition)"


def _fetched(api: Any, competition: str, ref: int) -> Any | None:
    """Submission ``ref`` by the client's ``get_submission`` (which retries 429s and dropped connections
    itself); None on a 404. A client without ``get_submission`` (older than 2.2.5) reads the listing instead."""
    import requests

    if not hasattr(api, "get_submission"):
        return _listed(api, competition, ref)
    try:
        return api.get_submission(int(ref))
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return None
        raise


def _listed(api: Any, competition: str, ref: int) -> Any | None:
    """Submission ``ref`` if it is on the newest page of the client's ``competition_submissions``."""
    for sub in api.competition_submissions(competition) or []:
        if sub is not None and int(sub.ref) == int(ref):
            return sub
    return None


def _status(sub: Any) -> str:
    status = getattr(sub, "status", None)
    return getattr(status, "name", str(status or "PENDING"))


def submit(
    path: str | Path,
    message: str,
    competition: str = COMPETITION,
    *,
    wait: bool = False,
    poll_seconds: float = 30.0,
    timeout: float = 3600.0,
    data_dir: str | Path | None = None,
    dry_run: bool = False,
    log_path: str | Path = DEFAULT_LOG,
    echo: Callable[[str], None] = print,
) -> SubmitResult:
    """Validate and submit ``path`` to ``competition`` (flow in the module docstring).

    Returns a :class:`SubmitResult`; raises :class:`KaggleError` (exit codes in the module docstring) or
    :class:`~rfcx_kit.core.errors.DataError` for an invalid file. ``dry_run`` stops after validation and prints what
    would be sent: no network, no log, no ``kaggle`` import. ``poll_seconds`` is raised to the client's
    minimum unless the client talks to a loopback address (:func:`_poll_interval`).
    """
    from rfcx_kit.data.submission import validate_submission

    path, log_path = Path(path), Path(log_path)
    known = KNOWN.get(competition)
    if known is not None and known.kind == "notebook":  # refused before anything is read or sent
        raise ConfigError(notebook_steps(known))
    if not message.strip():
        raise DataError("the submission message (-m) is empty; say what this submission is")
    expected, source = _expected_ids(competition, Path(data_dir) if data_dir is not None else None)
    frame = validate_submission(path, expected, check_ids=expected is not None, ids_from=source)
    result = SubmitResult(path, path.stat().st_size, sha256_file(path), competition, message, dry_run=dry_run)
    echo(f"valid: {path} ({len(frame)} recordings; {source})")
    if dry_run:
        _echo_dry_run(result, echo)
        return result

    read_log(log_path)  # a log we could not append to must stop us before submitting, not after
    if not os.access(log_path.parent if log_path.parent.exists() else Path.cwd(), os.W_OK):
        raise DataError(f"{log_path.parent}: not writable, so the submission could not be logged; nothing was submitted")
    api = _client()
    echo(f"credentials: {_describe(api)}")
    interval = _poll_interval(api, poll_seconds) if wait else poll_seconds  # decided (and warned) before sending
    result.remaining_before = _submissions_left(api, competition)
    echo(f"submissions left today: {result.remaining_before}")
    response = _upload(api, path, message, competition)
    result.ref = int(response.ref)
    listed = _confirm(api, competition, result.ref, response.message)
    row = {"time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "file": path.as_posix(),
           "sha256": result.sha256, "message": message, "ref": str(result.ref)}

    def record(sub: Any) -> None:
        result.status = _status(sub)
        result.public_score = getattr(sub, "public_score", None) or None
        result.error_description = getattr(sub, "error_description", None) or None
        _log_upsert(log_path, {**row, "status": result.status, "score": result.public_score or ""})
        result.logged = True

    record(listed)
    echo(f"submitted: ref {result.ref}, status {result.status}; logged to {log_path}")
    if wait:
        _wait_for_score(api, result, record, interval, timeout)
        echo(f"scored: ref {result.ref} {result.status}, public score {result.public_score}")
    return result


def _echo_dry_run(result: SubmitResult, echo: Callable[[str], None]) -> None:
    echo("dry run: would send (nothing was sent, nothing logged):")
    for key, value in (
        ("file", result.file), ("size", f"{result.size} bytes"), ("sha256", result.sha256),
        ("competition", result.competition), ("message", result.message),
        # Finding them means starting the client, which checks an access token with Kaggle: not in a dry run.
        ("credentials", "not checked (the kaggle client finds them when you submit)"),
    ):
        echo(f"  {key:12s}{value}")


def _submissions_left(api: Any, competition: str) -> int:
    """Submissions allowed now; none left is refused with why (the daily count, the lifetime cap, the rules)."""
    with _step(competition, "reading the submission limits", "nothing was submitted"):
        limits = api.competition_get_submission_limits(competition)
    left = int(limits.num_allowed_now or 0)
    if left <= 0:
        if limits.limited_by_total:
            why = f"the lifetime cap is reached ({limits.num_total} submissions)"
        elif not (limits.num_today or limits.num_total):
            why = f"none allowed and none made: this account may not have joined; accept the rules at {_rules_url(competition)}"
        else:
            why = f"{limits.num_today} made today; the count resets at 00:00 UTC"
        raise KaggleError(f"no submissions left for {competition} ({why}); nothing was submitted", EXIT_NO_SUBMISSIONS_LEFT)
    return left


def _upload(api: Any, path: Path, message: str, competition: str) -> Any:
    """The client's upload and CreateSubmission; a failure says whether Kaggle may have recorded it."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):  # the client prints upload errors instead of raising them
            response = api.competition_submit(str(path), message, competition, quiet=True)
    except Exception as exc:  # noqa: BLE001 - becomes one line below
        # Only a failed CreateSubmission leaves doubt; before it, nothing can have been recorded.
        url = str(getattr(getattr(exc, "request", None), "url", "") or getattr(getattr(exc, "response", None), "url", ""))
        after = (
            "Kaggle may or may not have recorded it: check your submissions page before retrying"
            if url.endswith("/CreateSubmission") else "nothing was submitted"
        )
        raise _translate(exc, competition, "submitting", after) from exc
    if not response.ref or response.message == UPLOAD_FAILED_MESSAGE:
        said = " ".join(captured.getvalue().split())
        raise KaggleError(
            f"the upload of {path} failed: the client answered {response.message!r} with ref {response.ref or 0}"
            + (f" ({said})" if said else "") + "; nothing was submitted or logged, try again",
            EXIT_UPLOAD_FAILED,
        )
    return response


def _confirm(api: Any, competition: str, ref: int, answer: str) -> Any:
    """The submission as Kaggle lists it: only a listed one is logged."""
    with _step(competition, f"confirming submission {ref}",
               f"Kaggle answered ref {ref} but it could not be confirmed, so it is not logged; "
               f"check https://www.kaggle.com/c/{competition}/submissions before submitting again"):
        listed = _listed(api, competition, ref) or _fetched(api, competition, ref)
    if listed is None:
        raise KaggleError(
            f"Kaggle answered ref {ref} ({answer}) but does not list it among your submissions; "
            f"not logged; check https://www.kaggle.com/c/{competition}/submissions before submitting again",
            EXIT_NOT_CONFIRMED,
        )
    return listed


def _wait_for_score(api: Any, result: SubmitResult, record: Callable[[Any], None], interval: float,
                    timeout: float) -> None:
    """Poll until the submission is scored, logging every change; PENDING past ``timeout`` or ERROR is refused.

    Our own loop (not the client's private _poll_submission) so that the row is logged as PENDING first and updated
    on every change. Each status read is the client's get_submission, at least ``interval`` after the previous
    read: a wait that has less than an interval left ends without a faster read."""
    competition = result.competition
    deadline = time.monotonic() + timeout
    for _ in range(math.ceil(timeout / interval)):  # bounded in count as well as in time
        if result.status != "PENDING" or deadline - time.monotonic() < interval:
            break
        time.sleep(interval)
        try:
            with _step(competition, f"waiting for the score of {result.ref}", f"the submission is logged as {result.status}"):
                sub = _fetched(api, competition, result.ref)
        except KaggleError as exc:
            if exc.exit_code not in (EXIT_RATE_LIMITED, EXIT_SERVER_ERROR, EXIT_NETWORK):
                raise
            warn(f"warning: {exc}; polling on")  # a passing hiccup must not end the wait
            continue
        if sub is not None:  # a 404 just after creating it is Kaggle catching up: still PENDING
            record(sub)
    if result.status == "PENDING":
        raise KaggleError(
            f"submission {result.ref} is still PENDING after {timeout:g} s; it is logged as PENDING; "
            f"see https://www.kaggle.com/c/{competition}/submissions",
            EXIT_WAIT_TIMEOUT,
        )
    if result.status == "ERROR":
        raise KaggleError(
            f"Kaggle could not score submission {result.ref}: {result.error_description or 'no description given'} "
            f"(logged with status ERROR)",
            EXIT_SCORING_ERROR,
        )


# ---------------------------------------------------------------------------------------------------------
# Download


@dataclass
class DownloadResult:
    """Counts of one download: files ``extracted`` now, ``kept`` (already present), ``ignored`` (not in the layout)."""

    folder: Path
    extracted: int = 0
    kept: int = 0
    ignored: list[str] = field(default_factory=list)
    already_complete: bool = False


def _in_layout(name: str) -> bool:
    return name in LAYOUT_FILES or bool(_LAYOUT_AUDIO.match(name))


def _marker_complete(folder: Path, competition: str) -> bool:
    """True if an earlier run finished: its marker lists files that are all still there with their sizes."""
    try:
        marker = json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("competition") != competition:
        return False
    files = marker.get("files", {})
    return bool(files) and all(
        (folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items()
    )


def _open_zip(archive_path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive_path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{archive_path}: not a complete zip archive ({exc}); delete it and run again") from exc


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, archive_path: Path) -> None:
    """One member to ``target`` through a temporary file and a rename; a CRC mismatch is an error."""
    try:
        with archive.open(info) as source, atomic_open(target, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    except (zipfile.BadZipFile, OSError) as exc:  # zipfile raises BadZipFile on a CRC mismatch
        raise DataError(f"{archive_path}: member {info.filename} is damaged ({exc}); delete the zip and run again") from exc


def _extract_single(archive_path: Path, name: str, target: Path) -> None:
    """The member of a single-file zip that is ``name`` (full path or base name) -> ``target``."""
    with _open_zip(archive_path) as archive:
        for info in archive.infolist():
            if info.filename == name or Path(info.filename).name == Path(name).name:
                return _copy_member(archive, info, target, archive_path)
    raise DataError(f"{archive_path}: holds no {name}")


def _extract(archive_path: Path, folder: Path, result: DownloadResult, progress: bool) -> dict[str, int]:
    """Extract the layout members of a zip into ``folder``; each through a temp file + rename (atomic).

    A member whose target already exists with the member's size is kept (a present file is a finished file,
    since every file is renamed into place only once complete). Returns ``{name: size}`` of layout members.
    """
    from rfcx_kit.core.progress import progress_bar

    wanted: dict[str, int] = {}
    with _open_zip(archive_path) as archive:
        members = []
        for info in archive.infolist():
            if info.is_dir():
                continue
            if not _in_layout(info.filename):
                result.ignored.append(info.filename)
                continue
            wanted[info.filename] = info.file_size
            target = folder / info.filename
            if target.is_file() and target.stat().st_size == info.file_size:
                result.kept += 1
            else:
                members.append(info)
        total = sum(m.file_size for m in members)
        with progress_bar(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="extract", enabled=progress and bool(members),
                  file=sys.stderr) as bar:
            for info in members:
                _copy_member(archive, info, folder / info.filename, archive_path)
                result.extracted += 1
                bar.update(info.file_size)
    return wanted


def _check_layout(folder: Path) -> None:
    """Every labelled recording has ``train/<id>.*`` and every sample_submission id has ``test/<id>.*``."""
    import pandas as pd

    for name in LAYOUT_FILES:
        if not (folder / name).is_file():
            raise DataError(f"{folder}: the download holds no {name}")
    needed = {
        "train": sorted(set().union(*(pd.read_csv(folder / n, usecols=["recording_id"], dtype=str)["recording_id"]
                                      for n in ("train_tp.csv", "train_fp.csv")))),
        "test": pd.read_csv(folder / "sample_submission.csv", usecols=["recording_id"], dtype=str)["recording_id"].tolist(),
    }
    for split, ids in needed.items():
        present = {p.stem for p in (folder / split).glob("*")} if (folder / split).is_dir() else set()
        missing = [rid for rid in ids if rid not in present]
        if missing:
            raise DataError(
                f"{folder / split}: {len(missing)} recording(s) listed in the CSVs have no file "
                f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); run the download again"
            )


def list_data_files(competition: str = COMPETITION, max_pages: int = 1000) -> list[tuple[str, int]]:
    """``[(name, bytes), ...]`` of the competition's data files (``competition_list_files``, all pages, bounded)."""
    api = _client()
    files: list[tuple[str, int]] = []
    token: str | None = None
    for _ in range(max_pages):
        with _step(competition, "listing the data files"):
            page = api.competition_list_files(competition, page_token=token, page_size=200)
        files += [(f.name, int(f.total_bytes or 0)) for f in page.files or []]
        token = page.next_page_token
        if not token:
            break
    return files


def download(
    competition: str = COMPETITION,
    to: str | Path = "data",
    *,
    files: tuple[str, ...] = (),
    keep_zip: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> DownloadResult:
    """Download the competition's data into ``to`` in the reader's layout (see the module docstring).

    ``files`` downloads only those data files (e.g. the three CSVs, for use with precomputed spectrograms),
    each through ``competition_download_file``; the layout check is then skipped.
    """
    folder = Path(to)
    result = DownloadResult(folder)
    if not files and _marker_complete(folder, competition):
        result.already_complete = True
        echo(f"{folder}: already complete ({_MARKER}); nothing to download")
        return result
    staging = folder / STAGING  # the client creates it when it writes
    api = _client()
    echo(f"credentials: {_describe(api)}")
    quiet = not progress
    if files:
        for name in files:
            if (folder / name).is_file():
                result.kept += 1
                continue
            with _step(competition, f"downloading {name}", "run the same command again to resume", f"data file {name!r} in {competition}"):
                api.competition_download_file(competition, name, path=str(staging), quiet=quiet)
            # The client names the local file after the blob URL: NAME.zip when Kaggle zipped it, else NAME.
            fetched = staging / Path(name).name
            zipped = staging / f"{Path(name).name}.zip"
            if zipped.is_file():
                _extract_single(zipped, name, folder / name)
            elif fetched.is_file():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(fetched, folder / name)  # same file system: the rename is atomic
            else:
                raise DataError(f"{staging}: the client wrote no file for {name}")
            result.extracted += 1
    else:
        archive = staging / f"{competition}.zip"
        with _step(competition, "downloading the data", "run the same command again to resume"):
            api.competition_download_files(competition, path=str(staging), quiet=quiet)
        if not archive.is_file():
            raise DataError(f"{archive}: the client wrote no archive")
        layout = _extract(archive, folder, result, progress)
        if not layout:
            raise DataError(f"{archive}: holds none of {', '.join(LAYOUT_FILES)}, train/*.flac, test/*.flac")
        _check_layout(folder)
        with atomic_open(folder / _MARKER, "w", encoding="utf-8") as handle:
            json.dump({"competition": competition, "files": layout}, handle)
    if not keep_zip and staging.is_dir():
        for leftover in staging.glob("*.zip*"):  # the zip and the client's .kaggle-partial marker
            leftover.unlink()
        with contextlib.suppress(OSError):
            staging.rmdir()
    echo(
        f"{folder}: {result.extracted} file(s) written, {result.kept} already present"
        + (f", {len(result.ignored)} archive member(s) outside the layout left out" if result.ignored else "")
    )
    return result


# ---------------------------------------------------------------------------------------------------------
# Commands



def warn(line: str) -> None:
    """A warning for the person at the terminal, on stderr (the command's output stays on stdout)."""
    print(line, file=sys.stderr, flush=True)


def check_slug(slug: str) -> str:
    """A competition slug as Kaggle spells them (lower-case letters, digits, '-'): never a path."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,99}", slug or ""):
        raise ValueError(f"{slug!r} is not a competition slug (lower-case letters, digits and '-', as in "
                         f"kaggle.com/c/{COMPETITION})")
    return slug
