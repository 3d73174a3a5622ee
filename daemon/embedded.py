"""The embedded calendar server: Radicale on loopback when no CalDAV url is configured.

A team trying cadence should not need a calendar account first. When ``calendar.caldav.url`` is
omitted, the daemon runs Radicale as a child process bound to 127.0.0.1, with its collections
under the state directory. There are no accounts: anyone who can reach the loopback port may read
and write, which is why it only ever listens on 127.0.0.1. People subscribe to
``<url><manager-email>/cadence/`` from Thunderbird or Apple Calendar.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from daemon.errors import Transient

_HOST = "127.0.0.1"
_START_TIMEOUT = 20.0  # seconds: Radicale imports a lot on a cold start
_STOP_TIMEOUT = 10.0
_STDERR_TAIL = 2000  # characters of Radicale's stderr quoted when it fails to start
_PR_SET_PDEATHSIG = 1  # linux/prctl.h

# auth "none" accepts any (or no) login; rights "authenticated" then lets that anonymous user
# create principal collections (/<email>/) and calendars one level below (/<email>/cadence/).
_CONFIG = """\
[server]
hosts = {host}:{port}

[auth]
type = none
# No passwords to guess; without this an expired sync token (a 403) costs a second.
delay = 0

[rights]
type = authenticated

[storage]
filesystem_folder = {collections}
{storage_extra}
[web]
type = none

[logging]
level = warning
mask_passwords = True
"""


def _die_with_parent() -> None:
    """In the child, before Radicale starts: have Linux send it SIGTERM when the daemon dies,
    even by SIGKILL or OOM, so that no orphaned server keeps the port and the data."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
        return True


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class EmbeddedRadicale:
    """Radicale as a subprocess on ``127.0.0.1:port`` storing its collections in ``storage_dir``.

    ``port=0`` picks a free port. ``url`` (``http://127.0.0.1:PORT/``) is valid after ``start``.
    """

    def __init__(
        self, storage_dir: Path, port: int = 0, max_sync_token_age: int | None = None
    ) -> None:
        self.storage_dir = Path(storage_dir)
        self.port = port
        # Radicale forgets sync tokens older than this (seconds; its default is 30 days). Tests
        # raise it: under a faked clock every token looks expired at once, since Radicale
        # compares real file times with the faked clock.
        self.max_sync_token_age = max_sync_token_age
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: tempfile._TemporaryFileWrapper[bytes] | None = None

    def start(self) -> None:
        """Start the server and return once it accepts connections; ``Transient`` otherwise."""
        if self._process is not None:
            return
        port = self.port or _free_port()
        # Checked first: another listener on the port would answer our readiness probe.
        if not _port_is_free(port):
            raise Transient(
                f"embedded calendar server did not start: {_HOST}:{port} is already in use"
            )
        collections = self.storage_dir / "collections"
        config_path = self.storage_dir / "radicale.conf"
        try:
            collections.mkdir(parents=True, exist_ok=True)
            extra = (
                f"max_sync_token_age = {self.max_sync_token_age}\n"
                if self.max_sync_token_age is not None
                else ""
            )
            config_path.write_text(
                _CONFIG.format(host=_HOST, port=port, collections=collections, storage_extra=extra)
            )
        except OSError as err:
            raise Transient(f"embedded calendar server did not start: {err}") from None
        self._stderr = tempfile.NamedTemporaryFile(prefix="radicale-", suffix=".log")  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "radicale", "--config", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                # Its own process group: Ctrl-C in a terminal reaches the daemon only, which
                # finishes the pass in flight against a live server and then stops this one.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        except OSError as err:
            self._close_log()
            raise Transient(f"embedded calendar server did not start: {err}") from None
        deadline = time.monotonic() + _START_TIMEOUT
        while not _accepts_connections(port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                reason = (
                    f"exited with code {self._process.returncode}"
                    if self._process.returncode is not None
                    else f"no answer on {_HOST}:{port} after {_START_TIMEOUT:.0f}s"
                )
                tail = self._stderr_tail()
                self.stop()
                raise Transient(f"embedded calendar server did not start: {reason}; {tail}")
            time.sleep(0.05)
        self.port = port
        self.url = f"http://{_HOST}:{port}/"

    def stop(self) -> None:
        """Terminate the server, kill it if it does not exit in time; safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_STOP_TIMEOUT)
        self._close_log()

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return "no output"
        self._stderr.flush()
        text = Path(self._stderr.name).read_text(errors="replace").strip()
        return text[-_STDERR_TAIL:] if text else "no output"

    def _close_log(self) -> None:
        if self._stderr is not None:
            with contextlib.suppress(OSError):
                self._stderr.close()
            self._stderr = None

    def __enter__(self) -> EmbeddedRadicale:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
