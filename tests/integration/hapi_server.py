"""Start and stop the local HAPI FHIR JPA R4 test server (tests/fhir-server) for integration tests.

Typical session fixture::

    @pytest.fixture(scope="session")
    def hapi(tmp_path_factory):
        server = start_hapi(tmp_path_factory.mktemp("hapi"))
        yield server
        server.stop()

If the environment variable ``HAPI_BASE_URL`` is set (e.g. ``http://127.0.0.1:8080/fhir`` from
``tests/fhir-server/hapi.sh start``), that server is used as it is: it is not built, started or
stopped here. Otherwise ``tests/fhir-server/build.sh`` runs (a no-op when up to date), a free port
on 127.0.0.1 is picked and ``run.sh`` is started in its own session; its pid is the JVM's.

Only the standard library and requests are used, and nothing outside this file is imported, so the
module works both as ``tests.integration.hapi_server`` and as plain ``hapi_server`` on sys.path.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import requests

__all__ = ["SERVER_DIR", "HapiServer", "HapiStartError", "free_port", "start_hapi"]

#: tests/fhir-server, which holds build.sh and run.sh.
SERVER_DIR = Path(__file__).resolve().parent.parent / "fhir-server"

START_TIMEOUT_S = 300.0
BUILD_TIMEOUT_S = 900.0
STOP_TIMEOUT_S = 30.0


class HapiStartError(RuntimeError):
    """The server could not be built or did not become ready; the message holds the log tail."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return "(no log)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


class HapiServer:
    """A running HAPI FHIR server: ``base_url`` ends in ``/fhir`` and has no trailing slash.

    ``process`` is None for an external server (``HAPI_BASE_URL``), whose ``stop()`` does nothing.
    Usable as a context manager.
    """

    def __init__(
        self,
        base_url: str,
        process: subprocess.Popen[bytes] | None = None,
        log_path: Path | None = None,
        startup_seconds: float = 0.0,
        log_file: IO[bytes] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.process = process
        self.log_path = log_path
        self.startup_seconds = startup_seconds
        self._log_file = log_file

    @property
    def owned(self) -> bool:
        """True when this object started the server (and ``stop()`` will stop it)."""
        return self.process is not None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def stop(self) -> None:
        """SIGTERM the server's pid (only that pid), wait up to 30 s, then SIGKILL. Idempotent."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> HapiServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"HapiServer(base_url={self.base_url!r}, pid={self.pid})"


def _wait_ready(server: HapiServer, timeout: float) -> None:
    """Poll GET {base}/metadata once a second until 200; fail fast if the process exits."""
    url = f"{server.base_url}/metadata"
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        proc = server.process
        if proc is not None and proc.poll() is not None:
            raise HapiStartError(
                f"HAPI server exited with code {proc.returncode} before it was ready "
                f"(log {server.log_path}):\n{server.log_tail()}"
            )
        try:
            resp = requests.get(url, headers={"Accept": "application/fhir+json"}, timeout=30)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        if time.monotonic() >= deadline:
            raise HapiStartError(
                f"HAPI server at {url} not ready after {timeout:.0f} s (last: {last}); "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        time.sleep(1.0)


def _build(log_dir: Path, env: Mapping[str, str]) -> None:
    build_log = log_dir / "hapi-build.log"
    with build_log.open("wb") as out:
        try:
            result = subprocess.run(
                ["bash", str(SERVER_DIR / "build.sh")],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env),
                timeout=BUILD_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise HapiStartError(f"build.sh took over {BUILD_TIMEOUT_S:.0f} s:\n{_tail(build_log)}") from exc
    if result.returncode != 0:
        raise HapiStartError(f"build.sh failed with code {result.returncode}:\n{_tail(build_log)}")


def start_hapi(
    log_dir: str | os.PathLike[str],
    *,
    port: int | None = None,
    timeout: float = START_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    build: bool = True,
) -> HapiServer:
    """Return a ready HAPI FHIR server.

    With ``HAPI_BASE_URL`` set, wait for that server's /metadata and return it (never stopped here).
    Otherwise build if needed, start ``run.sh`` on 127.0.0.1:``port`` (default: a free port) with its
    output in ``log_dir/hapi-server.log``, and wait until GET /metadata returns 200 (up to
    ``timeout`` s). ``env`` adds variables such as HAPI_XMX or HAPI_DB_URL; ``args`` go to Spring
    Boot (e.g. ``["--hapi.default-page-size=20"]``). Raises HapiStartError with the log tail on
    failure, having stopped the process it started.
    """
    external = os.environ.get("HAPI_BASE_URL", "").strip()
    if external:
        server = HapiServer(external)
        _wait_ready(server, timeout)
        return server

    logs = Path(log_dir)
    logs.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, **(env or {})}
    if build:
        _build(logs, child_env)

    chosen = port if port is not None else free_port()
    child_env["HAPI_PORT"] = str(chosen)
    log_path = logs / "hapi-server.log"
    log_file = log_path.open("wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        ["bash", str(SERVER_DIR / "run.sh"), *args],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=child_env,
        start_new_session=True,
    )
    server = HapiServer(f"http://127.0.0.1:{chosen}/fhir", proc, log_path, log_file=log_file)
    atexit.register(server.stop)  # safety net if the caller never gets to stop()
    try:
        _wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    server.startup_seconds = time.monotonic() - started
    return server


if __name__ == "__main__":
    # Self-check: python3 tests/integration/hapi_server.py [LOG_DIR]
    t0 = time.monotonic()
    with start_hapi(sys.argv[1] if len(sys.argv) > 1 else "/tmp/hapi-server-logs") as srv:
        print(
            f"ready: {srv!r} in {srv.startup_seconds:.1f} s ({time.monotonic() - t0:.1f} s with build check)"
        )
        t1 = time.monotonic()
    print(f"stopped in {time.monotonic() - t1:.1f} s")
