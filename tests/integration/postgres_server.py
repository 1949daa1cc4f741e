"""Start and stop a private PostgreSQL cluster (Debian's ``postgresql`` package) for the HAPI test server.

Production HAPI FHIR servers run on PostgreSQL, whose query plans differ from H2's; the integration
tests and the benchmark run HAPI on both. The cluster lives in its own temporary data folder, listens on
127.0.0.1 on a free port (and on a Unix socket inside the data folder), trusts local connections, and
is removed on ``stop()``. Nothing of the machine's own PostgreSQL service is touched.

PostgreSQL refuses to run as root: when the tests run as root (CI here), ``initdb`` and ``postgres`` run
as the ``postgres`` system user that Debian's package creates, and the data folder is handed to it.

Typical use::

    with start_postgres() as pg:
        server = start_hapi(logs, env=pg.hapi_env())

Like ``hapi_server.py``, only the standard library is used and nothing outside this file is imported.
Run ``python3 tests/integration/postgres_server.py`` for a self-check.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bindir", "start_postgres"]

START_TIMEOUT_S = 60.0
DATABASE = "hapi"
USER = "hapi"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server binaries are missing, or the cluster could not start (message says which)."""


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and postgres, else None."""
    candidates = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        bindir = initdb.parent
        if (bindir / "postgres").exists():
            try:
                candidates.append((float(bindir.parent.name), bindir))
            except ValueError:
                continue
    return max(candidates)[1] if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the server as: the ``postgres`` user when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            "running as root, but there is no 'postgres' user to run PostgreSQL as "
            "(apt-get install postgresql creates it)"
        ) from None
    return entry.pw_uid, entry.pw_gid


class PostgresServer:
    """A running private cluster; ``jdbc_url`` is what HAPI_DB_URL wants."""

    def __init__(
        self, bindir: Path, datadir: Path, port: int, process: subprocess.Popen[bytes], keep: bool = False
    ) -> None:
        self.bindir = bindir
        self.datadir = datadir
        self.keep = keep  # a persistent cluster (a benchmark database): stop() leaves its folder
        self.port = port
        self.process = process
        self.startup_seconds = 0.0

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://127.0.0.1:{self.port}/{DATABASE}"

    def hapi_env(self) -> dict[str, str]:
        """Environment for tests/fhir-server/run.sh to use this database."""
        return {"HAPI_DB_URL": self.jdbc_url, "HAPI_DB_USER": USER, "HAPI_DB_PASSWORD": ""}

    def log_tail(self, lines: int = 30) -> str:
        log = self.datadir / "postgres.log"
        if not log.exists():
            return "(no log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then remove the data folder unless it is kept. Idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT = PostgreSQL's "fast" shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        if not self.keep:
            shutil.rmtree(self.datadir.parent, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_postgres(
    *, port: int | None = None, shared_buffers: str = "256MB", folder: Path | None = None
) -> PostgresServer:
    """Create a cluster in a new temporary folder, start it and create the ``hapi`` database.

    ``folder``: keep the cluster there instead (created on first use, reused and left in place after;
    the benchmark keeps one loaded database per population). Its parents must be enterable by the
    ``postgres`` user when running as root.
    """
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
            "(apt-get install postgresql)"
        )
    owner = _run_as()
    # Not under pytest's tmp folders: those are 0700 root, which the postgres user cannot enter.
    top = folder if folder is not None else Path(tempfile.mkdtemp(prefix="fhirscreen-pg-"))
    top.mkdir(parents=True, exist_ok=True)
    datadir = top / "data"
    fresh = not (datadir / "PG_VERSION").exists()
    datadir.mkdir(mode=0o700, exist_ok=True)
    if owner is not None:
        os.chmod(top, 0o755)
        os.chown(datadir, *owner)
    user_kw: dict[str, int] = {} if owner is None else {"user": owner[0], "group": owner[1]}
    started = time.monotonic()
    if fresh:
        _initdb(bindir, datadir, user_kw)
    chosen = port if port is not None else _free_port()
    log = open(datadir / "postgres.log", "ab")  # noqa: SIM115 - the server process keeps writing to it
    proc = subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D", str(datadir),
            "-p", str(chosen),
            "-k", str(datadir),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"shared_buffers={shared_buffers}",
            "-c", "max_connections=50",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        **user_kw,  # type: ignore[arg-type]
    )
    server = PostgresServer(bindir, datadir, chosen, proc, keep=folder is not None)
    atexit.register(server.stop)
    _wait_ready(server)
    if fresh:
        created = subprocess.run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(chosen), "-U", USER, DATABASE],
            capture_output=True,
            check=False,
        )
        if created.returncode != 0:
            server.stop()
            raise PostgresUnavailable(f"createdb failed: {created.stderr.decode(errors='replace')}")
    server.startup_seconds = time.monotonic() - started
    return server


def _initdb(bindir: Path, datadir: Path, user_kw: dict[str, int]) -> None:
    init = subprocess.run(
        [str(bindir / "initdb"), "-D", str(datadir), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-locale"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        check=False,
        **user_kw,  # type: ignore[arg-type]
    )
    if init.returncode != 0:
        shutil.rmtree(datadir, ignore_errors=True)
        raise PostgresUnavailable(f"initdb failed: {init.stderr.decode(errors='replace')[-2000:]}")


def _wait_ready(server: PostgresServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    ready_cmd = [str(server.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(server.port), "-U", USER]
    while True:
        if server.process.poll() is not None:
            tail = server.log_tail()
            server.stop()
            raise PostgresUnavailable(f"postgres exited with code {server.process.returncode}:\n{tail}")
        if subprocess.run([*ready_cmd, "-d", "postgres"], capture_output=True, check=False).returncode == 0:
            return
        if time.monotonic() > deadline:
            tail = server.log_tail()
            server.stop()
            raise PostgresUnavailable(f"postgres not ready after {START_TIMEOUT_S:.0f} s:\n{tail}")
        time.sleep(0.2)


if __name__ == "__main__":
    t0 = time.monotonic()
    with start_postgres() as pg:
        print(f"ready: {pg.jdbc_url} in {pg.startup_seconds:.1f} s (data in {pg.datadir})")
    print(f"stopped; total {time.monotonic() - t0:.1f} s")
    sys.exit(0)
