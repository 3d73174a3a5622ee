"""Deliver emails into a local Maildir: the default outbox, readable by any mail client.

Standard Maildir delivery: write the message to ``tmp/``, flush it to disk, then link it into
``new/``, so a reader never sees half a message. The file name carries a hash of the Message-ID,
and a message whose hash is already in ``new/`` or ``cur/`` (where a mail client moves what it
has seen, adding ``:2,<flags>``) is not written again: a send retried after a crash leaves one
file.

Race-free against another writer on the same Maildir (a second process, a mail client creating
the folders): folders are made with ``exist_ok``, each writer's ``tmp/`` file carries its pid
and thread so no two writers share one, and the link into ``new/`` fails rather than replaces
when the same message got there first, which counts as delivered.
"""

from __future__ import annotations

import hashlib
import os
import threading
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

from daemon.checks import Check
from daemon.errors import MailUnavailable

_SUBDIRS = ("tmp", "new", "cur")


class MaildirMailer:
    """A ``Mailer`` writing to the Maildir at ``path`` (created, 0700, when missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` unless a message with its Message-ID is already there.

        Raises ``ValueError`` for a message without a Message-ID or a valid Date (a bug in the
        caller), ``MailUnavailable`` when the Maildir cannot be written.
        """
        key = message_key(message)
        name = f"{_date_seconds(message)}.{key}.cadence"
        data = message.as_bytes(policy=message.policy.clone(linesep="\n"))
        try:
            for sub in _SUBDIRS:
                (self.path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.contains(key):
                return
            self._deliver(name, data)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise MailUnavailable(f"cannot write to the Maildir {self.path}: {reason}") from None

    def diagnose(self) -> list[Check]:
        place = self.path
        while not place.exists() and place != place.parent:
            place = place.parent  # made on the first send: its nearest existing parent decides
        ok = place.is_dir() and os.access(place, os.W_OK | os.X_OK)
        detail = str(self.path) if ok else f"{place} is not writable by this user"
        return [Check("maildir writable", str(self.path), ok, detail)]

    def contains(self, key: str) -> bool:
        """Whether a message with this ``message_key`` sits in ``new/`` or ``cur/``."""
        marker = f".{key}."
        for sub in ("new", "cur"):
            with os.scandir(self.path / sub) as entries:
                if any(marker in entry.name.split(":", 1)[0] for entry in entries):
                    return True
        return False

    def _deliver(self, name: str, data: bytes) -> None:
        writer = f"{os.getpid()}_{threading.get_native_id()}"
        tmp, new = self.path / "tmp" / f"{name}.{writer}", self.path / "new" / name
        # O_TRUNC, not O_EXCL: a file of this name in tmp/ is this thread's leftover from a crash.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # in case a leftover had looser permissions
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, new)
        except FileExistsError:
            pass  # another writer delivered this very message first
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(self.path / "new", os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def message_key(message: EmailMessage) -> str:
    """32 hex characters naming the message by its Message-ID."""
    message_id = message["Message-ID"]
    if not message_id or not str(message_id).strip():
        raise ValueError("a message needs a Message-ID to be delivered exactly once")
    return hashlib.sha256(str(message_id).strip().encode()).hexdigest()[:32]


def _date_seconds(message: EmailMessage) -> int:
    date = message["Date"]
    try:
        when = parsedate_to_datetime(str(date)) if date else None
    except (TypeError, ValueError):
        when = None
    if when is None or when.tzinfo is None:
        raise ValueError(f"a message needs a Date with a time zone, not {date!r}")
    return int(when.timestamp())
