"""PHI canaries: synthetic names, birth dates, identifiers, addresses and phone numbers planted in the
input never appear in stdout, stderr or ``-v`` logs, in file mode and in server mode (a responses-mocked
FHIR server), nor in run.json / changes.json. Every command a nightly job or a coordinator runs is
covered: screen (every format), explain, history, diff. Canaries sit in valid resources and in a
malformed one (an invalid birth date holding a canary), where an error message might echo the value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import responses
from click.testing import CliRunner, Result

from fhirscreen.cli import main
from fhirscreen.quality import DataQuality
from fhirscreen.sources.files import FileSource
from tests.unit.test_server_source import BASE, FakeFhir, inline_contained_medications

GOLDEN_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "golden_data"
AS_OF = "2026-06-01"
CANARIES = {
    "name": ("Quillonella", "Zanzibarcanary"),
    "birth date": ("1981-09-17", "1979-04-29"),
    "identifier": ("MRN-CANARY-4417", "987-65-4329"),
    "address": ("42 Canarywharf Road", "Oxcanarton", "CX1 7QQ"),
    "telecom": ("+1-555-0142-771", "quillon@canary.example"),
    "malformed birth date": ("19CANARY-81",),
    # Malformed fields the outputs print when well formed: a gender code, a Condition's onset date.
    "malformed gender": ("Canarygenderx",),
    "malformed onset": ("MRNCANARY4471", "MRNCANARY4"),
}


def planted(resource: dict[str, Any], birth: str) -> dict[str, Any]:
    if resource.get("resourceType") == "Condition" and "onsetDateTime" in resource:
        return {**resource, "onsetDateTime": "MRNCANARY4471"}
    if resource.get("resourceType") != "Patient":
        return resource
    gender = {"gender": "Canarygenderx"} if resource.get("id") == "gp-possible" else {}
    return {
        **resource,
        **gender,
        "name": [
            {"family": "Zanzibarcanary", "given": ["Quillonella"], "text": "Quillonella Zanzibarcanary"}
        ],
        "birthDate": birth,
        "identifier": [
            {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN-CANARY-4417"},
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "987-65-4329"},
        ],
        "address": [{"line": ["42 Canarywharf Road"], "city": "Oxcanarton", "postalCode": "CX1 7QQ"}],
        "telecom": [
            {"system": "phone", "value": "+1-555-0142-771"},
            {"system": "email", "value": "quillon@canary.example"},
        ],
    }


@pytest.fixture(scope="module")
def canary_resources() -> list[dict[str, Any]]:
    """The golden data with references resolved, identities replaced by canaries; Patient/gp-possible
    has a birth date that is not a date (and holds a canary)."""
    resources = [r for r, _ in FileSource(GOLDEN_DATA).read(None, DataQuality())]
    births = {"gp-eligible": "1981-09-17", "gp-ineligible": "1979-04-29", "gp-possible": "19CANARY-81"}
    return [planted(r, births.get(str(r.get("id")), "1979-04-29")) for r in resources]


pytestmark = pytest.mark.usefixtures("bundled_trial_in_cli")


def assert_no_canary(text: str, where: str) -> None:
    for kind, values in CANARIES.items():
        for value in values:
            assert value not in text, f"{kind} canary {value!r} leaked into {where}"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def exercise(source_args: list[str | Path], out: Path) -> list[tuple[str, Result]]:
    results = []
    for fmt in ("table", "json", "csv"):
        argv = ["screen", *source_args, "--as-of", AS_OF, "--out", out, "--format", fmt, "-v"]
        results.append((f"screen --format {fmt}", run(*argv)))
    for pid in ("gp-eligible", "gp-possible"):
        results.append((f"explain {pid}", run("explain", pid, *source_args, "--as-of", AS_OF, "-v")))
    results.append(("history", run("history", out)))
    results.append(("diff", run("diff", out)))
    return results


def check(results: list[tuple[str, Result]], out: Path) -> None:
    for name, result in results:
        assert result.exit_code == 0, f"{name}: {result.output}"
        assert_no_canary(result.stdout, f"{name} stdout")
        assert_no_canary(result.stderr, f"{name} stderr")
    assert "Patient/gp-eligible" in results[0][1].stdout  # the run did screen the planted patients
    for name in ("run.json", "changes.json"):
        assert_no_canary((out / "latest" / name).read_text(), name)


def write_ndjson(resources: list[dict[str, Any]], folder: Path) -> Path:
    folder.mkdir()
    (folder / "all.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources))
    return folder


def test_no_canary_in_any_output_in_file_mode(tmp_path, canary_resources):
    data = write_ndjson(canary_resources, tmp_path / "data")
    assert "19CANARY-81" in (data / "all.ndjson").read_text()  # planted where messages might echo it
    out = tmp_path / "out"
    results = exercise(["--data", data], out)
    check(results, out)
    screened = {p["patient"]: p for p in json.loads(results[1][1].stdout)["patients"]}
    assert screened["Patient/gp-possible"]["criteria"]["I1"]["outcome"] == "unknown"  # the bad date was read


def test_no_canary_in_any_output_in_server_mode(tmp_path, canary_resources):
    fake = FakeFhir([inline_contained_medications(r) for r in canary_resources])
    out = tmp_path / "out"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        results = exercise(["--server", BASE], out)
    assert fake.log, "the mocked server was not asked anything"
    check(results, out)
