"""The Spark engine on local[2] gives byte-identical reports to file mode on the same NDJSON.

The Spark engine reads Bulk NDJSON only, so the Bundle samples are converted first with the project's
own tool (bench/bundles_to_ndjson.py), as the README's "Scaling out" section tells users to."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhirscreen import report
from fhirscreen.cli import main
from fhirscreen.pipeline import run_screening
from fhirscreen.sources.files import FileSource
from fhirscreen.spark.engine import run_spark_screening
from fhirscreen.trial.loader import Trial

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_bundles"
AS_OF = date(2026, 6, 1)


def bundles_to_ndjson(dst: Path) -> Path:
    """sample_bundles/ as Bulk NDJSON: each Bundle folder converted, the bulk/ folder copied."""
    for layout in ("urn", "relative"):
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "bundles_to_ndjson.py"),
             str(SAMPLES / "bundles" / layout), str(dst / layout)],
            check=True,
        )
    shutil.copytree(SAMPLES / "bulk", dst / "bulk")
    return dst


@pytest.fixture(scope="module")
def sample_ndjson(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundles_to_ndjson(tmp_path_factory.mktemp("samples") / "ndjson")


def outputs_file_mode(data: Path, trial: Trial, out: Path) -> dict[str, bytes]:
    run = run_screening(FileSource(data), trial, AS_OF)
    return {p.name: p.read_bytes() for p in report.write_outputs(run, out)}


def outputs_spark(data: Path, trial: Trial, out: Path, spark: Any, **kwargs: Any) -> dict[str, bytes]:
    run = run_spark_screening(str(data), trial, AS_OF, spark, **kwargs)
    return {p.name: p.read_bytes() for p in report.write_outputs(run, out)}


def test_samples_cli_spark_reports_are_byte_identical_to_file_mode(
    spark: Any, sample_ndjson: Path, trial: Trial, tmp_path: Path
) -> None:
    expected = outputs_file_mode(sample_ndjson, trial, tmp_path / "file")
    result = CliRunner().invoke(
        main,
        ["screen", "--engine", "spark", "--data", str(sample_ndjson), "--as-of", AS_OF.isoformat(),
         "--out", str(tmp_path / "spark"), "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    for name, content in expected.items():
        if name == "report.html":
            continue  # the run folder's page also shows run.json's facts (run id, patients read)
        assert (tmp_path / "spark" / name).read_bytes() == content, name
    assert (tmp_path / "spark" / "latest" / "report.html").exists()
    document = json.loads(expected["candidates.json"])
    statuses = {p["status"] for p in document["patients"]}
    assert len(document["patients"]) == 33 and statuses == {"eligible", "possible", "ineligible"}


def test_converted_samples_screen_as_the_bundles_do(sample_ndjson: Path, trial: Trial) -> None:
    """The conversion loses nothing: every patient and criterion as screened from the Bundles."""

    def patients(data: Path) -> list[Any]:
        run = run_screening(FileSource(data), trial, AS_OF)
        return json.loads(report.render_run(run, "json"))["patients"]

    assert patients(sample_ndjson) == patients(SAMPLES)


def damaged_copy(src: Path, dst: Path) -> Path:
    """The bulk samples with damage: a malformed line, a blank line, a truncated line of a skipped type,
    JSON that is not FHIR, a Condition without an id, a resource of a skipped type, a NaN value, a Bundle
    on one line, a repeated Patient line, a resource whose Patient is missing; Observations gzipped;
    MedicationStatements gzipped and cut off halfway."""
    shutil.copytree(src, dst)
    conditions = (dst / "Condition.ndjson").read_text().splitlines()
    conditions[2:2] = [
        '{"resourceType":"Condition","id":"broken",',
        "",
        '{"resourceType":"Encounter","id":"cut"',
        '["not", "fhir"]',
        '{"resourceType":"Condition","subject":{"reference":"Patient/nonsle-hypertension"}}',
        '{"resourceType":"Encounter","id":"e1","subject":{"reference":"Patient/nonsle-hypertension"}}',
        '{"resourceType":"Observation","id":"orphan","status":"final","code":{"text":"x"},'
        '"subject":{"reference":"Patient/nobody"}}',
        '{"resourceType":"Observation","id":"nan","status":"final","code":{"text":"x"},'
        '"subject":{"reference":"Patient/nobody"},"valueQuantity":{"value":NaN}}',
        '{"resourceType":"Condition","id":"sle-without-patient","subject":{"reference":"Patient/unlisted"},'
        '"code":{"coding":[{"system":"http://snomed.info/sct","code":"55464009"}]}}',
    ]
    (dst / "Condition.ndjson").write_text("\n".join(conditions) + "\n")
    patients = (dst / "Patient.ndjson").read_text().splitlines()
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": json.loads(patients[0])}]}
    # A Bundle on an NDJSON line is a skipped type in file mode too; a repeated Patient is a duplicate.
    (dst / "Patient.ndjson").write_text("\n".join([*patients, json.dumps(bundle), patients[0]]) + "\n")
    observations = dst / "Observation.ndjson"
    with gzip.open(dst / "Observation.ndjson.gz", "wb") as fh:
        fh.write(observations.read_bytes())
    observations.unlink()
    statements = dst / "MedicationStatement.ndjson"
    packed = gzip.compress(statements.read_bytes())
    (dst / "MedicationStatement.ndjson.gz").write_bytes(packed[: len(packed) // 2])  # truncated
    statements.unlink()
    return dst


def test_malformed_lines_truncated_gzip_and_split_files(spark: Any, trial: Trial, tmp_path: Path) -> None:
    data = damaged_copy(SAMPLES / "bulk", tmp_path / "damaged")
    expected = outputs_file_mode(data, trial, tmp_path / "file")
    # Three splits per uncompressed file: line numbers must carry across splits.
    actual = outputs_spark(data, trial, tmp_path / "spark", spark, min_partitions=3)
    assert actual == expected
    findings = json.loads(expected["candidates.json"])["data_quality"]
    problems = {(f["problem"], f["where"].replace(str(data), "")) for f in findings}
    assert ("malformed-json", "/Condition.ndjson:3") in problems
    assert ("malformed-json", "/Condition.ndjson:5") in problems  # truncated line of a skipped type
    assert ("not-fhir", "/Condition.ndjson:6") in problems
    assert ("no-id", "/Condition.ndjson:7") in problems
    assert ("missing-patient", "Patient/nobody") in problems
    assert ("non-finite-number", "/Condition.ndjson:10") in problems  # NaN: read as no value, said
    assert ("missing-patient", "Patient/unlisted") in problems  # an SLE patient without a Patient...
    screened = {p["patient"] for p in json.loads(actual["candidates.json"])["patients"]}
    assert "Patient/unlisted" in screened  # ...is screened on a stub, not lost
    assert ("unreadable-file", "/MedicationStatement.ndjson.gz") in problems  # the run went on
    patient = json.loads((SAMPLES / "bulk" / "Patient.ndjson").read_text().splitlines()[0])["id"]
    assert ("duplicate", f"Patient/{patient}") in problems
    # The gzipped Observations were read: eGFR evidence is still there.
    patients = json.loads(actual["candidates.json"])["patients"]
    assert any(e.startswith("Observation/") for p in patients for e in p["criteria"]["I4"]["evidence"])


def test_bundle_files_are_reported_not_silently_skipped(spark: Any, trial: Trial, tmp_path: Path) -> None:
    data = tmp_path / "mixed"
    shutil.copytree(SAMPLES / "bulk", data / "bulk")
    shutil.copy(SAMPLES / "bundles" / "urn" / "sle-eligible-01.json", data / "sle-eligible-01.json")
    run = run_spark_screening(str(data), trial, AS_OF, spark)
    unsupported = [f for f in run.quality.findings if f.problem == "unsupported-file"]
    assert [f.where for f in unsupported] == [str(data / "sle-eligible-01.json")]
    assert "sle-eligible-01" not in {s.patient_id for s in run.patients}


def test_ndjson_lines_that_hold_bundles_are_opened_as_file_mode_opens_them(
    spark: Any, trial: Trial, tmp_path: Path
) -> None:
    """One patient's Bundle per NDJSON line: screened, byte for byte as file mode screens that file,
    never skipped as one resource of type Bundle."""
    data = tmp_path / "bundle-lines"
    data.mkdir()
    bundles = sorted((SAMPLES / "bundles" / "urn").glob("*.json"))
    lines = [json.dumps(json.loads(p.read_text(encoding="utf-8"))) for p in bundles]
    (data / "patients.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = outputs_file_mode(data, trial, tmp_path / "file")
    actual = outputs_spark(data, trial, tmp_path / "spark", spark)
    assert actual["candidates.json"] == expected["candidates.json"]
    assert len(json.loads(actual["candidates.json"])["patients"]) > 10


def test_file_uri_reads_the_same_as_a_path(spark: Any, trial: Trial, tmp_path: Path) -> None:
    data = tmp_path / "bulk"
    shutil.copytree(SAMPLES / "bulk", data)
    by_path = run_spark_screening(str(data), trial, AS_OF, spark)
    by_uri = run_spark_screening(data.as_uri(), trial, AS_OF, spark)
    assert [(s.patient_id, s.status) for s in by_uri.patients] == [
        (s.patient_id, s.status) for s in by_path.patients
    ]
    assert by_uri.source == data.as_uri()


def test_folder_without_ndjson_exits_3(spark: Any, tmp_path: Path) -> None:
    shutil.copytree(SAMPLES / "bundles" / "urn", tmp_path / "bundles")
    result = CliRunner().invoke(
        main, ["screen", "--engine", "spark", "--data", str(tmp_path / "bundles"), "--as-of", "2026-06-01"]
    )
    assert result.exit_code == 3
    assert "no .ndjson" in result.output and "convert" in result.output


def test_a_failing_worker_is_a_bug_report_not_a_source_error_and_quotes_no_data(spark: Any) -> None:
    from fhirscreen.sources.base import SourceError
    from fhirscreen.spark.engine import SparkTaskError, spark_failure

    def fail(value: str) -> str:
        raise ValueError(f"cannot use {value}")

    with pytest.raises(Exception) as caught:
        spark.sparkContext.parallelize(["Testpatient Alpha"], 1).map(fail).collect()
    failure = spark_failure(caught.value, "s3a://bucket/export")
    assert isinstance(failure, SparkTaskError)
    assert "Testpatient" not in str(failure)

    with pytest.raises(Exception) as missing:
        spark.sparkContext.textFile("file:///nonexistent/fhirscreen/x.ndjson").count()
    failure = spark_failure(missing.value, "file:///nonexistent/fhirscreen")
    assert isinstance(failure, SourceError)
    assert spark_failure(ValueError("not Spark"), "x") is None


@pytest.mark.parametrize("conditions", [False, True], ids=["no-condition-at-all", "no-sle-condition"])
def test_no_condition_at_all_and_no_sle_condition_are_said_as_file_mode_says_them(
    spark: Any, trial: Trial, tmp_path: Path, conditions: bool
) -> None:
    """No Condition in the input is nothing usable (exit 4), Conditions none of them SLE a quiet night
    (exit 0, an info finding): the same findings, and the same exit code, as file mode."""
    data = tmp_path / "bulk"
    data.mkdir()
    shutil.copy(SAMPLES / "bulk" / "Patient.ndjson", data / "Patient.ndjson")
    shutil.copy(SAMPLES / "bulk" / "Observation.ndjson", data / "Observation.ndjson")
    if conditions:
        patient = json.loads((data / "Patient.ndjson").read_text().splitlines()[0])["id"]
        hypertension = {
            "resourceType": "Condition", "id": "htn", "subject": {"reference": f"Patient/{patient}"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
        }
        (data / "Condition.ndjson").write_text(json.dumps(hypertension) + "\n")
    expected = outputs_file_mode(data, trial, tmp_path / "file")
    actual = outputs_spark(data, trial, tmp_path / "spark", spark)
    assert actual["candidates.json"] == expected["candidates.json"]
    problems = {f["problem"] for f in json.loads(actual["candidates.json"])["data_quality"]}
    assert ("empty-population" if conditions else "no-conditions") in problems
    result = CliRunner().invoke(
        main, ["screen", "--engine", "spark", "--data", str(data), "--as-of", AS_OF.isoformat()]
    )
    assert result.exit_code == (0 if conditions else 4), result.output


def test_empty_ndjson_files_are_reported_as_file_mode_reports_them(
    spark: Any, trial: Trial, tmp_path: Path
) -> None:
    data = tmp_path / "bulk"
    shutil.copytree(SAMPLES / "bulk", data)
    (data / "Procedure.ndjson").write_bytes(b"")
    (data / "Encounter.ndjson").write_text("\n  \n")
    (data / "Immunization.ndjson.gz").write_bytes(gzip.compress(b""))
    expected = outputs_file_mode(data, trial, tmp_path / "file")
    actual = outputs_spark(data, trial, tmp_path / "spark", spark)
    assert actual["candidates.json"] == expected["candidates.json"]
    empty = [f for f in json.loads(actual["candidates.json"])["data_quality"] if f["problem"] == "empty-file"]
    assert sorted(Path(f["where"]).name for f in empty) == [
        "Encounter.ndjson", "Immunization.ndjson.gz", "Procedure.ndjson",
    ]


def test_a_study_named_only_by_a_medication_record_is_joined_as_file_mode_reads_it(
    spark: Any, trial: Trial, tmp_path: Path
) -> None:
    """E5 reads the ResearchStudy a medication record names by the workflow-researchStudy extension
    (no ResearchSubject refers to it): Spark routes it to the candidate, so an observational registry
    is not counted, as in file mode."""
    data = tmp_path / "bulk"
    data.mkdir()
    subject = {"reference": "Patient/p1"}
    files = {
        "Patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1990-01-01", "gender": "female"},
        "Condition": {
            "resourceType": "Condition", "id": "c1", "subject": subject, "onsetDateTime": "2020-01-01",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "55464009"}]},
        },
        "MedicationStatement": {
            "resourceType": "MedicationStatement", "id": "ms1", "status": "completed", "subject": subject,
            "medicationCodeableConcept": {"coding": [{
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1092437",
                "display": "belimumab",
            }]},
            "effectivePeriod": {"start": "2026-05-20", "end": "2026-05-20"},
            "extension": [{
                "url": "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy",
                "valueReference": {"reference": "ResearchStudy/reg"},
            }],
        },
        "ResearchStudy": {
            "resourceType": "ResearchStudy", "id": "reg", "status": "active", "title": "SLE outcomes 2026",
            "category": [{"text": "Observational"}],
        },
    }
    for rtype, resource in files.items():
        (data / f"{rtype}.ndjson").write_text(json.dumps(resource) + "\n")
    expected = run_screening(FileSource(data), trial, AS_OF)
    actual = run_spark_screening(str(data), trial, AS_OF, spark)
    [want] = [p.results["E5"] for p in expected.patients if p.patient_id == "p1"]
    [got] = [p.results["E5"] for p in actual.patients if p.patient_id == "p1"]
    assert want.outcome.value == "pass", want.reason
    assert (got.outcome, got.reason, got.evidence) == (want.outcome, want.reason, want.evidence)
