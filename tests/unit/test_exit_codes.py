"""Every exit code of the table in fhirscreen/exitcodes.py, through the command line.

A cron job tells a broken night from a quiet one by these codes alone, so each is reached here the way
a user reaches it. (4 and 5 from damaged files: tests/unit/test_file_faults.py; 6, the lock: the run
folders' tests.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner, Result

from fhirscreen import cli, exitcodes
from fhirscreen.cli import main
from fhirscreen.sources.factory import SourceOptions
from fhirscreen.sources.upload import upload
from tests.faultproxy import FaultProxy, StaticUpstream

GOLDEN_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "golden_data"
AS_OF = "2026-06-01"
SECRET = "eyJhbGciOiJSUzM4NCJ9.eyJzdWIiOiJmaGlyc2NyZWVuIn0.c2lnbmF0dXJl"
BASE = "https://fhir.example.test/fhir"


pytestmark = pytest.mark.usefixtures("bundled_trial_in_cli")


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def screen(*args: str | Path) -> Result:
    return invoke("screen", "--data", GOLDEN_DATA, "--as-of", AS_OF, *args)


def test_the_table_is_one_code_per_class_never_reused() -> None:
    codes = [v for k, v in vars(exitcodes).items() if k.startswith("EXIT_") and isinstance(v, int)]
    assert len(codes) == len(set(codes)) == len(exitcodes.EXIT_CODES)
    assert sorted(codes) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 130]


# -- 0 -------------------------------------------------------------------------------------------------


def test_0_success_with_warnings() -> None:
    result = screen()
    assert result.exit_code == 0, result.stderr


# -- 1: a bug ------------------------------------------------------------------------------------------


PHI_MESSAGE = "Harriet Quimby 1985-03-15 at 12 Lantern Lane"  # input data in an exception's message


def boom(*_args: object, **_kwargs: object) -> None:
    raise ValueError(PHI_MESSAGE)


def test_1_an_unexpected_exception_is_one_line_without_traceback_or_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "run_screening", boom)
    result = screen()
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("fhirscreen: error: internal error ValueError at test_exit_codes.py:")
    assert "please report it" in line and "-v" in line
    assert "Harriet" not in result.output and "Traceback" not in result.output


def test_1_with_verbose_shows_the_stack_but_not_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "run_screening", boom)
    result = screen("-v")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr and "in boom" in result.stderr
    assert "Harriet" not in result.output and "Lantern" not in result.output


def test_1_after_the_outputs_are_written_keeps_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.report, "render_stdout", boom)  # what prints the list, after the outputs
    out = tmp_path / "out"
    result = screen("--out", out)
    assert result.exit_code == 1
    assert json.loads((out / "candidates.json").read_text())["patients"]


# -- 2: usage and configuration ------------------------------------------------------------------------


def test_2_an_unset_token_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_FHIR_TOKEN", raising=False)
    result = invoke("screen", "--server", BASE, "--token-env", "NO_SUCH_FHIR_TOKEN")
    assert result.exit_code == 2
    assert "NO_SUCH_FHIR_TOKEN is not set" in result.stderr


def test_2_an_unreadable_smart_key(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not a key")
    for path in (key, tmp_path / "missing.pem"):
        result = invoke("screen", "--server", BASE, "--smart-client-id", "c", "--smart-key", path)
        assert result.exit_code == 2, result.stderr
        assert "--smart-key" in result.stderr


@pytest.mark.parametrize(
    "value",
    [
        SECRET,  # a JWT
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",  # a GitHub-style token
        "3f2a9c0d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f",  # hex
        "dGhpcyBpcyBhIHRva2VuIHZhbHVl==",  # base64
    ],
)
def test_2_a_token_value_given_to_token_env_is_never_echoed(value: str) -> None:
    result = invoke("screen", "--server", BASE, "--token-env", value)
    assert result.exit_code == 2
    assert "NAME of an environment variable" in result.stderr
    assert value not in result.output and value[:12] not in result.output


@pytest.mark.parametrize("name", ["FHIR_TOKEN", "fhir_token", "FHIRSCREEN_PRODUCTION_BEARER_TOKEN", "TOKEN2"])
def test_ordinary_variable_names_are_names(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(name, raising=False)
    result = invoke("screen", "--server", BASE, "--token-env", name)
    assert result.exit_code == 2 and f"{name} is not set" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--token-env", "FHIR_TOKEN"],
        ["--smart-client-id", "x"],
        ["--ca-bundle", "/etc/ssl/certs/ca-certificates.crt"],
        ["--insecure"],
        ["--observations", "all"],
        ["--page-size", "50"],
        ["--concurrency", "2"],
        ["--timeout", "5"],
    ],
)
def test_2_server_only_options_without_a_server(args: list[str]) -> None:
    result = screen(*args)
    assert result.exit_code == 2
    assert f"{args[0]}: only with --server" in result.stderr


@pytest.mark.parametrize("day", ["1899-12-31", (date.today() + timedelta(days=400)).isoformat()])
def test_2_an_implausible_as_of_unless_forced(day: str) -> None:
    result = invoke("screen", "--data", GOLDEN_DATA, "--as-of", day)
    assert result.exit_code == 2
    assert f"--as-of {day}" in result.stderr and "--force-as-of" in result.stderr
    forced = invoke("screen", "--data", GOLDEN_DATA, "--as-of", day, "--force-as-of")
    assert forced.exit_code in (0, 5), forced.stderr  # screened (5 is not expected, but not a usage error)
    assert forced.exit_code == 0


def test_2_an_unusable_out_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "open_source", boom)  # would be exit 1 if the run had started
    (tmp_path / "file").write_text("")
    result = screen("--out", tmp_path / "file" / "out")
    assert result.exit_code == 2
    assert "is not a directory" in result.stderr


# -- 3: the source cannot be read ----------------------------------------------------------------------


def test_3_a_host_name_that_does_not_resolve() -> None:
    started = time.monotonic()
    result = invoke("screen", "--server", "http://no-such-host.invalid/fhir")
    assert result.exit_code == 3
    assert "no-such-host.invalid cannot be resolved" in result.stderr
    assert time.monotonic() - started < 10  # not retried as if it were transient


def test_3_a_missing_path(tmp_path: Path) -> None:
    result = invoke("screen", "--data", tmp_path / "nowhere")
    assert result.exit_code == 3


# -- 4 and 5 for load ----------------------------------------------------------------------------------


def transaction_ok() -> dict[str, object]:
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": []}


@responses.activate
def test_load_4_when_every_transaction_failed(tmp_path: Path) -> None:
    responses.post(BASE, status=400, json={"resourceType": "OperationOutcome", "issue": []})
    result = invoke("load", "--server", BASE, GOLDEN_DATA)
    assert result.exit_code == 4, result.stderr
    assert "every transaction failed" in result.stderr


@responses.activate
def test_load_5_when_some_transactions_failed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"p{i}.json").write_text(json.dumps({"resourceType": "Patient", "id": f"p{i}"}))

    def answer(request: object) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)  # type: ignore[attr-defined]
        if body["entry"][0]["resource"]["id"] == "p1":
            return 400, {}, json.dumps({"resourceType": "OperationOutcome", "issue": []})
        return 200, {}, json.dumps(transaction_ok())

    responses.add_callback(responses.POST, BASE, callback=answer)
    result = invoke("load", "--server", BASE, "--concurrency", "1", data)
    assert result.exit_code == 5, result.stderr
    assert "1 of 3 transaction(s) failed" in result.stderr
    assert upload(SourceOptions(server=BASE, concurrency=1), data).exit_code == 5


@responses.activate
def test_load_0_when_everything_went_up(tmp_path: Path) -> None:
    responses.post(BASE, json=transaction_ok())
    result = invoke("load", "--server", BASE, GOLDEN_DATA)
    assert result.exit_code == 0, result.stderr


# -- 130: interrupted ----------------------------------------------------------------------------------


@pytest.fixture
def stalled_server() -> Iterator[FaultProxy]:
    with StaticUpstream({}) as upstream, FaultProxy(upstream.base_url) as proxy:
        proxy.add("trickle", "/metadata", interval=0.1)
        yield proxy


def _file_size_limit(limit: int) -> None:
    """In the child before it runs: files cannot grow past ``limit`` bytes (the kernel refuses the write
    with EFBIG, as a full disk refuses it with ENOSPC); the signal that would kill it is ignored."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_8_outputs_that_cannot_be_written_publish_nothing_and_say_so(tmp_path: Path) -> None:
    """A real failed write (the kernel's file-size limit: report.html is larger than it allows) after the
    screening: exit 8, not 2 ("usage or configuration error, found before any work"); the run before
    stays the latest, nothing half-written is left."""
    out = tmp_path / "out"
    assert screen("--out", out).exit_code == 0
    before = os.readlink(out / "latest")
    assert (out / before / "report.html").stat().st_size > 20_000
    root = Path(__file__).resolve().parents[2]
    process = subprocess.run(
        [sys.executable, "-m", "fhirscreen.cli", "screen", "--data", str(GOLDEN_DATA), "--as-of", AS_OF,
         "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: _file_size_limit(20_000),
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert process.returncode == 8, process.stderr
    [line] = process.stderr.strip().splitlines()
    assert line.startswith(f"fhirscreen: error: {out}: cannot write the run ") and "File too large" in line
    assert os.readlink(out / "latest") == before
    assert len(list((out / "runs").iterdir())) == 1 and list((out / ".in-progress").iterdir()) == []


def test_130_on_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_screening", interrupted)
    result = screen()
    assert result.exit_code == 130
    assert "interrupted (SIGINT)" in result.stderr


def test_130_on_sigterm(stalled_server: FaultProxy, tmp_path: Path) -> None:
    """A real process, stopped the way systemd and cron's timeouts stop it."""
    signum = signal.SIGTERM
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "fhirscreen.cli", "screen", "--server", stalled_server.base_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not stalled_server.seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stalled_server.seen, "the run never reached the server"
        process.send_signal(signum)
        _out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted (SIG" in err and "Traceback" not in err


def test_130_when_the_interrupt_comes_while_a_module_builds_its_dataclasses(tmp_path: Path) -> None:
    """dataclasses make their methods with ``exec``; CPython then marks an interrupt raised in there
    as uncaught even after the command caught it, and the process ended "killed by SIGINT" (-2)
    instead of 130 whenever SIGTERM came during the first imports. Run with ``-m`` (as
    ``python -m fhirscreen.cli`` runs): with ``-c`` or a script, CPython exits before it looks."""
    (tmp_path / "interrupted_command.py").write_text(
        "from fhirscreen.failures import guarded\n"
        "@guarded\n"
        "def command():\n"
        "    exec(\"raise KeyboardInterrupt('SIGTERM')\")\n"
        "command()\n",
        encoding="utf-8",
    )
    process = subprocess.run(
        [sys.executable, "-m", "interrupted_command"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert process.returncode == 130, process.stderr
    assert "interrupted (SIGTERM)" in process.stderr


def _screen_process(
    server: str, trial_file: Path, timeout: float, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """``fhirscreen screen --server ... --trial ...`` as a real process (its exit is what is tested)."""
    return subprocess.run(
        [sys.executable, "-m", "fhirscreen.cli", "screen", "--server", server, "--trial", str(trial_file)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )


def test_2_a_bad_trial_file_is_reported_at_once_while_the_server_is_still_answering(
    stalled_server: FaultProxy, tmp_path: Path
) -> None:
    """The server's first request is sent before the trial file is read (its answer is on the way
    meanwhile); a bad trial file still ends the run at once with its own message, and the request
    still in flight (trickling here, for up to the 60 s timeout) does not hold the process."""
    bad = tmp_path / "trial.yaml"
    bad.write_text("trial: [unclosed\n", encoding="utf-8")
    # The request's own timeout is 60 s: waiting for it would fail here.
    process = _screen_process(stalled_server.base_url, bad, timeout=30, tmp_path=tmp_path)
    assert process.returncode == 2, process.stderr
    assert f"{bad}:" in process.stderr and "not valid YAML" in process.stderr


def _server_with_conditions(conditions: list[dict[str, object]]) -> None:
    """A server whose Condition searches by code (the population's) find nobody, and whose search for
    any Condition (no code) finds what ``conditions`` holds at the time; it tells its time (the store of
    incremental reads needs it)."""
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"})
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    clock = {"resourceType": "Bundle", "type": "searchset", "total": 1, "meta": {"lastUpdated": now}}
    responses.get(f"{BASE}/Patient", json=clock)

    def search(request: object) -> tuple[int, dict[str, str], str]:
        by_code = "code=" in request.url  # type: ignore[attr-defined]
        found = [] if by_code else conditions[:1]
        page = {"resourceType": "Bundle", "type": "searchset", "total": 0 if by_code else len(conditions)}
        page["entry"] = [{"resource": c} for c in found]
        return 200, {}, json.dumps(page)

    responses.add_callback(responses.GET, f"{BASE}/Condition", callback=search)


HYPERTENSION = {
    "resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
}


@responses.activate
@pytest.mark.parametrize("mode", [[], ["--bulk"]], ids=["search", "bulk"])
def test_4_a_server_that_holds_no_condition_at_all(mode: list[str]) -> None:
    """Nobody in the population because the server holds no Condition (nothing loaded, a wrong base
    URL): a broken night, said as such."""
    _server_with_conditions([])
    result = invoke("screen", "--server", BASE, "--as-of", AS_OF, *mode)
    assert result.exit_code == 4, result.stderr
    assert f"error: nothing usable in {BASE}" in result.stderr
    assert "the server holds no Condition resource" in result.stderr
    assert "is the Condition data loaded" in result.stderr


@responses.activate
@pytest.mark.parametrize("mode", [[], ["--bulk"]], ids=["search", "bulk"])
def test_0_a_server_whose_conditions_hold_no_sle_diagnosis_is_a_quiet_night(mode: list[str]) -> None:
    """The same as file mode: Conditions, none of them SLE, is nobody to screen (exit 0), not nothing
    usable; the run says why it is empty."""
    _server_with_conditions([HYPERTENSION])
    result = invoke("screen", "--server", BASE, "--as-of", AS_OF, *mode)
    assert result.exit_code == 0, result.stderr
    assert "empty-population" in result.stderr and "a quiet night" in result.stderr


@responses.activate
def test_the_store_of_incremental_reads_tells_a_quiet_night_from_conditions_gone(tmp_path: Path) -> None:
    """With --out a server run keeps a store and reads only changes after the first night: an empty
    population is checked there too. Quiet nights are 0 (run.json agrees, latest moves on); the night
    the server holds no Condition any more is 4, and latest stays on the last good run."""
    conditions = [HYPERTENSION]
    _server_with_conditions(conditions)
    out = tmp_path / "out"
    first = invoke("screen", "--server", BASE, "--as-of", AS_OF, "--out", out)
    assert first.exit_code == 0, first.stderr
    second = invoke("screen", "--server", BASE, "--as-of", AS_OF, "--out", out)
    assert second.exit_code == 0, second.stderr
    assert "incremental read" in second.stderr and "a quiet night" in second.stderr
    manifest = json.loads((out / "latest" / "run.json").read_text())
    assert manifest["exit_status"] == 0 and manifest["initial_population"] == 0
    good = os.readlink(out / "latest")
    conditions.clear()
    third = invoke("screen", "--server", BASE, "--as-of", AS_OF, "--out", out)
    assert third.exit_code == 4, third.stderr
    assert "incremental read" in third.stderr and "the server holds no Condition resource" in third.stderr
    assert os.readlink(out / "latest") == good


def test_5_explain_on_partial_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(GOLDEN_DATA, data)
    (data / "broken.json").write_text('{"resourceType": "Patient", "id": ')
    result = invoke("explain", "gp-eligible", "--data", data, "--as-of", AS_OF)
    assert result.exit_code == 5, result.stderr
    assert "E1" in result.stdout  # the explanation was printed first


def test_a_bad_criterion_stops_a_server_run_at_once_though_the_population_search_has_begun(
    tmp_path: Path,
) -> None:
    """The population search starts while the criteria load (a server run); a criterion that turns
    out to be wrong is still exit 2, and the run does not wait for the server's answer to end."""
    from fhirscreen.paths import default_trial_file

    text = default_trial_file().read_text(encoding="utf-8")
    trial_file = tmp_path / "trial.yaml"
    trial_file.write_text(text.replace("      min_years: 18\n", "      min_yeras: 18\n", 1), encoding="utf-8")
    statement = {
        "resourceType": "CapabilityStatement",
        "fhirVersion": "4.0.1",
        "rest": [{"mode": "server", "resource": [{"type": "Condition", "searchParam": [{"name": "code"}]}]}],
    }
    answers = {"/fhir/metadata": (200, json.dumps(statement).encode())}
    with StaticUpstream(answers) as upstream, FaultProxy(upstream.base_url) as proxy:
        proxy.add("trickle", "/Condition", interval=1.0)  # an answer that would take minutes
        started = time.monotonic()
        process = _screen_process(proxy.base_url, trial_file, timeout=120, tmp_path=tmp_path)
        took = time.monotonic() - started
        searched = [s for s in proxy.seen if "/Condition" in s.path]
    assert process.returncode == 2, process.stderr
    assert "min_yeras" in process.stderr and "Traceback" not in process.stderr
    assert searched, "the population search should have begun before the criteria were checked"
    assert took < 60, f"the run waited {took:.0f} s for the server"


# -- 7: the post-back failed ---------------------------------------------------------------------------


def _post_back(
    tmp_path: Path, post_status: int, lose_procedures: bool = False
) -> tuple[Result, Path, list[dict]]:
    """A server screening with --post-report whose POST answers ``post_status`` (the test asks for
    ``client_never_waits``)."""
    from tests.unit.test_server_source import BASE as FAKE_BASE
    from tests.unit.test_server_source import FakeFhir, population

    class Server(FakeFhir):
        def handle(self, request):  # type: ignore[no-untyped-def]
            if lose_procedures and "/Procedure?" in str(request.url):
                return 503, {"Retry-After": "0"}, "busy"
            return super().handle(request)

    posted: list[dict] = []

    def post(request):  # type: ignore[no-untyped-def]
        posted.append(json.loads(request.body))
        if post_status != 200:
            body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}
            return post_status, {"Content-Type": "application/fhir+json"}, json.dumps(body)
        entries = [
            {"response": {"status": "200 OK", "location": f"{rtype}/x/_history/1"}}
            for rtype in ("MeasureReport", "Group")
        ]
        answer = {"resourceType": "Bundle", "entry": entries}
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(answer)

    out = tmp_path / "out"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, FAKE_BASE, callback=post)
        Server(population(3)).install(mock)
        result = invoke("screen", "--server", FAKE_BASE, "--as-of", AS_OF, "--out", out, "--post-report")
    return result, out, posted


def _posted_measure_report(posted: list[dict]) -> dict:
    return next(e["resource"] for e in posted[0]["entry"] if e["resource"]["resourceType"] == "MeasureReport")


@pytest.mark.usefixtures("client_never_waits")
def test_7_a_failed_post_back_keeps_the_outputs_and_says_so(tmp_path: Path) -> None:
    result, out, posted = _post_back(tmp_path, 500)
    assert result.exit_code == 7, result.stderr
    assert len(posted) == 5  # retried as every request is
    assert "the outputs were written, the MeasureReport and Group were not posted" in result.stderr
    assert (out / "latest" / "candidates.json").is_file()  # tonight's list is there for the coordinator
    manifest = json.loads((out / "latest" / "run.json").read_text())
    assert manifest["exit_status"] == 7  # what cron saw, for a monitor that reads run.json
    assert manifest["exit_meaning"] == exitcodes.EXIT_CODES[7]
    assert manifest["post_report"]["posted"] is False and "HTTP 500" in manifest["post_report"]["error"]


def test_0_when_the_post_back_succeeds(tmp_path: Path) -> None:
    result, _out, posted = _post_back(tmp_path, 200)
    assert result.exit_code == 0, result.stderr
    assert "posted MeasureReport/x" in result.stderr
    measure = _posted_measure_report(posted)
    assert measure["status"] == "complete"


@pytest.mark.usefixtures("client_never_waits")
def test_5_wins_over_a_failed_post_back_and_the_posted_report_is_pending(tmp_path: Path) -> None:
    result, _out, posted = _post_back(tmp_path, 500, lose_procedures=True)
    assert result.exit_code == 5, result.stderr
    assert "were not posted" in result.stderr  # both problems are said
    measure = _posted_measure_report(posted)
    assert measure["status"] == "pending"  # a partial run is never posted as complete
