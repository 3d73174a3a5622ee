"""A roster that lives: `cadence run` picks up edits to its config and CSV roster between passes.

Admins keep editing the roster (HR adds new hires, moves people), and in Kubernetes a ConfigMap
update never restarts the pod. Before each pass (and at once on SIGHUP) the daemon hashes the
files its config was read from; when the content changed it validates the new version and
switches to it. An invalid edit never stops the daemon or touches a calendar: the last good
roster stays in force and the problems are reported until the files are fixed.

A file that is briefly missing (an editor that moves the old file away before writing the new
one) is not a problem the first time it is seen; missing on the next check too, it is.

Only the roster part (organisation, managers, reps, policy) switches live. The other settings
(calendar, mail, state directory, interval) belong to connections and files the running daemon
holds open; a change to them is reported and takes effect on restart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from daemon.config import Config, load
from daemon.errors import ConfigError


class Outcome(StrEnum):
    UNCHANGED = "unchanged"
    SWITCHED = "switched"  # a valid edit: ``config`` is the new one
    INVALID = "invalid"  # an invalid edit (or a file gone): ``problems`` says why
    FIXED = "fixed"  # the files are back to the last good content after an invalid edit


@dataclass(frozen=True)
class Check:
    outcome: Outcome
    config: Config
    problems: tuple[str, ...] = ()
    restart_needed: tuple[str, ...] = ()  # settings that changed but only apply on restart


def fingerprint(paths: Sequence[Path]) -> str | None:
    """One hash of the files' names and contents; None when one of them cannot be read."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            return None
        digest.update(str(path).encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


class RosterWatch:
    """Holds the last good config and decides, at each check, whether to switch."""

    def __init__(self, config: Config, loader: Callable[[Path], Config] = load) -> None:
        self.good = config
        self._loader = loader
        self._good_print = fingerprint(config.sources or (config.path,))
        self._bad_print: str | None = None  # the content of the invalid edit last reported
        self.problems: tuple[str, ...] = ()
        self._missing_once = False

    def check(self) -> Check:
        current = fingerprint(self.good.sources or (self.good.path,))
        if current is None and not self._missing_once and not self.problems:
            self._missing_once = True  # perhaps mid-rename: look again next time
            return Check(Outcome.UNCHANGED, self.good)
        self._missing_once = False
        if current == self._good_print:
            if self.problems:
                self.problems, self._bad_print = (), None
                return Check(Outcome.FIXED, self.good)
            return Check(Outcome.UNCHANGED, self.good)
        if current is not None and current == self._bad_print:
            return Check(Outcome.INVALID, self.good, self.problems)
        try:
            new = self._loader(self.good.path)
        except ConfigError as exc:
            self.problems, self._bad_print = tuple(exc.problems), current
            return Check(Outcome.INVALID, self.good, self.problems)
        # The roster part switches; the running settings stay until a restart.
        restart = tuple(
            name
            for name in type(new.settings).model_fields
            if getattr(new.settings, name) != getattr(self.good.settings, name)
        )
        same_files = new.sources == self.good.sources
        self.good = replace(new, settings=self.good.settings)
        # What was hashed before loading, so an edit made while loading is seen next time.
        self._good_print = current if same_files else fingerprint(new.sources)
        self.problems, self._bad_print = (), None
        return Check(Outcome.SWITCHED, self.good, restart_needed=restart)
