"""Data lost after retries: the run goes on, partial, and nobody whose record may be incomplete is
offered as eligible (a wrong "eligible" costs a coordinator's day)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from click.testing import CliRunner

from fhirscreen.cli import main
from fhirscreen.criteria.base import Outcome, result
from fhirscreen.quality import DataQuality
from fhirscreen.screening import LOST_CAVEAT, PatientScreen, caution
from tests.unit.test_server_source import BASE, FakeFhir, ids_of, population, read_all, source


def screen(pid: str, status: str) -> PatientScreen:
    outcome = Outcome.PASS if status == "eligible" else Outcome.UNKNOWN
    return PatientScreen(pid, {"I1": result(outcome, "x")}, status, 1.0, 0.0)  # type: ignore[arg-type]


def test_no_loss_changes_nothing() -> None:
    screens = [screen("a", "eligible"), screen("b", "possible")]
    assert caution(screens, DataQuality()) == screens


def test_a_loss_named_for_a_patient_touches_only_that_patient() -> None:
    quality = DataQuality()
    quality.lost("Patient/a", "Procedure records could not be read")
    after = {s.patient_id: s for s in caution([screen("a", "eligible"), screen("b", "eligible")], quality)}
    assert (after["a"].status, after["a"].caveat) == ("possible", LOST_CAVEAT)
    assert (after["b"].status, after["b"].caveat) == ("eligible", "")


def test_a_lost_file_may_hold_anyones_records_so_nobody_is_eligible() -> None:
    quality = DataQuality()
    quality.lost("/data/Observation.ndjson", "the file could not be read")
    after = caution([screen("a", "eligible"), screen("b", "possible"), screen("c", "ineligible")], quality)
    assert [s.status for s in after] == ["possible", "possible", "ineligible"]
    # Every touched patient is told why, not only the one whose status moved.
    assert [s.caveat for s in after] == [LOST_CAVEAT] * 3


class FailingProcedures(FakeFhir):
    tries = 0

    def handle(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        if "/Procedure?" in str(request.url):
            self.tries += 1
            return 503, {"Retry-After": "0"}, "busy"
        return super().handle(request)


def test_a_search_lost_after_retries_is_partial_and_names_its_patients(monkeypatch: Any) -> None:
    fake = FailingProcedures(population(3))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        resources, quality = read_all(source())
    assert ids_of(resources, "Patient") == {"p0000", "p0001", "p0002"}  # the rest was read
    assert quality.partial
    lost = sorted(f.where for f in quality.findings if f.problem == "data-lost")
    assert lost == ["Patient/p0000", "Patient/p0001", "Patient/p0002"]
    assert fake.tries == 5  # tried as documented, then given up


class FailingPatientSearches(FakeFhir):
    def handle(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        url = str(request.url)
        if "/Patient?" in url and "_id=" in url:  # the batch searches; the server-clock count still works
            return 503, {"Retry-After": "0"}, "busy"
        return super().handle(request)


@pytest.mark.usefixtures("bundled_trial_in_cli", "client_never_waits")
def test_patients_screened_without_their_patient_resources_are_a_partial_run_not_nothing(
    tmp_path: Path,
) -> None:
    """The Patient searches lost all night: the SLE patients are still screened (on stubs, age unknown),
    so the run is partial (5) with possible candidates, not "nothing usable" (4), and it becomes the
    latest run."""
    fake = FailingPatientSearches(population(3))
    out = tmp_path / "out"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        result = CliRunner().invoke(
            main, ["screen", "--server", BASE, "--as-of", "2026-06-01", "--out", str(out), "--format", "json"]
        )
    assert result.exit_code == 5, result.stderr
    assert "nothing usable" not in result.stderr
    doc = json.loads((out / "latest" / "candidates.json").read_text())
    listed = {p["patient"]: p for p in doc["patients"]}
    assert set(listed) == {"Patient/p0000", "Patient/p0001", "Patient/p0002"}
    for screened in listed.values():
        assert screened["status"] != "eligible"
        assert screened["criteria"]["I1"]["outcome"] == "unknown"


# -- what the outputs of a partial run claim ---------------------------------------------------------------

GOLDEN_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "golden_data"


def run_folder(tmp_path: Path, broken: bool) -> tuple[int, Path]:
    data = tmp_path / "data"
    shutil.copytree(GOLDEN_DATA, data)
    if broken:
        (data / "broken.json").write_text('{"resourceType": "Bundle", "entry": [')
    out = tmp_path / "out"
    args = ["screen", "--data", str(data), "--as-of", "2026-06-01", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    return result.exit_code, out / "latest"


def test_every_output_of_a_partial_run_says_it_is_partial(tmp_path: Path) -> None:
    """A file was lost (exit 5): the MeasureReport was "complete" and nothing but the findings and
    run.json said otherwise. Now each output that could be read as the whole picture says it is not."""
    code, latest = run_folder(tmp_path, broken=True)
    assert code == 5
    measure = json.loads((latest / "measure-report.json").read_text())
    assert measure["status"] == "pending" and "Partial run" in measure["text"]["div"]
    assert json.loads((latest / "candidates.json").read_text())["partial"] is True
    group = json.loads((latest / "group.json").read_text())  # a Group has no status: its narrative says it
    assert "Partial run" in group["text"]["div"]
    manifest = json.loads((latest / "run.json").read_text())
    assert (manifest["partial"], manifest["exit_status"]) == (True, 5)
    page = (latest / "report.html").read_text()
    assert 'role="alert"><strong>Not a complete run.</strong> Partial run: 1 part(s)' in page


def test_the_outputs_of_a_whole_run_claim_completeness(tmp_path: Path) -> None:
    code, latest = run_folder(tmp_path, broken=False)
    assert code == 0
    assert json.loads((latest / "measure-report.json").read_text())["status"] == "complete"
    assert json.loads((latest / "candidates.json").read_text())["partial"] is False
    assert "text" not in json.loads((latest / "group.json").read_text())
    assert 'role="alert"' not in (latest / "report.html").read_text()


# -- I5's fails on absence -------------------------------------------------------------------------------

HCQ = "5521"  # hydroxychloroquine (RxNorm ingredient)


@pytest.mark.parametrize(
    ("start", "end", "said"),
    [
        ("2026-04-15", None, "only since"),  # an earlier course may be in what was lost
        ("2025-08-01", "2025-09-01", "No current background therapy"),  # the current one may be
    ],
)
def test_i5_fails_that_rest_on_absence_are_unknown_when_data_were_lost(trial, start, end, said):
    from fhirscreen.screening import screen_patient
    from tests.builders import AS_OF, medication_request, record

    order = medication_request(HCQ, start, display="hydroxychloroquine 200 MG Oral Tablet", id="hcq")
    if end is not None:
        order["status"] = "completed"
        order["dosageInstruction"] = [{"timing": {"repeat": {"boundsPeriod": {"start": start, "end": end}}}}]
    quality = DataQuality()
    screened = screen_patient(record(order), trial, AS_OF, quality)
    assert screened.results["I5"].outcome is Outcome.FAIL and said in screened.results["I5"].reason
    quality.lost("/data/part-3.ndjson", "the file could not be read")
    (after,) = caution([screened], quality)
    assert after.results["I5"].outcome is Outcome.UNKNOWN
    assert "Data were lost in this run" in after.results["I5"].reason
