"""Server search mode, end to end on the golden patients behind a fake FHIR server: a search that the
server answers, but not in full (fewer entries than its total, an error outcome entry, a failing
batch), must never leave a patient eligible on an incomplete record nor lose a candidate; the run
exits 5 (partial) instead."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from click.testing import CliRunner, Result

from fhirscreen.cli import main
from fhirscreen.exitcodes import EXIT_PARTIAL
from fhirscreen.quality import DataQuality
from fhirscreen.sources.files import FileSource
from tests.unit.test_server_source import BASE, FakeFhir, inline_contained_medications

GOLDEN_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "golden_data"
AS_OF = "2026-06-01"
# Rituximab four weeks before the as-of date: makes gp-eligible ineligible (E6) when it is read.
RITUXIMAB = {
    "resourceType": "MedicationAdministration",
    "id": "gp-e-rtx",
    "status": "completed",
    "subject": {"reference": "Patient/gp-eligible"},
    "medicationCodeableConcept": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "121191"}]
    },
    "effectiveDateTime": "2026-04-15",
}

Query = dict[str, str]
Answer = tuple[int, dict[str, str], str]


pytestmark = pytest.mark.usefixtures("bundled_trial_in_cli", "client_never_waits")


@pytest.fixture(scope="module")
def golden() -> list[dict[str, Any]]:
    return [inline_contained_medications(r) for r, _ in FileSource(GOLDEN_DATA).read(None, DataQuality())]


class Faulty(FakeFhir):
    """FakeFhir with hooks: ``fault(path, query)`` answers instead of the fake (None: it does not);
    ``mutate(path, query, bundle)`` changes what the fake answered."""

    def __init__(
        self,
        resources: list[dict[str, Any]],
        fault: Callable[[str, Query], Answer | None] | None = None,
        mutate: Callable[[str, Query, dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(resources)
        self.fault = fault
        self.mutate = mutate

    def handle(self, request: requests.PreparedRequest) -> Answer:
        parts = urlsplit(str(request.url))
        path = parts.path[len("/fhir") :].strip("/")
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if self.fault is not None:
            answer = self.fault(path, query)
            if answer is not None:
                self.log.append(f"{path or 'page'}?{parts.query}")
                return answer
        status, headers, body = super().handle(request)
        if self.mutate is not None and status == 200:
            body = json.dumps(self.mutate(path, query, json.loads(body)))
        return status, headers, body


def screen(fake: FakeFhir, out: Path, *args: str) -> Result:
    argv = ["screen", "--server", BASE, "--as-of", AS_OF, "--format", "json", "--out", str(out), *args]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        return CliRunner().invoke(main, argv)


def listed(out: Path) -> dict[str, tuple[str, str]]:
    doc = json.loads((out / "latest" / "candidates.json").read_text())
    return {p["patient"]: (p["status"], p.get("caveat") or "") for p in doc["patients"]}


def findings(out: Path) -> list[dict[str, str]]:
    return list(json.loads((out / "latest" / "candidates.json").read_text())["data_quality"])


def test_the_golden_patients_with_rituximab_screen_clean(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    result = screen(FakeFhir([*golden, RITUXIMAB]), tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert listed(tmp_path / "out")["Patient/gp-eligible"][0] == "ineligible"


def test_a_batch_search_short_of_its_total_twice_is_lost_for_its_patients(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The server counted the rituximab administration but its pages never held it: without it the
    patient would be 'eligible', exit 0."""
    searched: list[str] = []

    def drop(path: str, query: Query, bundle: dict[str, Any]) -> dict[str, Any]:
        if path == "MedicationAdministration" or "_getpages" in query:
            searched.append(path)
            entries = bundle.get("entry", [])
            bundle["entry"] = [e for e in entries if e["resource"].get("id") != RITUXIMAB["id"]]
        return bundle

    out = tmp_path / "out"
    result = screen(Faulty([*golden, RITUXIMAB], mutate=drop), out)
    assert result.exit_code == EXIT_PARTIAL, result.output
    status, caveat = listed(out)["Patient/gp-eligible"]
    assert status == "possible" and "lost" in caveat
    assert searched.count("MedicationAdministration") == 2  # searched again once before giving up
    lost = [f for f in findings(out) if f["problem"] == "data-lost"]
    assert {f["where"] for f in lost} == {
        "Patient/gp-eligible",
        "Patient/gp-possible",
        "Patient/gp-ineligible",
    }
    assert "counted" in lost[0]["message"]


def test_a_search_short_once_is_searched_again_and_then_whole(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Resources deleted while the run paged: the second search is whole, nothing is lost."""
    tries: list[str] = []

    def short_once(path: str, query: Query, bundle: dict[str, Any]) -> dict[str, Any]:
        if path == "MedicationAdministration":
            tries.append(path)
            if len(tries) == 1:
                bundle["total"] = int(bundle.get("total") or 0) + 1
        return bundle

    out = tmp_path / "out"
    result = screen(Faulty([*golden, RITUXIMAB], mutate=short_once), out)
    assert result.exit_code == 0, result.output
    assert len(tries) == 2
    assert listed(out)["Patient/gp-eligible"][0] == "ineligible"
    assert not [f for f in findings(out) if f["problem"] == "data-lost"]


def test_a_population_search_short_of_its_total_is_partial_and_nobody_is_eligible(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Candidates may be missing altogether: the run says so by its exit code and run.json, and nobody
    is offered as eligible (the missing could be anyone's)."""

    def inflate(path: str, query: Query, bundle: dict[str, Any]) -> dict[str, Any]:
        if path == "Condition" and "code" in query:
            bundle["total"] = int(bundle.get("total") or 0) + 40
        return bundle

    out = tmp_path / "out"
    result = screen(Faulty(golden, mutate=inflate), out)
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert json.loads((out / "latest" / "run.json").read_text())["partial"] is True
    statuses = {status for status, _caveat in listed(out).values()}
    assert "eligible" not in statuses and listed(out)["Patient/gp-eligible"][0] == "possible"
    [lost] = [f for f in findings(out) if f["problem"] == "data-lost"]
    assert lost["where"] == "Condition search (initial population)"
    assert "?" not in lost["where"] + lost["message"]  # no query string (codes, ids) in findings


def _outcome(severity: str, code: str) -> dict[str, Any]:
    issue = {"severity": severity, "code": code, "diagnostics": "Harriet Quimby MRN 40021987 timed out"}
    return {"search": {"mode": "outcome"}, "resource": {"resourceType": "OperationOutcome", "issue": [issue]}}


@pytest.mark.parametrize(
    ("severity", "code"), [("error", "incomplete"), ("fatal", "exception"), ("warning", "too-costly")]
)
def test_a_batch_search_whose_outcome_entry_says_it_failed_is_lost_for_its_patients(
    golden: list[dict[str, Any]], tmp_path: Path, severity: str, code: str
) -> None:
    """The server cut the search short and said so in an outcome entry: the rituximab it did not send
    would make the patient ineligible."""

    def truncated(path: str, query: Query, bundle: dict[str, Any]) -> dict[str, Any]:
        if path == "MedicationAdministration":
            bundle.pop("total", None)
            bundle["entry"] = [e for e in bundle.get("entry", []) if e["resource"]["id"] != RITUXIMAB["id"]]
            bundle["entry"].append(_outcome(severity, code))
        return bundle

    out = tmp_path / "out"
    result = screen(Faulty([*golden, RITUXIMAB], mutate=truncated), out)
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert listed(out)["Patient/gp-eligible"][0] == "possible"
    lost = [f for f in findings(out) if f["problem"] == "data-lost"]
    assert {f["where"] for f in lost} == {
        "Patient/gp-eligible",
        "Patient/gp-possible",
        "Patient/gp-ineligible",
    }
    assert f"{severity} {code}" in lost[0]["message"]
    shown = result.output + (out / "latest" / "candidates.json").read_text()
    assert "Quimby" not in shown and "40021987" not in shown and "timed out" not in shown


def test_an_error_outcome_entry_in_the_population_search_leaves_nobody_eligible(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    def truncated(path: str, query: Query, bundle: dict[str, Any]) -> dict[str, Any]:
        if path == "Condition" and "code" in query:
            bundle["entry"].append(_outcome("error", "too-costly"))
        return bundle

    out = tmp_path / "out"
    result = screen(Faulty(golden, mutate=truncated), out)
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert "eligible" not in {status for status, _caveat in listed(out).values()}
    [lost] = [f for f in findings(out) if f["problem"] == "data-lost"]
    assert lost["where"] == "Condition search (initial population)"


def test_a_warning_outcome_entry_stays_a_warning(golden: list[dict[str, Any]], tmp_path: Path) -> None:
    def noted(path: str, query: Query, bundle: dict[str, Any]) -> dict[str, Any]:
        if path == "Procedure":
            bundle["entry"].append(_outcome("warning", "processing"))
        return bundle

    out = tmp_path / "out"
    result = screen(Faulty(golden, mutate=noted), out)
    assert result.exit_code == 0, result.output
    assert listed(out)["Patient/gp-eligible"][0] == "eligible"
    assert [f["problem"] for f in findings(out) if f["where"].startswith("Procedure")] == ["server-warning"]


def test_a_lost_batch_condition_search_keeps_its_patients_as_possible(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The SLE Conditions the population search found keep the candidates in the run when their
    batch's Condition search is lost: listed as possible with the lost-data caveat, not gone."""

    def busy(path: str, query: Query) -> Answer | None:
        if path == "Condition" and "patient" in query:
            return 503, {"Retry-After": "0"}, "busy"
        return None

    out = tmp_path / "out"
    result = screen(Faulty(golden, fault=busy), out)
    assert result.exit_code == EXIT_PARTIAL, result.output
    patients = listed(out)
    assert set(patients) == {"Patient/gp-eligible", "Patient/gp-possible", "Patient/gp-ineligible"}
    status, caveat = patients["Patient/gp-eligible"]
    assert status == "possible" and "lost" in caveat


def test_the_population_conditions_are_read_once(golden: list[dict[str, Any]], tmp_path: Path) -> None:
    """Found by the population search and again by the batch Condition search: one resource each."""
    out = tmp_path / "out"
    result = screen(FakeFhir(golden), out)
    assert result.exit_code == 0, result.output
    read = json.loads((out / "latest" / "run.json").read_text())["resources_read"]
    candidates = set(listed(out))
    conditions = [r for r in golden if r["resourceType"] == "Condition"]
    assert read["Condition"] == sum(1 for c in conditions if c["subject"]["reference"] in candidates)


@pytest.mark.parametrize("count", ["fails", "refused"])
def test_an_observation_outage_in_auto_mode_is_partial_not_the_end_of_the_run(
    golden: list[dict[str, Any]], tmp_path: Path, count: str
) -> None:
    """--observations auto (the default) probes the first batch before choosing a plan: a count that
    fails after its retries, or a race whose two plans both fail, must not end the run (exit 3, no
    outputs) where the same failure in any other batch search is data lost (exit 5)."""

    def down(path: str, query: Query) -> Answer | None:
        if path == "Observation" and "patient" in query:
            if query.get("_summary") == "count" and count == "refused":  # then the race decides
                body = {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "not-supported"}],
                }
                return 400, {"Content-Type": "application/fhir+json"}, json.dumps(body)
            return 503, {"Retry-After": "0"}, "busy"
        return None

    out = tmp_path / "out"
    fake = Faulty(golden, fault=down)
    result = screen(fake, out)
    assert result.exit_code == EXIT_PARTIAL, result.output
    patients = listed(out)
    assert len(patients) == 3 and patients["Patient/gp-eligible"][0] == "possible"
    lost = {f["where"] for f in findings(out) if f["problem"] == "data-lost"}
    assert lost == {"Patient/gp-eligible", "Patient/gp-possible", "Patient/gp-ineligible"}
    run = json.loads((out / "latest" / "run.json").read_text())
    assert run["partial"] is True
    unfiltered = [
        e
        for e in fake.log
        if e.startswith("Observation?") and set(parse_qs(e.split("?")[1])) == {"patient", "_count"}
    ]
    assert bool(unfiltered) == (count == "refused")  # the race ran (and failed) only after a refused count
