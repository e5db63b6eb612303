"""One writer per folder: a lock file that names its holder.

``with folder_lock(run_dir, "stage1"):`` creates ``run_dir/.rfcx-kit.lock`` atomically (``O_CREAT | O_EXCL``)
holding ``{"pid", "host", "command", "since"}``. A second writer is refused with a line naming the holder. A
lock left by a process that no longer runs on this host (a SIGKILL, a crash) is taken over with a warning; a
lock held from another host is never taken over, since its process cannot be checked from here.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rfcx_kit.core.errors import StateError

log = logging.getLogger(__name__)

LOCK_NAME = ".rfcx-kit.lock"
# Kept over filelock (4.3.1): its SoftFileLock also refuses at once (timeout=0), takes over a SIGKILLed holder's
# lock and names a holder on another host, but a same-host holder is refused with "could not be acquired" alone
# (no pid, host or command; FileLock records nothing, waits by default and leaves its file). Measured in
# benchmarks/handwritten.py.


class LockedError(StateError):
    """Another process is writing the folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def read_lock(folder: str | Path) -> dict | None:
    path = Path(folder) / LOCK_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        return {}  # unreadable: a lock written half-way (a kill between create and write)


def _holder_text(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
            f"({holder.get('command', '?')}, since {holder.get('since', '?')})")


@contextmanager
def folder_lock(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold ``folder``'s lock for the block (the folder is created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
          "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for _ in range(20):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
            holder = read_lock(folder)
            if holder is None:
                continue  # released between our open and read: try again
            if holder == {} and time.time() - _mtime(path) < 2.0:
                time.sleep(0.1)  # being written by its holder right now
                continue
            same_host = holder.get("host") == me["host"]
            pid = holder.get("pid")
            if holder == {} or (same_host and isinstance(pid, int) and not _alive(pid)):
                log.warning("%s: taking over a stale lock of %s", folder, _holder_text(holder) if holder else "an "
                            "unreadable holder")
                path.unlink(missing_ok=True)
                continue
            raise LockedError(f"{folder} is in use by {_holder_text(holder)}; wait for it to finish, or if that "
                              f"process is gone on another host, delete {path}") from None
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    else:
        raise LockedError(f"{folder}: could not take the lock {path}")
    try:
        yield path
    finally:
        if (read_lock(folder) or {}).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
