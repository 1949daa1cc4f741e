"""A faulty HTTP proxy for tests: sits on 127.0.0.1 in front of a FHIR server and breaks answers on demand.

    with FaultProxy("http://127.0.0.1:8080/fhir") as proxy:
        proxy.add("drop-mid-body", "/Condition", times=1)
        ... fhirscreen screen --server proxy.base_url ...
        proxy.seen  # every request: method, path, the Host it was sent to, its Authorization header

Modes (a rule applies to requests whose path-and-query contains ``match``, ``times`` times or always):

- ``drop-mid-body``: the upstream answer's headers (with its full Content-Length), half its body, then
  the connection is closed.
- ``trickle``: headers promising a large body, then one byte of JSON whitespace every ``interval``
  seconds, forever (until the client gives up).
- ``trickle-headers``: a status line, then one byte of a header every ``interval`` seconds, forever.
- ``invalid-utf8``: the upstream answer with an invalid byte (0xFF) in a new string member.
- ``503-retry-after-0``: ``503 Service Unavailable`` with ``Retry-After: 0``; upstream is not asked.
- ``truncate-bulk-file``: the upstream answer without Content-Length, cut in the middle of a line
  (at ``fraction`` of its length), then the connection is closed.
- ``huge-body``: a ``size``-byte valid FHIR Bundle (padding in a string), sent as fast as possible.
- ``redirect-cross-host``: ``307`` to the same path on ``other`` (another origin).
- ``next-link-cross-host``: the upstream Bundle with its ``next`` link (one is added if none) moved to
  ``other``.
- ``bulk-file-cross-host``: the upstream Bulk manifest with every output URL moved to ``other``.
- ``outcome-phi``: ``status`` (400) with an OperationOutcome whose diagnostics hold ``text``.
- ``outcome-phi-in-bundle``: the upstream search Bundle plus an OperationOutcome entry holding ``text``.

``other`` is the base URL of another origin (e.g. a second FaultProxy reached as ``localhost``, which
is not the same origin as ``127.0.0.1``). URLs of the upstream in bodies and headers are rewritten to
the proxy's own, so next links and Bulk file URLs come back through the proxy.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


@dataclass
class Rule:
    mode: str
    match: str = ""
    times: int | None = None  # None: every matching request
    params: dict[str, Any] = field(default_factory=dict)
    hits: int = 0


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    host: str
    authorization: str | None
    fault: str | None


class FaultProxy:
    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        parts = urlsplit(upstream.rstrip("/"))
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.upstream_origin = f"{parts.scheme}://{parts.netloc}"
        self.prefix = parts.path
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.server = ThreadingHTTPServer((host, 0), _handler_for(self))
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    # -- control ---------------------------------------------------------------------------------------

    def origin(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    def base_url_at(self, host: str) -> str:
        return self.origin(host) + self.prefix

    @property
    def base_url(self) -> str:
        return self.base_url_at("127.0.0.1")

    def add(self, mode: str, match: str = "", times: int | None = None, **params: Any) -> Rule:
        rule = Rule(mode, match, times, params)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.seen.clear()

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _take(self, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.match in path and (rule.times is None or rule.hits < rule.times):
                    rule.hits += 1
                    return rule
        return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    # -- upstream --------------------------------------------------------------------------------------

    def fetch(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=300)
        try:
            sent = {
                k: v for k, v in headers.items() if k.lower() not in ("host", "accept-encoding", "connection")
            }
            sent["Accept-Encoding"] = "identity"
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.getheaders(), data
        finally:
            conn.close()

    def rewrite(self, data: bytes, own: str) -> bytes:
        return data.replace(self.upstream_origin.encode(), own.encode())


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

        # -- one request -------------------------------------------------------------------------------

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            rule = proxy._take(self.path)
            proxy._record(
                Seen(
                    self.command,
                    self.path,
                    self.headers.get("Host", ""),
                    self.headers.get("Authorization"),
                    rule.mode if rule else None,
                )
            )
            own = f"http://{self.headers.get('Host') or proxy.origin()}"
            try:
                if rule is None:
                    self._forward(body, own)
                else:
                    getattr(self, "_" + rule.mode.replace("-", "_").replace("503", "s503"))(rule, body, own)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                pass

        def _upstream(self, body: bytes | None, own: str) -> tuple[int, list[tuple[str, str]], bytes]:
            status, headers, data = proxy.fetch(self.command, self.path, dict(self.headers.items()), body)
            headers = [(k, proxy.rewrite(v.encode(), own).decode()) for k, v in headers]
            return status, headers, proxy.rewrite(data, own)

        def _head(
            self, status: int, headers: list[tuple[str, str]], length: int | None, close: bool = False
        ) -> None:
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in _HOP_HEADERS:
                    self.send_header(key, value)
            if length is not None:
                self.send_header("Content-Length", str(length))
            if close or length is None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()

        def _send(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
            self._head(status, headers, len(data))
            self.wfile.write(data)

        def _json(self, status: int, value: Any, extra: list[tuple[str, str]] | None = None) -> None:
            self._send(
                status,
                [("Content-Type", "application/fhir+json"), *(extra or [])],
                json.dumps(value).encode(),
            )

        def _forward(self, body: bytes | None, own: str) -> None:
            self._send(*self._upstream(body, own))

        # -- the faults --------------------------------------------------------------------------------

        def _drop_mid_body(self, rule: Rule, body: bytes | None, own: str) -> None:
            status, headers, data = self._upstream(body, own)
            self._head(status, headers, len(data), close=True)
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._abort()

        def _trickle(self, rule: Rule, body: bytes | None, own: str) -> None:
            self._head(200, [("Content-Type", "application/fhir+json")], 10**9, close=True)
            interval = float(rule.params.get("interval", 0.2))
            while not proxy._stopping.is_set():
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(interval)

        def _trickle_headers(self, rule: Rule, body: bytes | None, own: str) -> None:
            self.close_connection = True
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            interval = float(rule.params.get("interval", 0.2))
            while not proxy._stopping.is_set():
                self.wfile.write(b"z")
                self.wfile.flush()
                time.sleep(interval)

        def _invalid_utf8(self, rule: Rule, body: bytes | None, own: str) -> None:
            status, headers, data = self._upstream(body, own)
            start = data.index(b"{") + 1
            self._send(status, headers, data[:start] + b'"_fault":"caf\xff",' + data[start:])

        def _s503_retry_after_0(self, rule: Rule, body: bytes | None, own: str) -> None:
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "transient"}],
            }
            self._json(503, outcome, [("Retry-After", "0")])

        def _truncate_bulk_file(self, rule: Rule, body: bytes | None, own: str) -> None:
            status, headers, data = self._upstream(body, own)
            cut = int(len(data) * float(rule.params.get("fraction", 0.6)))
            while cut > 0 and data[cut - 1 : cut] == b"\n":
                cut -= 1  # inside a line, never exactly at its end
            self._head(status, headers, None)
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self._abort(graceful=True)  # a clean end of the stream: only the content says it is cut

        def _huge_body(self, rule: Rule, body: bytes | None, own: str) -> None:
            size = int(rule.params.get("size", 200_000_000))
            head = b'{"resourceType":"Bundle","type":"searchset","id":"'
            tail = b'","entry":[]}'
            self._head(200, [("Content-Type", "application/fhir+json")], size)
            self.wfile.write(head)
            left = size - len(head) - len(tail)
            block = b"x" * (1 << 20)
            while left > 0:
                self.wfile.write(block[: min(left, len(block))])
                left -= len(block)
            self.wfile.write(tail)

        def _redirect_cross_host(self, rule: Rule, body: bytes | None, own: str) -> None:
            target = str(rule.params["other"]).rstrip("/") + self.path[len(proxy.prefix) :]
            self._head(307, [("Location", target)], 0)

        def _next_link_cross_host(self, rule: Rule, body: bytes | None, own: str) -> None:
            status, _headers, data = self._upstream(body, own)
            bundle = json.loads(data)
            other = str(rule.params["other"]).rstrip("/")
            links = [link for link in bundle.get("link") or () if link.get("relation") != "next"]
            links.append({"relation": "next", "url": f"{other}{self.path[len(proxy.prefix) :]}&_page=2"})
            bundle["link"] = links
            self._json(status, bundle)

        def _bulk_file_cross_host(self, rule: Rule, body: bytes | None, own: str) -> None:
            status, headers, data = self._upstream(body, own)
            if status != 200:
                self._send(status, headers, data)
                return
            manifest = json.loads(data)
            other = str(rule.params["other"]).rstrip("/")
            for item in manifest.get("output") or ():
                item["url"] = (
                    other
                    + urlsplit(item["url"]).path[len(proxy.prefix) :]
                    + ("?" + urlsplit(item["url"]).query if urlsplit(item["url"]).query else "")
                )
            self._json(200, manifest)

        def _outcome_phi(self, rule: Rule, body: bytes | None, own: str) -> None:
            issue = {"severity": "error", "code": "processing", "diagnostics": rule.params["text"]}
            self._json(
                int(rule.params.get("status", 400)), {"resourceType": "OperationOutcome", "issue": [issue]}
            )

        def _outcome_phi_in_bundle(self, rule: Rule, body: bytes | None, own: str) -> None:
            status, _headers, data = self._upstream(body, own)
            bundle = json.loads(data)
            issue = {"severity": "warning", "code": "informational", "diagnostics": rule.params["text"]}
            entry = {
                "resource": {"resourceType": "OperationOutcome", "issue": [issue]},
                "search": {"mode": "outcome"},
            }
            bundle["entry"] = [*(bundle.get("entry") or []), entry]
            self._json(status, bundle)

        def _abort(self, graceful: bool = False) -> None:
            """Close the connection mid-answer: at once (RST where the OS allows), or with a clean FIN."""
            self.close_connection = True
            try:
                if graceful:
                    self.connection.shutdown(socket.SHUT_WR)
                else:
                    linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            except OSError:
                pass
            self.connection.close()

    return Handler


class StaticUpstream:
    """A tiny upstream for fast tests: answers GETs from a dict of path-and-query (or path) ->
    (status, bytes) or (status, bytes, headers)."""

    def __init__(self, answers: dict[str, tuple[Any, ...]] | None = None, prefix: str = "/fhir") -> None:
        self.answers = answers or {}
        self.prefix = prefix
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                missing = (404, b'{"resourceType":"OperationOutcome"}')
                answer = upstream.answers.get(
                    self.path, upstream.answers.get(self.path.split("?")[0], missing)
                )
                status, data = answer[0], answer[1]
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                for key, value in (answer[2] if len(answer) > 2 else {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}{prefix}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> StaticUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
