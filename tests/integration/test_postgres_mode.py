"""HAPI on PostgreSQL, as production HAPI servers run: the same screening as file mode, by search and bulk.

H2 and PostgreSQL plan HAPI's searches differently (the Observation code search that scans every
Observation on H2 is an index lookup on PostgreSQL), so the parity checks run on both databases.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhirscreen.paths import sample_data_dir
from fhirscreen.sources.factory import SourceOptions
from fhirscreen.sources.upload import upload_path
from tests.integration.conftest import LoadedServer
from tests.integration.hapi_server import HapiServer, start_hapi
from tests.integration.postgres_server import PostgresServer, PostgresUnavailable, start_postgres
from tests.integration.test_server_mode import Run, assert_same_screening, screen

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is needed for these tests (.ci/run installs it): {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hapi_on_postgres(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[HapiServer]:
    server = start_hapi(tmp_path_factory.mktemp("hapi-pg"), env=postgres.hapi_env())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def loaded_postgres(hapi_on_postgres: HapiServer) -> LoadedServer:
    data = sample_data_dir()
    started = time.monotonic()
    options = SourceOptions(server=hapi_on_postgres.base_url, concurrency=2, timeout=120.0)
    summary = upload_path(options, data)
    return LoadedServer(hapi_on_postgres.base_url, data, summary, time.monotonic() - started)


@pytest.fixture(scope="module")
def file_run_pg(tmp_path_factory: pytest.TempPathFactory, loaded_postgres: LoadedServer) -> Run:
    return screen(tmp_path_factory.mktemp("file"), "--data", str(loaded_postgres.data))


def test_hapi_really_runs_on_postgresql(hapi_on_postgres: HapiServer) -> None:
    assert hapi_on_postgres.log_path is not None
    assert "Database: PostgreSQL" in hapi_on_postgres.log_path.read_text(errors="replace")


def test_sample_data_loads_completely_into_postgresql(loaded_postgres: LoadedServer) -> None:
    assert "failed" not in loaded_postgres.load_summary, loaded_postgres.load_summary


def test_search_mode_on_postgresql_equals_file_mode(
    loaded_postgres: LoadedServer, file_run_pg: Run, tmp_path: Path
) -> None:
    assert file_run_pg.candidates["patients"]
    assert_same_screening(file_run_pg, screen(tmp_path, "--server", loaded_postgres.base_url))


def test_observations_all_on_postgresql_equals_file_mode(
    loaded_postgres: LoadedServer, file_run_pg: Run, tmp_path: Path
) -> None:
    run = screen(tmp_path, "--server", loaded_postgres.base_url, "--observations", "all")
    assert_same_screening(file_run_pg, run)


def test_bulk_mode_on_postgresql_equals_file_mode(
    loaded_postgres: LoadedServer, file_run_pg: Run, tmp_path: Path
) -> None:
    bulk = screen(tmp_path, "--server", loaded_postgres.base_url, "--bulk", "-v")
    assert "$export" in bulk.stderr
    assert_same_screening(file_run_pg, bulk)
