"""Bulk Data downloads that fail: cut short, lost after retries, and temp dirs left by killed runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import responses
from responses.registries import OrderedRegistry

from fhirscreen.fhir.codes import SNOMED, Code
from fhirscreen.quality import DataQuality
from fhirscreen.sources.base import QueryPlan
from fhirscreen.sources.bulk import WORKDIR_PREFIX, BulkExport, remove_stale_workdirs
from fhirscreen.sources.http import FhirClient
from tests.faultproxy import FaultProxy, StaticUpstream

BASE = "https://ehr.test/fhir"
STATUS = f"{BASE}/$export-poll-status?_jobId=7"
PLAN = QueryPlan(population_codes=(Code(SNOMED, "55464009"),), observation_codes=())
ICD10CM_URI = "http://hl7.org/fhir/sid/icd-10-cm"
PATIENTS = "".join(json.dumps({"resourceType": "Patient", "id": f"p{i}"}) + "\n" for i in range(50))
CONDITION = (
    json.dumps({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}) + "\n"
)


def job(mock: responses.RequestsMock) -> None:
    mock.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    mock.get(
        STATUS,
        json={
            "requiresAccessToken": True,
            "output": [
                {"type": "Patient", "url": f"{BASE}/Binary/a"},
                {"type": "Condition", "url": f"{BASE}/Binary/b"},
            ],
        },
    )


def export(tmp_path: Path) -> BulkExport:
    client = FhirClient(BASE, sleep=lambda _s: None)
    return BulkExport(client, sleep=lambda _s: None)


@responses.activate(registry=OrderedRegistry)
def test_a_file_cut_in_the_middle_of_a_line_is_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    job(responses.mock)
    responses.get(f"{BASE}/Binary/a", body=PATIENTS[: len(PATIENTS) // 2 + 3])  # no error: just short
    responses.get(f"{BASE}/Binary/a", body=PATIENTS)
    responses.get(f"{BASE}/Binary/b", body=CONDITION)
    responses.delete(STATUS, status=202)
    quality = DataQuality()
    ids = [r["id"] for r, _o in export(tmp_path).read(PLAN, quality)]
    assert ids == [f"p{i}" for i in range(50)] + ["c1"]  # nobody silently missing
    assert quality.findings == []


@responses.activate(registry=OrderedRegistry)
def test_a_file_never_whole_is_lost_the_rest_read_and_the_run_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    job(responses.mock)
    for _ in range(5):
        responses.get(f"{BASE}/Binary/a", body=PATIENTS[:-10])
    responses.get(f"{BASE}/Binary/b", body=CONDITION)
    responses.delete(STATUS, status=202)
    quality = DataQuality()
    ids = [r["id"] for r, _o in export(tmp_path).read(PLAN, quality)]
    assert ids == ["c1"]
    assert quality.partial
    [lost] = quality.findings
    assert lost.where == "bulk export file 0 (Patient)"
    assert "cut short" in lost.message and "after 5 attempt" in lost.message
    assert list(tmp_path.iterdir()) == []  # nothing of it left on disk


def test_the_work_dir_is_named_for_the_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    real = __import__("tempfile").mkdtemp

    def spy(prefix: str = "", **kwargs: object) -> str:
        made.append(prefix)
        return real(prefix=prefix, dir=tmp_path)

    monkeypatch.setattr("tempfile.mkdtemp", spy)
    with responses.RequestsMock(registry=OrderedRegistry) as mock:
        job(mock)
        mock.get(f"{BASE}/Binary/a", body=PATIENTS)
        mock.get(f"{BASE}/Binary/b", body=CONDITION)
        mock.delete(STATUS, status=202)
        list(export(tmp_path).read(PLAN, DataQuality()))
    assert made == [f"{WORKDIR_PREFIX}{os.getpid()}-"]


def test_work_dirs_of_dead_runs_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    left = tmp_path / f"{WORKDIR_PREFIX}{dead_pid}-abc123"
    (left / "sub").mkdir(parents=True)
    (left / "0000.Patient.ndjson").write_text(PATIENTS)
    alive = tmp_path / f"{WORKDIR_PREFIX}{os.getppid()}-def456"
    alive.mkdir()
    ours = tmp_path / f"{WORKDIR_PREFIX}{os.getpid()}-ghi789"
    ours.mkdir()
    unrelated = tmp_path / "fhirscreen-bulk-oldstyle"
    unrelated.mkdir()
    assert remove_stale_workdirs(tmp_path) == [left]
    assert not left.exists()
    assert alive.exists() and ours.exists() and unrelated.exists()


def test_sigterm_during_a_download_removes_the_work_dir(tmp_path: Path) -> None:
    """A run stopped while it downloads (systemd stop, a cron timeout) leaves no patient data behind."""
    with StaticUpstream({}) as upstream, FaultProxy(upstream.base_url) as proxy:
        base = proxy.base_url
        manifest = {
            "requiresAccessToken": False,
            "output": [{"type": "Patient", "url": f"{base}/files/P.ndjson"}],
        }
        population = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Condition",
                        "id": "c1",
                        "subject": {"reference": "Patient/p1"},
                        "code": {"coding": [{"system": ICD10CM_URI, "code": "M32.14"}]},
                    }
                }
            ],
        }
        upstream.answers.update(
            {
                "/fhir/metadata": (200, b'{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1"}'),
                # The candidates first (bulk exports only them); this upstream has no Patient/$export
                # (a 501 to the POST), so the run falls back to a system-level export.
                "/fhir/Condition": (200, json.dumps(population).encode()),
                "/fhir/$export": (202, b"", {"Content-Location": f"{base}/status/1"}),
                "/fhir/status/1": (200, json.dumps(manifest).encode()),
            }
        )
        proxy.add("trickle", "/files/", interval=0.1)
        process = subprocess.Popen(
            [sys.executable, "-m", "fhirscreen.cli", "screen", "--server", base, "--bulk"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TMPDIR": str(tmp_path)},
        )
        try:
            deadline = time.monotonic() + 30
            while not any(s.fault == "trickle" for s in proxy.seen) and time.monotonic() < deadline:
                time.sleep(0.05)
            workdirs = list(tmp_path.glob(f"{WORKDIR_PREFIX}{process.pid}-*"))
            assert len(workdirs) == 1, (list(tmp_path.iterdir()), proxy.seen)
            process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=20)
        finally:
            process.kill()
    assert process.returncode == 130, err
    assert not workdirs[0].exists()


def test_load_accepts_a_bom_and_an_invalid_byte_costs_only_its_value(tmp_path: Path) -> None:
    """``fhirscreen load`` reads files as the file source does (tests/unit/test_file_faults.py)."""
    from fhirscreen.sources.upload import units_from_file

    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(b"\xef\xbb\xbf" + json.dumps({"resourceType": "Patient", "id": "p1"}).encode())
    ndjson = tmp_path / "P.ndjson"
    ndjson.write_bytes(
        b'{"resourceType":"Patient","id":"p2","name":[{"family":"M\xfcller"}]}\n' + PATIENTS.encode()
    )
    quality = DataQuality()
    units = [u for f in (bundle, ndjson) for u in units_from_file(f, quality)]
    assert sum(u.size for u in units) == 1 + 51
    assert sorted(f.problem for f in quality.findings) == ["invalid-utf8", "utf8-bom"]
