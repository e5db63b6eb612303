"""The command line's side of errors: an :class:`~rfcx_kit.core.errors.RfcxError` (or an unreadable path, or
Ctrl-C) becomes one ``Error:`` line with the error's exit code, never a traceback. click lives in the app layer
only."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from rfcx_kit.core.errors import RfcxError

F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(func: F) -> F:
    """Report :class:`RfcxError` as ``Error: <message>`` with the error's exit code (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RfcxError as exc:
            error = click.ClickException(str(exc))
            error.exit_code = exc.exit_code
            raise error from exc
        except OSError as exc:
            # A path the user named cannot be read or written (a file where a folder should be, no permission,
            # a full disk...): the path and the reason, not a traceback.
            where = exc.filename if exc.filename is not None else ""
            reason = exc.strerror or str(exc) or type(exc).__name__
            error = click.ClickException(f"{where}: {reason}" if where else reason)
            error.exit_code = 2
            raise error from exc
        except KeyboardInterrupt:
            # click would print a bare "Aborted!": say what happened and how to go on instead.
            error = click.ClickException("interrupted: finished work is kept; rerun the same command (with --resume "
                                         "for stage1) to continue")
            error.exit_code = 130
            raise error from None

    return wrapper  # type: ignore[return-value]
