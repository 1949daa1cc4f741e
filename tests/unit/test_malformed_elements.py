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
from tests.builders import AS_OF, condition, record

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
                _assert_screens(trial, baseline, index, (key,), bad)
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


@pytest.mark.parametrize(
    "coding",
    [
        "M32.14",
        {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M32.14"},
        ["M32.14"],
        [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": 3214}],
        [{"system": ["http://hl7.org/fhir/sid/icd-10-cm"], "code": "M32.14"}],
    ],
)
def test_a_malformed_coding_inside_a_concept_is_reported_too(tmp_path: Path, coding: Any) -> None:
    """A diagnosis whose only coding is not in FHIR's form is no diagnosis: the run says so (the
    patient is not silently outside the population) and goes on."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "Patient.ndjson").write_text(
        json.dumps({"resourceType": "Patient", "id": "p1", "birthDate": "1990-01-01", "gender": "female"})
        + "\n"
    )
    sle = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}
    sle["code"] = {"coding": coding, "text": "SLE"}
    (data / "Condition.ndjson").write_text(json.dumps(sle) + "\n")
    args = ["screen", "--data", str(data), "--as-of", "2026-06-01", "--format", "json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    findings = [f for f in report["data_quality"] if f["problem"] == "malformed-element"]
    assert [f["where"] for f in findings] == ["Condition/c1"]
    assert "code.coding" in findings[0]["message"]


def test_well_formed_codings_are_not_reported(tmp_path: Path) -> None:
    from fhirscreen.record import malformed_elements

    resource = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "55464009"}, {"display": "SLE"}]},
        "clinicalStatus": {"text": "active"},
        "verificationStatus": {"coding": []},
    }
    assert malformed_elements(resource) == []


# Below the top level; the whole-pipeline test below tries "x", 5 and [1] at the same places.
NESTED_MALFORMED: list[Any] = [[], {}, None]


def _nested_paths(node: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> list[tuple[Any, ...]]:
    """Every path to a value below a resource's top level (``code.coding.0.system``), to depth 4."""
    if depth >= 4:
        return []
    if isinstance(node, dict):
        items: list[tuple[Any, Any]] = [(k, v) for k, v in node.items() if k != "resourceType"]
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return []
    out: list[tuple[Any, ...]] = []
    for key, value in items:
        path = (*prefix, key)
        if depth >= 1:
            out.append(path)
        out += _nested_paths(value, path, depth + 1)
    return out


def _set(resource: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = resource
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _assert_screens(
    trial: Trial, baseline: list[dict[str, Any]], index: int, path: tuple[Any, ...], bad: Any
) -> None:
    """The sample patient with one element replaced by ``bad`` screens without an evaluator error."""
    mutated = copy.deepcopy(baseline)
    _set(mutated[index], path, bad)
    quality = DataQuality()
    screen_patient(record(*mutated, pid=PID, quality=quality), trial, AS_OF, quality)
    errors = [f for f in quality.findings if f.problem == "evaluator-error"]
    assert not errors, (mutated[index]["resourceType"], path, bad, errors[0].message)


def test_every_nested_element_can_be_malformed_without_an_evaluator_error(trial: Trial) -> None:
    """The same one level down and deeper (a coding's system a list, a quantity's value a string, a
    dosage's dose an object...): screening completes, no criterion fails to evaluate."""
    baseline = _baseline()
    tried = 0
    for index, resource in enumerate(baseline):
        if resource["resourceType"] == "Patient":
            continue
        for path in _nested_paths(resource):
            if path[0] in ("subject", "patient"):
                continue
            for bad in NESTED_MALFORMED:
                _assert_screens(trial, baseline, index, path, bad)
                tried += 1
    assert tried > 500


def test_any_element_malformed_never_stops_the_whole_run(tmp_path: Path, trial: Trial) -> None:
    """Through the file source's census, the record builder, screening, the patient facts (name, MRN)
    and every output (resource descriptions in explanations): each element of the sample patient's
    resources, at any depth to 4, replaced by a value of the wrong kind, once per distinct path."""
    from fhirscreen.pipeline import run_screening
    from fhirscreen.report import render_outputs, render_run

    baseline = _baseline()
    tried = 0
    shapes: set[tuple[str, tuple[Any, ...]]] = set()
    for index, resource in enumerate(baseline):
        paths = [(k,) for k in resource if k != "resourceType"] + _nested_paths(resource)
        for path in paths:
            shape = (resource["resourceType"], tuple(p if isinstance(p, str) else 0 for p in path))
            if shape in shapes:
                continue
            shapes.add(shape)
            for bad in ("x", 5, [1]):
                mutated = copy.deepcopy(baseline)
                _set(mutated[index], path, bad)
                folder = tmp_path / f"case{tried}"
                folder.mkdir()
                bundle = {"resourceType": "Bundle", "type": "collection"}
                bundle["entry"] = [{"resource": r} for r in mutated]
                (folder / "patient.json").write_text(json.dumps(bundle), encoding="utf-8")
                run = run_screening(FileSource(folder), trial, AS_OF)
                render_outputs(run)
                render_run(run, "table", 120)
                errors = [f.message for f in run.quality.findings if f.problem == "evaluator-error"]
                assert not errors, (resource["resourceType"], path, bad, errors)
                tried += 1
    assert tried > 300


def test_a_bundle_whose_entry_is_not_a_list_is_data_lost_not_an_empty_bundle(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": {"resource": {}}})
    )
    (tmp_path / "fine.json").write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female"}},
                    {"resource": condition("snomed", "55464009", pid="p1")},
                ],
            }
        )
    )
    result = CliRunner().invoke(main, ["screen", "--data", str(tmp_path), "--format", "json"])
    assert result.exit_code == 5, result.output  # partial: the outputs are written, the night is flagged
    report = json.loads(result.stdout)
    lost = [f for f in report["data_quality"] if f["problem"] == "data-lost"]
    assert [f["where"] for f in lost] == [str(tmp_path / "broken.json")]
    assert "entry is not a list" in lost[0]["message"]


@pytest.mark.parametrize(
    ("patient_extra", "egfr_date"),
    [
        ({"birthDate": "1988-02-30"}, "2026-05-01"),
        ({"deceasedDateTime": "2026-13-45"}, "2026-05-01"),
        ({}, "2026-13-45"),
        ({}, "MRNCANARY4471"),
    ],
    ids=["birth-date", "death-date", "result-date", "canary-in-a-date"],
)
def test_a_date_that_cannot_be_read_is_a_finding_that_names_the_element_not_its_content(
    tmp_path: Path, patient_extra: dict[str, Any], egfr_date: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1990-01-01", "gender": "female"}
    patient.update(patient_extra)
    egfr = {
        "resourceType": "Observation", "id": "g", "status": "final", "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]},
        "effectiveDateTime": egfr_date, "valueQuantity": {"value": 80, "unit": "mL/min/{1.73_m2}"},
    }
    sle = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
           "code": {"coding": [{"system": "http://snomed.info/sct", "code": "55464009"}]}}
    for name, resource in (("Patient", patient), ("Observation", egfr), ("Condition", sle)):
        (data / f"{name}.ndjson").write_text(json.dumps(resource) + "\n")
    args = ["screen", "--data", str(data), "--as-of", "2026-06-01", "--format", "json"]
    result = CliRunner().invoke(main, args)
    report = json.loads(result.stdout)
    [finding] = [f for f in report["data_quality"] if f["problem"] == "malformed-element"]
    element = next(iter(patient_extra), "effectiveDateTime")
    assert finding["where"] == ("Patient/p1" if patient_extra else "Observation/g")
    assert finding["message"] == f"{element} not a valid date (or true/false); read as absent"
    assert "CANARY" not in result.stdout and "CANARY" not in result.stderr

