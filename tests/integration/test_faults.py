"""Fault injection against the real HAPI server: tests/faultproxy.py between fhirscreen and HAPI.

Each fault class of issue 9 section 4 runs the real command line (a subprocess, as cron runs it)
through the proxy and checks what a hospital would check: the exit code, the outputs against a clean
run, the message, and on the wire, where the token went.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fhirscreen.paths import SAMPLE_AS_OF
from tests.faultproxy import FaultProxy
from tests.integration.conftest import LoadedServer

pytestmark = pytest.mark.integration

TOKEN = "tok-CANARY-integration-77aa"
PHI = ("Harriet", "Quimby", "1985-03-15", "40021987", "Lantern", "Springfield", "hq@example.org")
PHI_TEXT = (
    "Patient Harriet Quimby (MRN 40021987, born 1985-03-15, 12 Lantern Lane, Springfield, hq@example.org) "
    "needs review"
)


@dataclass(frozen=True)
class Outcome:
    code: int
    stderr: str
    out: Path

    @property
    def candidates(self) -> dict[str, Any]:
        return dict(json.loads((self.out / "candidates.json").read_text()))

    def screened(self) -> dict[str, Any]:
        """Patient -> (status, criteria): what must not change when a fault is healed."""
        return {p["patient"]: (p["status"], p["criteria"]) for p in self.candidates["patients"]}


def run(out: Path, *args: str, timeout: float = 600) -> Outcome:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fhirscreen.cli",
            "screen",
            "--as-of",
            SAMPLE_AS_OF.isoformat(),
            "--out",
            str(out),
            "--format",
            "json",
            "--token-env",
            "FAULT_TEST_TOKEN",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "FAULT_TEST_TOKEN": TOKEN},
        check=False,
    )
    return Outcome(proc.returncode, proc.stderr, out)


@pytest.fixture
def proxy(loaded_server: LoadedServer) -> Iterator[FaultProxy]:
    with FaultProxy(loaded_server.base_url) as p:
        yield p


@pytest.fixture
def other(loaded_server: LoadedServer) -> Iterator[FaultProxy]:
    """Another origin in front of the same HAPI: reached as ``localhost`` (the server is 127.0.0.1)."""
    with FaultProxy(loaded_server.base_url, host="127.0.0.1") as p:
        yield p


@pytest.fixture(scope="module")
def clean(loaded_server: LoadedServer, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    with FaultProxy(loaded_server.base_url) as p:
        outcome = run(tmp_path_factory.mktemp("clean"), "--server", p.base_url)
    assert outcome.code == 0, outcome.stderr[-3000:]
    return outcome


def assert_token_stayed_home(proxy: FaultProxy, other: FaultProxy | None = None) -> None:
    assert proxy.seen and all(s.authorization == f"Bearer {TOKEN}" for s in proxy.seen)
    if other is not None:
        assert all(s.authorization is None for s in other.seen), other.seen


# -- healed by a retry: the result equals the clean run's ------------------------------------------


def test_a_page_dropped_mid_body_is_retried(proxy: FaultProxy, clean: Outcome, tmp_path: Path) -> None:
    proxy.add("drop-mid-body", "/Condition?", times=1)
    outcome = run(tmp_path, "--server", proxy.base_url)
    assert outcome.code == 0, outcome.stderr
    assert outcome.screened() == clean.screened()
    assert "connection dropped; retry 1 of 4" in outcome.stderr


def test_a_trickling_page_hits_the_deadline_and_is_retried(
    proxy: FaultProxy, clean: Outcome, tmp_path: Path
) -> None:
    proxy.add("trickle", "/Patient?", times=1, interval=0.2)
    outcome = run(tmp_path, "--server", proxy.base_url, "--deadline", "30")
    assert outcome.code == 0, outcome.stderr
    assert outcome.screened() == clean.screened()
    assert "deadline exceeded; retry 1 of 4" in outcome.stderr


def test_a_page_with_invalid_utf8_is_said_not_silent(
    proxy: FaultProxy, clean: Outcome, tmp_path: Path
) -> None:
    proxy.add("invalid-utf8", "/Patient?")
    outcome = run(tmp_path, "--server", proxy.base_url)
    assert outcome.code == 0, outcome.stderr
    assert outcome.screened() == clean.screened()  # the byte was in a member nobody reads
    problems = [f for f in outcome.candidates["data_quality"] if f["problem"] == "invalid-utf8"]
    assert problems and problems[0]["message"].startswith("invalid UTF-8 at byte")
    assert "invalid UTF-8" in outcome.stderr


def test_a_bulk_file_cut_short_is_fetched_again(proxy: FaultProxy, clean: Outcome, tmp_path: Path) -> None:
    proxy.add("truncate-bulk-file", "/Binary/", times=2)
    outcome = run(tmp_path, "--server", proxy.base_url, "--bulk")
    assert outcome.code == 0, outcome.stderr
    assert outcome.screened() == clean.screened()
    assert "cut short" in outcome.stderr


def test_a_bulk_file_never_whole_makes_a_partial_run(proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.add("truncate-bulk-file", "/Binary/", times=5)  # the first file, all 5 tries
    outcome = run(tmp_path, "--server", proxy.base_url, "--bulk")
    assert outcome.code in (4, 5), outcome.stderr  # 4 if that file held every Patient
    lost = [f for f in outcome.candidates["data_quality"] if f["problem"] == "data-lost"]
    assert lost, outcome.candidates["data_quality"]


def test_a_search_page_lost_after_retries_makes_a_partial_run_that_offers_no_false_eligible(
    proxy: FaultProxy, clean: Outcome, tmp_path: Path
) -> None:
    proxy.add("503-retry-after-0", "/Procedure?")  # every Procedure search of the candidates, all 5 tries
    outcome = run(tmp_path, "--server", proxy.base_url)
    assert outcome.code == 5, outcome.stderr  # partial: outputs written, the run marked partial
    manifest = json.loads((outcome.out / "latest" / "run.json").read_text())
    assert manifest["partial"] is True and manifest["exit_status"] == 5
    lost = {f["where"] for f in outcome.candidates["data_quality"] if f["problem"] == "data-lost"}
    screened = {p["patient"]: p for p in outcome.candidates["patients"]}
    assert set(screened) == set(clean.screened())  # everyone is still listed
    assert lost and lost <= set(screened)  # named per patient
    # A patient whose Procedures were not read may have had major surgery (E9): never "eligible".
    for patient, (status, _criteria) in clean.screened().items():
        if status == "eligible":
            assert screened[patient]["status"] == "possible", patient
            assert "data were lost" in screened[patient]["caveat"]
    assert not any(p["status"] == "eligible" for p in screened.values())


# -- failures that end the run, counted and worded ----------------------------------------------------


def test_a_persistent_503_is_tried_exactly_5_times(proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.add("503-retry-after-0", "/Observation")
    outcome = run(tmp_path, "--server", proxy.base_url)
    assert outcome.code == 3, outcome.stderr
    observation = [s for s in proxy.seen if "/Observation" in s.path]
    assert len(observation) == 5, [s.path for s in observation]
    assert "HTTP 503 after 5 attempts" in outcome.stderr


def test_a_200_mb_answer_is_refused_at_the_size_cap(proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.add("huge-body", "/Condition?", size=200_000_000)
    outcome = run(tmp_path, "--server", proxy.base_url)
    assert outcome.code == 3, outcome.stderr
    assert "larger than 64 MB, the size cap for one page; lower --page-size" in outcome.stderr
    assert "Traceback" not in outcome.stderr


def test_operation_outcome_text_is_scrubbed_in_stderr(proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.add("outcome-phi", "/metadata", status=400, text=PHI_TEXT)
    outcome = run(tmp_path, "--server", proxy.base_url)
    assert outcome.code == 3
    assert "error processing: Patient" in outcome.stderr
    for canary in PHI:
        assert canary not in outcome.stderr, canary


def test_operation_outcome_text_is_scrubbed_in_candidates_json(proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.add("outcome-phi-in-bundle", "/Condition?", text=PHI_TEXT)
    outcome = run(tmp_path, "--server", proxy.base_url, "-v")
    assert outcome.code == 0, outcome.stderr
    # Every file the run left (run folders, the flat view, the store of incremental reads), as text.
    written = "".join(p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file())
    notes = [f for f in outcome.candidates["data_quality"] if f["problem"] == "server-warning"]
    assert notes and "needs review" in notes[0]["message"]
    for canary in PHI:
        assert canary not in written, canary
        assert canary not in outcome.stderr, canary


# -- the token never goes to another origin (section 6) ---------------------------------------------


def test_token_not_sent_across_a_redirect(proxy: FaultProxy, other: FaultProxy, tmp_path: Path) -> None:
    proxy.add("redirect-cross-host", "/metadata", other=other.base_url_at("localhost"))
    outcome = run(tmp_path, "--server", proxy.base_url)
    assert outcome.code == 0, outcome.stderr  # HAPI needs no token: the run goes on, without it there
    assert [s.path for s in other.seen] == ["/fhir/metadata"]
    assert_token_stayed_home(proxy, other)
    assert "redirects to another host" in outcome.stderr


def test_a_401_after_a_cross_host_redirect_does_not_ask_for_a_token(
    proxy: FaultProxy, other: FaultProxy, tmp_path: Path
) -> None:
    proxy.add("redirect-cross-host", "/metadata", other=other.base_url_at("localhost"))
    other.add("outcome-phi", "/metadata", status=401, text="authentication required")
    outcome = run(tmp_path, "--server", proxy.base_url)
    assert outcome.code == 3
    assert "redirected the request to another host" in outcome.stderr
    assert "give a bearer token" not in outcome.stderr
    assert_token_stayed_home(proxy, other)


def test_token_not_sent_to_a_next_link_on_another_host(
    proxy: FaultProxy, other: FaultProxy, tmp_path: Path
) -> None:
    proxy.add("next-link-cross-host", "/Condition?", other=other.base_url_at("localhost"))
    outcome = run(tmp_path, "--server", proxy.base_url)
    assert outcome.code == 3
    assert "next link points at another host" in outcome.stderr
    assert other.seen == []
    assert_token_stayed_home(proxy)


def test_token_not_sent_to_bulk_files_on_another_host(
    proxy: FaultProxy, other: FaultProxy, clean: Outcome, tmp_path: Path
) -> None:
    proxy.add("bulk-file-cross-host", "/$export-poll-status", other=other.base_url_at("localhost"))
    outcome = run(tmp_path, "--server", proxy.base_url, "--bulk")
    assert outcome.code == 0, outcome.stderr
    assert outcome.screened() == clean.screened()
    assert other.seen and all("/Binary/" in s.path for s in other.seen)
    assert_token_stayed_home(proxy, other)


# -- load ----------------------------------------------------------------------------------------------


def test_load_exit_codes_against_hapi(loaded_server: LoadedServer, tmp_path: Path) -> None:
    bad = {"resourceType": "Observation", "id": "fault-bad", "status": "not-a-status", "code": {"text": "x"}}
    good = {"resourceType": "Basic", "id": "fault-good", "code": {"text": "fault test"}}
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "bad.json").write_text(json.dumps(bad))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "bad.json").write_text(json.dumps(bad))
    (mixed / "good.json").write_text(json.dumps(good))
    codes = []
    for path in (only_bad, mixed):
        proc = subprocess.run(
            [sys.executable, "-m", "fhirscreen.cli", "load", "--server", loaded_server.base_url, str(path)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        codes.append(proc.returncode)
    assert codes == [4, 5]
