"""Bulk Data export: kick-off, polling with Retry-After / X-Progress, downloads, error files, cleanup."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
import responses
from responses.registries import OrderedRegistry

from fhirscreen.fhir.codes import LOINC, SNOMED, Code
from fhirscreen.quality import DataQuality
from fhirscreen.sources.auth import BearerTokenAuth
from fhirscreen.sources.base import QueryPlan, SourceError
from fhirscreen.sources.bulk import BulkExport, kickoff_query, type_filters
from fhirscreen.sources.http import FhirClient

BASE = "https://ehr.test/fhir"
STATUS = f"{BASE}/$export-poll-status?_jobId=42"
PLAN = QueryPlan(population_codes=(Code(SNOMED, "55464009"),), observation_codes=(Code(LOINC, "33914-3"),))
PATIENT = {"resourceType": "Patient", "id": "p1"}
CONDITION = {"resourceType": "Condition", "id": "c1", "subject": {"reference": f"{BASE}/Patient/p1"}}


def ndjson(*resources: Mapping[str, object]) -> str:
    return "".join(json.dumps(r) + "\n" for r in resources)


def manifest(requires_token: bool = True, errors: bool = False) -> dict[str, object]:
    body: dict[str, object] = {
        "transactionTime": "2026-06-01T00:00:00Z",
        "requiresAccessToken": requires_token,
        "output": [
            {"type": "Patient", "url": f"{BASE}/Binary/a"},
            {"type": "Condition", "url": f"{BASE}/Binary/b"},
        ],
        "error": [],
    }
    if errors:
        body["error"] = [{"type": "OperationOutcome", "url": f"{BASE}/Binary/err"}]
    return body


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def exporter(clock: Clock, client: FhirClient | None = None, **kwargs: float) -> BulkExport:
    client = client or FhirClient(BASE, sleep=clock.sleep)
    return BulkExport(client, sleep=clock.sleep, clock=clock, **kwargs)  # type: ignore[arg-type]


def add_job(
    mock: responses.RequestsMock,
    polls: int = 2,
    retry_after: str = "120",
    error_file: str = "",
    **manifest_args: bool,
) -> None:
    """The calls of one export, in order (OrderedRegistry)."""
    mock.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    for i in range(polls):
        mock.get(STATUS, status=202, headers={"Retry-After": retry_after, "X-Progress": f"step {i}"})
    mock.get(STATUS, json=manifest(errors=bool(error_file), **manifest_args))
    mock.get(f"{BASE}/Binary/a", body=ndjson(PATIENT), content_type="application/fhir+ndjson")
    mock.get(f"{BASE}/Binary/b", body=ndjson(CONDITION), content_type="application/fhir+ndjson")
    if error_file:
        mock.get(f"{BASE}/Binary/err", body=error_file, content_type="application/fhir+ndjson")
    mock.delete(STATUS, status=202)


@responses.activate(registry=OrderedRegistry)
def test_export_kicks_off_polls_downloads_and_cleans_up(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    add_job(responses.mock)
    quality = DataQuality()
    job = exporter(clock)
    resources = [r for r, _o in job.read(PLAN, quality)]
    assert [r["id"] for r in resources] == ["p1", "c1"]
    assert resources[1]["subject"]["reference"] == "Patient/p1"  # absolute → Type/id
    kickoff = responses.calls[0].request
    assert kickoff.headers["Prefer"] == "respond-async"
    query = parse_qs(urlsplit(str(kickoff.url)).query)
    assert "Medication" in query["_type"][0].split(",")
    assert "Observation?code=33914-3" in query["_typeFilter"]
    downloads = [c.request for c in responses.calls if "/Binary/" in str(c.request.url)]
    assert all(d.headers["Accept"] == "application/fhir+ndjson" for d in downloads)
    assert responses.calls[-1].request.method == "DELETE"
    assert "step 1" in caplog.text  # X-Progress is shown


@responses.activate(registry=OrderedRegistry)
def test_retry_after_is_an_upper_bound_on_poll_waits(clock: Clock) -> None:
    add_job(responses.mock, polls=4, retry_after="120")
    list(exporter(clock).read(PLAN, DataQuality()))
    assert clock.now == 4  # 1 s polls while the job is young, never the 120 s HAPI always asks for


@responses.activate  # the default registry: the status callback answers every poll
def test_a_finished_export_is_found_at_most_a_quarter_late(clock: Clock) -> None:
    """Waits grow with the job's age (a quarter of it, capped at 30 s): a long job is polled a few
    dozen times, and the manifest is fetched soon after it is ready, not up to a whole doubling late."""
    ready_at = 1000.0
    polls: list[float] = []

    def status(_request: object) -> tuple[int, dict[str, str], str]:
        polls.append(clock.now)
        if clock.now < ready_at:
            return 202, {"X-Progress": "working"}, ""
        return 200, {}, json.dumps(manifest())

    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    responses.add_callback(responses.GET, STATUS, callback=status)
    responses.get(f"{BASE}/Binary/a", body=ndjson(PATIENT))
    responses.get(f"{BASE}/Binary/b", body=ndjson(CONDITION))
    responses.delete(STATUS, status=202)
    list(exporter(clock, total_timeout=7200).read(PLAN, DataQuality()))
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert max(gaps) <= 30
    assert all(gap <= max(1.0, 0.25 * t) + 1e-9 for t, gap in zip(polls, gaps, strict=False))
    assert polls[-1] - ready_at <= 30  # found within one capped wait of being ready
    assert len(polls) < 60  # a 1000 s job, a few dozen polls


@responses.activate(registry=OrderedRegistry)
def test_short_retry_after_is_honoured(clock: Clock) -> None:
    add_job(responses.mock, polls=3, retry_after="0.5")
    list(exporter(clock).read(PLAN, DataQuality()))
    assert clock.now == pytest.approx(1.5)


@responses.activate(registry=OrderedRegistry)
def test_429_while_polling_waits_as_asked(clock: Clock) -> None:
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, status=429, headers={"Retry-After": "30"})
    responses.get(STATUS, json=manifest())
    responses.get(f"{BASE}/Binary/a", body=ndjson(PATIENT))
    responses.get(f"{BASE}/Binary/b", body=ndjson(CONDITION))
    responses.delete(STATUS, status=202)
    assert len(list(exporter(clock).read(PLAN, DataQuality()))) == 2
    assert clock.now == 30


@responses.activate(registry=OrderedRegistry)
def test_export_that_never_finishes_times_out(clock: Clock) -> None:
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    for _ in range(200):
        responses.get(STATUS, status=202, headers={"Retry-After": "30"})
    with pytest.raises(SourceError, match="not ready after 300 s"):
        list(exporter(clock, total_timeout=300).read(PLAN, DataQuality()))
    assert not any(c.request.method == "DELETE" for c in responses.calls)  # left for manual recovery


@responses.activate
def test_kickoff_refused_shows_the_server_diagnostics(clock: Clock) -> None:
    responses.get(
        f"{BASE}/$export",
        status=400,
        json={
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": "error", "code": "processing", "diagnostics": "Must request async processing"}
            ],
        },
    )
    with pytest.raises(SourceError, match=r"kick-off.*Must request async processing"):
        list(exporter(clock).read(PLAN, DataQuality()))


@responses.activate
def test_kickoff_without_status_url(clock: Clock) -> None:
    responses.get(f"{BASE}/$export", status=202)
    with pytest.raises(SourceError, match="without a Content-Location"):
        list(exporter(clock).read(PLAN, DataQuality()))


@responses.activate(registry=OrderedRegistry)
def test_token_sent_to_files_only_when_required(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOK", "secret-token")
    client = FhirClient(BASE, auth=BearerTokenAuth("TOK"), sleep=clock.sleep)
    add_job(responses.mock, polls=0, requires_token=False)
    list(exporter(clock, client).read(PLAN, DataQuality()))
    downloads = [c.request for c in responses.calls if "/Binary/" in str(c.request.url)]
    assert downloads and all("Authorization" not in d.headers for d in downloads)
    assert responses.calls[0].request.headers["Authorization"] == "Bearer secret-token"


@responses.activate(registry=OrderedRegistry)
def test_error_files_become_data_quality_findings(clock: Clock) -> None:
    """An error in the export's error file is data the server did not export: data lost (for everyone,
    when it names no patient), without the server's free text. A warning stays a note."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "processing", "diagnostics": "Observation/9 of Jane Roe lost"},
            {"severity": "warning", "code": "informational", "diagnostics": "slow disk"},
        ],
    }
    add_job(responses.mock, polls=0, error_file=ndjson(outcome))
    quality = DataQuality()
    list(exporter(clock).read(PLAN, quality))
    assert [(f.severity, f.problem, f.where) for f in quality.sorted()] == [
        ("error", "data-lost", "bulk export error file 0"),
        ("warning", "export-error", "bulk export"),
    ]
    assert quality.partial
    lost, note = quality.sorted()
    assert "not exported (error processing)" in lost.message
    assert "warning about the export (warning informational)" in note.message
    assert not any("Jane" in f.message or "lost" in f.message for f in quality.findings)


@responses.activate(registry=OrderedRegistry)
def test_download_cut_off_is_retried(clock: Clock) -> None:
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, json=manifest())
    responses.get(f"{BASE}/Binary/a", body=requests.ConnectionError("reset"))
    responses.get(f"{BASE}/Binary/a", body=ndjson(PATIENT))
    responses.get(f"{BASE}/Binary/b", body=ndjson(CONDITION))
    responses.delete(STATUS, status=202)
    assert len(list(exporter(clock).read(PLAN, DataQuality()))) == 2


@responses.activate(registry=OrderedRegistry)
def test_failed_delete_does_not_spoil_the_run(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, json=manifest())
    responses.get(f"{BASE}/Binary/a", body=ndjson(PATIENT))
    responses.get(f"{BASE}/Binary/b", body=ndjson(CONDITION))
    for _ in range(5):
        responses.delete(STATUS, status=500)
    assert len(list(exporter(clock).read(PLAN, DataQuality()))) == 2
    assert "could not delete the export job" in caplog.text


@responses.activate(registry=OrderedRegistry)
def test_temp_files_are_removed_and_manifest_types_cannot_escape(
    clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(
        STATUS,
        json={"requiresAccessToken": False, "output": [{"type": "../../evil", "url": f"{BASE}/Binary/a"}]},
    )
    responses.get(f"{BASE}/Binary/a", body=ndjson(PATIENT))
    responses.delete(STATUS, status=202)
    assert [r["id"] for r, _o in exporter(clock).read(PLAN, DataQuality())] == ["p1"]
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path.parent / "evil.ndjson").exists()


@responses.activate(registry=OrderedRegistry)
def test_a_manifest_whose_output_is_not_a_list_is_an_error_not_an_empty_export(clock: Clock) -> None:
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(
        STATUS, json={"requiresAccessToken": False, "output": {"type": "Patient", "url": f"{BASE}/Binary/a"}}
    )
    responses.delete(STATUS, status=202)
    with pytest.raises(SourceError, match="not JSON with an output list"):
        list(exporter(clock).read(PLAN, DataQuality()))


def test_type_filters_keep_observations_to_the_trial() -> None:
    filters = type_filters(PLAN)
    assert filters == [
        "Observation?code=33914-3",
        "Observation?code:text=sledai",
        "Observation?category=survey",
    ]
    query = kickoff_query(PLAN)
    assert query.startswith("_type=Patient,Condition,Observation,")
    assert query.count("_typeFilter=") == 3
    assert unquote(query.split("_typeFilter=")[1].split("&")[0]) == "Observation?code=33914-3"


def test_export_levels() -> None:
    client = FhirClient(BASE)
    assert BulkExport(client).kickoff_path() == "$export"
    assert BulkExport(client, level="patient").kickoff_path() == "Patient/$export"
    assert BulkExport(client, level="group:sle cohort").kickoff_path() == "Group/sle%20cohort/$export"


# -- candidate-only export (Bulk Data 2.0 Patient/$export with a patient list) ---------------------------


def _job_after_kickoff(mock: responses.RequestsMock) -> None:
    mock.get(STATUS, json=manifest())
    mock.get(f"{BASE}/Binary/a", body=ndjson(PATIENT), content_type="application/fhir+ndjson")
    mock.get(f"{BASE}/Binary/b", body=ndjson(CONDITION), content_type="application/fhir+ndjson")
    mock.delete(STATUS, status=202)


@responses.activate(registry=OrderedRegistry)
def test_candidates_only_export_posts_the_patient_list(clock: Clock) -> None:
    responses.post(f"{BASE}/Patient/$export", status=202, headers={"Content-Location": STATUS})
    _job_after_kickoff(responses.mock)
    job = BulkExport(
        FhirClient(BASE, sleep=clock.sleep), sleep=clock.sleep, clock=clock, patients=["p1", "p2"]
    )
    resources = [r for r, _o in job.read(PLAN, DataQuality())]
    assert [r["id"] for r in resources] == ["p1", "c1"]
    kickoff = responses.calls[0].request
    assert kickoff.method == "POST" and kickoff.headers["Prefer"] == "respond-async"
    body = json.loads(kickoff.body or b"{}")
    assert body["resourceType"] == "Parameters"
    params = [
        (p["name"], p.get("valueString") or p.get("valueReference", {}).get("reference"))
        for p in body["parameter"]
    ]
    assert ("patient", "Patient/p1") in params and ("patient", "Patient/p2") in params
    types = dict(params)["_type"].split(",")
    assert "Medication" not in types  # not in the Patient compartment: fetched by id by the source
    assert {"Patient", "Condition", "Observation", "MedicationRequest"} <= set(types)
    assert ("_typeFilter", "Observation?code=33914-3") in params


@responses.activate(registry=OrderedRegistry)
def test_server_without_patient_lists_falls_back_to_a_system_export(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-supported", "diagnostics": "patient parameter"}],
    }
    responses.post(f"{BASE}/Patient/$export", status=400, json=outcome)
    add_job(responses.mock, polls=0)
    job = BulkExport(FhirClient(BASE, sleep=clock.sleep), sleep=clock.sleep, clock=clock, patients=["p1"])
    resources = [r for r, _o in job.read(PLAN, DataQuality())]
    assert [r["id"] for r in resources] == ["p1", "c1"]
    assert responses.calls[1].request.method == "GET"
    assert "Medication" in parse_qs(urlsplit(str(responses.calls[1].request.url)).query)["_type"][0]
    assert "exporting every patient instead" in caplog.text


def test_since_is_passed_on() -> None:
    assert "_since=2026-05-31T00%3A00%3A00Z" in kickoff_query(PLAN, since="2026-05-31T00:00:00Z")


def test_export_asks_for_pharmacy_fills_and_plans() -> None:
    types = parse_qs(kickoff_query(PLAN))["_type"][0].split(",")
    for rtype in ("MedicationDispense", "ServiceRequest", "CarePlan", "Appointment", "Medication"):
        assert rtype in types, rtype
    assert len(types) == len(set(types))


@responses.activate(registry=OrderedRegistry)
def test_findings_name_a_downloaded_file_by_what_it_was_not_its_temporary_path(clock: Clock) -> None:
    """A damaged line of a downloaded file was reported at its temporary path
    (/tmp/fhirscreen-bulk-.../0001.Condition.ndjson:2), gone once the run ends."""
    mock = responses.mock
    mock.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    mock.get(STATUS, json=manifest())
    mock.get(f"{BASE}/Binary/a", body=ndjson(PATIENT), content_type="application/fhir+ndjson")
    cut = '{"resourceType": "Condition", "id": "c2"\n'
    damaged = ndjson(CONDITION) + cut + ndjson({**CONDITION, "id": "c3"})
    mock.get(f"{BASE}/Binary/b", body=damaged, content_type="application/fhir+ndjson")
    mock.delete(STATUS, status=202)
    quality = DataQuality()
    ids = [r["id"] for r, _o in exporter(clock).read(PLAN, quality)]
    assert ids == ["p1", "c1", "c3"]  # the rest of the file is read
    (finding,) = [f for f in quality.findings if f.problem == "malformed-json"]
    assert finding.where == "Bulk export file 1 (Condition):2"
