"""Google API plumbing shared by the Calendar provider, the Gmail mailer and ``cadence doctor``.

One service-account key, domain-wide delegation: cadence acts as each manager (``subject=``) with
the least scopes each job needs. The real ``google-api-python-client`` is built offline from the
discovery documents it bundles, pointed at ``api_endpoint`` (Google, or a local server in
tests), over one ``httplib2.Http`` that honours the proxy and CA variables. Every call goes
through ``GoogleApi.call``: a per-user request budget (Google allows 600 requests a minute per
user; a cold start of a big roster would trip it), retries with exponential back-off and jitter
for 429, 403 rate-limit reasons and 5xx, honouring ``Retry-After`` (tenacity) and never
starting an attempt past the pass deadline (``daemon.deadline``), and one translation of every
third-party failure into ``CallFailed``, which callers map onto their own error vocabulary
(``ProviderError`` or ``MailError``). ``GoogleApi.batch`` sends many users' calls in one batch
request: each part carries its own user's ``Authorization``, which Google applies to that call
alone.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_auth_httplib2
import httplib2
from google.auth import exceptions as auth_exceptions
from google.oauth2 import service_account
from googleapiclient import discovery, discovery_cache
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from daemon import deadline as pass_deadline
from daemon.errors import ConfigError

SCOPE = "https://www.googleapis.com/auth/"
CALENDAR_SCOPES = (SCOPE + "calendar.events", SCOPE + "calendar.freebusy")
GMAIL_SCOPES = (SCOPE + "gmail.send",)
ALL_SCOPES = CALENDAR_SCOPES + GMAIL_SCOPES

GOOGLE_ROOT = "https://www.googleapis.com/"
GMAIL_ROOT = "https://gmail.googleapis.com/"
_RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
USER_BUDGET_PER_MINUTE = 500  # Google's limit is 600 a minute per user; keep a margin
BATCH_LIMIT = 50


class CallFailed(Exception):
    """A Google call that did not succeed, in a form the callers translate.

    ``kind``: ``http`` (``status``/``reason`` from Google), ``auth`` (no token for this user:
    delegation, scopes, unknown mailbox or a rejected key), ``network`` or ``bad-response``.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        status: int | None = None,
        reason: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind, self.status, self.reason, self.retry_after = kind, status, reason, retry_after
        self.key_refused = False  # the key itself, whoever it acts as: a start-up problem

    @property
    def rate_limited(self) -> bool:
        return self.status == 429 or (self.status == 403 and self.reason in _RATE_REASONS)

    @property
    def transient(self) -> bool:
        return self.kind == "network" or self.rate_limited or (self.status or 0) >= 500


def load_key(path: Path, what: str = "calendar.google.credentials_file") -> dict[str, Any]:
    """The service-account key file's content; one clear line when it cannot be used."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError([f"{what}: cannot read {path}: {exc.strerror}"]) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError([f"{what}: {path} is readable by others; chmod 600 it"])
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError([f"{what}: {path} is not a JSON key file: {exc}"]) from None
    missing = [
        key
        for key in ("client_email", "private_key", "token_uri")
        if not isinstance(info, dict) or not info.get(key)
    ]
    if not isinstance(info, dict) or info.get("type") != "service_account" or missing:
        lacking = ", ".join(missing) or "type"
        raise ConfigError([f"{what}: {path} is not a service-account key (missing {lacking})"])
    return info


def make_http(timeout: float = 30.0) -> httplib2.Http:
    """httplib2 with the standard proxy (``HTTPS_PROXY``/``NO_PROXY``, through PySocks) and CA
    variables; ``HTTPLIB2_CA_CERTS`` is read by httplib2 itself."""
    ca = os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE") or None
    return httplib2.Http(
        timeout=timeout, ca_certs=ca, proxy_info=httplib2.proxy_info_from_environment
    )


class Budget:
    """At most ``limit`` calls per user in any 60 s window; waits (never fails) to stay under."""

    def __init__(
        self,
        limit: int = USER_BUDGET_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit, self._clock, self._sleep = limit, clock, sleep
        self._calls: dict[str, deque[float]] = {}
        self.waited = 0.0

    def take(self, user: str, count: int = 1) -> None:
        calls = self._calls.setdefault(user, deque())
        count = min(count, self.limit)
        while True:
            now = self._clock()
            while calls and calls[0] <= now - 60.0:
                calls.popleft()
            if len(calls) + count <= self.limit:
                calls.extend([now] * count)
                return
            pause = calls[len(calls) + count - self.limit - 1] + 60.0 - now
            self.waited += pause
            self._sleep(pause)


@dataclass(frozen=True)
class _Api:
    name: str
    version: str
    root: str


CALENDAR = _Api("calendar", "v3", GOOGLE_ROOT)
GMAIL = _Api("gmail", "v1", GMAIL_ROOT)


class GoogleApi:
    """One Google API (Calendar or Gmail) as any user of the domain, with retries and budget."""

    def __init__(
        self,
        key_info: Mapping[str, Any],
        api: _Api,
        scopes: Iterable[str],
        *,
        root: str | None = None,
        timeout: float = 30.0,
        max_attempts: int = 5,
        max_wait: float = 60.0,
        budget: Budget | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = api
        self.scopes = tuple(scopes)
        self.root = root or api.root
        if not self.root.endswith("/"):
            self.root += "/"
        self.max_attempts, self.max_wait = max_attempts, max_wait
        self.budget = budget or Budget(sleep=sleep)
        self._sleep = sleep
        self.client_id = str(key_info.get("client_id", ""))
        self._credentials = _credentials(key_info, self.scopes)
        self._http = make_http(timeout)
        self._authorized: dict[str, google_auth_httplib2.AuthorizedHttp] = {}

    @property
    def endpoint(self) -> str:
        if self.api is CALENDAR:
            return f"{self.root}calendar/v3/"
        return self.root

    @property
    def batch_uri(self) -> str:
        return f"{self.root}batch/{self.api.name}/{self.api.version}"

    def service(self) -> Any:
        """The API's resources (``service.events()``...), shared by every user: a request is
        given the user's authorised transport when it is sent."""
        return _service(self.api, self.endpoint, self._http)

    def _http_of(self, user: str) -> google_auth_httplib2.AuthorizedHttp:
        http = self._authorized.get(user)
        if http is None:
            http = self._authorized[user] = google_auth_httplib2.AuthorizedHttp(
                self._credentials.with_subject(user),  # type: ignore[no-untyped-call]
                http=self._http,
            )
        return http

    def _request(self, user: str, build: Callable[[Any], HttpRequest]) -> HttpRequest:
        request = build(self.service())
        request.http = self._http_of(user)
        return request

    def token(self, user: str) -> None:
        """Obtain an access token as ``user`` (what ``doctor`` checks first)."""
        credentials = self._credentials.with_subject(user)  # type: ignore[no-untyped-call]
        self._guard(user, lambda: credentials.refresh(google_auth_httplib2.Request(self._http)))

    def check_key(self, user: str, what: str) -> None:
        """At start-up: a key Google refuses whoever it acts as (deleted, another project's)
        is a ``ConfigError`` naming ``what``. Anything about ``user`` alone, or a Google that
        cannot be reached, is left to the passes, which skip that manager or back off."""
        try:
            self.token(user)
        except CallFailed as failed:
            if failed.key_refused:
                raise ConfigError([f"{what}: {failed}"]) from None

    def call(self, user: str, build: Callable[[Any], HttpRequest]) -> Any:
        """Execute ``build(service)`` as ``user``: budgeted, retried, failures as ``CallFailed``."""

        def once() -> Any:
            self.budget.take(user)
            return self._request(user, build).execute(num_retries=0)

        return self._retrying(lambda: self._guard(user, once))

    def batch(
        self, calls: Sequence[tuple[str, Callable[[Any], HttpRequest]]]
    ) -> list[Any | CallFailed]:
        """Several calls, each as its own user (``(user, build)``), in batch requests of up to
        ``BATCH_LIMIT``: Google applies each part's own ``Authorization``, so one batch serves
        many managers. A user without a token fails only their own calls; a call that failed
        with a transient error is retried alone (``call``), the others are kept. Once such a
        retry has failed too, or was given up (the pass deadline, a breaker's probe), the endpoint
        is failing: the other calls keep their first answer rather than each being tried
        again."""
        results: list[Any | CallFailed] = [None] * len(calls)
        refused: dict[str, CallFailed] = {}
        for user in dict.fromkeys(user for user, _ in calls):
            try:
                self._fresh(user)
            except CallFailed as failed:
                refused[user] = failed
        todo = []
        failing = False  # a call retried alone failed again
        for index, (user, _) in enumerate(calls):
            if user in refused:
                results[index] = refused[user]
            else:
                todo.append(index)
        for first in range(0, len(todo), BATCH_LIMIT):
            chunk = todo[first : first + BATCH_LIMIT]
            answers: dict[int, Any] = {}

            def collect(
                request_id: str,
                response: Any,
                exception: Exception | None,
                answers: dict[int, Any] = answers,
            ) -> None:
                answers[int(request_id)] = exception if exception is not None else response

            def send(indexes: list[int] = chunk) -> None:
                batch = BatchHttpRequest(callback=collect, batch_uri=self.batch_uri)
                for index in indexes:
                    user, build = calls[index]
                    batch.add(self._request(user, build), request_id=str(index))
                for user, count in Counter(calls[i][0] for i in indexes).items():
                    self.budget.take(user, count)
                batch.execute(http=self._http_of(calls[indexes[0]][0]))

            user = calls[chunk[0]][0]
            try:
                self._retrying(lambda send=send, user=user: self._guard(user, send))  # type: ignore[misc]
            except CallFailed as whole:  # the batch request itself: each of its calls failed
                answers.update(dict.fromkeys(chunk, whole))
            for index in chunk:
                answer = answers.get(index)
                if isinstance(answer, Exception) and not isinstance(answer, CallFailed):
                    one = _translate(calls[index][0], answer, self)
                    if one.transient and not failing and pass_deadline.allows(0):
                        try:
                            answer = self.call(*calls[index])
                        except CallFailed as again:
                            answer, failing = again, again.transient
                    else:
                        answer = one
                results[index] = answer
        return results

    def _fresh(self, user: str) -> None:
        """The user's access token, obtained now when it is missing or expiring: the batch
        library refreshes only the outer request's, so each part would first meet a 401."""
        credentials = self._http_of(user).credentials
        if not credentials.valid:
            self._guard(user, lambda: credentials.refresh(google_auth_httplib2.Request(self._http)))

    # -- failure handling ------------------------------------------------------------------------

    def _guard(self, user: str, work: Callable[[], Any]) -> Any:
        try:
            return work()
        except CallFailed:
            raise
        except Exception as exc:  # every library failure becomes one CallFailed here
            raise _translate(user, exc, self) from None

    def _retrying(self, work: Callable[[], Any]) -> Any:
        def wait(state: RetryCallState) -> float:
            failed = state.outcome.exception() if state.outcome else None
            if isinstance(failed, CallFailed) and failed.retry_after is not None:
                return min(failed.retry_after, self.max_wait)
            return float(wait_exponential_jitter(initial=1, max=self.max_wait)(state))

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts) | pass_deadline.stop,
            wait=wait,
            retry=retry_if_exception(
                lambda exc: isinstance(exc, CallFailed) and exc.kind == "http" and exc.transient
            ),  # fmt: skip
            sleep=self._sleep,
            reraise=True,
        )

        def attempt() -> Any:
            if pass_deadline.expired():
                raise CallFailed("network", f"Google at {self.root}: not tried, the pass ran "
                                 "into its deadline")  # fmt: skip
            return work()

        return retrying(attempt)


_CREDENTIALS: dict[tuple[str, tuple[str, ...]], service_account.Credentials] = {}
_SERVICES: dict[tuple[str, str], Any] = {}


def _credentials(
    key_info: Mapping[str, Any], scopes: tuple[str, ...]
) -> service_account.Credentials:
    """The key's credentials, parsed once per process (an RSA key takes ~0.1 s to load)."""
    cache_key = (json.dumps(dict(key_info), sort_keys=True), scopes)
    found = _CREDENTIALS.get(cache_key)
    if found is None:
        try:
            found = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                dict(key_info), scopes=scopes
            )
        except (ValueError, KeyError) as exc:
            raise ConfigError([f"the service-account key cannot be used: {exc}"]) from None
        _CREDENTIALS[cache_key] = found
    return found


def _service(api: _Api, endpoint: str, http: httplib2.Http) -> Any:
    """The client built from the bundled discovery document once per process and endpoint;
    building it (and each ``service.events()``) costs more than a request on loopback."""
    found = _SERVICES.get((api.name, endpoint))
    if found is None:
        doc = discovery_cache.get_static_doc(api.name, api.version)
        service = discovery.build_from_document(
            doc, http=http, client_options={"api_endpoint": endpoint}
        )
        found = _SERVICES[(api.name, endpoint)] = _Resources(service)
    return found


class _Resources:
    """``service.events()`` built once: the client makes every method anew on each call."""

    def __init__(self, service: Any) -> None:
        self._service = service
        self._made: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Callable[[], Any]:
        def resource() -> Any:
            if name not in self._made:
                self._made[name] = getattr(self._service, name)()
            return self._made[name]

        return resource


def _translate(user: str, exc: Exception, api: GoogleApi) -> CallFailed:
    if isinstance(exc, HttpError):
        status = int(exc.resp.status)
        reason, message = _error_detail(exc)
        retry_after = _seconds(exc.resp.get("retry-after"))
        return CallFailed("http", message, status, reason, retry_after)
    if isinstance(exc, auth_exceptions.RefreshError):
        failed = CallFailed("auth", _refusal(user, exc, api))
        failed.key_refused = _key_refused(exc)
        return failed
    if isinstance(exc, auth_exceptions.TransportError | OSError | httplib2.HttpLib2Error):
        return CallFailed("network", f"Google cannot be reached at {api.root}: {_short(exc)}")
    return CallFailed(
        "bad-response", f"Google answered what the API does not document: {_short(exc)}"
    )


def _error_detail(exc: HttpError) -> tuple[str, str]:
    try:
        error = json.loads(exc.content)["error"]
        first = (error.get("errors") or [{}])[0]
        return str(first.get("reason", "")), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "", str(exc.resp.reason or exc.resp.status)


def _seconds(value: Any) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def _key_refused(exc: auth_exceptions.RefreshError) -> bool:
    """Whether Google refused the key itself (any user would be refused), not one user."""
    text = str(exc.args[0] if exc.args else exc)
    if "Invalid email or User ID" in text:
        return False
    return "invalid_grant" in text or "invalid_client" in text


def _refusal(user: str, exc: auth_exceptions.RefreshError, api: GoogleApi) -> str:
    text = str(exc.args[0] if exc.args else exc)
    if "Invalid email or User ID" in text:
        return f"Google has no mailbox {user} (Invalid email or User ID)"
    if _key_refused(exc):
        return f"Google does not accept the service-account key ({text.split(':', 1)[0]}): " \
               "is it deleted, or another project's?"  # fmt: skip
    return (
        f"Google refused to act as {user}: grant the service account (client ID "
        f"{api.client_id}) domain-wide delegation for {', '.join(api.scopes)}"
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
