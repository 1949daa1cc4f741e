"""Terminal views fit the width, explain reads as sentences, and everyday runs print no internal chatter.
(The exact text at 80 and 100 columns is in tests/golden/terminal/.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fhirscreen.cli import main

GOLDEN_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "golden_data"
AS_OF = "2026-06-01"


pytestmark = pytest.mark.usefixtures("bundled_trial_in_cli")


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("width", [80, 100, 132])
def test_sample_run_table_fits_the_width(width: int) -> None:
    """The bundled samples have 48-character patient ids and reasons of several hundred characters."""
    result = invoke("screen", "--width", width)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    assert any(line.startswith("    ") and "unknown:" in line for line in lines)  # reasons under their row


def test_table_uses_the_terminal_width_when_no_option_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "72")
    result = invoke("screen", "--data", GOLDEN_DATA, "--as-of", AS_OF)
    assert max(len(line) for line in result.stdout.splitlines()) <= 72
    monkeypatch.setenv("COLUMNS", "250")
    wide = invoke("screen", "--data", GOLDEN_DATA, "--as-of", AS_OF)
    row = next(line for line in wide.stdout.splitlines() if "Patient/gp-possible" in line)
    assert "unknown: I2, I6" in row  # room enough: the reason stays on its row


def test_the_score_and_counts_are_explained_under_the_table() -> None:
    text = invoke("screen", "--data", GOLDEN_DATA, "--as-of", AS_OF, "--width", 100).stdout
    assert "score: share of the computable criteria that pass (manual criteria not counted)" in text


@pytest.mark.parametrize("width", [80, 100])
def test_explain_reads_as_sentences_and_fits(width: int) -> None:
    result = invoke("explain", "sle-e3-dexamethasone-e6-belimumab", "--as-of", AS_OF, "--width", width)
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert max(len(line) for line in text.splitlines()) <= width
    assert "Details:" not in text and "=true" not in text and "washout_ends" not in text
    assert text.startswith("Patient/sle-e3-dexamethasone-e6-belimumab (female, age ")
    sentences = " ".join(text.split())
    assert "is not eligible for NCT06737380 as of 2026-06-01." in sentences
    assert "The washout ends 2026-07-26." in sentences


def test_explain_json_has_the_machine_details() -> None:
    result = invoke("explain", "gp-possible", "--data", GOLDEN_DATA, "--as-of", AS_OF, "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["patient"] == "Patient/gp-possible" and doc["in_initial_population"] is True
    assert doc["status"] == "possible" and doc["criteria"]["I2"]["details"]["acr_met"] is False
    assert doc["resources"]["Condition/gp-p-sle"].startswith("Glomerular disease")


def test_explain_tells_no_such_patient_from_not_in_the_population() -> None:
    missing = invoke("explain", "nobody", "--data", GOLDEN_DATA, "--as-of", AS_OF)
    assert missing.exit_code == 2
    assert "no such patient: Patient/nobody" in missing.stderr
    outside = invoke("explain", "gp-nosle", "--data", GOLDEN_DATA, "--as-of", AS_OF, "--width", 80)
    assert outside.exit_code == 0, outside.stderr
    text = " ".join(outside.stdout.split())
    assert "Patient/gp-nosle has no SLE diagnosis on record, so is not in the initial population" in text
    assert "no criterion was evaluated" in text
    as_json = invoke("explain", "gp-nosle", "--data", GOLDEN_DATA, "--as-of", AS_OF, "--format", "json")
    assert json.loads(as_json.stdout)["in_initial_population"] is False


def test_everyday_runs_print_no_internal_chatter() -> None:
    quiet = invoke("screen")  # the bundled samples read a Medication file twice
    assert quiet.exit_code == 0, quiet.stderr
    assert "again for" not in quiet.stderr and "resources for" not in quiet.stderr
    assert "Screened " in quiet.stderr  # the summary stays
    verbose = invoke("screen", "-v")
    assert "reading 1 file(s) again for 1 Medication(s)" in verbose.stderr
