"""The run directory lock: one writer per run directory (``run_dir/.lmforge.lock`` holding ``{"pid", "host"}``,
created with ``O_EXCL``; a dead holder's lock is taken over). Used by the training job around every run."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

__all__ = ["LOCK_FILE", "RunLockedError", "acquire_run_lock", "release_run_lock"]

LOCK_FILE = ".lmforge.lock"


class RunLockedError(ValueError):
    """Another live process writes this run directory."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def acquire_run_lock(run_dir: str | Path) -> Path:
    """Make this process the only writer of ``run_dir``: ``run_dir/.lmforge.lock`` holds ``{"pid", "host"}``.

    Created with ``O_EXCL``; an existing lock of a live process on this host is a ``RunLockedError`` naming its pid,
    one of a dead process (killed, SIGKILL leaves its lock behind) is taken over. Holding it already is fine.
    A lock written on another host cannot be checked and counts as held (delete it by hand if that host is gone).
    """
    path = Path(run_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(3):  # a stale lock removed by two processes at once: one of them retries and finds the other's
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text(encoding="utf-8"))
                pid, host = int(holder["pid"]), str(holder["host"])
            except (OSError, ValueError, KeyError, TypeError):
                pid, host = None, mine["host"]  # unreadable (torn write): stale
            if pid == mine["pid"] and host == mine["host"]:
                return path
            if pid is not None and (host != mine["host"] or _pid_alive(pid)):
                where = "" if host == mine["host"] else f" on {host}"
                raise RunLockedError(
                    f"{run_dir} is in use by process {pid}{where} (lock file {path}); wait for it to finish, stop it, "
                    "or pass another --output_dir"
                ) from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(mine) + "\n")
        return path
    raise RunLockedError(f"{run_dir}: could not take the lock {path}; another process is starting there")


def release_run_lock(run_dir: str | Path) -> None:
    """Remove ``run_dir``'s lock if this process holds it."""
    path = Path(run_dir) / LOCK_FILE
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(holder, dict) and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)
