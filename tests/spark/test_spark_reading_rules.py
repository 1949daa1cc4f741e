"""File mode's reading rules, on the Spark engine: the same outcome (every report byte, the patients read,
the exit code) as file mode on the same crafted NDJSON folder.

- A damaged line that names its patient loses that patient's record; a last line cut short loses the
  rest of its file (``files.damaged_line``).
- gzip bytes in a file named ``.ndjson`` are read decompressed; a pretty-printed JSON document in an
  ``.ndjson`` file is read as one document (``not-ndjson``).
- Merged patients (``Patient.link`` replaced-by / replaces) are one candidate, screened as the survivor
  on the resources of both ids.
- A number too small for a double is looked for only on the lines handed on (not other patients').
- A byte that is not UTF-8 is replaced by U+FFFD and said (``invalid-utf8``, file:line and byte), in
  plain and gzipped files: it costs at most its value, never the rest of the file."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhirscreen import report
from fhirscreen.cli import main
from fhirscreen.exitcodes import EXIT_PARTIAL, outcome_code
from fhirscreen.pipeline import run_screening
from fhirscreen.screening import ScreeningRun
from fhirscreen.sources.files import FileSource
from fhirscreen.spark.engine import run_spark_screening
from fhirscreen.trial.loader import Trial
from tests.unit.test_merged_patients import CANCER, LINKS, eligible, patient, split_record, write

ROOT = Path(__file__).resolve().parents[2]
BULK = ROOT / "sample_bundles" / "bulk"
AS_OF = date(2026, 6, 1)
# Eligible in the bulk samples (file mode and Spark alike).
ELIGIBLE_A = "sle-eligible-06-ana-qty-separate-med"
ELIGIBLE_B = "sle-eligible-08-dsdna-flag-egfr-33914"
ELIGIBLE_C = "sle-eligible-10-male-creat-umol-no-score"


def spark_as_file_mode(data: Path, trial: Trial, tmp_path: Path, spark: Any, **kwargs: Any) -> ScreeningRun:
    """Spark's run on ``data``, whose reports (every file), patients read and exit code are file mode's."""
    expected = run_screening(FileSource(data), trial, AS_OF)
    actual = run_spark_screening(str(data), trial, AS_OF, spark, **kwargs)
    files = {p.name: p.read_bytes() for p in report.write_outputs(expected, tmp_path / "file")}
    spark_files = {p.name: p.read_bytes() for p in report.write_outputs(actual, tmp_path / "spark")}
    assert spark_files.keys() == files.keys()
    for name, content in files.items():
        assert spark_files[name] == content, name
    assert actual.patients_read == expected.patients_read
    code = outcome_code(expected.patients_read, expected.quality, len(expected.patients))
    assert outcome_code(actual.patients_read, actual.quality, len(actual.patients)) == code
    return actual


def statuses(run: ScreeningRun) -> dict[str, tuple[str, bool]]:
    return {s.patient_id: (s.status, bool(s.caveat)) for s in run.patients}


def problems(run: ScreeningRun, data: Path) -> set[tuple[str, str]]:
    return {(f.problem, f.where.replace(str(data), "")) for f in run.quality.findings}


def bulk_copy(tmp_path: Path) -> Path:
    data = tmp_path / "bulk"
    shutil.copytree(BULK, data)
    return data


def append(file: Path, text: str) -> None:
    with file.open("a", encoding="utf-8") as fh:
        fh.write(text)


# -- rule 1: a damaged line costs its record ----------------------------------------------------------------


def test_damaged_lines_that_name_their_patient_lose_that_record_as_in_file_mode(
    spark: Any, trial: Trial, tmp_path: Path
) -> None:
    """A cancer diagnosis cut mid-line (A), a line nested too deeply to read (B) and a damaged Patient line
    ending the file with its newline (C): those three records are lost, nobody else's, nor any file."""
    data = bulk_copy(tmp_path)
    append(
        data / "Condition.ndjson",
        '{"resourceType":"Condition","id":"ca","subject":{"reference":"Patient/'
        + ELIGIBLE_A
        + '"},"code":{\n',
    )
    observations = (data / "Observation.ndjson").read_text().splitlines(keepends=True)
    nested = "[" * 3000 + "]" * 3000
    deep = f'{{"resourceType":"Observation","subject":{{"reference":"Patient/{ELIGIBLE_B}"}},"x":{nested}}}\n'
    observations.insert(5, deep)
    (data / "Observation.ndjson").write_text("".join(observations))
    append(
        data / "Patient.ndjson", f'{{"resourceType":"Patient","id":"{ELIGIBLE_C}","name":[{{"family":"Te\n'
    )
    # Three splits per file: a damaged line may end a split without ending its file.
    actual = spark_as_file_mode(data, trial, tmp_path, spark, min_partitions=3)
    lost = {f.where for f in actual.quality.findings if f.problem == "data-lost"}
    lost_ids = (ELIGIBLE_A, ELIGIBLE_B, ELIGIBLE_C)
    assert lost == {f"Patient/{pid}" for pid in lost_ids}
    listed = statuses(actual)
    for pid in lost_ids:
        assert listed[pid] == ("possible", True)
    assert not any(caveat for pid, (_status, caveat) in listed.items() if pid not in lost_ids)
    assert ("malformed-json", "/Observation.ndjson:6") in problems(actual, data)
    result = CliRunner().invoke(
        main, ["screen", "--engine", "spark", "--data", str(data), "--as-of", AS_OF.isoformat()]
    )
    assert result.exit_code == EXIT_PARTIAL, result.output


@pytest.mark.parametrize("name", ["Observation.ndjson", "Observation.ndjson.gz"])
def test_a_last_line_cut_short_loses_the_rest_of_its_file_as_in_file_mode(
    spark: Any, trial: Trial, tmp_path: Path, name: str
) -> None:
    data = bulk_copy(tmp_path)
    cut = '{"resourceType":"Condition","id":"ca","subject":{"refer'  # no newline: the copy stopped here
    observations = data / "Observation.ndjson"
    append(observations, cut)
    if name.endswith(".gz"):
        (data / name).write_bytes(gzip.compress(observations.read_bytes()))
        observations.unlink()
    actual = spark_as_file_mode(data, trial, tmp_path, spark, min_partitions=3)
    lost = [f for f in actual.quality.findings if f.problem == "data-lost"]
    assert [f.where for f in lost] == [str(data / name)] and "cut short" in lost[0].message
    assert "eligible" not in {s.status for s in actual.patients}


# -- rule 2: gzip bytes and a pretty-printed document in a file named .ndjson -------------------------------


@pytest.mark.parametrize("form", ["gzip-bytes", "document", "gzipped-document"])
def test_an_ndjson_file_that_is_gzip_or_one_document_is_read_as_file_mode_reads_it(
    spark: Any, trial: Trial, tmp_path: Path, form: str
) -> None:
    data = bulk_copy(tmp_path)
    conditions = data / "Condition.ndjson"
    text = conditions.read_bytes()
    if form != "gzip-bytes":
        entries = [{"resource": json.loads(raw)} for raw in text.splitlines() if raw.strip()]
        # A resource whose id is no FHIR id: the finding names the document (no line), as file mode does.
        odd = {"resourceType": "Condition", "id": "no id", "subject": {"reference": f"Patient/{ELIGIBLE_A}"}}
        entries.append({"resource": odd})
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
        text = json.dumps(bundle, indent=2).encode()
    name = "Condition.ndjson.gz" if form == "gzipped-document" else "Condition.ndjson"
    conditions.unlink()
    (data / name).write_bytes(text if form == "document" else gzip.compress(text))
    actual = spark_as_file_mode(data, trial, tmp_path, spark)
    found = problems(actual, data)
    assert not any(problem == "malformed-json" for problem, _where in found)
    assert (("not-ndjson", f"/{name}") in found) == (form != "gzip-bytes")
    assert (("invalid-id", f"/{name}") in found) == (form != "gzip-bytes")
    assert {s.patient_id for s in actual.patients} == {
        s.patient_id for s in run_screening(FileSource(BULK), trial, AS_OF).patients
    }


# -- rule 3: merged patients ------------------------------------------------------------------------------


def scenario(name: str) -> list[dict[str, Any]]:
    """The candidate side of a merge scenario (the ids of tests/unit/test_merged_patients.py)."""
    if name in LINKS:
        return split_record(*LINKS[name])
    if name == "exclusion-under-replaced-id":
        cancer = dict(CANCER, subject={"reference": "Patient/p1old"})
        return [*eligible("p1"), patient("p1old", ("replaced-by", "p1"), active=False), cancer]
    if name == "chain":
        resources = [r for r in eligible("p1") if r["resourceType"] != "Patient"]
        resources = json.loads(json.dumps(resources).replace('"Patient/p1"', '"Patient/pa"'))
        return [
            *resources,
            patient("pa", ("replaced-by", "pb"), active=False),
            patient("pb", ("replaced-by", "pc"), active=False),
            patient("pc"),
        ]
    if name == "loop":
        resources = [r for r in eligible("p1") + eligible("p1old") if r["resourceType"] != "Patient"]
        return [*resources, patient("p1", ("replaced-by", "p1old")), patient("p1old", ("replaced-by", "p1"))]
    assert name == "link-to-nobody"
    resources = eligible("p1")
    for r in resources:
        if r["resourceType"] == "Patient":
            r["link"] = [{"other": {"reference": "Patient/gone"}, "type": "replaces"}]
    return resources


# Patients outside the initial population with links of their own: merged, one linked to nobody, one
# to itself (a loop).
OTHERS = [
    patient("n1", ("replaced-by", "n2"), active=False),
    patient("n2"),
    patient("n3", ("replaced-by", "nowhere")),
    patient("n4", ("replaced-by", "n4")),
    {
        "resourceType": "Observation",
        "id": "n1-obs",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/n1"},
    },
]


@pytest.mark.parametrize("name", [*LINKS, "exclusion-under-replaced-id", "chain", "loop", "link-to-nobody"])
def test_merged_patients_are_one_candidate_as_in_file_mode(
    spark: Any, trial: Trial, tmp_path: Path, name: str
) -> None:
    write(tmp_path / "d", [*scenario(name), *OTHERS], "ndjson")
    actual = spark_as_file_mode(tmp_path / "d", trial, tmp_path, spark)
    listed = statuses(actual)
    survivors = {"loop": {"p1", "p1old"}, "chain": {"pc"}}.get(name, {"p1"})
    assert set(listed) == survivors
    found = problems(actual, tmp_path / "d")
    assert ("merged-patient", "Patient/n2") in found and ("patient-link", "Patient/n3") in found
    assert ("patient-link", "Patient/n4") in found
    if name in LINKS:
        assert listed["p1"] == ("eligible", False)
        assert ("merged-patient", "Patient/p1") in found and ("patient-link", "Patient/p1") not in found
    if name == "exclusion-under-replaced-id":
        assert listed["p1"] == ("ineligible", False)


# -- rule 4: a number too small for a double, on the lines handed on ----------------------------------------


def test_a_number_too_small_for_a_double_is_said_only_on_the_lines_handed_on_as_in_file_mode(
    spark: Any, trial: Trial, tmp_path: Path
) -> None:
    data = bulk_copy(tmp_path)
    tiny = (
        '{"resourceType":"Observation","id":"tiny-%s","status":"final","code":{"text":"x"},'
        '"subject":{"reference":"Patient/%s"},"valueQuantity":{"value":1e-400}}\n'
    )
    append(data / "Observation.ndjson", tiny % ("a", ELIGIBLE_A) + tiny % ("b", "nonsle-hypertension"))
    actual = spark_as_file_mode(data, trial, tmp_path, spark)
    said = [f.where for f in actual.quality.findings if f.problem == "non-finite-number"]
    assert said == [f"{data / 'Observation.ndjson'}:69"]  # the candidate's line, not the other patient's


# -- rule 5: invalid UTF-8 is replaced and said, the rest of the file read ---------------------------------


@pytest.mark.parametrize("name", ["Observation.ndjson", "Observation.ndjson.gz"])
def test_invalid_utf8_is_replaced_and_said_and_the_rest_of_the_file_read_as_in_file_mode(
    spark: Any, trial: Trial, tmp_path: Path, name: str
) -> None:
    """A candidate's line with a byte that is not UTF-8 (0xE9: latin-1 'é'), among good lines of theirs:
    the line is read with U+FFFD for the byte and said (``invalid-utf8``, file:line), nothing is lost."""
    data = bulk_copy(tmp_path)
    observations = data / "Observation.ndjson"
    lines = observations.read_bytes().splitlines(keepends=True)
    bad = (
        b'{"resourceType":"Observation","id":"latin1","status":"final","code":{"text":"caf\xe9"},'
        b'"subject":{"reference":"Patient/' + ELIGIBLE_A.encode() + b'"}}\n'
    )
    lines.insert(3, bad)  # line 4 of 69: good lines of the candidate before and after it
    observations.write_bytes(b"".join(lines))
    if name.endswith(".gz"):
        (data / name).write_bytes(gzip.compress(observations.read_bytes()))
        observations.unlink()
    actual = spark_as_file_mode(data, trial, tmp_path, spark, min_partitions=3)
    said = [f for f in actual.quality.findings if f.problem == "invalid-utf8"]
    assert [(f.severity, f.where) for f in said] == [("warning", f"{data / name}:4")]
    assert "at byte 80 of the line" in said[0].message
    assert not any(f.problem in ("data-lost", "unreadable-file") for f in actual.quality.findings)
    assert statuses(actual)[ELIGIBLE_A] == statuses(run_screening(FileSource(BULK), trial, AS_OF))[ELIGIBLE_A]


def test_a_u_fffd_written_as_utf8_is_read_as_it_is_and_not_said_as_in_file_mode(
    spark: Any, trial: Trial, tmp_path: Path
) -> None:
    """U+FFFD in a plain file (read by Hadoop's text reader) sends it to be read again from its bytes:
    good UTF-8 there, so nothing is said, and the outcome is file mode's."""
    data = bulk_copy(tmp_path)
    append(
        data / "Observation.ndjson",
        '{"resourceType":"Observation","id":"fffd","status":"final","code":{"text":"caf\ufffd"},'
        f'"subject":{{"reference":"Patient/{ELIGIBLE_A}"}}}}\n',
    )
    actual = spark_as_file_mode(data, trial, tmp_path, spark, min_partitions=3)
    assert not any("utf8" in f.problem for f in actual.quality.findings)


@pytest.mark.parametrize("gzipped", [False, True])
def test_bytes_that_are_not_utf8_anywhere_read_as_in_file_mode(
    spark: Any, trial: Trial, tmp_path: Path, gzipped: bool
) -> None:
    """Bad bytes in a candidate's SLE Condition and Patient, another patient's line, a type screening
    skips, and a line that cannot be read at all: file mode's findings and outcome."""
    data = bulk_copy(tmp_path)
    extra = {
        "Condition.ndjson": b'{"resourceType":"Condition","id":"c-bad","subject":{"reference":"Patient/'
        + ELIGIBLE_B.encode()
        + b'"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"55464009"}],"text":"\xff\xfe"}}\n',
        "Patient.ndjson": b'{"resourceType":"Patient","id":"latin","name":[{"family":"M\xfcller"}]}\n',
        "Observation.ndjson": b'{"resourceType":"Observation","id":"o-bad","status":"final",'
        b'"code":{"text":"\xc3"},"subject":{"reference":"Patient/nonsle-hypertension"}}\n'
        b'{"resourceType":"Observation","id":"o-cut","subject":{"reference":"Patient/'
        + ELIGIBLE_C.encode()
        + b'"},"x":"\xe9\n',
        "Encounter.ndjson": b'{"resourceType":"Encounter","id":"e","reasonCode":[{"text":"\xe9"}]}\n',
    }
    for name, bad in extra.items():
        file = data / name
        lines = file.read_bytes().splitlines(keepends=True) if file.exists() else []
        lines.insert(min(2, len(lines)), bad)
        file.write_bytes(b"".join(lines))
        if gzipped:
            (data / f"{name}.gz").write_bytes(gzip.compress(file.read_bytes()))
            file.unlink()
    actual = spark_as_file_mode(data, trial, tmp_path, spark, min_partitions=3)
    said = sorted(
        f.where.replace(str(data), "") for f in actual.quality.findings if f.problem == "invalid-utf8"
    )
    gz = ".gz" if gzipped else ""
    # The Encounter line is of a type screening skips unread (file mode's stubs): nothing said of it.
    assert said == [
        f"/{name}.ndjson{gz}:{line}"
        for name, line in (("Condition", 3), ("Observation", 3), ("Observation", 4), ("Patient", 3))
    ]
    lost = {f.where for f in actual.quality.findings if f.problem == "data-lost"}
    assert lost == {f"Patient/{ELIGIBLE_C}"}  # the line that cannot be read at all costs its record only
