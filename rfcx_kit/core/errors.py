"""Error types that reach the user as one clear line (``app/errors.cli_errors`` turns them into exit codes)."""

from __future__ import annotations


class RfcxError(Exception):
    """Base of every error rfcx-kit reports to a user (message is the whole story)."""

    exit_code = 1


class DataError(RfcxError, ValueError):
    """A data file or folder is malformed: the message names the file, row and field."""

    exit_code = 2


class ConfigError(RfcxError, ValueError):
    """A recipe or override names an unknown key or holds a bad value."""

    exit_code = 2


class StateError(RfcxError):
    """The run or cache folder's state refuses the request: resuming with other inputs, another writer."""

    exit_code = 2
