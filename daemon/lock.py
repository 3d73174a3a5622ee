"""One writer per state dir: an exclusive OS file lock held for the life of ``once`` / ``run``.

Two daemons on one ledger would each plan from a ledger the other is changing: the deterministic
UIDs and the (occurrence, kind) keys keep most duplicates out, but races with the calendar and the
outbox turn into wrong errors, and nothing says the admin started two. The lock is ``flock`` on
``<state_dir>/cadence.lock``: the kernel drops it when the process ends, however it ends, so a
SIGKILL or a power cut never leaves a stale lock behind. The file holds the holder's pid, read
by the one that is turned away so it can say who has it. Readers (``plan``, ``validate``) take
no lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from daemon.errors import CadenceError, Locked

FILENAME = "cadence.lock"


def holder(state_dir: Path) -> int | None:
    """The pid written by the last process that held the lock, when it can be read."""
    try:
        first = (Path(state_dir) / FILENAME).read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


@contextmanager
def state_lock(
    state_dir: Path, *, wait: bool = False, waiting: Callable[[int | None], None] | None = None
) -> Iterator[None]:
    """Hold the state dir's lock for the ``with`` block.

    Raises ``Locked`` when another process holds it, or, with ``wait``, blocks until it is
    free, calling ``waiting(pid)`` once first so the caller can say what it is waiting for.
    """
    state_dir = Path(state_dir)
    path = state_dir / FILENAME
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise CadenceError(f"cannot open the lock {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = holder(state_dir)
            if not wait:
                who = f"pid {pid}" if pid is not None else "another process"
                raise Locked(
                    f"{state_dir} is in use by another cadence ({who}); one writer per state"
                    " dir: stop it first, or use `cadence run --wait-for-lock`"
                ) from None
            if waiting is not None:
                waiting(pid)
            fcntl.flock(fd, fcntl.LOCK_EX)
        # Written in place and then cut to length, so a reader never sees an empty file; the
        # newline ends the pid even before the cut.
        text = f"{os.getpid()}\n".encode()
        os.pwrite(fd, text, 0)
        os.ftruncate(fd, len(text))
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock
