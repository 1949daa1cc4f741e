"""Run history (``--out DIR``): one folder per run, latest, run.json, changes.json, --keep, the lock,
leftovers of killed runs, and the ``history`` / ``diff`` commands, end to end on small files."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fhirscreen.cli import main
from fhirscreen.exitcodes import EXIT_LOCKED, EXIT_NOTHING_USABLE, EXIT_USAGE
from fhirscreen.paths import default_trial_file
from fhirscreen.runs import OutputDir, compute_changes
from fhirscreen.runs.lock import OutputLock

GOLDEN_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "golden_data"
AS_OF = "2026-06-01"
RUN_FILES = sorted(
    [
        "candidates.json",
        "candidates.csv",
        "measure-report.json",
        "group.json",
        "report.html",
        "run.json",
        "changes.json",
    ]
)


pytestmark = pytest.mark.usefixtures("bundled_trial_in_cli")


def screen(out: Path, *args: str | Path, data: Path = GOLDEN_DATA, as_of: str = AS_OF) -> Result:
    argv = ["screen", "--data", data, "--as-of", as_of, "--out", out, "--format", "json", *args]
    return CliRunner().invoke(main, [str(a) for a in argv])


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in (out / "runs").iterdir())


def copy_data(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(GOLDEN_DATA, target)
    return target


def drop_lines(path: Path, marker: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if marker not in line))


# ------------------------------------------------------------------------------------- run folders


def test_every_run_is_kept_and_latest_points_to_the_newest(tmp_path):
    out = tmp_path / "out"
    first = screen(out, as_of="2026-05-01")
    second = screen(out)
    assert first.exit_code == second.exit_code == 0, second.stderr
    runs = run_dirs(out)
    assert [p.name[:10] for p in runs] == ["2026-05-01", "2026-06-01"]
    assert all(sorted(p.name for p in run.iterdir()) == RUN_FILES for run in runs)
    assert os.readlink(out / "latest") == f"runs/{runs[1].name}"
    assert json.loads((out / "latest" / "candidates.json").read_text())["as_of"] == AS_OF
    # The flat view follows latest, so a one-shot user finds DIR/candidates.json as before.
    assert (out / "candidates.json").read_bytes() == (runs[1] / "candidates.json").read_bytes()
    assert json.loads((runs[0] / "candidates.json").read_text())["as_of"] == "2026-05-01"
    assert not list(out.rglob(".tmp-*")) and not any((out / ".in-progress").iterdir())


def test_run_json_says_what_the_run_read_and_found_without_phi(tmp_path, monkeypatch):
    monkeypatch.chdir(GOLDEN_DATA.parent)
    result = screen(tmp_path / "out", data=Path("golden_data"))
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "latest" / "run.json").read_text())
    candidates = json.loads((tmp_path / "out" / "latest" / "candidates.json").read_text())
    assert manifest["source"] == str(GOLDEN_DATA) == candidates["source"]  # relative --data, absolute here
    assert manifest["trial"]["id"] == "NCT06737380"
    assert manifest["trial"]["sha256"] == hashlib.sha256(default_trial_file().read_bytes()).hexdigest()
    assert manifest["as_of"] == AS_OF and manifest["exit_status"] == 0 and manifest["partial"] is False
    assert manifest["counts"] == {"eligible": 1, "possible": 1, "ineligible": 1}
    assert manifest["patients_read"] == 4 and manifest["initial_population"] == 3
    assert manifest["resources_read"]["Patient"] == 4 and manifest["resources_read"]["Observation"] >= 3
    assert manifest["findings"] == {"no-subject": 1} or manifest["findings"]
    assert set(manifest["durations_s"]) >= {"read", "evaluate", "total"}
    assert manifest["server"] is None and manifest["options"]["mode"] == "files"
    text = json.dumps(manifest)
    for secret in ("Harriet", "Quimby", "1985-03-15", "999-01-2345"):
        assert secret not in text


def test_run_json_options_name_no_secret_and_urls_carry_no_credentials():
    from fhirscreen.runs.manifest import recorded_options
    from fhirscreen.runs.observe import canonical_source
    from fhirscreen.sources.factory import SourceOptions

    options = SourceOptions(server="https://fhir.example.org/R4", token_env="eyJhbGciOiJIUzI1NiJ9.secret")
    recorded = json.dumps(recorded_options(options, keep=3))
    assert "eyJ" not in recorded and '"auth": "bearer-token"' in recorded
    assert canonical_source("https://u:pw@fhir.example.org:8443/R4?_format=json (Bulk Data export)") == (
        "https://fhir.example.org:8443/R4 (Bulk Data export)"
    )
    assert canonical_source("/data/export (copy)") == "/data/export (copy)"


def test_keep_prunes_the_oldest_runs_but_never_latest(tmp_path):
    out = tmp_path / "out"
    for day in ("2026-05-01", "2026-05-02", "2026-05-03", "2026-05-04"):
        assert screen(out, "--keep", "2", as_of=day).exit_code == 0
    assert [p.name[:10] for p in run_dirs(out)] == ["2026-05-03", "2026-05-04"]
    assert os.readlink(out / "latest").startswith("runs/2026-05-04")
    older, newest = (p.name for p in run_dirs(out))
    (out / "latest").unlink()
    (out / "latest").symlink_to(f"runs/{older}")  # e.g. the newest run read nothing usable
    directory = OutputDir.open(out)
    try:
        assert directory.prune(1) == []  # the oldest is the one latest points to: it stays
        (out / "latest").unlink()
        (out / "latest").symlink_to(f"runs/{newest}")
        assert directory.prune(1) == [older]
    finally:
        directory.close()
    assert [p.name for p in run_dirs(out)] == [newest]


def test_keep_without_out_is_a_usage_error():
    result = invoke("screen", "--data", GOLDEN_DATA, "--keep", "3")
    assert result.exit_code == EXIT_USAGE and "--keep needs --out" in result.stderr


# -------------------------------------------------------------------------------------------- lock


def test_a_second_run_while_the_first_holds_the_lock_exits_at_once_with_its_own_code(tmp_path):
    out = tmp_path / "out"
    assert screen(out).exit_code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    holder = OutputLock(out)
    holder.acquire()
    try:
        result = screen(out, data=tmp_path / "does-not-exist")  # the lock is checked before the source
    finally:
        holder.release()
    assert result.exit_code == EXIT_LOCKED, result.stderr
    assert "another fhirscreen run is writing here" in result.stderr and f"pid {os.getpid()}" in result.stderr
    assert len(run_dirs(out)) == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"} == {
        p: b for p, b in before.items() if p.name != ".lock"
    }


def test_a_stale_lock_of_a_dead_run_is_taken_over_with_a_warning(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text("pid 999999 started 2026-06-01T02:30:00Z\n")
    result = screen(out)
    assert result.exit_code == 0, result.stderr
    assert "stale lock" in result.stderr and "pid 999999" in result.stderr
    assert (out / ".lock").read_text() == ""  # released cleanly


def test_out_is_checked_before_any_work_starts(tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("")
    result = screen(blocker, data=tmp_path / "does-not-exist")
    assert result.exit_code == EXIT_USAGE, result.stderr  # not 3: the source was never opened
    assert "taken" in result.stderr and "does-not-exist" not in result.stderr
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "latest").mkdir()
    result = screen(tmp_path / "out")
    assert result.exit_code == EXIT_USAGE and "not a symlink" in result.stderr


def test_leftovers_of_a_killed_run_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    assert screen(out).exit_code == 0
    half = out / ".in-progress" / "2026-06-01T020000Z"
    half.mkdir()
    (half / "candidates.json").write_text('{"trial": "NCT')
    (out / "runs" / ".tmp-123-x").write_text("partial")
    (out / ".tmp-123-latest").symlink_to("runs/nowhere")
    result = screen(out)
    assert result.exit_code == 0
    assert "unfinished run" in result.stderr
    assert not half.exists() and not list(out.rglob(".tmp-*"))
    assert len(run_dirs(out)) == 2


# ------------------------------------------------------------------------------ changes and diff


def two_days(tmp_path: Path) -> Path:
    """Day 1: Patient/gp-eligible has had rituximab (ineligible). Day 2: that record was corrected and
    Patient/gp-ineligible's SLE diagnosis was removed (out of the population)."""
    day1 = copy_data(tmp_path, "day1")
    rtx = (day1 / "export" / "MedicationAdministration.ndjson").read_text().strip()
    wrong = rtx.replace("gp-i-rtx", "gp-e-rtx").replace("Patient/gp-ineligible", "Patient/gp-eligible")
    (day1 / "export" / "MedicationAdministration.ndjson").write_text(rtx + "\n" + wrong + "\n")
    day2 = copy_data(tmp_path, "day2")
    drop_lines(day2 / "export" / "Condition.ndjson", '"gp-i-sle"')
    out = tmp_path / "out"
    assert screen(out, data=day1).exit_code == 0
    assert screen(out, data=day2).exit_code == 0
    return out


def test_each_run_writes_changes_against_the_run_before(tmp_path):
    out = two_days(tmp_path)
    first, second = run_dirs(out)
    assert json.loads((first / "changes.json").read_text()) == {
        "run": first.name,
        "base_run": None,
        "new_candidates": [],
        "status_changes": [],
        "left_population": [],
        "settled_unknowns": [],
    }
    changes = json.loads((second / "changes.json").read_text())
    assert changes["run"] == second.name and changes["base_run"] == first.name
    assert changes["new_candidates"] == [{"patient": "Patient/gp-eligible", "status": "eligible", "rank": 1}]
    [change] = changes["status_changes"]
    assert (change["patient"], change["from"], change["to"]) == (
        "Patient/gp-eligible",
        "ineligible",
        "eligible",
    )
    e6 = next(c for c in change["criteria"] if c["id"] == "E6")
    assert (e6["from"], e6["to"]) == ("fail", "pass")
    assert "MedicationAdministration/gp-e-rtx" in e6["evidence"]  # the resource behind the change
    assert changes["left_population"] == [{"patient": "Patient/gp-ineligible", "last_status": "ineligible"}]
    assert list(changes) == [
        "run",
        "base_run",
        "new_candidates",
        "status_changes",
        "left_population",
        "settled_unknowns",
    ]


def test_diff_defaults_to_latest_against_the_run_before_in_text_json_and_csv(tmp_path):
    out = two_days(tmp_path)
    first, second = run_dirs(out)
    text = invoke("diff", out)
    assert text.exit_code == 0, text.stderr
    assert all(len(line) <= 80 for line in text.stdout.splitlines())
    assert f"Run {second.name} against {first.name}" in text.stdout
    assert "ineligible -> eligible" in text.stdout and "MedicationAdministration/gp-e-rtx" in text.stdout
    assert "Patient/gp-ineligible (was ineligible)" in text.stdout
    as_json = json.loads(invoke("diff", out, "--format", "json").stdout)
    assert as_json["new_candidates"] == json.loads((second / "changes.json").read_text())["new_candidates"]
    rows = list(csv.DictReader(io.StringIO(invoke("diff", out, "--format", "csv").stdout)))
    assert {r["change"] for r in rows} == {"new-candidate", "status-change", "left-population"}
    # Named runs, either order: the reverse diff says the patient came back.
    back = json.loads(invoke("diff", out, second.name, first.name, "--format", "json").stdout)
    assert back["new_candidates"] == [] and back["left_population"] == []
    assert back["status_changes"][0]["to"] == "ineligible"
    missing = invoke("diff", out, "nope", first.name)
    assert missing.exit_code == EXIT_USAGE and "no run named 'nope'" in missing.stderr


def test_diff_with_one_run_says_there_is_nothing_to_compare(tmp_path):
    out = tmp_path / "out"
    assert screen(out).exit_code == 0
    result = invoke("diff", out)
    assert result.exit_code == EXIT_USAGE and "nothing to compare with yet" in result.stderr


def test_history_lists_runs_with_counts(tmp_path):
    out = two_days(tmp_path)
    first, second = run_dirs(out)
    result = invoke("history", out)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    row1 = next(line for line in lines if first.name in line)
    row2 = next(line for line in lines if second.name in line)
    assert row1.split()[-3:] == ["0", "1", "2"] and not row1.startswith("*")
    assert row2.startswith("* ") and row2.split()[-3:] == ["1", "1", "0"]
    listed = json.loads(invoke("history", out, "--format", "json").stdout)
    assert [r["run"] for r in listed["runs"]] == [first.name, second.name]
    assert listed["latest"] == second.name and listed["runs"][1]["exit_status"] == 0


def test_settled_unknowns_and_criteria_are_sorted():
    def doc(**patients: tuple[str, dict[str, str]]) -> dict:
        return {
            "patients": [
                {
                    "patient": f"Patient/{pid}",
                    "status": status,
                    "rank": i + 1,
                    "criteria": {
                        cid: {"outcome": o, "evidence": [f"Observation/{pid}-{cid}"]}
                        for cid, o in crit.items()
                    },
                }
                for i, (pid, (status, crit)) in enumerate(patients.items())
            ]
        }

    before = doc(b=("possible", {"I4": "unknown", "E2": "unknown"}), a=("possible", {"I4": "unknown"}))
    after = doc(b=("possible", {"I4": "pass", "E2": "fail"}), a=("eligible", {"I4": "pass"}))
    changes = compute_changes("r2", "r1", after, before)
    assert [(u["patient"], u["criterion"], u["to"]) for u in changes["settled_unknowns"]] == [
        ("Patient/a", "I4", "pass"),
        ("Patient/b", "I4", "pass"),
        ("Patient/b", "E2", "fail"),
    ]
    assert changes["settled_unknowns"][0]["evidence"] == ["Observation/a-I4"]
    assert [s["patient"] for s in changes["status_changes"]] == ["Patient/a"]
    assert changes["new_candidates"] == []  # possible -> eligible is a status change, not a new candidate


def test_a_run_that_read_nothing_usable_never_becomes_latest(tmp_path):
    out = tmp_path / "out"
    assert screen(out).exit_code == 0
    latest = os.readlink(out / "latest")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "export.json").write_text('{"not": "fhir"}\n')
    result = screen(out, data=junk)
    assert result.exit_code == EXIT_NOTHING_USABLE, result.output
    assert os.readlink(out / "latest") == latest  # the coordinator's list is not emptied by a bad night
    for run in run_dirs(out):
        manifest = json.loads((run / "run.json").read_text())
        assert manifest["exit_status"] in (0, EXIT_NOTHING_USABLE)
    assert invoke("diff", out).exit_code == EXIT_USAGE  # one usable run: nothing to compare


def test_a_failed_run_releases_the_lock_and_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out"
    assert screen(out).exit_code == 0
    failed = screen(out, data=tmp_path / "does-not-exist")
    assert failed.exit_code == 3, failed.output
    assert (out / ".lock").read_text() == "" and not any((out / ".in-progress").iterdir())
    again = screen(out)
    assert again.exit_code == 0 and "stale lock" not in again.stderr
    assert len(run_dirs(out)) == 2


def test_run_json_of_a_server_run_counts_requests_and_waits(tmp_path, monkeypatch):
    import responses

    from fhirscreen.sources.http import FhirClient
    from tests.unit.test_server_source import BASE, FakeFhir, population

    waits: list[float] = []
    real_init = FhirClient.__init__

    def no_real_sleep(self, *args, **kwargs):  # the back-off is counted, not waited for
        real_init(self, *args, **kwargs)
        self.sleep_fn = waits.append

    monkeypatch.setattr(FhirClient, "__init__", no_real_sleep)
    fake = FakeFhir(population(3))
    fake.fail_once.add("s1:2")  # the second page of the second search drops once: one retry, one wait
    out = tmp_path / "out"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        result = CliRunner().invoke(
            main,
            ["screen", "--server", BASE, "--as-of", AS_OF, "--out", str(out), "--page-size", "2"],
        )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "latest" / "run.json").read_text())
    assert manifest["source"] == BASE and manifest["options"]["mode"] == "search"
    server = manifest["server"]
    assert server["requests"] == len(fake.log) and server["requests"] > 5
    assert server["retries"] == 1 and server["waits"] == len(waits) == 1
    assert manifest["resources_read"]["Patient"] == 3


def test_an_interrupted_write_leaves_no_partial_folder_once_the_run_closes(tmp_path, monkeypatch):
    """SIGTERM (systemd stop) arrives as KeyboardInterrupt while the third file is written."""
    from fhirscreen.runs import layout

    out = tmp_path / "out"
    assert screen(out).exit_code == 0
    latest = os.readlink(out / "latest")
    written: list[str] = []
    real_write = layout.write_file

    def interrupted(path: Path, data: str | bytes, mode: int = 0o644) -> None:
        if len(written) == 2:
            raise KeyboardInterrupt("SIGTERM")
        written.append(path.name)
        real_write(path, data, mode)

    monkeypatch.setattr(layout, "write_file", interrupted)
    directory = OutputDir.open(out)
    try:
        with pytest.raises(KeyboardInterrupt):
            directory.commit("2026-06-02T023000Z", {"a.json": "{}", "b.json": "{}", "c.json": "{}"})
        assert any((out / ".in-progress").iterdir())
    finally:
        directory.close()
    assert not any((out / ".in-progress").iterdir()) and (out / ".lock").read_text() == ""
    assert os.readlink(out / "latest") == latest and len(run_dirs(out)) == 1


def test_a_page_written_in_pieces_appears_whole_or_not_at_all(tmp_path):
    """report.html is written as the template makes it (never whole in memory): the file still appears
    only once every piece is on disk, and a failure half-way leaves the file that was there."""
    from fhirscreen.runs.atomic import write_file

    page = tmp_path / "report.html"
    write_file(page, (f"<p>{i} \u2265 {i}</p>\n" for i in range(50_000)))
    assert page.read_text(encoding="utf-8") == "".join(f"<p>{i} \u2265 {i}</p>\n" for i in range(50_000))

    def broken():  # type: ignore[no-untyped-def]
        yield "<p>half"
        raise RuntimeError("the template failed")

    with pytest.raises(RuntimeError):
        write_file(page, broken())
    assert page.read_text(encoding="utf-8").startswith("<p>0 \u2265 0</p>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temporary file left


def test_a_caller_may_add_outputs_and_options_to_the_run_folder(tmp_path, trial):
    """The HTML report (and its options) join the run folder through the same atomic commit."""
    from fhirscreen.pipeline import run_screening
    from fhirscreen.report.output import render_outputs
    from fhirscreen.runs import RunOutput, observe
    from fhirscreen.sources.factory import SourceOptions, open_source

    options = SourceOptions(data=GOLDEN_DATA)
    source = observe(open_source(options))
    output = RunOutput.open(tmp_path / "out", keep=None)
    try:
        run = run_screening(source, trial, date(2026, 6, 1))
        source.close_progress()
        files = {**render_outputs(run), "notes.txt": "a caller's own output\n"}
        written = output.commit(run, source, options, files, {"show_names": False})
    finally:
        output.close()
    latest = tmp_path / "out" / "latest"
    assert (latest / "notes.txt").read_text() == "a caller's own output\n" and latest / "notes.txt" in written
    assert (tmp_path / "out" / "notes.txt").read_text() == "a caller's own output\n"  # the flat view too
    # report.html is rendered once changes.json and run.json exist: as `fhirscreen report` renders it.
    from fhirscreen.report.html.render import render_run_folder

    assert (latest / "report.html").read_text() == render_run_folder(latest, trial)
    assert json.loads((latest / "run.json").read_text())["options"]["show_names"] is False
