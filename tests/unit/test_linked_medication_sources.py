"""A Medication that a medication record names by a versioned or absolute reference is read by every
source as file mode reads it. The record resolves such references by id (``PatientRecord.medication``), so
the server source fetches, the incremental store keeps and Spark routes the same Medication
(``referenced_medication_id``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import responses

from fhirscreen.criteria.base import Outcome
from fhirscreen.pipeline import run_screening
from fhirscreen.record import referenced_medication_id
from fhirscreen.screening import ScreeningRun
from fhirscreen.sources.files import FileSource
from fhirscreen.store.delta import referenced_medications
from fhirscreen.store.sqlite import StoredResource
from fhirscreen.trial.loader import Trial
from tests.unit.test_research_study import AS_OF
from tests.unit.test_server_source import FakeFhir, capability, population, source

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
RITUXIMAB = {
    "resourceType": "Medication",
    "id": "rtx",
    "code": {"coding": [{"system": RXNORM, "code": "121191", "display": "rituximab"}]},
}


def given(reference: str, pid: str = "p0000") -> dict[str, Any]:
    """Rituximab ordered three weeks before screening (a biologic inside E6's washout), by reference."""
    return {
        "resourceType": "MedicationRequest",
        "id": "mr-rtx",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": "2026-05-10",
        "medicationReference": {"reference": reference},
    }


def e6(run: ScreeningRun, pid: str = "p0000") -> tuple[Outcome, str, tuple[str, ...]]:
    [screened] = [p for p in run.patients if p.patient_id == pid]
    res = screened.results["E6"]
    return res.outcome, res.reason, res.evidence


def test_the_medication_a_record_refers_to() -> None:
    assert referenced_medication_id(given("Medication/rtx")) == "rtx"
    assert referenced_medication_id(given("Medication/rtx/_history/2")) == "rtx"
    assert referenced_medication_id(given("https://ehr.example.org/fhir/Medication/rtx")) == "rtx"
    assert referenced_medication_id(given("#rtx")) is None  # contained: travels with the record
    assert referenced_medication_id(given("Substance/rtx")) is None
    stored = [given("Medication/rtx/_history/2"), given("https://ehr.example.org/fhir/Medication/m2")]
    assert referenced_medications([StoredResource("p0000", r) for r in stored]) == {"rtx", "m2"}


@pytest.mark.parametrize(
    "reference",
    ["https://ehr.example.org/fhir/Medication/rtx", "Medication/rtx/_history/2", "Medication/rtx"],
)
def test_server_search_fetches_the_medication_an_absolute_or_versioned_reference_names(
    tmp_path: Path, trial: Trial, reference: str
) -> None:
    """Without ``_include`` the server source fetches referenced Medications by ``_id``. An absolute
    reference to another base (a record copied from another system) was not read as one, so the
    biologic was unknown to E6 on a server and an exclusion from files, where the record resolves it by
    id."""
    resources = [*population(1), given(reference), RITUXIMAB]
    fake = FakeFhir(resources, caps=capability(includes=False))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        run = run_screening(source(), trial, AS_OF)
    assert any(entry.startswith("Medication?_id=") and "rtx" in entry for entry in fake.log)
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "data.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources))
    from_files = e6(run_screening(FileSource(folder), trial, AS_OF))
    assert from_files[0] is Outcome.FAIL and "rituximab" in from_files[1].lower()
    assert e6(run) == from_files
