"""Malformed elements (a string where FHIR has an object, an object where it has a code, a list where it
has neither) never stop a run nor a criterion: they are read as absent and reported once per resource."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhirscreen.cli import main
from fhirscreen.fhir.codes import ValueSet, codings, concept_label, concept_signature
from fhirscreen.fhir.resources import is_usable
from fhirscreen.paths import sample_data_dir
from fhirscreen.quality import DataQuality
from fhirscreen.screening import screen_patient
from fhirscreen.sources.files import FileSource
from fhirscreen.trial.loader import Trial
from tests.builders import AS_OF, record

PID = "sle-eligible-01"
# What real feeds have been seen to put where an object or a code belongs.
MALFORMED: list[Any] = ["M32.14", 5, True, [], [1, "a"], {}, {"coding": "M32"}, {"coding": [1]}, {"text": 5}]


def _baseline() -> list[dict[str, Any]]:
    source = FileSource(sample_data_dir() / "bundles" / "urn" / f"{PID}.json")
    return [r for r, _origin in source.read(None, DataQuality())]


@pytest.mark.parametrize("concept", MALFORMED)
def test_code_helpers_read_a_malformed_concept_as_no_code(concept: Any) -> None:
    vs = ValueSet("sle")
    assert vs.match(concept) is None
    assert list(codings(concept)) == []
    assert concept_label(concept) == "(no code)"
    assert (
        concept_signature(concept)[0] in {((), ""), (((None, ""),), "")}
        or concept_signature(concept)[0][0] == ()
    )


@pytest.mark.parametrize("status", [["completed"], {"code": "x"}, 5, None])
def test_a_malformed_status_is_no_status(status: Any) -> None:
    for rtype in ("MedicationAdministration", "MedicationRequest", "Observation", "Procedure"):
        assert is_usable({"resourceType": rtype, "id": "x", "status": status})
    assert is_usable({"resourceType": "Condition", "id": "x", "verificationStatus": {"coding": 5}})


def test_every_element_of_every_record_can_be_malformed_without_an_evaluator_error(trial: Trial) -> None:
    """Each top-level element of each of the sample patient's resources, replaced in turn by each
    malformed value: screening completes, no criterion fails to evaluate."""
    baseline = _baseline()
    tried = 0
    for index, resource in enumerate(baseline):
        if resource["resourceType"] == "Patient":
            continue
        for key in [k for k in resource if k not in ("resourceType", "id", "subject", "patient")]:
            for bad in MALFORMED:
                mutated = copy.deepcopy(baseline)
                mutated[index][key] = bad
                quality = DataQuality()
                screen_patient(record(*mutated, pid=PID, quality=quality), trial, AS_OF, quality)
                errors = [f for f in quality.findings if f.problem == "evaluator-error"]
                assert not errors, (resource["resourceType"], key, bad, errors[0].message)
                tried += 1
    assert tried > 300


def test_a_malformed_code_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "Patient.ndjson").write_text(
        json.dumps({"resourceType": "Patient", "id": "p1", "birthDate": "1990-01-01", "gender": "female"})
        + "\n"
    )
    lines = [
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}, "code": "M32.14"},
        {
            "resourceType": "Condition",
            "id": "c2",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M32.14"}]},
        },
    ]
    (data / "Condition.ndjson").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = CliRunner().invoke(
        main, ["screen", "--data", str(data), "--as-of", "2026-06-01", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    problems = {(f["where"], f["problem"]) for f in report["data_quality"]}
    assert ("Condition/c1", "malformed-element") in problems
    assert not any(p == "evaluator-error" for _w, p in problems)
    assert [p["patient"] for p in report["patients"]] == ["Patient/p1"]  # c2 still opens the population
