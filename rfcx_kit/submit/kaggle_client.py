"""``rfcx-kit submit`` and ``rfcx-kit download`` through the official ``kaggle`` package.

Submit: validate the file -> find credentials ourselves (the client would ``exit(1)`` or print a page of help)
-> ``GetSubmissionLimits`` (stop if none are left today) -> ``KaggleApi.competition_submit`` -> refuse the
silent failure of the client (a failed blob upload returns ``"Could not submit to competition"`` with ref 0
instead of raising) -> confirm that the new ref is listed -> append it to ``submissions/log.csv`` -> with
``--wait``, poll until the submission is ``COMPLETE`` or ``ERROR`` and print the public score.
Nothing is logged unless Kaggle listed the new submission.

Download: ``DownloadDataFiles`` (the whole competition as one zip, fetched by the client, which resumes a
partial zip itself) -> extract the members of the layout the reader accepts (``train_tp.csv``,
``train_fp.csv``, ``sample_submission.csv``, ``train/*.flac``, ``test/*.flac``; other members such as
``tfrecords/`` are left out) one file at a time through a temporary file and a rename, skipping files already
present with the member's size -> check every labelled and test recording has its file -> remove the zip.
An interrupted run is resumed by running the same command again.

``kaggle`` is imported inside functions only: it reads ``KAGGLE_CONFIG_DIR``/``KAGGLE_API_ENVIRONMENT`` and
authenticates when first imported, which must not happen for ``--dry-run``, ``--help`` or a missing key.

Exit codes (every error is one line ``Error: ...``):

====  ==========================================================================================
   2  the submission file is invalid (DataError), or a bad option
   3  no Kaggle credentials found (the message says where Kaggle looks)
   4  401: Kaggle rejected the credentials
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

import click

from rfcx_kit.errors import DataError, RfcxError, cli_errors
from rfcx_kit.io import atomic_open, sha256_file
from rfcx_kit.species import COMPETITION, competition_test_ids

__all__ = [
    "KaggleError",
    "Credentials",
    "SubmitResult",
    "DownloadResult",
    "find_credentials",
    "kaggle_config_dir",
    "submit",
    "download",
    "list_data_files",
    "read_log",
    "submit_cmd",
    "download_cmd",
    "DEFAULT_LOG",
    "LOG_COLUMNS",
]

DEFAULT_LOG = Path("submissions") / "log.csv"
LOG_COLUMNS = ["time", "file", "sha256", "message", "ref", "status", "score"]
UPLOAD_FAILED_MESSAGE = "Could not submit to competition"  # KaggleApi.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE
LAYOUT_FILES = ("train_tp.csv", "train_fp.csv", "sample_submission.csv")
_LAYOUT_AUDIO = re.compile(r"^(train|test)/[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(flac|wav|ogg)$")
_MARKER = ".rfcx-download.json"
_STAGING = ".download"

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
# Credentials: the places the client looks, in its order (kaggle 2.2: KaggleApi.authenticate)


@dataclass(frozen=True)
class Credentials:
    """Where the credentials were found (never the secret itself).

    Attributes:
        method: ``"access token"``, ``"api key"`` or ``"oauth"``.
        source: where: ``KAGGLE_API_TOKEN``, a file path, or ``KAGGLE_USERNAME/KAGGLE_KEY``.
        username: the account, when known without asking Kaggle.
    """

    method: str
    source: str
    username: str | None = None

    def describe(self) -> str:
        who = f" (user {self.username})" if self.username else ""
        return f"{self.method} from {self.source}{who}"


def kaggle_config_dir() -> Path:
    """The folder where the client reads ``kaggle.json``: ``$KAGGLE_CONFIG_DIR``, else ``~/.kaggle`` if it
    exists, else (Linux) ``$XDG_CONFIG_HOME/kaggle`` or ``~/.config/kaggle``."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured)
    home = Path(os.path.expanduser("~")) / ".kaggle"
    if home.exists() or not sys.platform.startswith("linux"):
        return home
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path(os.path.expanduser("~")) / ".config") / "kaggle"


def _where_kaggle_looks() -> str:
    return (
        "Kaggle looks for, in order: KAGGLE_API_TOKEN (the token, or a file holding it); ~/.kaggle/access_token; "
        f"{kaggle_config_dir() / 'kaggle.json'} with username and key (folder: $KAGGLE_CONFIG_DIR, default ~/.kaggle); "
        "KAGGLE_USERNAME + KAGGLE_KEY; the login saved by 'kaggle auth login'. "
        "Create a token at https://www.kaggle.com/settings/api"
    )


def find_credentials() -> Credentials:
    """Find Kaggle credentials the way the client will, without network and without reading out secrets.

    Raises:
        KaggleError (exit 3): none found, or ``kaggle.json`` is unreadable (the message says where Kaggle looks).
    """
    token = os.environ.get("KAGGLE_API_TOKEN")
    if token:
        if Path(token).exists():
            if not Path(token).read_text().strip():
                raise KaggleError(f"KAGGLE_API_TOKEN names the file {token}, which is empty", EXIT_NO_CREDENTIALS)
            return Credentials("access token", f"the file {token} (KAGGLE_API_TOKEN)")
        return Credentials("access token", "KAGGLE_API_TOKEN")
    for name in ("access_token", "access_token.txt"):
        path = Path(os.path.expanduser("~")) / ".kaggle" / name
        if path.is_file() and path.read_text().strip():
            return Credentials("access token", str(path))

    config: dict[str, Any] = {}
    config_path = kaggle_config_dir() / "kaggle.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text() or "{}") or {}
        except (OSError, ValueError) as exc:
            raise KaggleError(
                f"{config_path}: not readable JSON ({type(exc).__name__}); it must hold "
                '{"username": "...", "key": "..."}',
                EXIT_NO_CREDENTIALS,
            ) from None
        if not isinstance(config, dict):
            config = {}
    username = os.environ.get("KAGGLE_USERNAME") or config.get("username")
    key = os.environ.get("KAGGLE_KEY") or config.get("key")
    if username and key:
        from_env = bool(os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"))
        return Credentials("api key", "KAGGLE_USERNAME/KAGGLE_KEY" if from_env else str(config_path), str(username))
    if config_path.is_file():
        lacking = " and ".join(k for k, v in (("username", username), ("key", key)) if not v)
        raise KaggleError(f"{config_path}: lacks {lacking}; it must hold {{\"username\": ..., \"key\": ...}}", EXIT_NO_CREDENTIALS)
    oauth = Path(os.path.expanduser("~/.kaggle/credentials.json"))
    if oauth.is_file():
        return Credentials("oauth", str(oauth))
    raise KaggleError("no Kaggle credentials found. " + _where_kaggle_looks(), EXIT_NO_CREDENTIALS)


# ---------------------------------------------------------------------------------------------------------
# The client, and its errors as one line each


def _client(credentials: Credentials) -> Any:
    """An authenticated ``KaggleApi``. The import happens here (it authenticates at import time)."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):  # the client prints a page of help when auth fails
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except ImportError as exc:
        raise KaggleError(f"the official Kaggle client is not installed ({exc}); pip install kaggle six", EXIT_HTTP_OTHER) from None
    except SystemExit:
        raise KaggleError(
            f"Kaggle did not accept the {credentials.describe()} (an access token may be expired). " + _where_kaggle_looks(),
            EXIT_UNAUTHENTICATED,
        ) from None
    except Exception as exc:  # noqa: BLE001 - network errors of the token check
        raise _translate(exc, COMPETITION, "checking the credentials") from None
    for line in captured.getvalue().splitlines():
        if line.startswith("Warning"):  # e.g. "your Kaggle API key is readable by other users"
            click.echo(line, err=True)
    return api


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
    from rfcx_kit.submission import read_expected_ids

    if data_dir is not None:
        return read_expected_ids(data_dir), f"the ids of {data_dir / 'sample_submission.csv'}"
    if competition == COMPETITION:
        return list(competition_test_ids()), f"the real {COMPETITION} test ids"
    return None, "format only (ids not checked: pass --data for another competition)"


def _find_submission(api: Any, competition: str, ref: int) -> Any | None:
    """The submission ``ref`` from the newest page of ListSubmissions, else from GetSubmission; None if absent."""
    import requests

    for sub in api.competition_submissions(competition) or []:
        if sub is not None and int(sub.ref) == int(ref):
            return sub
    from kagglesdk.competitions.types.competition_api_service import ApiGetSubmissionRequest

    request = ApiGetSubmissionRequest()
    request.ref = int(ref)
    try:
        with api.build_kaggle_client() as kaggle:
            return kaggle.competitions.competition_api_client.get_submission(request)
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return None
        raise


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
    echo: Callable[[str], None] = click.echo,
) -> SubmitResult:
    """Validate and submit ``path`` to ``competition`` (flow in the module docstring).

    Returns a :class:`SubmitResult`; raises :class:`KaggleError` (exit codes in the module docstring) or
    :class:`~rfcx_kit.errors.DataError` for an invalid file. ``dry_run`` stops after validation and prints what
    would be sent: no network, no log, no ``kaggle`` import.
    """
    from rfcx_kit.submission import validate_submission

    path, log_path = Path(path), Path(log_path)
    if not message.strip():
        raise DataError("the submission message (-m) is empty; say what this submission is")
    expected, source = _expected_ids(competition, Path(data_dir) if data_dir is not None else None)
    frame = validate_submission(path, expected, check_ids=expected is not None, ids_from=source)
    result = SubmitResult(path, path.stat().st_size, sha256_file(path), competition, message, dry_run=dry_run)
    echo(f"valid: {path} ({len(frame)} recordings; {source})")

    if dry_run:
        try:
            who = find_credentials().describe()
        except KaggleError as exc:
            who = f"none usable ({exc})"
        echo("dry run: would send (nothing was sent, nothing logged):")
        for key, value in (
            ("file", path), ("size", f"{result.size} bytes"), ("sha256", result.sha256),
            ("competition", competition), ("message", message), ("credentials", who),
        ):
            echo(f"  {key:12s}{value}")
        return result

    read_log(log_path)  # a log we could not append to must stop us before submitting, not after
    if not os.access(log_path.parent if log_path.parent.exists() else Path.cwd(), os.W_OK):
        raise DataError(f"{log_path.parent}: not writable, so the submission could not be logged; nothing was submitted")
    credentials = find_credentials()
    echo(f"credentials: {credentials.describe()}")
    api = _client(credentials)

    with _step(competition, "reading the submission limits", "nothing was submitted"):
        limits = api.competition_get_submission_limits(competition)
    result.remaining_before = int(limits.num_allowed_now or 0)
    if result.remaining_before <= 0:
        if limits.limited_by_total:
            why = f"the lifetime cap is reached ({limits.num_total} submissions)"
        elif not (limits.num_today or limits.num_total):
            why = f"none allowed and none made: this account may not have joined; accept the rules at {_rules_url(competition)}"
        else:
            why = f"{limits.num_today} made today; the count resets at 00:00 UTC"
        raise KaggleError(f"no submissions left for {competition} ({why}); nothing was submitted", EXIT_NO_SUBMISSIONS_LEFT)
    echo(f"submissions left today: {result.remaining_before}")

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
    result.ref = int(response.ref)

    with _step(competition, f"confirming submission {result.ref}",
               f"Kaggle answered ref {result.ref} but it could not be confirmed, so it is not logged; "
               f"check https://www.kaggle.com/c/{competition}/submissions before submitting again"):
        listed = _find_submission(api, competition, result.ref)
    if listed is None:
        raise KaggleError(
            f"Kaggle answered ref {result.ref} ({response.message}) but does not list it among your submissions; "
            f"not logged; check https://www.kaggle.com/c/{competition}/submissions before submitting again",
            EXIT_NOT_CONFIRMED,
        )
    row = {
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "file": path.as_posix(),
        "sha256": result.sha256,
        "message": message,
        "ref": str(result.ref),
    }

    def record(sub: Any) -> None:
        result.status = _status(sub)
        result.public_score = getattr(sub, "public_score", None) or None
        result.error_description = getattr(sub, "error_description", None) or None
        _log_upsert(log_path, {**row, "status": result.status, "score": result.public_score or ""})
        result.logged = True

    record(listed)
    echo(f"submitted: ref {result.ref}, status {result.status}; logged to {log_path}")

    if wait:
        deadline = time.monotonic() + timeout
        polls = 1 + math.ceil(timeout / max(poll_seconds, 0.01))  # bounded in count as well as in time
        for _ in range(polls):
            if result.status != "PENDING":
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(poll_seconds, left))
            try:
                with _step(competition, f"waiting for the score of {result.ref}", f"the submission is logged as {result.status}"):
                    sub = _find_submission(api, competition, result.ref)
            except KaggleError as exc:
                if exc.exit_code not in (EXIT_RATE_LIMITED, EXIT_SERVER_ERROR, EXIT_NETWORK):
                    raise
                click.echo(f"warning: {exc}; polling on", err=True)  # a passing hiccup must not end the wait
                continue
            if sub is not None:
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
        echo(f"scored: ref {result.ref} {result.status}, public score {result.public_score}")
    return result


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
    from tqdm import tqdm

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
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="extract", disable=not progress or not members,
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
    """``[(name, bytes), ...]`` of the competition's data files (ListDataFiles, all pages, bounded)."""
    api = _client(find_credentials())
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
    echo: Callable[[str], None] = click.echo,
) -> DownloadResult:
    """Download the competition's data into ``to`` in the reader's layout (see the module docstring).

    ``files`` downloads only those data files (e.g. the three CSVs, for use with precomputed spectrograms),
    each through ``DownloadDataFile``; the layout check is then skipped.
    """
    folder = Path(to)
    result = DownloadResult(folder)
    if not files and _marker_complete(folder, competition):
        result.already_complete = True
        echo(f"{folder}: already complete ({_MARKER}); nothing to download")
        return result
    staging = folder / _STAGING  # the client creates it when it writes
    credentials = find_credentials()
    echo(f"credentials: {credentials.describe()}")
    api = _client(credentials)
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


@click.command("submit")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-m", "--message", required=True, help="Submission description shown on Kaggle (and in the log).")
@click.option("--competition", default=COMPETITION, show_default=True, help="Competition slug (the URL's kaggle.com/c/<slug>).")
@click.option("--wait", is_flag=True, help="Poll until Kaggle has scored the submission, then print the public score.")
@click.option("--poll-seconds", type=click.FloatRange(min=0.01), default=30.0, show_default=True,
              help="Seconds between status checks with --wait.")
@click.option("--timeout", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="Give up waiting after this many seconds (exit code 13; the submission stays logged as PENDING).")
@click.option("--dry-run", is_flag=True, help="Validate and print what would be sent (file, size, sha256, competition, "
              "message); no network, no log.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Competition folder whose sample_submission.csv gives the expected ids. Default: the real "
              "competition's shipped test ids.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_LOG, show_default=True,
              help="CSV log of confirmed submissions (time,file,sha256,message,ref,status,score).")
@cli_errors
def submit_cmd(
    file: Path, message: str, competition: str, wait: bool, poll_seconds: float, timeout: float, dry_run: bool,
    data_dir: Path | None, log_path: Path,
) -> None:
    """Validate FILE and submit it to Kaggle through the official client; log it once Kaggle lists it.

    Exit codes: 2 invalid file, 3 no credentials, 4 401, 5 403 (rules not accepted), 6 404, 7 429, 8 5xx,
    9 upload failed, 10 no submissions left, 11 not confirmed, 12 scored ERROR, 13 --wait timed out,
    14 network, 15 other HTTP error.
    """
    submit(file, message, competition, wait=wait, poll_seconds=poll_seconds, timeout=timeout, data_dir=data_dir,
           dry_run=dry_run, log_path=log_path)


@click.command("download")
@click.option("--competition", default=COMPETITION, show_default=True, help="Competition slug (the URL's kaggle.com/c/<slug>).")
@click.option("--to", "to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to fill with train_tp.csv, train_fp.csv, sample_submission.csv, train/, test/ (required "
              "unless --list).")
@click.option("--file", "files", multiple=True,
              help="Download only this data file (repeatable), e.g. the three CSVs to use with precomputed spectrograms.")
@click.option("--keep-zip", is_flag=True, help=f"Keep the downloaded archive in TO/{_STAGING}/ after extraction.")
@click.option("--list", "list_only", is_flag=True, help="List the competition's data files and sizes; download nothing.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@cli_errors
def download_cmd(
    competition: str, to: Path | None, files: tuple[str, ...], keep_zip: bool, list_only: bool, no_progress: bool
) -> None:
    """Download and unpack the competition data through the official Kaggle client, resumably.

    Run it again after an interruption: the client resumes the archive, and files already extracted are kept.
    """
    if list_only:
        listed = list_data_files(competition)
        for name, size in listed:
            click.echo(f"{size:>14,d}  {name}")
        click.echo(f"{len(listed)} file(s), {sum(s for _, s in listed):,d} bytes")
        return
    if to is None:
        raise click.UsageError("--to DIR is required (the folder to fill)")
    download(competition, to, files=files, keep_zip=keep_zip, progress=not no_progress)
