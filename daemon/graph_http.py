"""One authenticated HTTP path to Microsoft Graph, shared by the Outlook calendar and the mailer.

Why a module of its own: the calendar provider and the Graph mailer use the same app
registration, and Graph's limits are per app and mailbox, so both must share one msal app (one
token, cached and renewed before expiry), one ``requests`` session (which honours
``HTTPS_PROXY``/``NO_PROXY``/``REQUESTS_CA_BUNDLE``) and one gate of at most four requests in
flight per mailbox. 429 and 503 are retried with tenacity, waiting what ``Retry-After`` says
but never starting an attempt past the pass deadline (``daemon.deadline``); ``$batch`` sends up
to 20 requests in one round trip and retries an inner 429 or 503 alone, within the same
bounds.

Every failure leaves as a ``daemon.errors`` class with one line a person can act on.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import msal
import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from daemon import deadline as pass_deadline
from daemon.config import Config, read_secret
from daemon.errors import (
    AuthError,
    ConfigError,
    Conflict,
    NotFound,
    ProviderError,
    RateLimited,
    TokenExpired,
    Transient,
)

log = logging.getLogger(__name__)

MAX_BATCH = 20
PER_MAILBOX = 4  # Graph's concurrency limit per app and mailbox
ATTEMPTS = 5
MAX_WAIT = 60.0  # never wait longer than this on one Retry-After; report instead


@dataclass(frozen=True)
class GraphSettings:
    tenant_id: str
    client_id: str
    client_secret: str | None = None
    certificate_file: str | None = None  # PEM with the private key and the certificate
    authority_host: str = "https://login.microsoftonline.com"
    graph_endpoint: str = "https://graph.microsoft.com"
    ca_bundle: str | None = None  # None: requests' own (REQUESTS_CA_BUNDLE, certifi)
    timeout: float | tuple[float, float] = 30.0  # or (connect, read), as requests takes it


@dataclass(frozen=True)
class Request:
    """One Graph call, relative to ``/v1.0``: ``GET /users/x/events/ID``."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    status: int
    body: Any
    headers: Mapping[str, str]


class _Retry(Exception):
    def __init__(self, response: Response, retry_after: float | None) -> None:
        super().__init__(response.status)
        self.response = response
        self.retry_after = retry_after


def check_https(url: str, what: str) -> str | None:
    """None when ``url`` is an https URL with a host, else a one-line problem."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return f"{what}: must be an https:// URL, got {url!r}"
    return None


def _first_line(text: str) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line.split(" Trace ID:")[0].strip()


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def mailbox_of(path: str) -> str:
    """The mailbox a request acts on (``/users/{id}/...``), '' for tenant-wide calls."""
    parts = path.split("/")
    return parts[2].lower() if len(parts) > 2 and parts[1] == "users" else ""


class _Session(requests.Session):
    """A session that trusts ``ca_bundle`` for every request, msal's included.

    Setting ``Session.verify`` is not enough: requests lets ``REQUESTS_CA_BUNDLE`` from the
    environment override it (psf/requests#3829), so the bundle goes on each request instead.
    """

    def __init__(self, ca_bundle: str | None) -> None:
        super().__init__()
        self.ca_bundle = ca_bundle

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if self.ca_bundle and kwargs.get("verify") in (None, True):
            kwargs["verify"] = self.ca_bundle
        return super().request(method, url, *args, **kwargs)


class GraphClient:
    """msal token + requests session + per-mailbox gate + retries; see the module docstring.

    ``round_trips`` counts HTTP requests to Graph and ``calls`` the Graph operations they carry
    (a ``$batch`` of 20 is one round trip and 20 calls), for the benchmark.
    """

    def __init__(
        self,
        settings: GraphSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for url, what in ((settings.authority_host, "authority_host"),
                          (settings.graph_endpoint, "graph_endpoint")):  # fmt: skip
            problem = check_https(url, what)
            if problem:
                raise AuthError(problem)
        self.settings = settings
        self.base = settings.graph_endpoint.rstrip("/") + "/v1.0"
        self.scope = settings.graph_endpoint.rstrip("/") + "/.default"
        self.round_trips = 0
        self.calls = 0
        self._sleep = sleep
        self._session = _Session(settings.ca_bundle)
        self._gates: dict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(PER_MAILBOX)
        )
        self._gates_lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None
        self._app_lock = threading.Lock()

    # -- auth -------------------------------------------------------------------------------------

    def _credential(self) -> Any:
        s = self.settings
        if s.certificate_file:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes

            try:
                pem = open(s.certificate_file, "rb").read()  # noqa: SIM115
                cert = x509.load_pem_x509_certificate(pem)
            except (OSError, ValueError) as err:
                raise AuthError(
                    f"calendar.outlook.certificate_file {s.certificate_file} cannot be used:"
                    f" {getattr(err, 'strerror', None) or err}"
                ) from None
            return {
                "private_key": pem.decode(),
                "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 - AAD's x5t
            }
        if not s.client_secret:
            raise AuthError(
                "calendar.outlook: no client secret (set the env var named by client_secret_env)"
                " and no certificate_file"
            )
        return s.client_secret

    def app(self) -> msal.ConfidentialClientApplication:
        with self._app_lock:
            if self._app is None:
                s = self.settings
                authority = f"{s.authority_host.rstrip('/')}/{s.tenant_id}"
                try:
                    self._app = msal.ConfidentialClientApplication(
                        s.client_id,
                        authority=authority,
                        client_credential=self._credential(),
                        http_client=self._session,
                        instance_discovery=False,
                        timeout=s.timeout,
                    )
                except ValueError:  # msal could not read the tenant's OpenID configuration
                    raise AuthError(
                        f"tenant {s.tenant_id} is not known at {s.authority_host}; check"
                        " calendar.outlook.tenant_id and authority_host"
                    ) from None
                except requests.RequestException as err:
                    raise Transient(
                        f"{s.authority_host} cannot be reached: {type(err).__name__}"
                    ) from None
            return self._app

    def token(self) -> str:
        """An app-only token for Graph; msal serves it from its cache until near expiry."""
        try:
            result = self.app().acquire_token_for_client(scopes=[self.scope])
        except requests.RequestException as err:
            raise Transient(
                f"{self.settings.authority_host} cannot be reached: {type(err).__name__}"
            ) from None
        if "access_token" in result:
            return str(result["access_token"])
        reason = _first_line(str(result.get("error_description") or result.get("error")))
        raise AuthError(f"Microsoft identity platform refused the app: {reason}")

    def roles(self) -> set[str]:
        """The application permissions the token carries (its ``roles`` claim), for doctor."""
        token = self.token()
        try:
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            return {str(r) for r in claims.get("roles") or []}
        except (IndexError, ValueError, AttributeError):
            return set()

    # -- requests ---------------------------------------------------------------------------------

    def _gate(self, mailbox: str) -> threading.BoundedSemaphore:
        with self._gates_lock:
            return self._gates[mailbox]

    def _url(self, path: str) -> str:
        return path if path.startswith("https://") else self.base + path

    def _send(self, request: Request) -> Response:
        headers = {"Authorization": f"Bearer {self.token()}", **request.headers}
        data: Any = None
        if request.body is not None:
            if isinstance(request.body, bytes | str):
                data = request.body
            else:
                data = json.dumps(request.body)
                headers.setdefault("Content-Type", "application/json")
        gate = self._gate(mailbox_of(urlsplit(self._url(request.path)).path.removeprefix(
            urlsplit(self.base).path)))  # fmt: skip
        with gate:
            self.round_trips += 1
            try:
                raw = self._session.request(
                    request.method, self._url(request.path), params=dict(request.params) or None,
                    data=data, headers=headers, timeout=self.settings.timeout,
                )  # fmt: skip
            except requests.RequestException as err:
                raise Transient(
                    f"Microsoft Graph at {self.settings.graph_endpoint} cannot be reached:"
                    f" {type(err).__name__}"
                ) from None
        body: Any = None
        if raw.content:
            try:
                body = raw.json()
            except ValueError:
                if raw.status_code < 300:
                    raise ProviderError(
                        f"Microsoft Graph answered {request.method} {request.path} with"
                        " something that is not JSON"
                    ) from None
                body = {"error": {"code": str(raw.status_code), "message": raw.text[:200]}}
        return Response(raw.status_code, body, dict(raw.headers))

    def _retrying(self) -> Retrying:
        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            after = exc.retry_after if isinstance(exc, _Retry) else None
            return min(after if after is not None else 2.0**state.attempt_number, MAX_WAIT)

        return Retrying(
            retry=retry_if_exception_type(_Retry),
            stop=stop_after_attempt(ATTEMPTS) | pass_deadline.stop,
            wait=wait,
            sleep=self._sleep,
            reraise=True,
        )

    def call(self, request: Request, ok: Sequence[int] = (200, 201, 202, 204)) -> Response:
        """One call, retried on 429/503 (never past the pass deadline); any other status
        outside ``ok`` raises. Given up, a 429 is Graph asking to slow down (``RateLimited``)
        and a 503 is Graph not answering (``Transient``, a failure for the breaker)."""

        def once() -> Response:
            if pass_deadline.expired():
                raise Transient(f"Microsoft Graph at {self.settings.graph_endpoint}: not tried,"
                                " the pass ran into its deadline")  # fmt: skip
            self.calls += 1
            response = self._send(request)
            if response.status in (429, 503):
                raise _Retry(response, _retry_after(response.headers))
            return response

        try:
            response = self._retrying()(once)
        except _Retry as gave_up:
            if gave_up.response.status != 429:
                raise failure(request, gave_up.response) from None
            raise RateLimited(
                f"Microsoft Graph kept throttling {request.method} {request.path}",
                gave_up.retry_after,
            ) from None
        if response.status in ok:
            return response
        raise failure(request, response)

    def pages(self, request: Request) -> tuple[list[Any], Mapping[str, Any]]:
        """All ``value`` items across ``@odata.nextLink``s, and the last page (for its links)."""
        items: list[Any] = []
        current = request
        for _ in range(10_000):
            page = self.call(current, ok=(200,)).body or {}
            items.extend(page.get("value") or [])
            link = page.get("@odata.nextLink")
            if not link:
                return items, page
            current = Request("GET", link, headers=request.headers)
        raise ProviderError(f"Microsoft Graph never finished paging {request.path}")

    def batch(self, requests_: Sequence[Request]) -> list[Response]:
        """Every request through ``$batch``, 20 per round trip; an inner 429/503 is retried alone
        after its Retry-After. Answers come back in the order of ``requests_``; statuses are
        left to the caller (``failure`` turns one into an error)."""
        answers: dict[int, Response] = {}
        pending = list(range(len(requests_)))
        for attempt in range(1, ATTEMPTS + 1):
            throttled: list[int] = []
            wait = 0.0
            for start in range(0, len(pending), MAX_BATCH):
                chunk = pending[start : start + MAX_BATCH]
                payload = {"requests": [_batch_item(i, requests_[i]) for i in chunk]}
                outer = self.call(Request("POST", "/$batch", body=payload), ok=(200,))
                self.calls += len(chunk) - 1
                for item in (outer.body or {}).get("responses") or []:
                    index = int(item["id"])
                    response = Response(int(item["status"]), item.get("body"),
                                        item.get("headers") or {})  # fmt: skip
                    if response.status in (429, 503):
                        throttled.append(index)
                        wait = max(wait, _retry_after(response.headers) or 2.0**attempt)
                    answers[index] = response
            wait = min(wait, MAX_WAIT)
            if not throttled or attempt == ATTEMPTS or not pass_deadline.allows(wait):
                break
            self._sleep(wait)
            pending = sorted(throttled)
        missing = [i for i in range(len(requests_)) if i not in answers]
        if missing:
            raise ProviderError(f"Microsoft Graph's $batch answer left out {len(missing)} requests")
        return [answers[i] for i in range(len(requests_))]


def _batch_item(index: int, request: Request) -> dict[str, Any]:
    url = request.path
    if request.params:
        url += "?" + "&".join(f"{k}={quote(v, safe='$(),=: ')}" for k, v in request.params.items())
    item: dict[str, Any] = {"id": str(index), "method": request.method, "url": url}
    headers = dict(request.headers)
    if request.body is not None:
        item["body"] = request.body
        headers.setdefault("Content-Type", "application/json")
    if headers:
        item["headers"] = headers
    return item


def error_of(response: Response) -> tuple[str, str]:
    body: dict[str, Any] = response.body if isinstance(response.body, dict) else {}
    error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
    return str(error.get("code") or response.status), _first_line(str(error.get("message") or ""))


def failure(request: Request, response: Response) -> ProviderError:
    """The project error for a Graph answer outside what the caller expected."""
    code, message = error_of(response)
    status = response.status
    mailbox = mailbox_of(request.path) or "the tenant"
    where = f"{request.method} {request.path.split('?')[0]}"
    if status == 401:
        return AuthError(f"Microsoft Graph refused the app's token for {where}: {message}")
    if status == 403:
        return AuthError(
            f"Microsoft Graph denies the app access to {mailbox} ({code}); grant the app"
            " Calendars.ReadWrite, MailboxSettings.Read and Mail.Send and include this mailbox"
            " in its application access policy"
        )
    if status == 404:
        if code == "ErrorInvalidUser":
            return NotFound(f"mailbox {mailbox} does not exist in the tenant")
        return NotFound(f"{where} found nothing ({code})")
    if status == 410:
        return TokenExpired(f"the delta token for {mailbox} is no longer valid ({code})")
    if status in (409, 412):
        return Conflict(f"{where} conflicts with the mailbox's current state ({code})")
    if status == 429:
        return RateLimited(f"Microsoft Graph throttles {mailbox}", _retry_after(response.headers))
    if status >= 500:
        return Transient(f"Microsoft Graph failed {where} ({status} {code})")
    return ProviderError(f"Microsoft Graph refused {where} ({status} {code}: {message})")


_CLIENTS: dict[GraphSettings, GraphClient] = {}
_CLIENTS_LOCK = threading.Lock()


def client_for(config: Config) -> GraphClient:
    """The process's one client (and so one msal app and token) for the configured tenant."""
    outlook = config.settings.calendar.outlook
    if outlook is None:
        raise ConfigError(
            [f"{config.path}: calendar.outlook: required for Microsoft 365 (tenant_id, client_id)"]
        )
    secret = None
    if outlook.certificate_file is None:
        secret = read_secret(outlook.client_secret_env, None, "calendar.outlook")
        if not secret:
            raise ConfigError(
                [f"{config.path}: calendar.outlook: the env var {outlook.client_secret_env} holding"
                 " the app's client secret is not set (or give certificate_file)"]
            )  # fmt: skip
    else:
        read_secret(None, outlook.certificate_file, "calendar.outlook.certificate_file")
    settings = GraphSettings(
        tenant_id=outlook.tenant_id,
        client_id=outlook.client_id,
        client_secret=secret,
        certificate_file=str(outlook.certificate_file) if outlook.certificate_file else None,
        authority_host=outlook.authority_host,
        graph_endpoint=outlook.graph_endpoint,
        timeout=(outlook.connect_timeout_seconds, outlook.read_timeout_seconds),
    )
    with _CLIENTS_LOCK:
        if settings not in _CLIENTS:
            _CLIENTS[settings] = GraphClient(settings)
        return _CLIENTS[settings]
