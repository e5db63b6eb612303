"""``rfcx-kit submit`` / ``download`` driving the REAL ``kaggle`` package against a stand-in server.

Nothing of ``kaggle`` is mocked. Each command runs in a subprocess whose environment points the unmodified
client at the stand-in on 127.0.0.1 (``KAGGLE_API_ENVIRONMENT=LOCALHOST`` + ``HTTP_PROXY``; kaggle reads these
when first imported, hence the subprocess), with a fake ``kaggle.json`` in a temporary ``KAGGLE_CONFIG_DIR``
and a temporary ``HOME``. Two guards keep every byte on this machine: all proxy variables name the stand-in
(so even an ``https://`` call would arrive there as a recorded CONNECT), and a ``sitecustomize`` in the
subprocess refuses and records any socket connection to an address other than loopback.

One test alone patches the subprocess further (``_PRETEND_KAGGLE_COM``): the client's endpoint answers as in
production while its calls still reach the stand-in, and ``time.sleep`` only records, to show that polling a
non-loopback endpoint is never faster than the client's minimum.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rfcx_kit.submit.standin import StandIn

from rfcx_kit.core.species import SPECIES_COLUMNS, competition_test_ids
from rfcx_kit.data.submission import write_submission

from conftest import SHARED  # noqa: E402 - conftest is the one place that knows where ../shared is
COMPETITION = "rfcx-species-audio-detection"

_GUARD = '''
import os, socket
_LOG = os.environ["RFCX_TEST_NET_GUARD"]
open(_LOG, "a").write("armed\\n")
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
        with open(_LOG, "a") as log:
            log.write(f"blocked {address[0]}\\n")
        raise ConnectionRefusedError(f"test network guard: {address[0]} is not loopback")
def _guarded(self, address):
    _check(self, address)
    return _connect(self, address)
def _guarded_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)
socket.socket.connect, socket.socket.connect_ex = _guarded, _guarded_ex
'''


@pytest.fixture
def server():
    with StandIn() as standin:
        yield standin


@pytest.fixture
def submission_file(tmp_path: Path) -> Path:
    """A valid submission for the real competition's 1992 test ids (random probabilities)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.random((len(competition_test_ids()), 24)), columns=SPECIES_COLUMNS)
    frame.insert(0, "recording_id", competition_test_ids())
    return write_submission(frame, tmp_path / "work" / "submissions" / "run1.csv")


class Cli:
    """Runs ``rfcx-kit`` in a subprocess with the environment of the stand-in; remembers all output."""

    def __init__(self, tmp_path: Path, server: StandIn) -> None:
        self.server = server
        self.cwd = tmp_path / "work"
        self.cwd.mkdir(exist_ok=True)
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.config = tmp_path / "kaggle-config"
        self.config.mkdir()
        self.write_kaggle_json(server.username, server.key)
        self.guard_dir = guard_dir = tmp_path / "guard"
        guard_dir.mkdir()
        (guard_dir / "sitecustomize.py").write_text(_GUARD)
        self.guard_log = tmp_path / "guard.log"
        keep = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_") and "proxy" not in k.lower()}
        self.env = {
            **keep,
            **server.client_env(),
            "HOME": str(self.home),
            "KAGGLE_CONFIG_DIR": str(self.config),
            "PYTHONPATH": os.pathsep.join([str(guard_dir), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "RFCX_TEST_NET_GUARD": str(self.guard_log),
        }
        self.outputs: list[str] = []

    def write_kaggle_json(self, username: str, key: str) -> None:
        path = self.config / "kaggle.json"
        path.write_text(json.dumps({"username": username, "key": key}))
        path.chmod(0o600)  # the client warns about a key readable by others

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-c", "from rfcx_kit.app.cli import main; main()", *args],
            cwd=self.cwd, env={**self.env, **env}, capture_output=True, text=True, timeout=60,
        )
        self.outputs.append(proc.stdout + proc.stderr)
        return proc

    @property
    def log(self) -> Path:
        return self.cwd / "submissions" / "log.csv"

    def log_rows(self) -> list[dict[str, str]]:
        if not self.log.exists():
            return []
        with open(self.log, newline="") as handle:
            return list(csv.DictReader(handle))

    def check_stayed_local(self) -> None:
        """No request aimed anywhere but 127.0.0.1/localhost; no secret printed; the guard was armed."""
        assert self.server.foreign_requests() == []
        guard = self.guard_log.read_text().splitlines() if self.guard_log.exists() else []
        assert "armed" in guard, "the network guard did not load in the subprocess"
        assert [g for g in guard if g != "armed"] == []
        for output in self.outputs:
            assert self.server.key not in output, "the Kaggle key was printed"


@pytest.fixture
def cli(tmp_path: Path, server: StandIn) -> Cli:
    return Cli(tmp_path, server)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_the_network_guard_blocks_anything_but_loopback(cli: Cli):
    probe = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('192.0.2.1', 443), timeout=1)\n"
        "except ConnectionRefusedError as exc:\n"
        "    print('refused:', exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], env=cli.env, capture_output=True, text=True, timeout=30)
    assert "refused: test network guard: 192.0.2.1 is not loopback" in proc.stdout
    assert cli.guard_log.read_text().splitlines() == ["armed", "blocked 192.0.2.1"]


# ------------------------------------------------------------------------------------------------------
# Submit: the happy path


def test_submit_wait_sends_the_exact_bytes_and_logs_ref_and_score(cli: Cli, server: StandIn, submission_file: Path):
    server.reads_until_scored = 2
    # The first status poll (the client's get_submission) hits a 503: a passing hiccup, polling goes on.
    server.fail("GetSubmission", 503, "Service Unavailable", times=1)
    proc = cli("submit", "submissions/run1.csv", "-m", "stage1 mean of 5 folds", "--wait", "--poll-seconds", "0.2")
    assert proc.returncode == 0, proc.stderr
    assert "warning: Kaggle server error 503" in proc.stderr and "polling on" in proc.stderr
    assert "credentials: api key (user tester)" in proc.stdout  # as the client's authenticate() found them
    assert "under the kaggle client's minimum" not in proc.stderr  # a loopback endpoint keeps --poll-seconds

    assert list(server.uploads.values()) == [submission_file.read_bytes()]
    ref = server.submissions[0].ref
    assert server.submissions[0].description == "stage1 mean of 5 folds"
    assert server.submissions[0].file_name == "run1.csv"
    assert f"ref {ref}" in proc.stdout and "public score 0.87654" in proc.stdout
    # The flow, in order: limits before anything is sent; the ref is confirmed by listing it; then polled.
    # Polls: the 503, one read still PENDING (2 reads in all), then COMPLETE.
    rpcs = server.rpcs()
    assert rpcs == ["GetSubmissionLimits", "StartSubmissionUpload", "CreateSubmission", "ListSubmissions",
                    "GetSubmission", "GetSubmission", "GetSubmission"]
    # Each status read comes at least --poll-seconds after the one before (the confirming list included).
    reads = [r.at for r in server.requests if r.rpc in ("ListSubmissions", "GetSubmission")]
    assert min(b - a for a, b in zip(reads, reads[1:])) >= 0.2

    rows = cli.log_rows()
    assert rows == [{
        "time": rows[0]["time"], "file": "submissions/run1.csv",
        "sha256": hashlib.sha256(submission_file.read_bytes()).hexdigest(),
        "message": "stage1 mean of 5 folds", "ref": str(ref), "status": "COMPLETE", "score": "0.87654",
    }]
    cli.check_stayed_local()


def test_second_submission_appends_to_the_log_and_a_bearer_token_works(cli: Cli, server: StandIn, submission_file: Path):
    assert cli("submit", "submissions/run1.csv", "-m", "first").returncode == 0
    # Now authenticate with an access token instead (kaggle.json removed): the client introspects it first.
    (cli.config / "kaggle.json").unlink()
    server.token = "tok-123"
    proc = cli("submit", "submissions/run1.csv", "-m", "second", KAGGLE_API_TOKEN="tok-123")
    assert proc.returncode == 0, proc.stderr
    assert [r["message"] for r in cli.log_rows()] == ["first", "second"]
    assert [r["status"] for r in cli.log_rows()] == ["PENDING", "PENDING"]  # no --wait: logged as listed
    assert {r.auth for r in server.requests if r.rpc == "CreateSubmission"} == {"basic:tester", "bearer"}
    assert "tok-123" not in "".join(cli.outputs)
    cli.check_stayed_local()


def test_dry_run_prints_what_would_be_sent_and_touches_nothing(cli: Cli, server: StandIn, submission_file: Path):
    # With an access token set, merely importing kaggle would call IntrospectToken: none may arrive.
    server.token = "tok-123"
    proc = cli("submit", "submissions/run1.csv", "-m", "try", "--dry-run", KAGGLE_API_TOKEN="tok-123")
    assert proc.returncode == 0, proc.stderr
    for text in (
        "submissions/run1.csv", str(submission_file.stat().st_size), hashlib.sha256(submission_file.read_bytes()).hexdigest(),
        COMPETITION, "try",
    ):
        assert text in proc.stdout
    assert server.requests == []
    assert not cli.log.exists()
    cli.check_stayed_local()


def test_invalid_file_is_refused_before_any_request(cli: Cli, server: StandIn, submission_file: Path):
    lines = submission_file.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",nan"
    submission_file.write_text("\n".join(lines) + "\n")
    proc = cli("submit", "submissions/run1.csv", "-m", "bad")
    assert proc.returncode == 2
    assert "row 5 (line 6" in _one_error_line(proc) and "column s23" in proc.stderr
    assert server.requests == [] and not cli.log.exists()


# ------------------------------------------------------------------------------------------------------
# Submit: every error is one line with its own exit code, and nothing is logged


def _no_credentials(cli: Cli, server: StandIn) -> dict[str, str]:
    (cli.config / "kaggle.json").unlink()
    return {}


def _bad_token(cli: Cli, server: StandIn) -> dict[str, str]:
    (cli.config / "kaggle.json").unlink()
    server.token = "tok-123"
    return {"KAGGLE_API_TOKEN": "tok-expired"}  # the client introspects it, Kaggle says inactive


def _bad_key(cli: Cli, server: StandIn) -> dict[str, str]:
    cli.write_kaggle_json(server.username, "wrong-key")
    return {}


def _rules(cli: Cli, server: StandIn) -> dict[str, str]:
    server.fail("GetSubmissionLimits", 403, "Permission 'competitions.participate' was denied")
    return {}


def _rate(cli: Cli, server: StandIn) -> dict[str, str]:
    server.fail("StartSubmissionUpload", 429, "Too many requests", retry_after="120")
    return {}


def _server_error(cli: Cli, server: StandIn) -> dict[str, str]:
    server.fail("CreateSubmission", 500, "Internal error")
    return {}


def _failed_put(cli: Cli, server: StandIn) -> dict[str, str]:
    server.put_status = 400
    return {}


def _none_left(cli: Cli, server: StandIn) -> dict[str, str]:
    server.submitted_before = server.daily_limit
    return {}


def _not_listed(cli: Cli, server: StandIn) -> dict[str, str]:
    server.hide_new_submissions = True
    return {}


ERRORS = [
    # (setup, extra args, exit code, words the one error line must hold, RPCs that must NOT have been called)
    (_no_credentials, [], 3, ["no Kaggle credentials", "KAGGLE_API_TOKEN", "kaggle.json", "KAGGLE_USERNAME"], ["*"]),
    (_bad_token, [], 4, ["did not accept the access token from KAGGLE_API_TOKEN"], ["GetSubmissionLimits"]),
    (_bad_key, [], 4, ["401", "rejected the credentials"], ["StartSubmissionUpload"]),
    (_rules, [], 5, ["403", "rules", f"https://www.kaggle.com/c/{COMPETITION}/rules"], ["StartSubmissionUpload"]),
    (lambda c, s: {}, ["--competition", "no-such-competition"], 6, ["404", "no-such-competition"], ["StartSubmissionUpload"]),
    (_rate, [], 7, ["429", "retry after 120 s", "nothing was submitted"], ["CreateSubmission"]),
    (_server_error, [], 8, ["server error 500", "may or may not have recorded it"], []),
    (_failed_put, [], 9, ["upload", "failed", "Could not submit to competition", "ref 0"], ["CreateSubmission"]),
    (_none_left, [], 10, ["no submissions left", "resets at 00:00 UTC"], ["StartSubmissionUpload"]),
    (_not_listed, [], 11, ["does not list it", "not logged"], []),
]


@pytest.mark.parametrize("setup, args, code, words, not_called", ERRORS, ids=[
    "no-credentials", "bad-token", "401", "403-rules", "404", "429", "5xx", "failed-upload", "no-submissions-left",
    "not-confirmed"])
def test_submit_errors(cli: Cli, server: StandIn, submission_file: Path, setup, args, code, words, not_called):
    env = setup(cli, server)
    proc = cli("submit", "submissions/run1.csv", "-m", "x", *args, **env)
    assert proc.returncode == code, proc.stdout + proc.stderr
    line = _one_error_line(proc)
    for word in words:
        assert word in line, line
    assert "Traceback" not in proc.stderr
    if not_called == ["*"]:
        assert server.requests == []
    for rpc in not_called:
        assert rpc not in server.rpcs()
    assert not cli.log.exists(), "nothing may be logged unless Kaggle confirmed the submission"
    for secret in env.values():
        assert secret not in "".join(cli.outputs), "a credential was printed"
    cli.check_stayed_local()


def test_scoring_error_and_wait_timeout_are_logged_with_their_status(cli: Cli, server: StandIn, submission_file: Path):
    server.final_status, server.error_description = "ERROR", "Submission must have 1992 rows"
    proc = cli("submit", "submissions/run1.csv", "-m", "a", "--wait", "--poll-seconds", "0.05")
    assert proc.returncode == 12
    assert "Submission must have 1992 rows" in _one_error_line(proc)

    server.final_status, server.reads_until_scored = "COMPLETE", 10_000
    proc = cli("submit", "submissions/run1.csv", "-m", "b", "--wait", "--poll-seconds", "0.05", "--timeout", "0.3")
    assert proc.returncode == 13
    assert "still PENDING" in _one_error_line(proc)
    assert [(r["message"], r["status"]) for r in cli.log_rows()] == [("a", "ERROR"), ("b", "PENDING")]
    cli.check_stayed_local()


# ------------------------------------------------------------------------------------------------------
# Download


def _data_files() -> dict[str, bytes]:
    """A tiny competition in Kaggle's layout, plus an archive member outside it."""
    tp = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max\nr1,3,1,1.0,1000,2.0,2000\n"
    fp = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max\nr2,5,1,1.0,1000,2.0,2000\n"
    sample = "recording_id," + ",".join(SPECIES_COLUMNS) + "\n" + "t1," + ",".join(["0.5"] * 24) + "\n"
    return {
        "train_tp.csv": tp.encode(), "train_fp.csv": fp.encode(), "sample_submission.csv": sample.encode(),
        # r2 is 1.5 MB: larger than the client's 1 MiB download chunk, so a cut archive leaves a partial file.
        "train/r1.flac": b"fLaC-r1" * 100, "train/r2.flac": bytes(range(256)) * 6144, "test/t1.flac": b"fLaC-t1" * 90,
        "tfrecords/train/00-1.tfrec": b"x" * 50,
    }


def test_download_unpacks_the_layout_and_resumes(cli: Cli, server: StandIn, tmp_path: Path):
    server.data_files = _data_files()
    out = tmp_path / "work" / "data"
    # An earlier, interrupted run left one finished file (kept: same size) and one wrong-sized file (replaced).
    (out / "train").mkdir(parents=True)
    (out / "train" / "r1.flac").write_bytes(b"K" * len(server.data_files["train/r1.flac"]))
    (out / "test").mkdir()
    (out / "test" / "t1.flac").write_bytes(b"partial")

    # The connection drops 1.3 MB into the archive: the client resumes it with a Range request.
    cut = 1_300_000
    server.cut_blob_after = cut

    proc = cli("download", "--to", "data")
    assert proc.returncode == 0, proc.stderr
    assert server.rpcs() == ["DownloadDataFiles"]
    ranges = [r.range for r in server.requests if r.method == "GET"]
    assert len(ranges) == 2 and ranges[0] is None
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= cut
    for name, data in server.data_files.items():
        if name.startswith("tfrecords/"):
            assert not (out / name).exists()
        elif name == "train/r1.flac":
            assert (out / name).read_bytes() == b"K" * len(data)  # kept, not rewritten
        else:
            assert (out / name).read_bytes() == data
    assert "5 file(s) written, 1 already present, 1 archive member(s) outside the layout" in proc.stdout
    assert not (out / ".download").exists(), "the archive is removed after extraction"
    assert not list(out.rglob("*.tmp*")), "no temporary file may be left behind"
    from rfcx_kit.data.layouts import read_competition

    competition = read_competition(out)  # the layout the reader accepts
    assert competition.train_ids == ["r1", "r2"] and competition.test_ids == ["t1"]

    # Run again: the marker says complete, so nothing is fetched.
    proc = cli("download", "--to", "data")
    assert proc.returncode == 0 and "already complete" in proc.stdout
    assert server.rpcs() == ["DownloadDataFiles"] and server.blob_gets == 2
    cli.check_stayed_local()


def test_download_single_files_list_and_errors(cli: Cli, server: StandIn, tmp_path: Path):
    server.data_files = _data_files()
    proc = cli("download", "--to", "csvs", "--file", "train_tp.csv", "--file", "sample_submission.csv")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "work" / "csvs" / "train_tp.csv").read_bytes() == server.data_files["train_tp.csv"]
    assert (tmp_path / "work" / "csvs" / "sample_submission.csv").read_bytes() == server.data_files["sample_submission.csv"]
    assert server.rpcs() == ["DownloadDataFile", "DownloadDataFile"]

    proc = cli("download", "--list")
    assert proc.returncode == 0 and "train/r1.flac" in proc.stdout and "7 file(s)" in proc.stdout

    server.fail("DownloadDataFiles", 403, "Permission 'competitions.participate' was denied")
    proc = cli("download", "--to", "data")
    assert proc.returncode == 5 and f"https://www.kaggle.com/c/{COMPETITION}/rules" in _one_error_line(proc)
    assert not (tmp_path / "work" / "data").exists()  # nothing was written
    cli.check_stayed_local()


# ------------------------------------------------------------------------------------------------------
# Real data (skipped when ../shared is absent)


@pytest.mark.skipif(not (SHARED / "data" / "rfcx").is_dir(), reason=f"{SHARED}/data/rfcx not present (real RFCX files)")
def test_dry_run_of_a_real_external_submission(cli: Cli, server: StandIn):
    real = SHARED / "data" / "rfcx" / "external" / "kuto5046_0206_232645_effb2sed_stage3_submission.csv"
    proc = cli("submit", str(real), "-m", "kuto effb2 stage3", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "3ae101c58fc18a4de30a0d361c63c2fe23426549dd0403395d949cb1c4cff8de" in proc.stdout  # SOURCES.md sha256
    assert server.requests == []


# ------------------------------------------------------------------------------------------------------
# Credentials (the client's own search), the poll interval, the log, the lazy import


def test_importing_the_module_does_not_import_kaggle():
    code = "import sys, rfcx_kit.submit.kaggle_client; print('kaggle' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip() == "False", proc.stderr


def test_the_client_finds_the_credentials_in_its_own_order(cli: Cli, server: StandIn, submission_file: Path):
    """rfcx-kit no longer looks for credentials itself: whatever the client's authenticate() finds is used."""
    # A kaggle.json the client cannot use (no key; not JSON) is the one clear exit-3 line; nothing is sent.
    for text in ('{"username": "tester"}', "{not json"):
        (cli.config / "kaggle.json").write_text(text)
        proc = cli("submit", "submissions/run1.csv", "-m", "x")
        assert proc.returncode == 3, proc.stdout + proc.stderr
        line = _one_error_line(proc)
        assert "no Kaggle credentials found" in line and f"{cli.config / 'kaggle.json'} exists but the client could not use it" in line
        assert server.requests == []
    # KAGGLE_USERNAME / KAGGLE_KEY override a kaggle.json with a wrong key (the client's order, not ours).
    cli.write_kaggle_json(server.username, "wrong-key")
    proc = cli("submit", "submissions/run1.csv", "-m", "env", KAGGLE_USERNAME=server.username, KAGGLE_KEY=server.key)
    assert proc.returncode == 0, proc.stderr
    assert "credentials: api key (user tester)" in proc.stdout
    # An access token comes before kaggle.json (still the wrong key): it is used, as Bearer.
    server.token = "tok-123"
    proc = cli("submit", "submissions/run1.csv", "-m", "token", KAGGLE_API_TOKEN="tok-123")
    assert proc.returncode == 0, proc.stderr
    assert "credentials: access token (user tester)" in proc.stdout
    assert [r.auth for r in server.requests if r.rpc == "CreateSubmission"] == ["basic:tester", "bearer"]
    assert [r["message"] for r in cli.log_rows()] == ["env", "token"]
    for secret in ("wrong-key", "tok-123"):
        assert secret not in "".join(cli.outputs)
    cli.check_stayed_local()


def test_the_poll_interval_is_the_clients_minimum_unless_the_endpoint_is_loopback(cli: Cli, server: StandIn):
    """Against the real client's production endpoint (https://www.kaggle.com) --poll-seconds 0.05 becomes 5 s;
    with KAGGLE_API_ENVIRONMENT=LOCALHOST (the stand-in) it stays. No request is made either way."""
    probe = (
        "from kaggle.api.kaggle_api_extended import KaggleApi\n"
        "from rfcx_kit.submit.kaggle_client import _poll_interval\n"
        "api = KaggleApi()\n"
        "print(api.build_kaggle_client().http_client().get_non_api_endpoint(), KaggleApi._MIN_POLL_INTERVAL,\n"
        "      _poll_interval(api, 0.05), _poll_interval(api, 30.0))\n"
    )
    production = {k: v for k, v in cli.env.items() if k != "KAGGLE_API_ENVIRONMENT"}
    proc = subprocess.run([sys.executable, "-c", probe], env=production, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["https://www.kaggle.com", "5", "5.0", "30.0"], proc.stderr
    assert "warning: --poll-seconds 0.05 is under the kaggle client's minimum of 5 s" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", probe], env=cli.env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["http://localhost", "5", "0.05", "30.0"], proc.stderr
    assert "warning" not in proc.stderr
    assert server.requests == []
    cli.check_stayed_local()


_PRETEND_KAGGLE_COM = '''
# The client's endpoint answers as in production while its calls still reach the stand-in; sleeps are recorded.
import time
from kagglesdk.kaggle_http_client import KaggleHttpClient
KaggleHttpClient.get_non_api_endpoint = lambda self: "https://www.kaggle.com"
def _sleep(seconds):
    with open(os.environ["RFCX_TEST_SLEEPS"], "a") as log:
        log.write(f"{seconds}\\n")
time.sleep = _sleep
'''


def test_wait_polls_no_faster_than_the_client_allows_unless_loopback(cli: Cli, server: StandIn, submission_file: Path):
    with open(cli.guard_dir / "sitecustomize.py", "a") as handle:
        handle.write(_PRETEND_KAGGLE_COM)
    sleeps = cli.guard_dir.parent / "sleeps.log"
    server.reads_until_scored = 2
    proc = cli("submit", "submissions/run1.csv", "-m", "slow", "--wait", "--poll-seconds", "0.05",
               RFCX_TEST_SLEEPS=str(sleeps))
    assert proc.returncode == 0, proc.stderr
    assert "warning: --poll-seconds 0.05 is under the kaggle client's minimum of 5 s" in proc.stderr
    # Confirming list (read 1, PENDING), then two polls 5 s apart (read 2 PENDING, read 3 COMPLETE).
    assert sleeps.read_text().split() == ["5.0", "5.0"]
    assert server.rpcs()[3:] == ["ListSubmissions", "GetSubmission", "GetSubmission"]
    assert [(r["message"], r["status"]) for r in cli.log_rows()] == [("slow", "COMPLETE")]
    cli.check_stayed_local()


def test_log_appends_updates_and_survives_concurrent_writers(tmp_path: Path):
    import threading

    from rfcx_kit.core.errors import DataError
    from rfcx_kit.submit.kaggle_client import LOG_COLUMNS, _log_upsert, read_log

    log = tmp_path / "submissions" / "log.csv"
    row = dict.fromkeys(LOG_COLUMNS, "")

    def writer(k: int) -> None:
        for i in range(10):
            _log_upsert(log, {**row, "ref": f"{k}-{i}", "status": "PENDING"})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["ref"] for r in read_log(log)) == sorted(f"{k}-{i}" for k in range(4) for i in range(10))
    _log_upsert(log, {**row, "ref": "2-3", "status": "COMPLETE", "score": "0.9"})
    rows = read_log(log)
    assert len(rows) == 40 and [r for r in rows if r["ref"] == "2-3"][0]["score"] == "0.9"
    assert sorted(p.name for p in log.parent.iterdir()) == ["log.csv"]  # no temp or lock file left

    log.write_text("when,what\n1,2\n")
    with pytest.raises(DataError, match="header must be time,file,sha256,message,ref,status,score"):
        _log_upsert(log, {**row, "ref": "9"})
    assert log.read_text() == "when,what\n1,2\n"  # a foreign file is never overwritten
