"""fhirscreen load: bundles become PUT transactions (ids as the file source reads them), ndjson in batches,
a failed bundle is reported with the server's diagnostics and the rest still goes up."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import responses

from fhirscreen.quality import DataQuality
from fhirscreen.sources.factory import SourceOptions
from fhirscreen.sources.files import FileSource
from fhirscreen.sources.upload import NDJSON_BATCH, transaction, units_from_file, upload_path

BASE = "http://fhir.test/fhir"
PID = "6a9f3a41-0d0c-4c0e-9a3b-2d9b4f0d1c11"


def urn_bundle() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{PID}",
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:0b1c",
                "resource": {"resourceType": "Condition", "subject": {"reference": f"urn:uuid:{PID}"}},
                "request": {"method": "POST", "url": "Condition"},
            },
        ],
    }


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_urn_bundle_becomes_puts_with_the_ids_the_file_source_reads(tmp_path: Path) -> None:
    file = write(tmp_path / "p.json", urn_bundle())
    [unit] = list(units_from_file(file, DataQuality()))
    requests_ = [e["request"] for e in unit.bundle["entry"]]
    assert requests_ == [
        {"method": "PUT", "url": f"Patient/{PID}"},
        {"method": "PUT", "url": "Condition/0b1c"},
    ]
    assert unit.bundle["entry"][1]["resource"]["subject"] == {"reference": f"Patient/{PID}"}
    file_ids = {(r["resourceType"], r["id"]) for r, _o in FileSource(file).read(None, DataQuality())}  # type: ignore[arg-type]
    uploaded = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in unit.bundle["entry"]}
    assert uploaded == file_ids


def test_collection_bundle_and_lone_resource(tmp_path: Path) -> None:
    collection = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "http://old.server/fhir/Patient/a",
                "resource": {"resourceType": "Patient", "id": "a"},
            }
        ],
    }
    units = list(units_from_file(write(tmp_path / "c.json", collection), DataQuality()))
    units += list(
        units_from_file(write(tmp_path / "m.json", {"resourceType": "Medication", "id": "m1"}), DataQuality())
    )
    assert [u.bundle["entry"][0]["request"]["url"] for u in units] == ["Patient/a", "Medication/m1"]
    assert units[1].shared  # no Patient inside: loaded first


def test_resource_without_id_is_posted() -> None:
    bundle = transaction([{"resourceType": "Observation"}])
    assert bundle["entry"][0]["request"] == {"method": "POST", "url": "Observation"}


def test_ndjson_is_sent_in_batches(tmp_path: Path) -> None:
    lines = [json.dumps({"resourceType": "Observation", "id": f"o{i}"}) for i in range(NDJSON_BATCH + 5)]
    file = tmp_path / "Observation.ndjson"
    file.write_text("\n".join(lines[:3]) + "\nnot json\n" + "\n".join(lines[3:]) + "\n")
    quality = DataQuality()
    units = list(units_from_file(file, quality))
    assert [u.size for u in units] == [NDJSON_BATCH, 5]
    assert [f.problem for f in quality.findings] == ["malformed-json"]


@responses.activate
def test_upload_goes_on_after_a_failed_bundle_and_reports_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    write(tmp_path / "a-good.json", urn_bundle())
    bad = urn_bundle()
    bad["entry"][0]["fullUrl"] = "urn:uuid:bad"
    write(tmp_path / "b-bad.json", bad)

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        bundle = json.loads(request.body)
        if bundle["entry"][0]["request"]["url"] == "Patient/bad":
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "error",
                        "code": "processing",
                        "diagnostics": "HAPI-0521: not a valid FHIR ID",
                    }
                ],
            }
            return 400, {"Content-Type": "application/fhir+json"}, json.dumps(outcome)
        return 200, {}, json.dumps({"resourceType": "Bundle", "type": "transaction-response"})

    responses.add_callback(responses.POST, BASE, callback=answer)
    summary = upload_path(SourceOptions(server=BASE, concurrency=1), tmp_path)
    assert summary.startswith(f"uploaded 2 resources in 1 transactions to {BASE}")
    assert "1 transaction(s) with 2 resources failed" in summary
    assert "HAPI-0521: not a valid FHIR ID" in caplog.text
    assert len(responses.calls) == 3  # good, bad, bad once more at the end


@responses.activate
def test_shared_bundles_go_first(tmp_path: Path) -> None:
    write(tmp_path / "a-patient.json", urn_bundle())
    write(
        tmp_path / "practitionerInformation1.json",
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:dr",
                    "resource": {"resourceType": "Practitioner"},
                    "request": {"method": "POST"},
                }
            ],
        },
    )
    responses.post(BASE, json={"resourceType": "Bundle", "type": "transaction-response"})
    upload_path(SourceOptions(server=BASE, concurrency=1), tmp_path)
    first = json.loads(responses.calls[0].request.body or b"")
    assert first["entry"][0]["request"]["url"] == "Practitioner/dr"


@responses.activate
def test_load_streams_in_phases_so_reference_targets_exist_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Practitioners, then Patients, then Encounters, then the rest: every transaction of a phase is
    answered before the next phase starts (no two transactions race to create the same placeholder),
    and no more than 2 x concurrency transactions are built ahead of the server."""
    import threading
    import time

    import fhirscreen.sources.upload as upload

    monkeypatch.setattr(upload, "NDJSON_BATCH", 2)
    for rtype in ("Observation", "Encounter", "Patient", "Practitioner"):  # written in the wrong order
        lines = [json.dumps({"resourceType": rtype, "id": f"{rtype[:3]}{i}"}) for i in range(7)]
        (tmp_path / f"{rtype}.ndjson").write_text("\n".join(lines) + "\n")
    spans: list[tuple[str, float, float]] = []
    lock = threading.Lock()
    active = [0, 0]  # now, most

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        with lock:
            active[0] += 1
            active[1] = max(active)
        started = time.monotonic()
        time.sleep(0.01)
        rtype = json.loads(request.body)["entry"][0]["resource"]["resourceType"]
        with lock:
            active[0] -= 1
            spans.append((rtype, started, time.monotonic()))
        return 200, {}, json.dumps({"resourceType": "Bundle", "type": "transaction-response"})

    built = [0]
    real_units = upload.units_from_file

    def counted(file: Path, quality: DataQuality) -> Any:
        for unit in real_units(file, quality):
            built[0] += 1
            with lock:
                assert built[0] - len(spans) <= 2 * 3 + 1  # built ahead of the answers, bounded
            yield unit

    monkeypatch.setattr(upload, "units_from_file", counted)
    responses.add_callback(responses.POST, BASE, callback=answer)
    summary = upload_path(SourceOptions(server=BASE, concurrency=3), tmp_path)
    assert summary.startswith(f"uploaded 28 resources in 16 transactions to {BASE}")
    assert "resources/s" in summary
    order = ["Practitioner", "Patient", "Encounter", "Observation"]
    for before, after in itertools.pairwise(order):
        last_end = max(end for rtype, _s, end in spans if rtype == before)
        first_start = min(start for rtype, start, _e in spans if rtype == after)
        assert last_end <= first_start, f"{after} started before every {before} was loaded"
    assert active[1] <= 3


def test_empty_files_are_reported_as_the_screening_reports_them(tmp_path: Path) -> None:
    """``load`` said an empty .json "cannot read file (JSONDecodeError)" and nothing of an empty .ndjson."""
    (tmp_path / "bundle.json").write_bytes(b"")
    (tmp_path / "Procedure.ndjson").write_bytes(b"\n")
    quality = DataQuality()
    units = [u for f in FileSource(tmp_path).files() for u in units_from_file(f, quality)]
    assert units == []
    found = {(f.where, f.severity, f.problem) for f in quality.findings}
    assert found == {
        (str(tmp_path / "bundle.json"), "error", "empty-file"),
        (str(tmp_path / "Procedure.ndjson"), "warning", "empty-file"),
    }
