"""Values at the edge of the input that must never reach the log or the outputs as they are: resource
types that are no FHIR type name and ids that are no FHIR id (a name, a line break that forges a log
line), numbers a double cannot hold, impossible times of day, DELETE entries, and a standard output
that cannot be written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fhirscreen.fhir.dates import parse_date
from fhirscreen.fhir.json_text import loads_finite, may_underflow
from fhirscreen.fhir.resources import entry_problem, is_fhir_id, is_type_name
from fhirscreen.pipeline import load_population
from fhirscreen.quality import DataQuality, escape_controls
from fhirscreen.sources.files import FileSource
from fhirscreen.trial.loader import Trial
from tests.unit.test_file_faults import findings, line, patient, screen, sle

pytestmark = pytest.mark.usefixtures("bundled_trial_in_cli")

CANARY = "CANARYNAME Smith 1970-01-02"
FORGED = "p1\nfhirscreen: error: FORGED"


def egfr(value: object = 55, when: str = "2026-05-01", subject: str = "Patient/p1") -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": "g", "status": "final", "subject": {"reference": subject},
        "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]},
        "effectiveDateTime": when, "valueQuantity": {"value": value, "unit": "mL/min/{1.73_m2}"},
    }


# -- F5: a resourceType that is not a FHIR type name ------------------------------------------------------


def test_type_names_and_ids() -> None:
    assert is_type_name("Observation") and is_type_name("Encounter")
    for bad in (CANARY, "observation", "Enc\nX", "O", "A" * 65, 12, None):
        assert not is_type_name(bad)
    assert is_fhir_id("p1") and is_fhir_id("a.b-C9") and is_fhir_id("x" * 64)
    # Other systems' exports: an underscore, a longer id (no risk: no space, quote or control character).
    assert is_fhir_id("p_1") and is_fhir_id("x" * 128)
    for bad in ("", "p 1", "p1\n", "John Smith", 'p"1', "x" * 129, 7, None):
        assert not is_fhir_id(bad)


@pytest.mark.parametrize("rtype", [CANARY, "Enc\nfhirscreen: error: FORGED", "encounter"])
def test_a_resource_type_that_is_no_type_name_is_skipped_unquoted(tmp_path: Path, rtype: str) -> None:
    data = tmp_path / "d"
    data.mkdir()
    junk = {"resourceType": rtype, "id": "x1"}
    (data / "export.ndjson").write_bytes(line(patient("p1")) + line(sle("c1", "p1")) + line(junk))
    result = screen(data, "--out", str(tmp_path / "out"), "-v")
    assert result.exit_code == 0, result.output
    stem = rtype.split()[0].split("\n")[0]
    assert stem not in result.stderr and "FORGED" not in result.stderr
    run = (tmp_path / "out" / "latest" / "run.json").read_text()
    doc = (tmp_path / "out" / "latest" / "candidates.json").read_text()
    assert stem not in run and stem not in doc
    problems = [(f["problem"], f["message"]) for f in json.loads(doc)["data_quality"]]
    assert ("not-fhir", "resourceType is not a FHIR type name; skipped") in problems
    assert "not used for screening" not in result.stderr


def test_a_bundle_entry_whose_type_is_no_type_name(tmp_path: Path, trial: Trial) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": patient("p1")}, {"resource": sle("c1", "p1")}, {"resource": {"resourceType": CANARY}},
    ]}
    file = tmp_path / "b.json"
    file.write_text(json.dumps(bundle))
    population = load_population(FileSource(file), trial)
    assert findings(population) == [
        (f"{file} entry 2", "not-fhir", "the entry's resourceType is not a FHIR type name; skipped")
    ]
    assert population.skipped == {}


def test_entry_problem_is_the_server_pages_check_too() -> None:
    assert entry_problem({"resource": {"resourceType": "Patient"}}) is None
    assert entry_problem({"resource": {"resourceType": CANARY}}) == (
        "the entry's resourceType is not a FHIR type name"
    )
    assert entry_problem({"resource": {"resourceType": ["Patient"]}}) is not None  # unhashable: no crash


# -- F6: ids that are not FHIR ids ---------------------------------------------------------------------


def test_an_id_with_a_line_break_forges_no_log_line(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    bad = {"resourceType": "Observation", "id": FORGED, "status": "final", "code": {"text": "x"}}
    (data / "export.ndjson").write_bytes(line(patient("p1")) + line(sle("c1", "p1")) + line(bad))
    result = screen(data, "--format", "json")
    assert result.exit_code == 0, result.output
    assert "FORGED" not in result.stderr
    [finding] = json.loads(result.stdout)["data_quality"]
    assert finding["problem"] == "invalid-id" and "FORGED" not in json.dumps(finding)
    assert finding["message"] == (
        "Observation whose id is not an id (1-128 letters, digits, '-', '.' or '_') was skipped"
    )


def test_a_patient_reference_that_is_no_fhir_id_never_reaches_the_candidates(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "export.ndjson").write_bytes(
        line(patient("p1")) + line(sle("c1", "p1")) + line(sle("c2", "p2\rOVERWRITE"))
    )
    result = screen(data, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    latest = tmp_path / "out" / "latest"
    for name in ("candidates.csv", "candidates.json"):
        assert "OVERWRITE" not in (latest / name).read_text()
    assert "OVERWRITE" not in result.stderr
    doc = json.loads((latest / "candidates.json").read_text())
    assert [p["patient"] for p in doc["patients"]] == ["Patient/p1"]
    assert ("Condition/c2", "invalid-id") in [(f["where"], f["problem"]) for f in doc["data_quality"]]


def test_findings_escape_control_characters() -> None:
    quality = DataQuality()
    quality.add("warning", "Observation/a\nb", "x", "m\x1b[31m\r")
    [f] = quality.findings
    assert (f.where, f.message) == ("Observation/a\\nb", "m\\x1b[31m\\r")
    assert escape_controls("plain é") == "plain é"


# -- F9a: a nonzero number too small for a double ------------------------------------------------------


def test_underflow_is_no_value() -> None:
    assert loads_finite("[1e-400, 0e-999, 0.0, 1e-5]")[0] == [None, 0.0, 0.0, 1e-5]
    assert may_underflow(b'{"value": 1e-400}') and may_underflow("0." + "0" * 400 + "1")
    assert not may_underflow(b'{"text": "pre-existing", "value": 1e-05}')
    # words with "e-" before the number, in either case, and one after it
    assert may_underflow(b'{"display": "creatinine-based", "value": 2.5e-400}')
    assert may_underflow(b'{"display": "ONE-TWO", "value": 7E-0401, "text": "x e-1"}')
    assert may_underflow(b'{"display": "e-"}, "value": 0.' + b"0" * 120 + b"3}")


@pytest.mark.parametrize("ext", ["ndjson", "json"])
def test_an_egfr_of_1e_minus_400_is_unknown_not_zero(tmp_path: Path, ext: str) -> None:
    data = tmp_path / "d"
    data.mkdir()
    resources = [patient("p1"), sle("c1", "p1"), egfr(12345)]
    if ext == "ndjson":
        text = b"".join(line(r) for r in resources)
    else:
        text = json.dumps({"resourceType": "Bundle", "type": "collection",
                           "entry": [{"resource": r} for r in resources]}).encode()
    (data / f"export.{ext}").write_bytes(text.replace(b"12345", b"1e-400"))
    result = screen(data, "--format", "json")
    doc = json.loads(result.stdout)
    [candidate] = doc["patients"]
    assert candidate["criteria"]["I4"]["outcome"] == "unknown", candidate["criteria"]["I4"]
    [finding] = [f for f in doc["data_quality"] if f["problem"] == "non-finite-number"]
    assert "too small for a double" in finding["message"] and "1e-400" not in finding["message"]


# -- F9b: impossible times ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "2026-05-15T25:00:00Z", "2026-05-15T10:61:00Z", "2026-05-15T10:00:00+25:00",
    "2026-05-15xyz", "2026-05T10:00:00Z",
])
def test_an_impossible_time_makes_the_date_unreadable(value: str) -> None:
    assert parse_date(value) is None


@pytest.mark.parametrize("value", [
    "2026-05-15T23:59:60Z", "2026-05-15T10:00:00.123+14:00", "2026-05-15T10:00",
    "2026-05-15T10:00:00", " 2026-05-15 ",
])
def test_real_times_are_read(value: str) -> None:
    assert parse_date(value) is not None


def test_an_egfr_at_hour_25_is_a_malformed_element_and_decides_nothing(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    resources = [patient("p1"), sle("c1", "p1"), egfr(55, "2026-05-15T25:00:00Z")]
    (data / "export.ndjson").write_bytes(b"".join(line(r) for r in resources))
    doc = json.loads(screen(data, "--format", "json").stdout)
    assert doc["patients"][0]["criteria"]["I4"]["outcome"] == "unknown"
    assert ("Observation/g", "malformed-element") in [(f["where"], f["problem"]) for f in doc["data_quality"]]


# -- F9c: DELETE entries -------------------------------------------------------------------------------


def _cancer() -> dict[str, Any]:
    return {"resourceType": "Condition", "id": "k1", "subject": {"reference": "Patient/p1"},
            "meta": {"versionId": "1"}, "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254637007"}]}}


def test_a_delete_in_a_history_bundle_removes_the_older_version(tmp_path: Path, trial: Trial) -> None:
    history = {"resourceType": "Bundle", "type": "history", "entry": [
        {"request": {"method": "DELETE", "url": "Condition/k1"}, "response": {"status": "204"}},
        {"fullUrl": "http://x/fhir/Condition/k1", "resource": _cancer(),
         "request": {"method": "PUT", "url": "Condition/k1"}},
    ]}
    file = tmp_path / "d" / "history.json"
    file.parent.mkdir()
    file.write_text(json.dumps(history))
    (tmp_path / "d" / "p.ndjson").write_bytes(line(patient("p1")) + line(sle("c1", "p1")))
    population = load_population(FileSource(file.parent), trial)
    assert [c["id"] for c in population.records["p1"].of_type("Condition")] == ["c1"]
    [(where, problem, message)] = findings(population)
    assert (where, problem) == (f"{file} entry 0", "deleted-entry")
    assert message.startswith("Condition/k1 was deleted")


@pytest.mark.parametrize("btype,url", [("transaction", "Condition/k1"), ("history", "Condition/k9"),
                                       ("history", f"Condition/{CANARY}")])
def test_a_delete_not_applied_is_a_warning(tmp_path: Path, trial: Trial, btype: str, url: str) -> None:
    bundle = {"resourceType": "Bundle", "type": btype, "entry": [
        {"request": {"method": "DELETE", "url": url}},
        {"resource": patient("p1")}, {"resource": sle("c1", "p1")}, {"resource": _cancer()},
    ]}
    file = tmp_path / "b.json"
    file.write_text(json.dumps(bundle))
    population = load_population(FileSource(file), trial)
    [(where, problem, message)] = findings(population)
    assert (where, problem) == (f"{file} entry 0", "deleted-entry")
    assert "the deletion was not applied" in message and "CANARY" not in message
    if btype == "transaction":
        assert len(population.records["p1"].of_type("Condition")) == 2


# -- F9d: a standard output that cannot be written -----------------------------------------------------


@pytest.mark.parametrize("with_out", [True, False])
def test_stdout_to_dev_full(tmp_path: Path, with_out: bool) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "export.ndjson").write_bytes(line(patient("p1")) + line(sle("c1", "p1")))
    args = ["screen", "--data", str(data), "--as-of", "2026-06-01"]
    if with_out:
        args += ["--out", str(tmp_path / "out")]
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-c", "from fhirscreen.cli import main; main()", *args],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=300,
        )
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot write to standard output: No space left on device" in proc.stderr, proc.stderr
    if with_out:
        run = json.loads((tmp_path / "out" / "latest" / "run.json").read_text())
        assert proc.returncode == run["exit_status"] == 0
        assert "fhirscreen: warning: cannot write to standard output" in proc.stderr
    else:
        assert proc.returncode == 2
        assert "fhirscreen: error: cannot write to standard output" in proc.stderr
