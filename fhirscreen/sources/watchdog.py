"""The overall deadline before the headers: a server that trickles its status line and headers.

Socket timeouts bound each read, not a request: a server sending one header byte every few seconds
would keep a request (and a nightly run) alive forever. The body is read by the client in small
pieces and checks the deadline itself; until the headers are in, a timer does it: when it fires, it
shuts the request's socket down, the blocked read returns, and the client reports the deadline.

The socket is found through the connection classes of the session's pools, which note the socket
of each connection that starts waiting for an answer in the thread that sent it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


class Watch:
    """One request's wait for its headers: ``expired`` once the timer fired."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Watch:
        _local.watch = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _local.watch = None

    def note(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shutdown()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # already closed
                self._sock.shutdown(socket.SHUT_RDWR)


def _note_socket(connection: Any) -> None:
    watch = getattr(_local, "watch", None)
    if watch is not None:
        watch.note(getattr(connection, "sock", None))


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _note_socket(self)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _note_socket(self)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def watch_adapter(adapter: HTTPAdapter) -> None:
    """Make the adapter's connections watchable: direct ones, and those through an HTTP(S) proxy
    (HTTPS_PROXY / HTTP_PROXY, common in hospital networks), whose pools requests makes per proxy.
    SOCKS proxies keep their own connection classes: their requests have the socket timeouts only."""
    adapter.poolmanager.pool_classes_by_scheme = dict(_WATCHED_POOLS)
    make_proxy_manager = adapter.proxy_manager_for

    def proxy_manager_for(proxy: str, **kwargs: Any) -> Any:
        manager = make_proxy_manager(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_WATCHED_POOLS)
        return manager

    adapter.proxy_manager_for = proxy_manager_for  # type: ignore[method-assign]
