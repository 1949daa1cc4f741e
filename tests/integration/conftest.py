"""Integration fixtures: one HAPI FHIR JPA server per test session, loaded once with the sample data
and the server-parity patients (tests/fixtures/server_parity: child-coded, SNOMED-only and WHO-coded
SLE, MedicationDispense, ServiceRequest, CarePlan and Appointment records).

The server is built and started by ``tests/integration/hapi_server.py`` (or taken from ``HAPI_BASE_URL``),
and the data goes up through the same code path as ``fhirscreen load``. ``LoadedServer.data`` is one
folder holding both, so that every file-mode run compares against exactly what the server holds.
"""

from __future__ import annotations

import shutil
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


PARITY_DATA = Path(__file__).resolve().parent.parent / "fixtures" / "server_parity"


@pytest.fixture(scope="session")
def loaded_server(hapi: HapiServer, tmp_path_factory: pytest.TempPathFactory) -> LoadedServer:
    data = tmp_path_factory.mktemp("screened-data")
    shutil.copytree(sample_data_dir(), data / "samples")
    shutil.copytree(PARITY_DATA, data / "server_parity", ignore=shutil.ignore_patterns("*.md"))
    started = time.monotonic()
    summary = upload_path(SourceOptions(server=hapi.base_url, concurrency=2, timeout=120.0), data)
    return LoadedServer(hapi.base_url, data, summary, time.monotonic() - started)
