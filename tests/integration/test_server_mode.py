"""Screening a real HAPI FHIR server gives exactly the file-mode result, by search and by Bulk export."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from fhirscreen.paths import SAMPLE_AS_OF
from fhirscreen.sources.base import QueryPlan
from fhirscreen.sources.server import request_bound
from fhirscreen.trial.loader import load_trial
from tests.integration.conftest import LoadedServer

pytestmark = pytest.mark.integration

AS_OF = SAMPLE_AS_OF.isoformat()
_STATS = re.compile(
    r"server: (\d+) requests \((\d+) retries\), ([\d.]+) MB received, (\d+) resources in ([\d.]+) s"
)
_READ = re.compile(r"read (\d+) resources for (\d+) patients")


@dataclass(frozen=True)
class Run:
    candidates: dict[str, Any]
    out: Path
    stderr: str
    seconds: float

    @property
    def requests(self) -> int:
        found = _STATS.search(self.stderr)
        assert found, f"no request summary in:\n{self.stderr[-2000:]}"
        return int(found.group(1))

    @property
    def patients_read(self) -> int:
        found = _READ.search(self.stderr)
        assert found
        return int(found.group(2))


def screen(out: Path, *args: str) -> Run:
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fhirscreen.cli",
            "screen",
            "--as-of",
            AS_OF,
            "--out",
            str(out),
            "--format",
            "json",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.monotonic() - started
    assert proc.returncode == 0, f"fhirscreen screen {' '.join(args)} failed:\n{proc.stderr[-3000:]}"
    candidates = json.loads((out / "candidates.json").read_text())
    return Run(candidates, out, proc.stderr, seconds)


def comparable(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "source"}


def assert_same_screening(expected: Run, actual: Run) -> None:
    """Every patient and every criterion first (readable failures), then the whole document."""
    want = {p["patient"]: p for p in expected.candidates["patients"]}
    got = {p["patient"]: p for p in actual.candidates["patients"]}
    assert sorted(got) == sorted(want), "different patients in the initial population"
    for patient, entry in want.items():
        for criterion, result in entry["criteria"].items():
            assert got[patient]["criteria"].get(criterion) == result, f"{patient} {criterion} differs"
        assert got[patient]["status"] == entry["status"], patient
    assert comparable(actual.candidates) == comparable(expected.candidates)


@pytest.fixture(scope="module")
def file_run(tmp_path_factory: pytest.TempPathFactory, loaded_server: LoadedServer) -> Run:
    return screen(tmp_path_factory.mktemp("file"), "--data", str(loaded_server.data))


@pytest.fixture(scope="module")
def server_run(tmp_path_factory: pytest.TempPathFactory, loaded_server: LoadedServer) -> Run:
    return screen(tmp_path_factory.mktemp("server"), "--server", loaded_server.base_url, "-v")


def test_sample_data_loads_completely(loaded_server: LoadedServer) -> None:
    assert "failed" not in loaded_server.load_summary, loaded_server.load_summary


def test_loading_twice_changes_nothing(loaded_server: LoadedServer, file_run: Run, tmp_path: Path) -> None:
    from fhirscreen.sources.factory import SourceOptions
    from fhirscreen.sources.upload import upload_path

    upload_path(
        SourceOptions(server=loaded_server.base_url, concurrency=2, timeout=120.0), loaded_server.data
    )
    assert_same_screening(file_run, screen(tmp_path, "--server", loaded_server.base_url))


def test_server_mode_equals_file_mode(file_run: Run, server_run: Run) -> None:
    assert file_run.candidates["patients"], "the sample data should have an initial population"
    assert_same_screening(file_run, server_run)


def test_verbose_shows_each_request_without_secrets(server_run: Run) -> None:
    lines = [line for line in server_run.stderr.splitlines() if re.search(r"GET http\S+ \d{3} \d+ ms$", line)]
    assert len(lines) == server_run.requests
    assert "Authorization" not in server_run.stderr


def test_request_count_stays_within_the_plan_bound(server_run: Run) -> None:
    plan = QueryPlan.for_trial(load_trial())
    patients = server_run.patients_read
    resources = int(_STATS.search(server_run.stderr).group(4))  # type: ignore[union-attr]
    page_size = 200
    # One page per search, plus at most one more page per page_size resources read.
    bound = request_bound(patients, plan) + math.ceil(resources / page_size)
    assert server_run.requests <= bound
    naive = patients * len(plan.resource_types)  # one request per patient per type
    assert server_run.requests < naive


def test_paging_with_a_page_size_smaller_than_the_population(
    loaded_server: LoadedServer, file_run: Run, server_run: Run, tmp_path: Path
) -> None:
    page_size = 5
    assert server_run.patients_read > page_size
    paged = screen(tmp_path, "--server", loaded_server.base_url, "--page-size", str(page_size), "-v")
    assert_same_screening(file_run, paged)
    assert "_getpages=" in paged.stderr  # HAPI's next links were followed
    assert paged.requests > server_run.requests


def test_observations_all_equals_file_mode_with_fewer_searches(
    loaded_server: LoadedServer, file_run: Run, server_run: Run, tmp_path: Path
) -> None:
    unfiltered = screen(tmp_path, "--server", loaded_server.base_url, "--observations", "all")
    assert_same_screening(file_run, unfiltered)
    assert unfiltered.requests < server_run.requests  # one Observation search per batch


def test_bulk_mode_equals_file_mode(loaded_server: LoadedServer, file_run: Run, tmp_path: Path) -> None:
    bulk = screen(tmp_path, "--server", loaded_server.base_url, "--bulk", "-v")
    assert "$export" in bulk.stderr
    # Only the candidates are exported (Bulk Data 2.0 patient list), not every patient on the server.
    assert "bulk export started for" in bulk.stderr, bulk.stderr[-3000:]
    assert "exporting every patient instead" not in bulk.stderr
    assert_same_screening(file_run, bulk)


def test_default_search_chooses_an_observation_plan(server_run: Run) -> None:
    assert "Observation searches:" in server_run.stderr


def test_post_report_then_read_it_back(loaded_server: LoadedServer, tmp_path: Path) -> None:
    run = screen(tmp_path, "--server", loaded_server.base_url, "--post-report")
    posted = dict(re.findall(r"posted (MeasureReport|Group)/(\S+)", run.stderr))
    assert set(posted) == {"MeasureReport", "Group"}, run.stderr[-2000:]
    local = json.loads((tmp_path / "measure-report.json").read_text())
    stored = requests.get(
        f"{loaded_server.base_url}/MeasureReport/{posted['MeasureReport']}",
        headers={"Accept": "application/fhir+json"},
        timeout=30,
    ).json()
    assert stored["id"] == local["id"]
    assert [(p["id"], p["count"]) for p in stored["group"][0]["population"]] == [
        (p["id"], p["count"]) for p in local["group"][0]["population"]
    ]
    group = requests.get(f"{loaded_server.base_url}/Group/{posted['Group']}", timeout=30).json()
    local_group = json.loads((tmp_path / "group.json").read_text())
    assert group["quantity"] == local_group["quantity"]
    # Posting again replaces, it does not duplicate (deterministic ids, PUT in a transaction).
    screen(tmp_path / "again", "--server", loaded_server.base_url, "--post-report")
    found = requests.get(
        f"{loaded_server.base_url}/MeasureReport", params={"_id": posted["MeasureReport"]}, timeout=30
    ).json()
    assert found.get("total", len(found.get("entry", []))) == 1


def test_explain_reads_one_patient_by_search(loaded_server: LoadedServer, file_run: Run) -> None:
    patient = file_run.candidates["patients"][0]["patient"].split("/")[1]
    args = ["explain", patient, "--as-of", AS_OF]
    by_file = subprocess.run(
        [sys.executable, "-m", "fhirscreen.cli", *args, "--data", str(loaded_server.data)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    by_server = subprocess.run(
        [sys.executable, "-m", "fhirscreen.cli", *args, "--server", loaded_server.base_url, "-v"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert by_server.stdout.replace(loaded_server.base_url, "SOURCE") == by_file.stdout.replace(
        str(loaded_server.data), "SOURCE"
    )
    assert "Condition?code=" not in by_server.stderr  # no population search for one patient
