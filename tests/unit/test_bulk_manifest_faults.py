"""What a Bulk export's manifest says went wrong, through the CLI (``screen --server --bulk``) on the
golden data: export error files, a ``count`` the file does not hold, files gone (404/410) before they
were downloaded, and a file that is a web page. What the user sees: the exit code, who is offered as
eligible, and the findings (naming the file type, never the server's free text)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import responses
from click.testing import CliRunner, Result

from fhirscreen.cli import main
from fhirscreen.quality import DataQuality
from fhirscreen.sources.bulk import NdjsonCheck
from fhirscreen.sources.files import FileSource
from tests.unit.test_server_source import BASE, FakeFhir, inline_contained_medications

GOLDEN_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "golden_data"
STATUS = f"{BASE}/$export-poll-status?_jobId=42"
NDJSON = {"Content-Type": "application/fhir+ndjson"}
# Free text a server may put in an OperationOutcome: it must not reach the findings or the outputs.
PHI = "Harriet Quimby (MRN 40021987, born 1985-03-15)"

Answer = tuple[int, dict[str, str], str]


pytestmark = pytest.mark.usefixtures("bundled_trial_in_cli", "client_never_waits")


@pytest.fixture(scope="module")
def golden() -> list[dict[str, Any]]:
    return [inline_contained_medications(r) for r, _o in FileSource(GOLDEN_DATA).read(None, DataQuality())]


class BulkFake(FakeFhir):
    """FakeFhir with a Patient/$export job: a manifest with one file per type (with ``count``), files
    at ``/fhir/files/<Type>.ndjson``, an error file at ``/fhir/files/errors.ndjson`` when listed. The
    job exports the records of the patients the kick-off names (``patient`` parameters: their Patients
    and the resources of their compartment), as a server does. ``patient_lists=False``: the server
    refuses a patient list (404), and the system-level ``GET $export`` exports everything."""

    def __init__(
        self,
        resources: list[dict[str, Any]],
        *,
        errors: str | None = None,
        file_answer: Callable[[str, int], Answer | None] | None = None,
        count: Callable[[str, int], Any] = lambda _t, n: n,
        poll_answer: Callable[[int], Answer | None] | None = None,
        patient_lists: bool = True,
    ) -> None:
        super().__init__(resources)
        self.by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.export(None)
        self.patient_lists = patient_lists
        self.exported_for: list[list[str] | None] = []  # each kick-off's patient list (None: everyone)
        self.errors = errors
        self.file_answer = file_answer
        self.count = count
        self.poll_answer = poll_answer
        self.polls = 0
        self.deleted = 0
        self.fetched: dict[str, int] = defaultdict(int)

    def export(self, patients: list[str] | None) -> None:
        """What the job's files hold: these patients' records (None: every resource)."""
        self.by_type.clear()
        wanted = {"patient": ",".join(patients)} if patients is not None else None
        for r in self.resources:
            if wanted is not None and not (
                r["id"] in patients if r["resourceType"] == "Patient" else self.matches(r, wanted)
            ):
                continue
            self.by_type[r["resourceType"]].append(r)

    def kickoff(self, request: requests.PreparedRequest) -> Answer:
        if not self.patient_lists:
            return 404, {"Content-Type": "application/fhir+json"}, ""
        body = json.loads(request.body or b"{}")
        patients = [
            p["valueReference"]["reference"].split("/")[-1]
            for p in body.get("parameter", [])
            if p.get("name") == "patient"
        ]
        self.exported_for.append(patients)
        self.export(patients)
        return 202, {"Content-Location": STATUS}, ""

    def install(self, mock: responses.RequestsMock) -> None:
        mock.add_callback(responses.POST, f"{BASE}/Patient/$export", callback=self.kickoff)
        mock.add_callback(responses.DELETE, STATUS, callback=self.delete)
        super().install(mock)

    def delete(self, _request: requests.PreparedRequest) -> Answer:
        self.deleted += 1
        return 202, {}, ""

    def handle(self, request: requests.PreparedRequest) -> Answer:
        path = urlsplit(str(request.url)).path
        if path.startswith("/fhir/files/"):
            return self.file(path.rsplit("/", 1)[1].split(".")[0])
        if path == "/fhir/$export":  # the system-level kick-off: everyone
            self.exported_for.append(None)
            self.export(None)
            return 202, {"Content-Location": STATUS}, ""
        if path == "/fhir/$export-poll-status":
            self.polls += 1
            answer = self.poll_answer(self.polls) if self.poll_answer is not None else None
            if answer is not None:
                return answer
            return 200, {"Content-Type": "application/json"}, json.dumps(self.manifest())
        return super().handle(request)

    def manifest(self) -> dict[str, Any]:
        output = []
        for rtype, resources in self.by_type.items():
            if rtype == "Medication":
                continue
            item = {"type": rtype, "url": f"{BASE}/files/{rtype}.ndjson"}
            count = self.count(rtype, len(resources))
            if count is not None:
                item["count"] = count
            output.append(item)
        errors = [{"type": "OperationOutcome", "url": f"{BASE}/files/errors.ndjson"}] if self.errors else []
        return {
            "transactionTime": "2026-06-01T00:00:00Z",
            "request": f"{BASE}/Patient/$export",
            "requiresAccessToken": True,
            "output": output,
            "error": errors,
        }

    def file(self, rtype: str) -> Answer:
        self.fetched[rtype] += 1
        if self.file_answer is not None:
            answer = self.file_answer(rtype, self.fetched[rtype])
            if answer is not None:
                return answer
        if rtype == "errors":
            return 200, NDJSON, self.errors or ""
        return 200, NDJSON, "".join(json.dumps(r) + "\n" for r in self.by_type[rtype])


def bulk_screen(tmp_path: Path, fake: BulkFake) -> Result:
    out = str(tmp_path / "out")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        return CliRunner().invoke(
            main,
            ["screen", "--server", BASE, "--bulk", "--as-of", "2026-06-01", "--format", "json", "--out", out],
        )


def outcome(*issues: Mapping[str, Any]) -> str:
    return json.dumps({"resourceType": "OperationOutcome", "issue": list(issues)}) + "\n"


def candidates(tmp_path: Path) -> dict[str, Any]:
    return dict(json.loads((tmp_path / "out" / "latest" / "candidates.json").read_text()))


def statuses(tmp_path: Path) -> dict[str, str]:
    return {p["patient"]: p["status"] for p in candidates(tmp_path)["patients"]}


def lost(tmp_path: Path) -> list[dict[str, str]]:
    return [f for f in candidates(tmp_path)["data_quality"] if f["problem"] == "data-lost"]


def everything_written(tmp_path: Path, result: Result) -> str:
    files = [p.read_text() for p in (tmp_path / "out").rglob("*") if p.is_file() and p.suffix != ".sqlite"]
    return "\n".join([result.stdout, result.stderr, *files])


def test_the_baseline_export_is_whole(golden: list[dict[str, Any]], tmp_path: Path) -> None:
    result = bulk_screen(tmp_path, BulkFake(golden))
    assert result.exit_code == 0, result.stderr[-2000:]
    assert statuses(tmp_path)["Patient/gp-eligible"] == "eligible"


# -- F8: the export's error files -------------------------------------------------------------------


def test_an_export_error_naming_a_patient_is_data_lost_for_that_patient(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    errors = outcome(
        {
            "severity": "error",
            "code": "exception",
            "diagnostics": f"Failed to export MedicationRequest resources for Patient/gp-eligible {PHI}",
        }
    )
    result = bulk_screen(tmp_path, BulkFake(golden, errors=errors))
    assert result.exit_code == 5, result.stderr[-2000:]
    doc = candidates(tmp_path)
    eligible = next(p for p in doc["patients"] if p["patient"] == "Patient/gp-eligible")
    assert eligible["status"] == "possible" and "data were lost" in eligible["caveat"]
    [finding] = lost(tmp_path)
    assert finding["where"] == "Patient/gp-eligible"
    assert "not all exported (error exception)" in finding["message"]
    others = [p for p in doc["patients"] if p["patient"] != "Patient/gp-eligible"]
    assert all(not p.get("caveat") for p in others)  # scoped to the patient named
    text = everything_written(tmp_path, result)
    assert not any(word in text for word in ("Harriet", "Quimby", "40021987", "1985-03-15"))


@pytest.mark.parametrize("severity", ["fatal", "error", None])
def test_an_export_error_naming_nobody_touches_everyone(
    golden: list[dict[str, Any]], tmp_path: Path, severity: str | None
) -> None:
    issue = {"code": "too-costly", "diagnostics": f"Observation export stopped early ({PHI})"}
    if severity:
        issue["severity"] = severity
    result = bulk_screen(tmp_path, BulkFake(golden, errors=outcome(issue)))
    assert result.exit_code == 5
    assert "eligible" not in statuses(tmp_path).values()
    [finding] = lost(tmp_path)
    assert finding["where"] == "bulk export error file 0"
    assert "too-costly" in finding["message"]
    assert "Quimby" not in everything_written(tmp_path, result)


def test_an_error_naming_someone_who_was_not_exported_does_not_scope_the_loss(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    """A reference that is not one of the candidates (misread, or someone else) could hide the patient
    the error was about: everyone is touched."""
    errors = outcome({"severity": "error", "code": "exception", "expression": ["Patient/Group"]})
    result = bulk_screen(tmp_path, BulkFake(golden, errors=errors))
    assert result.exit_code == 5
    assert [f["where"] for f in lost(tmp_path)] == ["bulk export error file 0"]
    assert "eligible" not in statuses(tmp_path).values()


def test_export_warnings_and_information_stay_notes(golden: list[dict[str, Any]], tmp_path: Path) -> None:
    errors = outcome(
        {"severity": "warning", "code": "informational", "diagnostics": PHI},
        {"severity": "information", "code": "informational", "diagnostics": "Patient/gp-eligible"},
    )
    result = bulk_screen(tmp_path, BulkFake(golden, errors=errors))
    assert result.exit_code == 0, result.stderr[-2000:]
    assert statuses(tmp_path)["Patient/gp-eligible"] == "eligible"
    notes = [f for f in candidates(tmp_path)["data_quality"] if f["problem"] == "export-error"]
    assert sorted(f["severity"] for f in notes) == ["info", "warning"]
    assert "Quimby" not in everything_written(tmp_path, result)


def test_an_error_file_never_downloaded_whole_is_data_lost(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    def answer(rtype: str, _n: int) -> Answer | None:
        return (503, {"Retry-After": "0"}, "busy") if rtype == "errors" else None

    fake = BulkFake(golden, errors=outcome({"severity": "error", "code": "exception"}), file_answer=answer)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 5
    assert "eligible" not in statuses(tmp_path).values()
    [finding] = lost(tmp_path)
    assert (
        finding["where"] == "bulk export error file 0"
        and "error file was not downloaded" in finding["message"]
    )


# -- F9: the manifest's count -----------------------------------------------------------------------


def test_a_file_with_fewer_lines_than_its_count_is_fetched_again_then_lost(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    """A file cut exactly at a line end looks whole; the manifest's count tells it is not."""

    def answer(rtype: str, _n: int) -> Answer | None:
        return (200, NDJSON, "") if rtype == "MedicationRequest" else None

    fake = BulkFake(golden, file_answer=answer)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 5, result.stderr[-2000:]
    assert fake.fetched["MedicationRequest"] == 5  # the retry budget, then given up
    assert "eligible" not in statuses(tmp_path).values()
    [finding] = lost(tmp_path)
    assert finding["where"].endswith("(MedicationRequest)")
    assert "the manifest says" in finding["message"] and "holds 0 line(s)" in finding["message"]


def test_a_short_file_whole_on_the_next_try_is_read(golden: list[dict[str, Any]], tmp_path: Path) -> None:
    def answer(rtype: str, n: int) -> Answer | None:
        return (200, NDJSON, "\n") if rtype == "MedicationRequest" and n == 1 else None

    fake = BulkFake(golden, file_answer=answer)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 0, result.stderr[-2000:]
    assert fake.fetched["MedicationRequest"] == 2
    assert statuses(tmp_path)["Patient/gp-eligible"] == "eligible"


def test_without_a_count_nothing_is_counted(golden: list[dict[str, Any]], tmp_path: Path) -> None:
    """HAPI's manifests have no count (optional in the IG): such a file is taken as it comes."""
    fake = BulkFake(golden, count=lambda _t, _n: None)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 0
    assert '"count"' not in json.dumps(fake.manifest())
    assert statuses(tmp_path)["Patient/gp-eligible"] == "eligible"


@pytest.mark.parametrize("count", ["1", -1, True, 1.5])
def test_a_count_that_is_not_a_whole_number_is_not_checked(
    golden: list[dict[str, Any]], tmp_path: Path, count: Any
) -> None:
    def answer(rtype: str, _n: int) -> Answer | None:
        return (200, NDJSON, "") if rtype == "MedicationRequest" else None

    fake = BulkFake(golden, file_answer=answer, count=lambda t, n: count if t == "MedicationRequest" else n)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 0, result.stderr[-2000:]
    assert fake.fetched["MedicationRequest"] == 1


def test_more_lines_than_the_count_are_all_read_and_noted(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    fake = BulkFake(golden, count=lambda t, n: n - 1 if t == "Condition" else n)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 0, result.stderr[-2000:]
    assert statuses(tmp_path)["Patient/gp-eligible"] == "eligible"
    [note] = [f for f in candidates(tmp_path)["data_quality"] if f["problem"] == "export-count"]
    assert note["severity"] == "warning" and note["where"].endswith("(Condition)")


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        ([b'{"a":1}\n{"a":2}\n'], 2),
        ([b'{"a":1}\n{"a"', b":2}"], 2),  # no newline at the end; a line split over two chunks
        ([b'{"a":1}\r\n\r\n', b"  \n", b'{"a":2}\r\n'], 2),  # blank lines are not resources
        ([b'{"a":1}', b"\n", b"\n"], 1),
        ([b""], 0),
    ],
)
def test_lines_are_counted_as_they_stream_in(chunks: list[bytes], lines: int) -> None:
    check = NdjsonCheck(expected=lines)
    for chunk in chunks:
        check.feed(chunk)
    assert check.lines == lines


# -- B6: a file that is a web page ------------------------------------------------------------------

LOGIN_PAGE = "<html><body>Sign in to storage</body></html>\n"


def test_a_file_that_is_a_web_page_is_not_ndjson_tried_twice_then_lost(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    def answer(rtype: str, _n: int) -> Answer | None:
        return (200, {"Content-Type": "text/html"}, LOGIN_PAGE) if rtype == "MedicationRequest" else None

    fake = BulkFake(golden, file_answer=answer)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 5
    assert fake.fetched["MedicationRequest"] == 2  # one retry (a proxy's page may pass), not five
    assert "eligible" not in statuses(tmp_path).values()
    [finding] = lost(tmp_path)
    assert finding["where"].endswith("(MedicationRequest)")
    assert "not NDJSON (Content-Type text/html" in finding["message"]
    assert "cut short" not in finding["message"]
    assert "Sign in" not in everything_written(tmp_path, result)


def test_a_passing_error_page_then_the_file_is_read(golden: list[dict[str, Any]], tmp_path: Path) -> None:
    def answer(rtype: str, n: int) -> Answer | None:
        if rtype == "Observation" and n == 1:
            return 200, {"Content-Type": "text/html; charset=utf-8"}, "<html>502 Bad Gateway</html>"
        return None

    fake = BulkFake(golden, file_answer=answer)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 0, result.stderr[-2000:]
    assert statuses(tmp_path)["Patient/gp-eligible"] == "eligible"


def test_ndjson_served_with_another_content_type_is_read(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Object stores serve files as application/octet-stream (or worse): what the body is decides."""

    def answer(rtype: str, _n: int) -> Answer | None:
        if rtype in ("nothing", "errors"):
            return None
        body = "\ufeff" + "".join(json.dumps(r) + "\n" for r in fake.by_type[rtype])
        return (
            200,
            {"Content-Type": "text/html" if rtype == "Condition" else "application/octet-stream"},
            body,
        )

    fake = BulkFake(golden, file_answer=answer)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 0, result.stderr[-2000:]
    assert statuses(tmp_path)["Patient/gp-eligible"] == "eligible"


# -- F10: files gone (404/410) before they were downloaded --------------------------------------------

GONE = (410, {"Content-Type": "application/fhir+json"}, outcome({"severity": "error", "code": "not-found"}))


def test_a_file_gone_is_fetched_from_the_manifest_fetched_again(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    def answer(rtype: str, n: int) -> Answer | None:
        return GONE if rtype in ("Observation", "Condition") and n == 1 else None

    fake = BulkFake(golden, file_answer=answer)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 0, result.stderr[-2000:]
    assert fake.polls == 2  # the manifest fetched again once, for both files
    assert fake.fetched["Observation"] == fake.fetched["Condition"] == 2
    assert statuses(tmp_path)["Patient/gp-eligible"] == "eligible"
    assert fake.deleted == 1


@pytest.mark.parametrize("status", [404, 410])
def test_a_file_gone_for_good_is_data_lost_and_the_run_goes_on(
    golden: list[dict[str, Any]], tmp_path: Path, status: int
) -> None:
    """Before: exit 3, no outputs. Now: the other files are read, the run is partial (exit 5), nobody
    is offered as eligible, and the finding names the file type. The job is deleted as after any
    finished download (fhirscreen never resumes a job; its files expired anyway)."""

    def answer(rtype: str, _n: int) -> Answer | None:
        return (status, GONE[1], GONE[2]) if rtype == "Observation" else None

    fake = BulkFake(golden, file_answer=answer)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 5, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert fake.polls == 2 and fake.fetched["Observation"] == 2
    assert "eligible" not in statuses(tmp_path).values()
    [finding] = lost(tmp_path)
    assert finding["where"].endswith("(Observation)")
    assert finding["message"].startswith("export files expired: the Observation file was gone")
    assert fake.deleted == 1


def test_a_file_gone_and_the_job_gone_too_is_data_lost(golden: list[dict[str, Any]], tmp_path: Path) -> None:
    def answer(rtype: str, _n: int) -> Answer | None:
        return GONE if rtype == "MedicationRequest" else None

    def poll(n: int) -> Answer | None:
        return (404, GONE[1], GONE[2]) if n > 1 else None

    fake = BulkFake(golden, file_answer=answer, poll_answer=poll)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 5, result.stderr[-2000:]
    assert fake.polls == 2 and fake.fetched["MedicationRequest"] == 1
    [finding] = lost(tmp_path)
    assert finding["where"].endswith("(MedicationRequest)")
    assert "export files expired" in finding["message"]
    assert "the manifest could not be fetched again" in finding["message"]


# An object store answers a signed link that has expired with 403 (some with 401): new links come with
# the manifest fetched again. The status URL refused as well is credentials refused, not a link expired.
XML = {"Content-Type": "application/xml"}
REFUSED = {
    401: (401, XML, "<Error><Code>AuthenticationFailed</Code></Error>"),
    403: (403, XML, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"),
}
FORBIDDEN = (403, GONE[1], outcome({"severity": "error", "code": "forbidden"}))


@pytest.mark.parametrize("status", [401, 403])
def test_a_file_refused_is_fetched_again_with_the_links_of_the_manifest_fetched_again(
    golden: list[dict[str, Any]], tmp_path: Path, status: int
) -> None:
    def answer(rtype: str, n: int) -> Answer | None:
        return REFUSED[status] if rtype == "Observation" and n == 1 else None

    fake = BulkFake(golden, file_answer=answer)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 0, result.stderr[-2000:]  # it was exit 3: the whole night lost
    assert fake.polls == 2 and fake.fetched["Observation"] == 2
    assert statuses(tmp_path)["Patient/gp-eligible"] == "eligible"


@pytest.mark.parametrize("changed", [False, True])
def test_a_manifest_fetched_again_from_another_export_is_said(
    golden: list[dict[str, Any]], tmp_path: Path, changed: bool
) -> None:
    def answer(rtype: str, n: int) -> Answer | None:
        return GONE if rtype == "Observation" and n == 1 else None

    def poll(n: int) -> Answer | None:
        if n == 1 or not changed:
            return None
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {**fake.manifest(), "transactionTime": "2026-06-02T00:00:00Z"}
        )

    fake = BulkFake(golden, file_answer=answer, poll_answer=poll)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 0, result.stderr[-2000:]
    assert fake.polls == 2 and fake.fetched["Observation"] == 2
    said = [f for f in candidates(tmp_path)["data_quality"] if f["problem"] == "export-changed"]
    assert len(said) == (1 if changed else 0)


def test_a_file_refused_for_good_is_data_lost_and_the_run_goes_on(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    def answer(rtype: str, _n: int) -> Answer | None:
        return REFUSED[403] if rtype == "Condition" else None

    fake = BulkFake(golden, file_answer=answer)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 5, result.stderr[-2000:]
    assert "eligible" not in statuses(tmp_path).values()
    [finding] = lost(tmp_path)
    assert finding["where"].endswith("(Condition)")
    assert finding["message"].startswith("export files expired: the Condition file was refused (HTTP 403)")
    assert "is refused too (HTTP 403)" in finding["message"]
    assert "AccessDenied" not in everything_written(tmp_path, result)


def test_a_file_refused_and_the_status_url_refused_too_is_credentials_refused(
    golden: list[dict[str, Any]], tmp_path: Path
) -> None:
    def answer(rtype: str, _n: int) -> Answer | None:
        return REFUSED[403] if rtype == "Observation" else None

    def poll(n: int) -> Answer | None:
        return FORBIDDEN if n > 1 else None

    fake = BulkFake(golden, file_answer=answer, poll_answer=poll)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 3, result.stderr[-2000:]
    assert "403 Forbidden" in result.stderr and "Traceback" not in result.stderr


def test_an_error_file_gone_for_good_touches_everyone(golden: list[dict[str, Any]], tmp_path: Path) -> None:
    def answer(rtype: str, _n: int) -> Answer | None:
        return GONE if rtype == "errors" else None

    fake = BulkFake(golden, errors=outcome({"severity": "error", "code": "exception"}), file_answer=answer)
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 5
    assert "eligible" not in statuses(tmp_path).values()
    [finding] = lost(tmp_path)
    assert finding["where"] == "bulk export error file 0"
    assert finding["message"].startswith("export files expired: the export's error file was gone")
