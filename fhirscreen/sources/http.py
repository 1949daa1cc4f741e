"""A small FHIR HTTP client on a requests.Session: retries, timeouts, auth, counting, clear errors.

What it promises (the fault catalogue in notes/reliability.md):
- Retries with capped exponential backoff on connection errors, timeouts, 408, 429 and 500/502/503/504,
  honouring ``Retry-After`` (seconds or an HTTP date) up to a cap, so a server asking for five hours
  cannot stall a nightly run; at most ``max_attempts`` tries per request.
- A 401 asks the auth hook for a new token and retries once (an expired token is not a real error).
- Every other failure becomes a ``SourceError`` whose message says what to do (401/403: credentials,
  404: wrong base URL?, an OperationOutcome: its diagnostics, HTML: not a FHIR endpoint).
- The Authorization header goes only to the configured server's origin (scheme, host, port), never to
  a next link or a file URL elsewhere. Headers are never logged; ``--verbose`` logs
  ``METHOD URL status ms`` per request.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from fhirscreen import __version__
from fhirscreen.sources.base import SourceError

log = logging.getLogger("fhirscreen.http")

FHIR_JSON = "application/fhir+json"
FHIR_NDJSON = "application/fhir+ndjson"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Non-idempotent requests (POST without a deterministic target) are retried only when the server
# says it did not process them.
RETRY_STATUSES_UNSAFE = frozenset({429, 503})
_DIAGNOSTICS_MAX = 300


class Auth(Protocol):
    """Supplies request headers; ``refresh`` gets new credentials after a 401 (False: nothing to renew)."""

    def headers(self) -> dict[str, str]: ...

    def refresh(self) -> bool: ...


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # tries per request, the first included
    backoff_base: float = 1.0  # seconds before the 2nd try; doubles each time
    backoff_cap: float = 30.0  # no single backoff wait is longer
    retry_after_cap: float = 120.0  # a server's Retry-After is honoured up to this


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with default ports filled in, so ``host`` and ``host:443`` compare equal."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent/junk."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now if now is not None else time.time()
    return max(0.0, when.timestamp() - current)


def outcome_text(body: Any) -> str | None:
    """The diagnostics (or details.text) of an OperationOutcome's issues, shortened; None if not one."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "OperationOutcome":
        return None
    texts = []
    for issue in body.get("issue") or ():
        if not isinstance(issue, Mapping):
            continue
        details = issue.get("details")
        text = issue.get("diagnostics") or (details.get("text") if isinstance(details, Mapping) else None)
        if text:
            texts.append(str(text))
        elif issue.get("code"):
            texts.append(f"{issue.get('severity', 'error')}: {issue['code']}")
    joined = "; ".join(texts) or "(no diagnostics)"
    return joined if len(joined) <= _DIAGNOSTICS_MAX else joined[: _DIAGNOSTICS_MAX - 1] + "…"


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _path(url: str) -> str:
    """The path of a URL without its query: error messages name the endpoint, not the search values."""
    return urlsplit(url).path or "/"


class FhirClient:
    """One FHIR server: base URL, session, auth, retry policy and the counters the run summary prints."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth | None = None,
        timeout: float = 60.0,
        verify: bool | str = True,
        pool_size: int = 4,
        retry: RetryPolicy | None = None,
        verbose: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.lower().startswith(("http://", "https://")):
            raise SourceError(
                f"{base_url!r} is not an http(s) URL; give the FHIR base URL, e.g. https://host/fhir"
            )
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.verbose = verbose
        self.sleep_fn = sleep
        self._origin = origin(self.base_url)
        self.session = requests.Session()
        # Passed on every request too: requests lets REQUESTS_CA_BUNDLE override Session.verify, which
        # would silently undo --insecure / --ca-bundle.
        self.verify = verify
        self.session.verify = verify
        self.session.headers.update(
            {
                "Accept": FHIR_JSON,
                "Accept-Encoding": "gzip, deflate",
                "User-Agent": f"fhirscreen/{__version__}",
            }
        )
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(2, pool_size), max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._lock = threading.Lock()
        self._counts: dict[str, float] = {"requests": 0, "bytes": 0, "retries": 0, "auth_refreshes": 0}

    # -- bookkeeping ---------------------------------------------------------------------------------

    def count(self, key: str, amount: float = 1) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + amount

    def stats(self) -> dict[str, int | float]:
        with self._lock:
            return {k: (int(v) if float(v).is_integer() else v) for k, v in self._counts.items()}

    def url(self, path_or_url: str) -> str:
        """An absolute URL: relative paths are resolved against the base URL."""
        if path_or_url.lower().startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def same_origin(self, url: str) -> bool:
        return origin(url) == self._origin

    def resolve(self, link: str) -> str:
        """A next link or a Location as an absolute URL (relative ones are resolved against the base)."""
        return urljoin(self.base_url + "/", link)

    # -- requests ------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
        idempotent: bool = True,
        stream: bool = False,
        authenticate: bool = True,
        what: str = "",
    ) -> requests.Response:
        """Send with retries; return a response whose status is in ``expect`` or raise SourceError.

        ``what`` names the request in error messages ("Condition search"); the query string never does.
        ``authenticate=False`` sends no credentials (Bulk files that do not require the token).
        """
        url = self.url(path_or_url)
        label = what or f"{method} {_path(url)}"
        retry_statuses = RETRY_STATUSES if idempotent else RETRY_STATUSES_UNSAFE
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            send_headers = dict(headers or {})
            if authenticate and self.auth is not None and self.same_origin(url):
                send_headers.update(self.auth.headers())
            started = time.monotonic()
            try:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    headers=send_headers,
                    timeout=self.timeout,
                    verify=self.verify,
                    stream=stream,
                    allow_redirects=True,
                )
            except requests.exceptions.SSLError as exc:
                raise SourceError(
                    f"TLS error talking to {self._show_origin(url)}: {type(exc).__name__}. If the server "
                    "uses a private CA, pass --ca-bundle PEM_FILE (--insecure turns checks off)"
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                self.count("requests")
                self._log(method, url, type(exc).__name__, started)
                if attempt >= self.retry.max_attempts or (not idempotent and not _never_sent(exc)):
                    raise SourceError(
                        f"{label}: cannot reach {self._show_origin(url)} ({type(exc).__name__}) "
                        f"after {attempt} attempt(s)"
                    ) from None
                self._wait(attempt, None, label, type(exc).__name__)
                continue
            self.count("requests")
            if not stream:
                self.count("bytes", _wire_bytes(response))
            self._log(method, url, str(response.status_code), started)
            status = response.status_code
            if status in expect:
                return response
            if (
                status == 401
                and authenticate
                and self.auth is not None
                and not refreshed
                and self.same_origin(url)
            ):
                refreshed = True
                if self.auth.refresh():
                    self.count("auth_refreshes")
                    log.info("%s: 401 Unauthorized; got a new access token, trying again", label)
                    attempt -= 1  # a token refresh does not use up a retry
                    continue
            if status in retry_statuses and attempt < self.retry.max_attempts:
                self._wait(attempt, response.headers.get("Retry-After"), label, f"HTTP {status}")
                continue
            raise SourceError(self.describe_failure(response, label, attempt))

    def get(
        self, path_or_url: str, params: Mapping[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        return self.request("GET", path_or_url, params=params, **kwargs)

    def get_resource(
        self,
        path_or_url: str,
        params: Mapping[str, str] | None = None,
        *,
        expect_type: str | None = None,
        what: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """GET a FHIR JSON resource. A body that is not JSON, or not a resource of ``expect_type``, is
        retried once (a proxy may have cut it short), then reported."""
        label = what or f"GET {_path(self.url(path_or_url))}"
        for attempt in (1, 2):
            response = self.get(path_or_url, params, what=label, headers=headers)
            body = _json_or_none(response)
            problem = _not_fhir(response, body, expect_type)
            if problem is None:
                return dict(body)
            if attempt == 2:
                raise SourceError(f"{label}: {problem}")
            self.count("retries")
            log.warning("%s: %s; trying once more", label, problem)
            self.sleep_fn(self.retry.backoff_base)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- helpers -------------------------------------------------------------------------------------

    def _wait(self, attempt: int, retry_after: str | None, label: str, why: str) -> None:
        asked = parse_retry_after(retry_after)
        if asked is not None:
            delay = min(asked, self.retry.retry_after_cap)
        else:
            delay = min(self.retry.backoff_base * 2 ** (attempt - 1), self.retry.backoff_cap)
        self.count("retries")
        log.warning(
            "%s: %s; retry %d of %d in %.1f s", label, why, attempt, self.retry.max_attempts - 1, delay
        )
        self.sleep_fn(delay)

    def _log(self, method: str, url: str, status: str, started: float) -> None:
        if self.verbose:
            log.debug("%s %s %s %.0f ms", method, url, status, (time.monotonic() - started) * 1000)

    def _show_origin(self, url: str) -> str:
        scheme, host, port = origin(url)
        return f"{scheme}://{host}:{port}"

    def describe_failure(self, response: requests.Response, label: str, attempts: int = 1) -> str:
        """One clear sentence for a failed response: what happened and what the user can do."""
        status = response.status_code
        body = _json_or_none(response)
        diagnostics = outcome_text(body)
        tail = f" Server says: {diagnostics}" if diagnostics else ""
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if status == 401:
            return (
                f"{label}: 401 Unauthorized: the server wants valid credentials (give a bearer token with "
                f"--token-env NAME, or the --smart-* options; a token may have expired).{tail}"
            )
        if status == 403:
            return (
                f"{label}: 403 Forbidden: the credentials are not allowed to read this (check the client's "
                f"scopes and the server's access rules).{tail}"
            )
        if status == 404:
            return (
                f"{label}: 404 Not Found at {_path(response.url or '')}: wrong base URL? ({self.base_url}; "
                f"a FHIR base usually ends in /fhir, /baseR4 or /R4).{tail}"
            )
        if diagnostics:
            return f"{label}: HTTP {status}{tries}. Server says: {diagnostics}"
        kind = (response.headers.get("Content-Type") or "no content type").split(";")[0]
        return f"{label}: HTTP {status}{tries} ({kind}, not a FHIR OperationOutcome)"


def _never_sent(exc: Exception) -> bool:
    """True when the request certainly did not reach the server (safe to retry even a POST)."""
    return isinstance(exc, requests.ConnectTimeout) or "NewConnectionError" in repr(exc)


def _wire_bytes(response: requests.Response) -> int:
    """Bytes received on the wire (compressed), falling back to the decoded body length."""
    raw = getattr(response, "raw", None)
    try:
        told = int(raw.tell()) if raw is not None else 0
    except (AttributeError, TypeError, ValueError, OSError):
        told = 0
    return told or len(response.content or b"")


def _not_fhir(response: requests.Response, body: Any, expect_type: str | None) -> str | None:
    """Why a 200 body is not the FHIR resource we asked for; None when it is."""
    kind = (response.headers.get("Content-Type") or "no content type").split(";")[0].strip()
    if body is None:
        return (
            f"the server did not answer with FHIR JSON ({kind}, {len(response.content or b'')} bytes); "
            "is this a FHIR R4 base URL?"
        )
    if not isinstance(body, Mapping) or not isinstance(body.get("resourceType"), str):
        return f"the answer is JSON but not a FHIR resource ({kind}); is this a FHIR R4 base URL?"
    if expect_type and body["resourceType"] != expect_type:
        found = body["resourceType"]
        diagnostics = outcome_text(body)
        extra = f": {diagnostics}" if diagnostics else ""
        return f"expected a {expect_type} but got a {found}{extra}"
    return None
