"""Integration fixtures: one HAPI FHIR JPA server per test session, loaded once with the sample data.

The server is built and started by ``tests/integration/hapi_server.py`` (or taken from ``HAPI_BASE_URL``),
and the samples go up through the same code path as ``fhirscreen load``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fhirscreen.paths import sample_data_dir
from fhirscreen.sources.factory import SourceOptions
from fhirscreen.sources.upload import upload_path
from tests.integration.hapi_server import HapiServer, start_hapi


@dataclass(frozen=True)
class LoadedServer:
    base_url: str
    data: Path
    load_summary: str
    load_seconds: float


@pytest.fixture(scope="session")
def hapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HapiServer]:
    server = start_hapi(tmp_path_factory.mktemp("hapi"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def loaded_server(hapi: HapiServer) -> LoadedServer:
    data = sample_data_dir()
    started = time.monotonic()
    summary = upload_path(SourceOptions(server=hapi.base_url, concurrency=2, timeout=120.0), data)
    return LoadedServer(hapi.base_url, data, summary, time.monotonic() - started)
