"""Golden files: ``screen --as-of 2026-06-01 --out`` on tests/fixtures/golden_data must reproduce
tests/golden/* byte for byte.

The data are small synthetic FHIR R4 files: a transaction Bundle with ``urn:uuid:`` references
(Patient/gp-eligible, Patient/gp-possible) and Bulk Data NDJSON (Patient/gp-ineligible, Patient/gp-nosle
who has no SLE diagnosis, and an Observation without a subject).

When a change to the outputs is intended, regenerate the golden files and review the diff:

    FHIRSCREEN_UPDATE_GOLDEN=1 python3 -m pytest -q tests/unit/test_golden.py
    git diff tests/golden

Paths in the outputs are absolute (the same whatever the working directory); the comparison takes out
the checkout's location, so the golden files do not depend on where the checkout lives.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhirscreen.cli import main

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
DATA = Path("tests") / "fixtures" / "golden_data"
OUTPUTS = ("candidates.json", "candidates.csv", "measure-report.json", "group.json", "report.html")
UPDATE = os.environ.get("FHIRSCREEN_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("golden-run")
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        args = ["screen", "--data", str(DATA), "--as-of", "2026-06-01", "--out", str(out)]
        result = CliRunner().invoke(main, args)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.stderr
    return out


# The run id names the run's start time (report.html shows it): the one part that differs between runs.
RUN_ID = re.compile(rb"\d{4}-\d{2}-\d{2}T\d{6}Z")


@pytest.mark.parametrize("name", OUTPUTS)
def test_output_matches_the_golden_file(produced: Path, name: str) -> None:
    actual = (produced / name).read_bytes().replace(str(ROOT).encode() + b"/", b"")
    actual = RUN_ID.sub(b"RUN-ID", actual)
    expected_file = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        expected_file.write_bytes(actual)
    assert expected_file.exists(), f"{expected_file} is missing: run with FHIRSCREEN_UPDATE_GOLDEN=1"
    assert actual == expected_file.read_bytes(), (
        f"{name} differs from {expected_file}; if the change is intended, regenerate with "
        "FHIRSCREEN_UPDATE_GOLDEN=1 and review the diff"
    )


# Terminal views at 80 and 100 columns: the ranked table with attrition and worklist, explain for a
# possible and an ineligible patient, and the criteria list.
TERMINAL_VIEWS = {
    "screen": ["screen", "--data", str(DATA), "--as-of", "2026-06-01"],
    "explain-possible": ["explain", "gp-possible", "--data", str(DATA), "--as-of", "2026-06-01"],
    "explain-ineligible": ["explain", "Patient/gp-ineligible", "--data", str(DATA), "--as-of", "2026-06-01"],
    "criteria": ["criteria"],
}


@pytest.mark.parametrize("width", [80, 100])
@pytest.mark.parametrize("view", sorted(TERMINAL_VIEWS))
def test_terminal_view_matches_the_golden_file(view: str, width: int) -> None:
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        result = CliRunner().invoke(main, [*TERMINAL_VIEWS[view], "--width", str(width)])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.stderr
    expected_file = GOLDEN / "terminal" / f"{view}-{width}.txt"
    if UPDATE:
        expected_file.parent.mkdir(parents=True, exist_ok=True)
        expected_file.write_text(result.stdout, encoding="utf-8")
    assert expected_file.exists(), f"{expected_file} is missing: run with FHIRSCREEN_UPDATE_GOLDEN=1"
    assert result.stdout == expected_file.read_text(encoding="utf-8"), (
        f"{view} at {width} columns differs from {expected_file}; if intended, regenerate with "
        "FHIRSCREEN_UPDATE_GOLDEN=1 and review the diff"
    )
    assert max(len(line) for line in result.stdout.splitlines()) <= width
