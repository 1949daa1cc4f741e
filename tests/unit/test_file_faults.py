"""Damaged input files cost at most the value or line the damage is in, never a silent empty night.

Invalid UTF-8 and a byte-order mark are what exports from Windows tools and hand-edited files carry;
deeply nested JSON is what a fuzzer (or a broken exporter) produces. Each gets a finding that names the
cause first, and the rest of the file is screened.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fhirscreen.cli import main
from fhirscreen.pipeline import load_population
from fhirscreen.sources.files import FileSource
from fhirscreen.trial.loader import Trial

SNOMED = "http://snomed.info/sct"
SLE = "55464009"
BOM = b"\xef\xbb\xbf"


pytestmark = pytest.mark.usefixtures("bundled_trial_in_cli")


def patient(pid: str, family: str = "Doe") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "birthDate": "1990-01-01",
        "gender": "female",
        "name": [{"family": family}],
    }


def sle(cid: str, pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": f"Patient/{pid}"},
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": SNOMED, "code": SLE}]},
    }


def line(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource).encode() + b"\n"


def findings(population: Any) -> list[tuple[str, str, str]]:
    return [(f.where, f.problem, f.message) for f in population.quality.findings]


def screen(data: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["screen", "--data", str(data), "--as-of", "2026-06-01", *args])


# -- invalid UTF-8 --------------------------------------------------------------------------------------


def test_an_invalid_byte_costs_only_the_value_it_is_in(tmp_path: Path, trial: Trial) -> None:
    file = tmp_path / "export.ndjson"
    damaged = line(patient("p2", "M\u00fcller")).replace(b"M\\u00fcller", b"M\xfcller")
    file.write_bytes(line(patient("p1")) + damaged + line(sle("c1", "p1")) + line(sle("c2", "p2")))
    population = load_population(FileSource(file), trial)
    assert set(population.records) == {"p1", "p2"}  # both screened: nothing else was lost
    [(where, problem, message)] = findings(population)
    assert (where, problem) == (f"{file}:2", "invalid-utf8")
    offset = damaged.index(b"\xfc")
    assert message.startswith(f"invalid UTF-8 at byte {offset} of the line")
    assert not population.quality.partial


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1" + b"0" * 400])
def test_a_number_that_is_not_a_json_number_is_no_value_and_a_finding(
    tmp_path: Path, trial: Trial, literal: bytes
) -> None:
    """NaN, Infinity and out-of-range numbers (which orjson refuses) were read by the fallback as floats:
    "eGFR inf ... at or above 30" made a patient eligible. Now the value is missing, and said."""
    egfr = {
        "resourceType": "Observation", "id": "g", "status": "final", "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]},
        "effectiveDateTime": "2026-05-01", "valueQuantity": {"value": 12345, "unit": "mL/min/{1.73_m2}"},
    }
    file = tmp_path / "export.ndjson"
    file.write_bytes(line(patient("p1")) + line(sle("c1", "p1")) + line(egfr).replace(b"12345", literal))
    population = load_population(FileSource(file), trial)
    [(where, problem, message)] = findings(population)
    assert (where, problem) == (f"{file}:3", "non-finite-number")
    assert "not a JSON number" in message and "read as no value" in message
    [obs] = population.records["p1"].of_type("Observation")
    assert obs["valueQuantity"]["value"] is None
    result = screen(tmp_path, "--format", "json")
    [candidate] = json.loads(result.stdout)["patients"]
    assert candidate["criteria"]["I4"]["outcome"] == "unknown", candidate["criteria"]["I4"]


def test_a_latin1_file_is_read_line_by_line_with_one_finding_per_line(tmp_path: Path, trial: Trial) -> None:
    file = tmp_path / "latin1.ndjson"
    resources = (patient("p1", "Gar\u00e7on"), sle("c1", "p1"))
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in resources)
    file.write_bytes(text.encode("latin-1"))
    population = load_population(FileSource(file), trial)
    assert set(population.records) == {"p1"}
    assert [(w, p) for w, p, _m in findings(population)] == [(f"{file}:1", "invalid-utf8")]


def test_an_invalid_byte_in_a_bundle_names_its_line_and_the_bundle_is_read(
    tmp_path: Path, trial: Trial
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient("p1", "MARKER")}, {"resource": sle("c1", "p1")}],
    }
    file = tmp_path / "bundle.json"
    data = json.dumps(bundle, indent=1).encode().replace(b"MARKER", b"M\xe4rker")
    file.write_bytes(data)
    population = load_population(FileSource(file), trial)
    assert set(population.records) == {"p1"}
    [(where, problem, message)] = findings(population)
    assert (where, problem) == (str(file), "invalid-utf8")
    offset = data.index(b"\xe4")
    line_no = data[:offset].count(b"\n") + 1
    assert message.startswith(f"invalid UTF-8 at byte {offset} (line {line_no})")


# -- byte-order marks -----------------------------------------------------------------------------------


def test_a_bom_at_the_start_of_an_ndjson_file_is_accepted(tmp_path: Path, trial: Trial) -> None:
    file = tmp_path / "export.ndjson"
    file.write_bytes(BOM + line(patient("p1")) + line(sle("c1", "p1")))
    population = load_population(FileSource(file), trial)
    assert set(population.records) == {"p1"}
    assert findings(population) == [(f"{file}:1", "utf8-bom", "UTF-8 BOM at the start of the line: ignored")]
    assert population.quality.sorted()[0].severity == "info"


def test_a_bom_at_the_start_of_a_bundle_is_accepted(tmp_path: Path, trial: Trial) -> None:
    entries = [{"resource": patient("p1")}, {"resource": sle("c1", "p1")}]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    file = tmp_path / "bundle.json"
    file.write_bytes(BOM + json.dumps(bundle).encode())
    population = load_population(FileSource(file), trial)
    assert set(population.records) == {"p1"}
    assert [p for _w, p, _m in findings(population)] == ["utf8-bom"]


def test_the_one_file_with_a_bad_byte_still_screens_its_patient(tmp_path: Path) -> None:
    """The issue's example: a folder whose only file has one invalid byte screened nobody and exited 0."""
    data = tmp_path / "data"
    data.mkdir()
    damaged = line(patient("p1", "X")).replace(b'"X"', b'"\xff"')
    (data / "export.ndjson").write_bytes(BOM + damaged + line(sle("c1", "p1")))
    result = screen(data, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert [p["patient"] for p in json.loads(result.stdout)["patients"]] == ["Patient/p1"]
    assert "invalid UTF-8 at byte" in result.stderr


# -- deep nesting ---------------------------------------------------------------------------------------


def nested(depth: int, subject: str = "Patient/p1") -> bytes:
    head = b'{"resourceType":"Observation","id":"deep","subject":{"reference":"' + subject.encode() + b'"},'
    return head + b'"extension":' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [2_000, 200_000])
def test_deeply_nested_ndjson_costs_only_its_line(tmp_path: Path, trial: Trial, depth: int) -> None:
    file = tmp_path / "export.ndjson"
    file.write_bytes(line(patient("p1")) + nested(depth) + b"\n" + line(sle("c1", "p1")))
    population = load_population(FileSource(file), trial)
    assert set(population.records) == {"p1"}
    assert [(w, p) for w, p, _m in findings(population)] == [
        (f"{file}:2", "malformed-json"), ("Patient/p1", "data-lost")  # the line named its patient
    ]
    assert "nested too deeply" in findings(population)[0][2]


def test_deeply_nested_json_file_costs_only_that_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "deep.json").write_bytes(nested(100_000))
    (data / "good.ndjson").write_bytes(line(patient("p1")) + line(sle("c1", "p1")))
    result = screen(data, "--format", "json")
    assert result.exit_code == 5, result.stderr  # a whole file lost: partial, said so
    assert "Traceback" not in result.output
    assert [p["patient"] for p in json.loads(result.stdout)["patients"]] == ["Patient/p1"]
    assert "deep.json" in result.stderr and "nested too deeply" in result.stderr


def test_deep_nesting_inside_a_bundle_with_references_costs_only_that_file(
    tmp_path: Path, trial: Trial
) -> None:
    # 990 levels: orjson parses it; rewriting its urn:uuid references recurses past Python's limit.
    entries = [
        b'{"fullUrl":"urn:uuid:p9","resource":' + line(patient("p9")).strip() + b"}",
        b'{"fullUrl":"urn:uuid:c9","resource":' + line(sle("c9", "p9")).strip() + b"}",
        b'{"fullUrl":"urn:uuid:o9","resource":' + nested(990, "urn:uuid:p9") + b"}",
    ]
    bundle = b'{"resourceType":"Bundle","type":"transaction","entry":[' + b",".join(entries) + b"]}"
    (tmp_path / "a.json").write_bytes(bundle)
    (tmp_path / "b.ndjson").write_bytes(line(patient("p1")) + line(sle("c1", "p1")))
    population = load_population(FileSource(tmp_path), trial)
    assert "p1" in population.records
    assert population.quality.partial
    assert any("nested too deeply" in m for _w, _p, m in findings(population))


# -- nothing usable, unreadable files ----------------------------------------------------------------


def test_a_folder_of_non_fhir_json_is_nothing_usable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "package.json").write_text('{"name": "x", "version": "1.0.0"}')
    (data / "rows.ndjson").write_text('{"a": 1}\n{"b": 2}\n')
    result = screen(data)
    assert result.exit_code == 4, result.stderr
    assert "nothing usable" in result.stderr and "no patient was read" in result.stderr
    assert "Traceback" not in result.output


def test_a_file_with_nothing_usable_is_exit_4(tmp_path: Path) -> None:
    data = tmp_path / "only.ndjson"
    data.write_bytes(b"\xff\xfe garbage\n{not json}\n")
    result = screen(data)
    assert result.exit_code == 4, result.stderr
    assert "only.ndjson" in result.stderr


def test_a_fail_on_what_is_not_on_record_is_unknown_when_a_file_was_lost(tmp_path: Path) -> None:
    """The lost file may hold the medication list: "No immunosuppressant on record" (I5) must not make the
    patient ineligible then. A fail on what is on record (here E12, a cancer) still does."""
    data = tmp_path / "data"
    data.mkdir()
    packed = gzip.compress(line(patient("p9")) * 2000)
    (data / "MedicationStatement.ndjson.gz").write_bytes(packed[: len(packed) // 2])
    cancer = {
        "resourceType": "Condition", "id": "ca", "subject": {"reference": "Patient/p2"},
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C50.911"}]},
    }
    good = [patient("p1"), sle("c1", "p1"), patient("p2"), sle("c2", "p2"), cancer]
    (data / "good.ndjson").write_bytes(b"".join(line(r) for r in good))
    result = screen(data, "--format", "json")
    assert result.exit_code == 5, result.stderr
    by_id = {p["patient"]: p for p in json.loads(result.stdout)["patients"]}
    p1, p2 = by_id["Patient/p1"], by_id["Patient/p2"]
    assert p1["criteria"]["I5"]["outcome"] == "unknown"
    assert "what is not on record may be in what was lost" in p1["criteria"]["I5"]["reason"]
    assert p1["status"] == "possible" and p1["caveat"]
    assert p2["criteria"]["E12"]["outcome"] == "fail" and p2["status"] == "ineligible"


def test_a_truncated_gzip_is_lost_and_the_run_is_partial(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    packed = gzip.compress(line(patient("p2")) * 2000)
    (data / "cut.ndjson.gz").write_bytes(packed[: len(packed) // 2])
    (data / "good.ndjson").write_bytes(line(patient("p1")) + line(sle("c1", "p1")))
    result = screen(data, "--format", "json")
    assert result.exit_code == 5, result.stderr
    problems = {f["problem"] for f in json.loads(result.stdout)["data_quality"]}
    assert {"unreadable-file", "data-lost"} <= problems


# -- no Condition at all, or none of them SLE --------------------------------------------------------------


def hypertension(cid: str, pid: str) -> dict[str, Any]:
    return {**sle(cid, pid), "code": {"coding": [{"system": SNOMED, "code": "38341003"}]}}


def explain(data: Path, pid: str) -> Result:
    return CliRunner().invoke(main, ["explain", pid, "--data", str(data), "--as-of", "2026-06-01"])


def test_patients_without_a_single_condition_are_nothing_usable_not_a_quiet_night(tmp_path: Path) -> None:
    """The Condition export missing: patients and labs read, nobody in the population. That used to be
    exit 0 ("0 in the initial population"); it is 4, saying what is missing, and run.json agrees."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "Patient.ndjson").write_bytes(line(patient("p1")) + line(patient("p2")))
    egfr = {
        "resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]},
    }
    (data / "Observation.ndjson").write_bytes(line(egfr))
    out = tmp_path / "out"
    result = screen(data, "--out", str(out))
    assert result.exit_code == 4, result.stderr
    assert f"nothing usable in {data}: no Condition resource among the resources read" in result.stderr
    assert "is the Condition export missing?" in result.stderr
    [run] = [p for p in (out / "runs").iterdir()]
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["exit_status"] == 4 and manifest["findings"] == {"no-conditions": 1}
    assert not (out / "latest").exists()  # a broken night never becomes the coordinators' list


def test_explain_says_nothing_usable_when_there_is_no_condition_at_all(tmp_path: Path) -> None:
    (tmp_path / "Patient.ndjson").write_bytes(line(patient("p1")))
    result = explain(tmp_path, "p1")
    assert "no SLE diagnosis on record" in result.stdout
    assert result.exit_code == 4, result.stderr
    assert "no Condition resource" in result.stderr


def test_explain_of_a_patient_outside_the_population_is_partial_when_a_file_was_lost(tmp_path: Path) -> None:
    """Their SLE diagnosis may be in the file that could not be read: not a plain 0."""
    (tmp_path / "good.ndjson").write_bytes(line(patient("p1")) + line(hypertension("c1", "p1")))
    (tmp_path / "broken.json").write_text('{"resourceType": "Bundle", "entry": [')
    result = explain(tmp_path, "p1")
    assert "no SLE diagnosis on record" in result.stdout
    assert result.exit_code == 5, result.stderr


@pytest.mark.parametrize("bundled", [False, True], ids=["ndjson", "bundle"])
def test_conditions_none_of_them_sle_are_a_quiet_night_that_says_so(tmp_path: Path, bundled: bool) -> None:
    resources = [patient("p1"), hypertension("c1", "p1")]
    if bundled:
        entries = [{"resource": r} for r in resources]
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
        (tmp_path / "p1.json").write_text(json.dumps(bundle))
    else:
        (tmp_path / "export.ndjson").write_bytes(b"".join(line(r) for r in resources))
    result = screen(tmp_path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    [finding] = json.loads(result.stdout)["data_quality"]
    where = (finding["severity"], finding["where"], finding["problem"])
    assert where == ("info", str(tmp_path), "empty-population")
    assert "none of the 1 patient(s) read has an SLE diagnosis" in finding["message"]


# -- empty files ---------------------------------------------------------------------------------------------


def good_export(data: Path) -> None:
    data.mkdir(exist_ok=True)
    (data / "good.ndjson").write_bytes(line(patient("p1")) + line(sle("c1", "p1")))


@pytest.mark.parametrize(
    ("name", "content", "how"),
    [
        ("Procedure.ndjson", b"", "the file is empty (0 bytes)"),
        ("Procedure.ndjson", b"\n \n\r\n", "the file holds only blank space"),
        ("Procedure.ndjson.gz", gzip.compress(b""), "the file is empty once decompressed"),
    ],
    ids=["0-bytes", "blank", "gzip-of-nothing"],
)
def test_an_empty_ndjson_file_is_a_warning_naming_it_and_the_run_is_whole(
    tmp_path: Path, name: str, content: bytes, how: str
) -> None:
    """It was read without a word; a truncated download looked like a type with nothing in it. An export
    may leave a type empty, so it is not data lost: the night is whole (exit 0), and said."""
    data = tmp_path / "data"
    good_export(data)
    (data / name).write_bytes(content)
    result = screen(data, "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    [finding] = document["data_quality"]
    where = (finding["severity"], finding["where"], finding["problem"])
    assert where == ("warning", str(data / name), "empty-file")
    assert finding["message"].startswith(f"{how}: no resources were read from it")
    assert document["partial"] is False and len(document["patients"]) == 1


@pytest.mark.parametrize(
    ("name", "content", "how"),
    [
        ("bundle.json", b"", "the file is empty (0 bytes)"),
        ("bundle.json", b"  \n", "the file holds only blank space"),
        ("bundle.json.gz", b"", "the file is empty (0 bytes)"),
    ],
    ids=["0-bytes", "blank", "gzip-0-bytes"],
)
def test_an_empty_json_file_is_one_clear_error_and_data_lost(
    tmp_path: Path, name: str, content: bytes, how: str
) -> None:
    """An empty .json is not a JSON document: whatever it was meant to hold is missing (exit 5, as for
    any file that is not JSON), said as "empty", not as the parser's "Expecting value"."""
    data = tmp_path / "data"
    good_export(data)
    (data / name).write_bytes(content)
    result = screen(data, "--format", "json")
    assert result.exit_code == 5, result.stderr
    found = {f["problem"]: f for f in json.loads(result.stdout)["data_quality"]}
    assert set(found) == {"empty-file", "data-lost"}
    assert found["empty-file"]["where"] == found["data-lost"]["where"] == str(data / name)
    assert found["empty-file"]["message"].startswith(f"{how}: not a JSON document")
    assert "Expecting value" not in result.stderr


# -- a line that cannot be read costs its record ------------------------------------------------------

GOLDEN_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "golden_data"


def golden_with(tmp_path: Path, name: str, damage: bytes) -> Path:
    """The golden data (gp-eligible is eligible) with ``damage`` appended to one of its export's files."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(GOLDEN_DATA, data)
    with (data / "export" / name).open("ab") as fh:
        fh.write(damage)
    return data


def patients(result: Result) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(result.stdout)["patients"]
    return listed


# -- the data folder as a file system: unlistable folders, links, odd entries, --out inside --data ----------

ELIGIBLE = Path(__file__).parents[2] / "sample_bundles" / "bundles" / "urn" / "sle-eligible-01.json"
ELIGIBLE_ID = "Patient/sle-eligible-01"


def eligible_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ELIGIBLE.name).write_bytes(ELIGIBLE.read_bytes())
    return folder


def statuses(result: Result) -> dict[str, str]:
    return {p["patient"]: p["status"] for p in json.loads(result.stdout)["patients"]}


def test_a_damaged_line_naming_its_patient_keeps_that_patient_from_eligible(tmp_path: Path) -> None:
    """A cancer diagnosis cut in the middle of an export: read as nothing, it left the patient eligible."""
    damage = b'{"resourceType":"Condition","id":"ca","subject":{"reference":"Patient/gp-eligible"},"code":{\n'
    data = golden_with(tmp_path, "Condition.ndjson", damage)
    assert statuses(screen(GOLDEN_DATA, "--format", "json"))["Patient/gp-eligible"] == "eligible"  # baseline
    result = screen(data, "--format", "json")
    assert result.exit_code == 5, result.stderr  # data were lost
    doc = json.loads(result.stdout)
    listed = {p["patient"]: p for p in doc["patients"]}
    assert listed["Patient/gp-eligible"]["status"] == "possible" and listed["Patient/gp-eligible"]["caveat"]
    assert not listed["Patient/gp-possible"].get("caveat")  # other patients are untouched


def test_a_damaged_line_whose_patient_cannot_be_told_is_a_finding_only(tmp_path: Path) -> None:
    data = golden_with(tmp_path, "Observation.ndjson", b'{"resourceType":"Observation","id":"x",\n')
    result = screen(data, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert statuses(result)["Patient/gp-eligible"] == "eligible"
    assert "malformed-json" in result.stdout


@pytest.mark.parametrize("name", ["Condition.ndjson", "Observation.ndjson"])
def test_a_last_line_cut_short_loses_the_rest_of_its_file(tmp_path: Path, name: str) -> None:
    """No newline and no closing brace: the download or copy stopped there, and what followed (anyone's
    records) is missing, so nobody is offered as eligible."""
    data = golden_with(tmp_path, name, b'{"resourceType":"Condition","id":"ca","subject":{"refer')
    result = screen(data, "--format", "json")
    assert result.exit_code == 5, result.stderr
    assert "eligible" not in statuses(result).values()
    assert "cut short" in result.stdout


def test_gzip_bytes_in_a_file_named_ndjson_are_read_decompressed(tmp_path: Path) -> None:
    """An export compressed and saved without .gz: every line was "not valid JSON", nothing was read."""
    data = golden_with(tmp_path, "Condition.ndjson", b"")
    condition = data / "export" / "Condition.ndjson"
    condition.write_bytes(gzip.compress(condition.read_bytes()))
    result = screen(data, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert patients(result) == patients(screen(GOLDEN_DATA, "--format", "json"))


def test_a_pretty_printed_document_in_a_file_named_ndjson_is_read_as_a_document(tmp_path: Path) -> None:
    data = golden_with(tmp_path, "Condition.ndjson", b"")
    condition = data / "export" / "Condition.ndjson"
    entries = [{"resource": json.loads(raw)} for raw in condition.read_text().splitlines() if raw.strip()]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    condition.write_text(json.dumps(bundle, indent=2))
    result = screen(data, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert "not-ndjson" in result.stdout and "malformed-json" not in result.stdout
    assert patients(result) == patients(screen(GOLDEN_DATA, "--format", "json"))


def problems(result: Result) -> list[tuple[str, str, str, str]]:
    doc = json.loads(result.stdout)
    return [(f["severity"], f["where"], f["problem"], f["message"]) for f in doc["data_quality"]]


def refuse_listing(monkeypatch: pytest.MonkeyPatch, *folders: Path) -> None:
    """os.scandir of these folders fails as for a folder the run's user may not read (root bypasses chmod)."""
    import os

    real = os.scandir
    refused = {str(f) for f in folders}

    def scandir(path: Any = ".") -> Any:
        if str(path) in refused:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_the_bundled_sample_patient_is_eligible_on_its_own(tmp_path: Path) -> None:
    result = screen(eligible_folder(tmp_path / "data"), "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert statuses(result)[ELIGIBLE_ID] == "eligible"


def test_a_subfolder_that_cannot_be_listed_is_data_lost_and_nobody_is_eligible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = eligible_folder(tmp_path / "data")
    more = data / "more"
    more.mkdir()
    (more / "Condition.ndjson").write_bytes(line(sle("c9", "p9")))
    refuse_listing(monkeypatch, more)
    result = screen(data, "--format", "json")
    assert result.exit_code == 5, result.stderr
    assert ("error", str(more), "data-lost", "the folder could not be listed: permission denied") in problems(
        result
    )
    assert statuses(result)[ELIGIBLE_ID] == "possible"


def test_a_data_folder_that_cannot_be_listed_is_exit_3_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = eligible_folder(tmp_path / "data")
    refuse_listing(monkeypatch, data)
    result = screen(data, "--format", "json")
    assert result.exit_code == 3, result.stderr
    assert f"{data}: the folder cannot be listed: permission denied" in result.stderr


def test_data_and_out_below_a_folder_that_cannot_be_entered_are_clean_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 0700 parent of another owner: stat() of anything below it fails with EACCES (not ENOENT)."""
    locked = tmp_path / "locked"
    real_stat = Path.stat

    def stat(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.is_relative_to(locked) and self != locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    data = eligible_folder(tmp_path / "data")
    out = screen(data, "--out", str(locked / "x" / "out"))
    assert out.exit_code == 2, out.stderr
    assert f"--out {locked / 'x' / 'out'}: cannot be reached: permission denied" in out.stderr
    below = screen(locked / "x" / "d", "--out", str(tmp_path / "out"))
    assert below.exit_code == 3, below.stderr
    assert f"{locked / 'x' / 'd'}: cannot be reached: permission denied" in below.stderr
    assert "internal error" not in out.stderr + below.stderr


@pytest.mark.parametrize("beside", [False, True])
def test_a_linked_subfolder_is_read(tmp_path: Path, beside: bool) -> None:
    """export/current -> export/2026-06-01: alone, or beside other files."""
    real = eligible_folder(tmp_path / "exports" / "2026-06-01")
    data = tmp_path / "data"
    data.mkdir()
    if beside:
        (data / "other.ndjson").write_bytes(line(patient("p1")) + line(sle("c1", "p1")))
    (data / "current").symlink_to(real)
    result = screen(data, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert statuses(result)[ELIGIBLE_ID] == "eligible"


def test_a_link_loop_is_read_once(tmp_path: Path) -> None:
    data = eligible_folder(tmp_path / "data")
    (data / "loop").symlink_to(data)
    (data / "sub").mkdir()
    (data / "sub" / "up").symlink_to("..")
    result = screen(data, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert statuses(result) == {ELIGIBLE_ID: "eligible"}
    found = problems(result)
    assert not [p for p in found if p[2] == "duplicate-resource"], found
    assert {(p[1], p[2]) for p in found if p[0] == "info" and p[2] == "folder-read-once"} == {
        (str(data / "loop"), "folder-read-once"),
        (str(data / "sub" / "up"), "folder-read-once"),
    }


@pytest.mark.parametrize("kind", ["dangling-link", "fifo"])
def test_an_entry_named_like_a_fhir_file_that_is_not_a_file_is_lost(tmp_path: Path, kind: str) -> None:
    import os

    data = eligible_folder(tmp_path / "data")
    entry = data / "Condition-2.ndjson"
    if kind == "fifo":
        os.mkfifo(entry)
    else:
        entry.symlink_to(tmp_path / "gone" / "Condition-2.ndjson")
    result = screen(data, "--format", "json")
    assert result.exit_code == 5, result.stderr
    found = {(p[1], p[2]) for p in problems(result)}
    assert {(str(entry), "unreadable-file"), (str(entry), "data-lost")} <= found
    assert statuses(result)[ELIGIBLE_ID] == "possible"


@pytest.mark.parametrize(
    "name", ["Condition-2.jsonl", "Condition-2.ndjson.bz2", "Condition-2.ndjson.zst", "Condition-2.json.bz2"]
)
def test_a_file_named_like_an_export_in_another_form_is_a_warning(tmp_path: Path, name: str) -> None:
    data = eligible_folder(tmp_path / "data")
    (data / name).write_bytes(line(sle("c2", "sle-eligible-01")))
    result = screen(data, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert [p[:3] for p in problems(result) if p[2] == "ignored-file"] == [
        ("warning", str(data / name), "ignored-file")
    ]


def test_out_inside_data_is_not_read_as_input(tmp_path: Path) -> None:
    """--data /srv/export --out /srv/export/screening: every night reads the same input."""
    data = eligible_folder(tmp_path / "data")
    out = data / "screening"
    nights = [screen(data, "--format", "json", "--out", str(out)) for _ in range(3)]
    assert [n.exit_code for n in nights] == [0, 0, 0], nights[-1].stderr
    first, last = problems(nights[0]), problems(nights[-1])
    assert last == first
    assert [p[:3] for p in last] == [("info", str(out), "out-folder-skipped")]
    assert statuses(nights[-1]) == {ELIGIBLE_ID: "eligible"}
