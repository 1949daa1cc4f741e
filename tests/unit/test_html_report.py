"""report.html without a browser: what it contains, privacy, reproducibility and the report command.
(tests/browser/ opens it in a real Chromium.)"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fhirscreen.cli import main
from fhirscreen.report.facts import identity
from fhirscreen.report.html import render_report
from fhirscreen.trial.loader import Trial

GOLDEN_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "golden_data"
SECRETS = ("Harriet", "Quimby", "1985-03-15", "999-01-2345", "Lantern", "Springfield")


pytestmark = pytest.mark.usefixtures("bundled_trial_in_cli")


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    result = invoke("screen", "--data", GOLDEN_DATA, "--as-of", "2026-06-01", "--out", out)
    assert result.exit_code == 0, result.stderr
    return out


class _Tables(HTMLParser):
    """Collects what the accessibility checks need: table captions, header scopes, external refs."""

    def __init__(self) -> None:
        super().__init__()
        self.tables = 0
        self.captions = 0
        self.header_cells: list[dict[str, str | None]] = []
        self.loads: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self.tables += 1
        elif tag == "caption":
            self.captions += 1
        elif tag == "th":
            self.header_cells.append(attributes)
        if tag in ("link", "img", "iframe", "object", "embed") or (tag == "script" and "src" in attributes):
            self.loads.append(tag)


def test_report_command_renders_the_same_bytes_as_the_run(run_dir: Path) -> None:
    folder = (run_dir / "latest").resolve()
    written = (folder / "report.html").read_bytes()
    (folder / "report.html").unlink()
    result = invoke("report", folder)
    assert result.exit_code == 0, result.stderr
    assert (folder / "report.html").read_bytes() == written


def test_report_is_self_contained_and_accessible(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    parser = _Tables()
    parser.feed(page)
    assert parser.loads == [], "report.html must not load anything"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "no network references"
    assert "@import" not in page and "url(" not in page
    assert parser.tables >= 4 and parser.captions == parser.tables
    assert all(cell.get("scope") in ("col", "row") for cell in parser.header_cells)


def test_report_shows_ids_age_and_sex_but_no_names_by_default(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    document = json.loads((run_dir / "candidates.json").read_text())
    for patient in document["patients"]:
        assert f'id="p-{patient["patient"].removeprefix("Patient/")}"' in page
        assert patient["sex"] and patient["age"]
    assert "No names or identifiers." in page
    for secret in SECRETS:
        assert secret not in page
        assert secret not in (run_dir / "candidates.json").read_text()
    assert not (run_dir / "identities.json").exists()


def test_show_names_puts_names_in_the_page_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "named"
    result = invoke("screen", "--data", GOLDEN_DATA, "--as-of", "2026-06-01", "--out", out, "--show-names")
    assert result.exit_code == 0, result.stderr
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Harriet Quimby-Testperson" in page and "Names and MRNs are shown" in page
    assert "Harriet" not in (out / "candidates.json").read_text()
    assert (out / "identities.json").stat().st_mode & 0o077 == 0
    assert (out / "report.html").stat().st_mode & 0o077 == 0
    # Rendered again with and without names from the same folder.
    assert invoke("report", out).exit_code == 0
    assert "Harriet" not in (out / "report.html").read_text(encoding="utf-8")
    assert invoke("report", out, "--show-names").exit_code == 0
    assert (out / "report.html").read_text(encoding="utf-8") == page


def test_report_show_names_without_recorded_names_says_why(run_dir: Path) -> None:
    result = invoke("report", run_dir, "--show-names")
    assert result.exit_code == 3
    assert "identities.json" in result.stderr and "--show-names" in result.stderr


@pytest.mark.parametrize("content, message", [
    (None, "candidates.json: not found"),
    ("{not json", "not valid JSON"),
    ('{"patients": 3}', "not a fhirscreen candidates document"),
])
def test_report_on_a_bad_run_folder_names_the_file(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "candidates.json").write_text(content)
    result = invoke("report", tmp_path)
    assert result.exit_code == 3
    assert message in result.stderr and "Traceback" not in result.output


def test_changes_since_the_last_run_are_shown(run_dir: Path) -> None:
    document = json.loads((run_dir / "candidates.json").read_text())
    first = document["patients"][0]["patient"]
    changes = {
        "run": "2026-06-02T0230", "base_run": "2026-06-01T0230",
        "new_candidates": [{"patient": first, "status": "eligible", "rank": 1}],
        "status_changes": [{"patient": first, "from": "possible", "to": "eligible",
                            "criteria": [{"id": "I4", "from": "unknown", "to": "pass",
                                          "evidence": ["Observation/o-new-egfr"]}]}],
        "left_population": [{"patient": "Patient/gone-away", "last_status": "possible"}],
        "settled_unknowns": [{"patient": first, "criterion": "I4", "to": "pass",
                              "evidence": ["Observation/o-new-egfr"]}],
    }
    (run_dir / "changes.json").write_text(json.dumps(changes))
    assert invoke("report", run_dir).exit_code == 0
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    section = page[page.index('id="changes"'):page.index('id="patients"')]
    assert "2026-06-01T0230" in section
    for text in ("New candidates", "Status changes", "I4 unknown to pass", "Observation/o-new-egfr",
                 "gone-away", "Unknowns settled"):
        assert text in section


def test_first_run_and_no_history_are_told_apart(run_dir: Path) -> None:
    # The run folder holds changes.json (a first run: nothing to compare with) and the page says so.
    folder = (run_dir / "latest").resolve()
    assert "This is the first run" in (folder / "report.html").read_text(encoding="utf-8")
    # A folder without changes.json (one copied by hand, say) is told apart from a first run.
    (folder / "changes.json").unlink()
    invoke("report", folder)
    assert "no changes.json in the run folder" in (folder / "report.html").read_text(encoding="utf-8")


def test_report_of_an_out_directory_renders_its_latest_run(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    result = invoke("report", run_dir)
    assert result.exit_code == 0, result.stderr
    assert (run_dir / "report.html").is_symlink()  # the flat view still points at latest
    assert (run_dir / "latest" / "report.html").read_text(encoding="utf-8") == page


def test_evidence_links_to_the_server_the_run_read(run_dir: Path, trial: Trial) -> None:
    document = json.loads((run_dir / "candidates.json").read_text())
    document["source"] = "https://fhir.example.org/R4 (Bulk Data export)"
    page = render_report(document, trial)
    evidence = next(ref for p in document["patients"] for c in p["criteria"].values()
                    for ref in c["evidence"])
    assert f'href="https://fhir.example.org/R4/{evidence}"' in page
    assert 'href="http' not in render_report(json.loads((run_dir / "candidates.json").read_text()), trial)


def test_numbers_in_the_header_match_candidates_json(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    document = json.loads((run_dir / "candidates.json").read_text())
    for status in ("eligible", "possible", "ineligible"):
        n = sum(1 for p in document["patients"] if p["status"] == status)
        assert re.search(rf'<span class="n">{n}</span><span class="badge {status}">', page), status


def test_identity_takes_the_official_name_and_the_mrn_only() -> None:
    patient = {
        "resourceType": "Patient", "id": "p",
        "name": [{"use": "nickname", "given": ["Jo"]},
                 {"use": "official", "given": ["Joan", "M"], "family": "Doe"}],
        "identifier": [{"system": "urn:ssn", "value": "123-45-6789"},
                       {"type": {"coding": [{"code": "MR"}]}, "value": "MRN-77"}],
    }
    assert identity(patient) == {"name": "Joan M Doe", "mrn": "MRN-77"}
    assert identity({"resourceType": "Patient", "id": "q"}) == {}


def test_a_long_evidence_list_shows_the_first_dozen_and_counts_the_rest(run_dir: Path, trial: Trial) -> None:
    document = json.loads((run_dir / "candidates.json").read_text())
    criterion = document["patients"][0]["criteria"]["I2"]
    criterion["evidence"] = [f"Observation/many-{i:02d}" for i in range(20)]
    page = render_report(document, trial)
    assert "Evidence (20 resources)" in page and "and 8 more (listed in candidates.json)" in page
    assert "Observation/many-11" in page and "Observation/many-12" not in page


def test_a_run_folder_written_before_the_partial_field_still_renders_as_partial(
    run_dir: Path, trial: Trial
) -> None:
    """``fhirscreen report`` on an older partial run: candidates.json without ``partial``, only its
    data-lost findings. The page says the run is not complete all the same; a whole run's page does not."""
    document = json.loads((run_dir / "candidates.json").read_text())
    assert 'role="alert"' not in render_report(document, trial)
    del document["partial"]
    lost = {"severity": "error", "where": "/data/Observation.ndjson", "problem": "data-lost", "message": "x"}
    document["data_quality"].append(lost)
    page = render_report(document, trial)
    assert 'role="alert"><strong>Not a complete run.</strong> Partial run: 1 part(s)' in page
    nothing = {**document, "data_quality": [{**lost, "problem": "no-conditions", "message": "no Condition"}]}
    assert "This run read nothing usable" in render_report(nothing, trial)
