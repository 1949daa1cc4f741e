"""A small FHIR HTTP client on a requests.Session: retries, timeouts, auth, counting, clear errors.

What it promises (the fault catalogue in notes/reliability.md):
- Retries with capped exponential backoff on connection errors, timeouts, 408, 429 and 500/502/503/504,
  honouring ``Retry-After`` (seconds or an HTTP date) up to a cap, so a server asking for five hours
  cannot stall a nightly run; at most ``max_attempts`` tries per request.
- A 401 asks the auth hook for a new token and retries once (an expired token is not a real error).
- A connection dropped in the middle of a body is retried like one dropped before the headers. A host
  name that does not resolve is not retried (it will not resolve in 8 s either).
- Every request has an overall deadline (``deadline`` seconds, extended while data comes at a fair
  rate), besides the per-read ``timeout``: a server that trickles bytes forever cannot hold a run.
  The body loop checks it; before the headers, a watchdog does (``fhirscreen.sources.watchdog``).
- A body is read once, into bytes, and never above ``max_body_bytes`` (the size cap for one page).
- Every other failure becomes a ``SourceError`` whose message says what to do (401/403: credentials,
  404: wrong base URL?, an OperationOutcome: its codes and a scrubbed message, HTML: not a FHIR
  endpoint). Server text is untrusted: see ``fhirscreen.sources.server_text``.
- The Authorization header goes only to the configured server's origin (scheme, host, port), never to
  a redirect, a next link or a file URL elsewhere: redirects are followed here, hop by hop. Headers are
  never logged; ``--verbose`` logs ``METHOD URL status ms`` per request.
"""

from __future__ import annotations

import email.utils
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as urllib3_exceptions

from fhirscreen import __version__
from fhirscreen.fhir.json_text import loads_finite, may_underflow
from fhirscreen.quality import DataQuality
from fhirscreen.sources.base import ConfigurationError, SourceError
from fhirscreen.sources.server_text import outcome_text
from fhirscreen.sources.watchdog import Watch, watch_adapter

log = logging.getLogger("fhirscreen.http")

FHIR_JSON = "application/fhir+json"
FHIR_NDJSON = "application/fhir+ndjson"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Non-idempotent requests (POST without a deterministic target) are retried only when the server
# says it did not process them.
RETRY_STATUSES_UNSAFE = frozenset({429, 503})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
MAX_BODY_BYTES = 64_000_000  # one page or resource in memory; Bulk files go to disk and have no cap
ORJSON_MAX_BYTES = 4_000_000  # larger answers are parsed by json: a lower peak (see parse_json)
DEADLINE_FACTOR = 10  # the overall deadline of a request, in --timeout units
MIN_RATE = 256_000  # bytes/s: a body arriving at least this fast extends the deadline as it comes
_CHUNK = 1 << 16


class DeadlineExceeded(Exception):
    """A request ran past its overall deadline."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"deadline of {seconds:.0f} s exceeded")
        self.seconds = seconds


# What can go wrong on the wire, before or during a body: all retried (DNS failures excepted).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3_exceptions.HTTPError,
    OSError,
    DeadlineExceeded,
)


@dataclass(frozen=True)
class TransportFailure:
    text: str  # the sentence for the error message
    short: str  # a few words for the retry log line
    permanent: bool = False  # not worth a retry (a name that does not resolve)
    never_sent: bool = False  # the request certainly did not reach the server


class Auth(Protocol):
    """Supplies request headers; ``refresh`` gets new credentials after a 401 (False: nothing to renew)."""

    def headers(self) -> dict[str, str]: ...

    def refresh(self) -> bool: ...


class DownloadCheck(Protocol):
    """Looks at one try of a download as it streams in (``FhirClient.download``'s ``check``)."""

    def feed(self, chunk: bytes) -> None:
        """The next bytes of the body, as written to the file."""

    def problem(self, path: Path) -> tuple[str, int | None] | None:
        """Why the file received is not whole, and how many tries in all a file with this problem is
        worth (None: the retry policy's); None when it is whole."""


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


def _json_or_none(response: requests.Response) -> Any:
    """The body as JSON (parsed once, from bytes); None when it is not JSON or not valid UTF-8."""
    try:
        return parse_json(response.content or b"")
    except (ValueError, RecursionError):
        return None


def parse_json(data: bytes) -> Any:
    """JSON from bytes with orjson; what orjson refuses is decided by ``json`` (as the file source does).

    orjson builds a whole document tree before the Python objects, about 18 times the document's size
    at its peak: above ORJSON_MAX_BYTES ``json`` parses instead (about 5 times, and slower).
    Raises UnicodeDecodeError for bytes that are not UTF-8 (a BOM is accepted), ValueError otherwise.
    """
    if len(data) > ORJSON_MAX_BYTES:
        return loads_finite(data.decode("utf-8").removeprefix("\ufeff"))[0]
    try:
        if may_underflow(data):  # orjson reads a nonzero number too small for a double as 0.0
            raise orjson.JSONDecodeError("underflow", "", 0)
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        text = data.decode("utf-8")  # UnicodeDecodeError (a ValueError) names the byte
        # NaN or Infinity (not JSON numbers) are read as no value, as in files
        return loads_finite(text.removeprefix("\ufeff"))[0]


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and the exceptions in their args (urllib3 nests them)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        todo.extend(a for a in current.args if isinstance(a, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)


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
        deadline: float | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if not base_url.lower().startswith(("http://", "https://")):
            raise ConfigurationError(
                f"{base_url!r} is not an http(s) URL; give the FHIR base URL, e.g. https://host/fhir"
            )
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self.deadline = deadline if deadline is not None else DEADLINE_FACTOR * timeout
        self.max_body_bytes = max_body_bytes
        # What the transport noticed and the run should report (bytes replaced in a page, ...); the
        # server source adds these to the run's data-quality findings.
        self.quality = DataQuality()
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
        watch_adapter(adapter)
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
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
        Without ``stream`` the body is read here, once, within the deadline and the size cap: a
        connection dropped in the middle of it is retried like one dropped before the headers.
        """
        url = self.url(path_or_url)
        label = what or f"{method} {_path(url)}"
        retry_statuses = RETRY_STATUSES if idempotent else RETRY_STATUSES_UNSAFE
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            self.check_deadline(started, 0)  # a cancelled client sends nothing more
            try:
                with Watch(self.deadline) as watch:  # the deadline until the headers are in
                    try:
                        response, crossed = self._send(method, url, params, json_body, headers, authenticate)
                    except TRANSPORT_ERRORS:
                        if watch.expired:
                            raise DeadlineExceeded(self.deadline) from None
                        raise
                    if watch.expired:
                        # The headers were cut short when the timer shut the socket; what came before
                        # that (a status line and half a header) is not the server's answer.
                        response.close()
                        raise DeadlineExceeded(self.deadline)
                if not stream:
                    self._read_body(response, started, label)
            except requests.exceptions.SSLError as exc:
                raise SourceError(
                    f"TLS error talking to {self._show_origin(url)}: {type(exc).__name__}. If the server "
                    "uses a private CA, pass --ca-bundle PEM_FILE (--insecure turns checks off)"
                ) from None
            except TRANSPORT_ERRORS as exc:
                self.count("requests")
                self._log(method, url, type(exc).__name__, started)
                failure = self.transport_failure(exc, url)
                if failure.permanent:
                    raise SourceError(f"{label}: {failure.text}") from None
                if attempt >= self.retry.max_attempts or (not idempotent and not failure.never_sent):
                    raise SourceError(
                        f"{label}: {failure.text} after {attempt} attempt(s)", transient=True
                    ) from None
                self._wait(attempt, None, label, failure.short)
                continue
            self.count("requests")
            if not stream:
                self.count("bytes", _wire_bytes(response))
            self._log(method, url, str(response.status_code), started)
            status = response.status_code
            if status in expect:
                return response
            if stream:
                self._read_body(response, started, label, quiet=True)  # for the error message
            if (
                status == 401
                and authenticate
                and self.auth is not None
                and not refreshed
                and not crossed
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
            raise SourceError(
                self.describe_failure(response, label, attempt, crossed=crossed),
                transient=status in retry_statuses,
                status=status,
            )

    def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        headers: Mapping[str, str] | None,
        authenticate: bool,
    ) -> tuple[requests.Response, str | None]:
        """One try: send, following redirects here rather than in requests, so that the credentials go
        to each hop only when it is on the server's origin. Returns the response (headers read, body
        not yet) and the origin of the first hop on another host, if any."""
        crossed: str | None = None
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            send_headers = dict(headers or {})
            if authenticate and self.auth is not None and self.same_origin(current):
                send_headers.update(self.auth.headers())
            response = self.session.request(
                method,
                current,
                params=params if current == url else None,
                json=json_body,
                headers=send_headers,
                timeout=self.timeout,
                verify=self.verify,
                stream=True,
                allow_redirects=False,
            )
            location = response.headers.get("Location")
            if response.status_code not in REDIRECT_STATUSES or not location or method not in ("GET", "HEAD"):
                return response, crossed
            response.close()
            current = urljoin(response.url or current, location)
            if crossed is None and not self.same_origin(current):
                crossed = self._show_origin(current)
                log.warning(
                    "%s: the server redirects to another host (%s); the credentials are not sent there",
                    _path(url),
                    crossed,
                )
        raise SourceError(f"{_path(url)}: more than {MAX_REDIRECTS} redirects; check the --server URL")

    def _read_body(
        self, response: requests.Response, started: float, label: str, quiet: bool = False
    ) -> None:
        """Read the body once into ``response.content``: within the deadline, up to the size cap.

        ``read1`` returns whatever arrived, so a body that trickles in byte by byte still comes back
        here between bytes and the deadline is checked. ``quiet``: an error answer, read for its
        message; a failure to read it is not worth a retry.
        """
        chunks: list[bytes] = []
        size = 0
        raw: Any = response.raw
        try:
            while True:
                chunk = raw.read1(_CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise SourceError(
                        f"{label}: the answer is larger than {self.max_body_bytes // 1_000_000} MB, the "
                        "size cap for one page; lower --page-size"
                    )
                chunks.append(chunk)
                self.check_deadline(started, size)
        except SourceError:
            response.close()
            raise
        except Exception:
            response.close()
            if quiet:
                chunks = []
            else:
                raise
        response._content = b"".join(chunks)
        response._content_consumed = True  # type: ignore[attr-defined]
        chunks.clear()
        raw.release_conn()

    def cancel(self) -> None:
        """Make every request of this client in progress (in any thread) stop at its next chunk, and
        every new one fail: a run that is interrupted must not wait for slow answers it will not use."""
        self._cancelled.set()

    def check_deadline(self, started: float, received: int) -> None:
        """Raise DeadlineExceeded when a request has run past its overall deadline: ``deadline``
        seconds, extended by one second per MIN_RATE bytes received (a big file that keeps coming at
        a fair rate is not cut off; one that trickles is)."""
        if self._cancelled.is_set():
            raise SourceError("cancelled: the run is stopping")
        allowed = self.deadline + received / MIN_RATE
        if time.monotonic() - started > allowed:
            raise DeadlineExceeded(self.deadline)

    def transport_failure(self, exc: BaseException, url: str | None = None) -> TransportFailure:
        """What went wrong on the wire, in words a user can act on."""
        chain = _exception_chain(exc)
        names = {type(e).__name__ for e in chain}
        text = " ".join(str(e) for e in chain)
        bad_url = (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
        )
        if isinstance(exc, bad_url):
            return TransportFailure(f"the URL is not valid ({type(exc).__name__})", "bad URL", permanent=True)
        if isinstance(exc, DeadlineExceeded):
            return TransportFailure(
                f"the answer did not finish within the {exc.seconds:.0f} s deadline (the server sends "
                "too slowly or never stops)",
                "deadline exceeded",
            )
        if (
            "NameResolutionError" in names
            or any(isinstance(e, socket.gaierror) for e in chain)
            or ("Name or service not known" in text or "getaddrinfo failed" in text)
        ):
            host = urlsplit(url or self.base_url).hostname or self.base_url
            return TransportFailure(
                f"the host name {host} cannot be resolved (DNS); check the --server URL",
                "name not resolved",
                permanent=True,
            )
        where = self._show_origin(url or self.base_url)
        if isinstance(exc, requests.ConnectTimeout) or "ConnectTimeoutError" in names:
            return TransportFailure(
                f"cannot reach {where}: no connection within {self.timeout:g} s (timeout)",
                "connect timeout",
                never_sent=True,
            )
        if isinstance(exc, requests.Timeout) or names & {"ReadTimeoutError", "ReadTimeout", "TimeoutError"}:
            return TransportFailure(
                f"{where} sent nothing for {self.timeout:g} s (timeout; --timeout sets it)", "read timeout"
            )
        dropped = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)
        if isinstance(exc, dropped) or names & {"ProtocolError", "IncompleteRead", "DecodeError"}:
            return TransportFailure(
                f"the connection to {where} dropped in the middle of the answer", "connection dropped"
            )
        if "ConnectionRefusedError" in names or "NewConnectionError" in names:
            return TransportFailure(
                f"cannot reach {where} (connection refused)", "connection refused", never_sent=True
            )
        return TransportFailure(f"cannot reach {where} ({type(exc).__name__})", type(exc).__name__)

    def download(
        self,
        url: str,
        target: Path,
        *,
        headers: Mapping[str, str] | None = None,
        authenticate: bool = True,
        what: str = "",
        validate: Callable[[Path], str | None] | None = None,
        check: Callable[[Mapping[str, str]], DownloadCheck] | None = None,
    ) -> int:
        """Stream a file to ``target`` (through ``target.part``, renamed when complete); bytes received.

        A body cut short (the connection dropped, fewer bytes than Content-Length, the deadline passed,
        or ``validate`` finding the file incomplete) means the download failed: the file is fetched
        again, up to ``max_attempts`` times; then SourceError (transient). ``check`` makes, for each
        try, from the response headers, a ``DownloadCheck`` that sees the body as it streams in (no
        second read of a large file) and may find it not whole, and cap the tries such a file is worth.
        """
        label = what or f"GET {_path(url)}"
        part = target.with_name(target.name + ".part")
        attempt = 0
        while True:
            attempt += 1
            response = self.request(
                "GET", url, headers=headers, stream=True, authenticate=authenticate, what=label
            )
            started = time.monotonic()
            received = 0
            problem: str | None = None
            tries = self.retry.max_attempts
            raw: Any = response.raw
            checker = check(response.headers) if check is not None else None
            try:
                with part.open("wb") as out:
                    while True:
                        chunk = raw.read1(_CHUNK, decode_content=True)
                        if not chunk:
                            break
                        out.write(chunk)
                        if checker is not None:
                            checker.feed(chunk)
                        received += len(chunk)
                        self.check_deadline(started, received)
                problem = validate(part) if validate is not None else None
                if problem is None and checker is not None:
                    found = checker.problem(part)
                    if found is not None:
                        problem, cap = found
                        tries = min(tries, cap) if cap is not None else tries
            except TRANSPORT_ERRORS as exc:
                problem = self.transport_failure(exc, url).text
            finally:
                response.close()
            self.count("bytes", received)
            if problem is None:
                part.replace(target)
                return received
            if attempt >= tries:
                part.unlink(missing_ok=True)
                raise SourceError(f"{label}: {problem} after {attempt} attempt(s)", transient=True)
            self._wait(attempt, None, label, problem)

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
        retried once (a proxy may have cut it short), then reported.

        A body that is not valid UTF-8 is retried once too (bytes damaged on the way); if the server
        sends it so again, the bad bytes are replaced by U+FFFD, the page is used, and a data-quality
        warning says where (``self.quality``): the run goes on, and says so."""
        label = what or f"GET {_path(self.url(path_or_url))}"
        for attempt in (1, 2):
            response = self.get(path_or_url, params, what=label, headers=headers)
            content = response.content or b""
            try:
                body = parse_json(content)
            except UnicodeDecodeError as exc:
                if attempt == 2:
                    return self._replaced(content, exc, label, expect_type, response)
                body = None
                problem: str | None = f"invalid UTF-8 at byte {exc.start} of the answer"
            except RecursionError:
                raise SourceError(
                    f"{label}: the answer's JSON is nested too deeply to read (over 1,000 levels)"
                ) from None
            except ValueError:
                body = None
                problem = _not_fhir(response, None, expect_type)
            else:
                problem = _not_fhir(response, body, expect_type)
            if problem is None:
                return dict(body)
            if attempt == 2:
                raise SourceError(f"{label}: {problem}")
            self.count("retries")
            log.warning("%s: %s; trying once more", label, problem)
            self.sleep_fn(self.retry.backoff_base)
        raise AssertionError("unreachable")  # pragma: no cover

    def _replaced(
        self,
        content: bytes,
        error: UnicodeDecodeError,
        label: str,
        expect_type: str | None,
        response: requests.Response,
    ) -> dict[str, Any]:
        try:
            body = json.loads(content.decode("utf-8", errors="replace").removeprefix("\ufeff"))
        except (ValueError, RecursionError):
            body = None
        problem = _not_fhir(response, body, expect_type)
        if problem is not None:
            raise SourceError(f"{label}: invalid UTF-8 at byte {error.start} of the answer, and {problem}")
        with self._lock:  # worker threads share the client
            self.quality.add(
                "warning",
                label,
                "invalid-utf8",
                f"invalid UTF-8 at byte {error.start} of an answer (twice): the bad bytes were replaced "
                "by U+FFFD and the page was read; a code or value with them in it may not be recognised",
            )
        log.warning("%s: invalid UTF-8 at byte %d; bad bytes replaced", label, error.start)
        return dict(body)

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

    def describe_failure(
        self, response: requests.Response, label: str, attempts: int = 1, crossed: str | None = None
    ) -> str:
        """One clear sentence for a failed response: what happened and what the user can do."""
        status = response.status_code
        body = _json_or_none(response)
        diagnostics = outcome_text(body)
        tail = f" Server says: {diagnostics}" if diagnostics else ""
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if status in (401, 403) and crossed is not None and self.auth is not None:
            return (
                f"{label}: {status} from {crossed}: the server redirected the request to another host, "
                "and fhirscreen sends the credentials only to the --server host (scheme, host and port). "
                f"If {crossed} is the real FHIR server, give its address as --server.{tail}"
            )
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
    if body["resourceType"] == "Bundle":
        # A page whose entries or links are not lists cannot be read whole: an error (retried, then
        # data lost), never a page read as empty or as the last one.
        for key in ("entry", "link"):
            if body.get(key) is not None and not isinstance(body[key], list):
                return f"a Bundle whose {key} is not a list"
    return None
