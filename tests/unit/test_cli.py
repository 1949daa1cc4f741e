"""The command line end to end on small files: formats, outputs, explanations, exit codes, bad input."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from fhirscreen import cli
from fhirscreen.cli import main
from fhirscreen.paths import default_trial_file

GOLDEN_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "golden_data"
AS_OF = "2026-06-01"
PROTOCOL_IDS = [f"I{i}" for i in range(1, 9)] + [f"E{i}" for i in range(1, 17)]
OUTPUTS = ("candidates.json", "candidates.csv", "measure-report.json", "group.json", "report.html")
# A run folder name: the as-of date and the time of day the run started.
RUN_ID = re.compile(rb"\d{4}-\d{2}-\d{2}T\d{6}Z")
# Identifying facts of Patient/gp-eligible in the fixture: none may ever be printed.
SECRETS = ("Harriet", "Quimby", "1985-03-15", "999-01-2345", "Lantern", "Springfield")


pytestmark = pytest.mark.usefixtures("bundled_trial_in_cli")


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def screen(*args: str | Path, data: Path = GOLDEN_DATA) -> Result:
    return invoke("screen", "--data", data, "--as-of", AS_OF, *args)


@pytest.fixture(scope="module")
def golden_json() -> dict:
    result = screen("--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------------------------------- screen


def test_screen_table_ranks_every_sle_patient_with_each_status_present(golden_json):
    result = screen()
    assert result.exit_code == 0, result.stderr
    statuses = {p["status"] for p in golden_json["patients"]}
    assert statuses, "the golden data must yield candidates"
    for patient in golden_json["patients"]:
        row = next(line for line in result.stdout.splitlines() if patient["patient"] in line)
        assert patient["status"] in row
    assert all(status in result.stdout for status in statuses)
    assert "Patient/gp-nosle" not in result.stdout  # no SLE diagnosis: not in the initial population
    assert "Attrition" in result.stdout and "Worklist" in result.stdout


def test_screen_summary_on_stderr(golden_json):
    result = screen()
    assert f"{len(golden_json['patients'])} in the initial population" in result.stderr
    assert "4 patients read" in result.stderr


def test_screen_json_format(golden_json):
    assert golden_json["trial"] == "NCT06737380" and golden_json["as_of"] == AS_OF
    assert sorted(p["patient"] for p in golden_json["patients"]) == [
        "Patient/gp-eligible",
        "Patient/gp-ineligible",
        "Patient/gp-possible",
    ]
    assert [p["rank"] for p in golden_json["patients"]] == [1, 2, 3]


def test_screen_csv_format(golden_json):
    result = screen("--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0][:4] == ["rank", "patient", "status", "score"] and rows[0][-1] == "reasons"
    assert [r[1] for r in rows[1:]] == [p["patient"] for p in golden_json["patients"]]


def test_screen_out_writes_every_output_file(tmp_path, golden_json):
    out = tmp_path / "run"
    result = screen("--out", out)
    assert result.exit_code == 0, result.stderr
    latest = out / "latest"
    assert sorted(p.name for p in latest.iterdir()) == sorted([*OUTPUTS, "run.json", "changes.json"])
    assert json.loads((latest / "candidates.json").read_text()) == golden_json
    assert json.loads((out / "candidates.json").read_text()) == golden_json  # the flat view
    assert json.loads((latest / "measure-report.json").read_text())["resourceType"] == "MeasureReport"
    assert all(str(latest / name) in result.stderr for name in OUTPUTS)


def test_screen_is_reproducible_byte_for_byte(tmp_path):
    first, second = screen("--out", tmp_path / "a"), screen("--out", tmp_path / "b")
    assert first.exit_code == second.exit_code == 0
    assert first.stdout == second.stdout
    for name in OUTPUTS:
        a, b = ((tmp_path / run / name).read_bytes() for run in ("a", "b"))
        if name == "report.html":
            # The page names its run folder, whose name holds the time of day the run started: the one
            # thing two runs a second apart do not share.
            a, b = (RUN_ID.sub(b"<run>", page) for page in (a, b))
        assert a == b, name


def test_screen_out_on_a_file_is_a_configuration_error(tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("")
    result = screen("--out", blocker)
    assert result.exit_code == 2
    assert "taken" in result.stderr


# --------------------------------------------------------------------------------------- explain


def test_explain_shows_every_criterion_and_the_evidence_but_no_identity(golden_json):
    result = invoke("explain", "Patient/gp-eligible", "--data", GOLDEN_DATA, "--as-of", AS_OF)
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    criteria = next(p for p in golden_json["patients"] if p["patient"] == "Patient/gp-eligible")["criteria"]
    for cid in criteria:
        assert re.search(rf"^{cid} ", text, re.MULTILINE), cid
    evidence = {ref for entry in criteria.values() for ref in entry["evidence"]}
    assert "Patient/gp-eligible" in evidence
    for ref in evidence:
        assert ref in text
    for secret in SECRETS:
        assert secret not in result.output, secret


def test_explain_a_patient_not_in_the_data():
    result = invoke("explain", "nobody", "--data", GOLDEN_DATA, "--as-of", AS_OF)
    assert result.exit_code == 2
    assert "Patient/nobody" in result.stderr


def test_nothing_identifying_is_printed_by_screen():
    for fmt in ("table", "json", "csv"):
        result = screen("--format", fmt)
        assert not any(secret in result.output for secret in SECRETS), fmt


# -------------------------------------------------------------------------------------- criteria


@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_criteria_lists_all_24_protocol_criteria(fmt):
    result = invoke("criteria", "--format", fmt)
    assert result.exit_code == 0, result.stderr
    for cid in PROTOCOL_IDS:
        assert re.search(rf"(^|[|\"\s]){cid}([|\"\s]|$)", result.stdout, re.MULTILINE), cid


# ------------------------------------------------------------------------------------ exit codes


def test_bad_as_of_is_a_usage_error():
    result = screen_with_as_of("2026-13-01")
    assert result.exit_code == 2
    assert "2026-13-01" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bulk"], "--bulk needs --server"),
        (["--server", "http://127.0.0.1:9/fhir"], "either --data or --server"),
        (["--post-report"], "--post-report needs --server"),
    ],
)
def test_contradictory_source_options_are_usage_errors(args, message):
    result = invoke("screen", "--data", GOLDEN_DATA, *args)
    assert result.exit_code == 2
    assert message in result.stderr


def screen_with_as_of(value: str) -> Result:
    return invoke("screen", "--data", GOLDEN_DATA, "--as-of", value)


@pytest.mark.parametrize(
    ("original", "typo"),
    [
        ("    computability: computable\n", "    computabilty: computable\n"),  # a criterion key
        ("      min_years: 18\n", "      min_yeras: 18\n"),  # an evaluator parameter
    ],
)
def test_trial_file_typo_names_the_key_and_the_line(tmp_path, original, typo):
    text = default_trial_file().read_text(encoding="utf-8")
    assert original in text
    broken = text.replace(original, typo, 1)
    path = tmp_path / "trial.yaml"
    path.write_text(broken, encoding="utf-8")
    line = broken[: broken.index(typo)].count("\n") + 1
    key = typo.strip().split(":")[0]
    result = invoke("screen", "--trial", path, "--data", GOLDEN_DATA, "--as-of", AS_OF)
    assert result.exit_code == 2
    assert key in result.stderr and f"{path}:{line}" in result.stderr
    assert "Traceback" not in result.output


def test_missing_data_path_is_a_source_error(tmp_path):
    result = screen(data=tmp_path / "nowhere")
    assert result.exit_code == 3
    assert "nowhere" in result.stderr


def test_empty_data_directory_is_nothing_usable(tmp_path):
    result = screen(data=tmp_path)
    assert result.exit_code == 4
    assert str(tmp_path) in result.stderr


# ------------------------------------------------------------------------------------- bad input


def test_bad_input_is_reported_and_the_rest_is_screened(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(GOLDEN_DATA, data)
    (data / "broken.json").write_text('{"resourceType": "Patient", "id": ')
    (data / "not-fhir.json").write_text('{"hello": "world"}')
    (data / "orphan.ndjson").write_text(
        json.dumps(
            {
                "resourceType": "Condition",
                "id": "cond-no-subject",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "55464009"}]},
            }
        )
        + "\n"
    )
    (data / "odd-unit.json").write_text(
        json.dumps(
            {
                "resourceType": "Observation",
                "id": "egfr-odd-unit",
                "status": "final",
                "subject": {"reference": "Patient/gp-possible"},
                "effectiveDateTime": "2026-05-28",
                "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]},
                "valueQuantity": {"value": 64, "unit": "furlongs/fortnight"},
            }
        )
    )
    result = screen("--format", "json", data=data)
    # broken.json is lost as a whole: the outputs are written, and the exit code says they are partial.
    assert result.exit_code == 5, result.stderr
    assert "partial data from" in result.stderr and "1 part(s) of the source" in result.stderr
    for where in ("broken.json", "not-fhir.json", "Condition/cond-no-subject", "Observation/egfr-odd-unit"):
        assert where in result.stderr, where
    screened = {p["patient"] for p in json.loads(result.stdout)["patients"]}
    assert screened == {"Patient/gp-eligible", "Patient/gp-ineligible", "Patient/gp-possible"}
    problems = {f["problem"] for f in json.loads(result.stdout)["data_quality"]}
    assert {"malformed-json", "not-fhir", "no-subject", "unknown-unit", "data-lost"} <= problems


# ------------------------------------------------------------------------------- click's own errors


@pytest.mark.parametrize(
    ("args", "command", "message"),
    [
        (["screen", "--bogus"], "fhirscreen screen", "No such option '--bogus'."),
        (["screen", "--format", "xml"], "fhirscreen screen", "Invalid value for '--format'"),
        (["screen", "--as-of", "2026-02-30"], "fhirscreen screen", "is not a date in YYYY-MM-DD form"),
        (["explain"], "fhirscreen explain", "Missing argument 'PATIENT_ID'."),
        (["scren"], "fhirscreen", "No such command 'scren'."),
        (["--bogus"], "fhirscreen", "No such option '--bogus'."),
    ],
    ids=["option", "choice", "callback", "argument", "command", "group-option"],
)
def test_usage_errors_read_as_every_other_error_with_clicks_hint_and_exit_2(
    args: list[str], command: str, message: str
) -> None:
    """click printed "Error: ..." where every other error reads "fhirscreen: error: ..." (what a cron
    job's mail or a log filter looks for)."""
    result = CliRunner().invoke(main, args, prog_name="fhirscreen")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"Usage: {command} [OPTIONS]")
    assert lines[1] == f"Try '{command} --help' for help."
    assert lines[-1].startswith("fhirscreen: error: ") and message in lines[-1]
    assert not any(line.startswith("Error:") for line in lines)


def test_another_click_error_reads_as_every_other_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_args: object) -> None:
        raise click.ClickException("the trial file is locked")

    monkeypatch.setattr(cli, "load_trial", refused)
    result = CliRunner().invoke(main, ["criteria"], prog_name="fhirscreen")
    assert result.exit_code == 1
    assert result.stderr == "fhirscreen: error: the trial file is locked\n"


def test_a_group_without_a_command_still_shows_its_help() -> None:
    result = CliRunner().invoke(main, [], prog_name="fhirscreen")
    assert "Commands:" in result.output and "fhirscreen: error" not in result.output
