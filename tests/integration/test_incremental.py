"""Incremental reads on a real HAPI server: after changes, additions and deletions on the server, the
incremental run screens exactly like a full read, patient by patient and criterion by criterion.

The test works on its own patients (ids ``inc-*``) beside the sample data, and deletes them at the end
so that the other integration tests see the server as they expect.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from fhirscreen.paths import SAMPLE_AS_OF
from fhirscreen.pipeline import run_screening
from fhirscreen.quality import DataQuality
from fhirscreen.report.candidates import render_json
from fhirscreen.sources.base import QueryPlan, SourceError
from fhirscreen.sources.factory import SourceOptions
from fhirscreen.sources.server import ServerSource, make_client
from fhirscreen.store.incremental import IncrementalSource, trial_fingerprint
from fhirscreen.store.sqlite import ResourceStore
from fhirscreen.trial.loader import load_trial
from tests import builders as b
from tests.integration.conftest import LoadedServer

pytestmark = pytest.mark.integration

AS_OF = SAMPLE_AS_OF
HCQ = ("rxnorm", "5521")
HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def sle(pid: str, cid: str) -> dict[str, Any]:
    return b.condition("snomed", "55464009", "2019-01-01", pid=pid, id=cid)


def egfr(pid: str, oid: str, value: float, when: str = "2026-05-10") -> dict[str, Any]:
    return b.observation("98979-8", when, pid=pid, value=value, unit="mL/min/{1.73_m2}", id=oid)


def hcq_order(pid: str, rid: str, medication: str) -> dict[str, Any]:
    order = b.medication_request(*HCQ[1:], authored="2025-06-01", pid=pid, id=rid, dose=200)
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": f"Medication/{medication}"}
    return order


def hcq_medication(mid: str) -> dict[str, Any]:
    return {
        "resourceType": "Medication",
        "id": mid,
        "code": b.concept("rxnorm", "5521", "hydroxychloroquine"),
    }


def initial_resources() -> list[dict[str, Any]]:
    return [
        hcq_medication("inc-med-hcq"),
        # inc-a: in the population; an eGFR that will change, an order that will be deleted.
        b.patient("inc-a", "1980-02-02"),
        sle("inc-a", "inc-a-sle"),
        egfr("inc-a", "inc-a-egfr", 85),
        hcq_order("inc-a", "inc-a-hcq", "inc-med-hcq"),
        # inc-b: leaves the population when their SLE Condition is deleted.
        b.patient("inc-b", "1975-05-05"),
        sle("inc-b", "inc-b-sle"),
        egfr("inc-b", "inc-b-egfr", 70),
        # inc-c: stays; an Observation moves from inc-a to inc-c.
        b.patient("inc-c", "1990-09-09"),
        sle("inc-c", "inc-c-sle"),
        egfr("inc-a", "inc-moving-egfr", 40),
        # inc-d: not in the population yet (no SLE); becomes a new SLE patient later.
        b.patient("inc-d", "1988-08-08"),
        egfr("inc-d", "inc-d-egfr", 95),
    ]


def changes() -> list[tuple[str, dict[str, Any] | str]]:
    """(method, resource or Type/id): the night's changes on the server."""
    new_order = hcq_order("inc-c", "inc-c-hcq", "inc-med-new")
    return [
        ("PUT", egfr("inc-a", "inc-a-egfr", 20)),  # updated Observation: I4 pass -> fail
        ("DELETE", "MedicationRequest/inc-a-hcq"),  # deleted MedicationRequest: I5 changes
        ("PUT", b.procedure("snomed", "265764009", "2026-05-20", pid="inc-a", id="inc-a-dialysis")),  # new
        ("DELETE", "Condition/inc-b-sle"),  # inc-b leaves the population
        ("PUT", egfr("inc-c", "inc-moving-egfr", 40)),  # moves from inc-a to inc-c
        ("PUT", hcq_medication("inc-med-new")),  # a new Medication, referenced by a new order
        ("PUT", new_order),
        (
            "PUT",
            {**sle("inc-c", "inc-c-sle"), "verificationStatus": entered_in_error()},
        ),  # stays, screened out
        ("PUT", sle("inc-d", "inc-d-sle")),  # a new SLE patient: their whole record is read
        ("PUT", b.patient("inc-e", "1970-07-07")),  # a new SLE patient created tonight
        ("PUT", sle("inc-e", "inc-e-sle")),
    ]


def entered_in_error() -> dict[str, Any]:
    return b.condition("snomed", "55464009", verification="entered-in-error")["verificationStatus"]


def transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def put(base: str, resources: list[dict[str, Any]]) -> None:
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources
    ]
    response = requests.post(base, json=transaction(entries), headers=HEADERS, timeout=120)
    assert response.status_code == 200, response.text[:2000]


def apply_changes(base: str) -> None:
    for method, what in changes():
        if method == "DELETE":
            response = requests.delete(f"{base}/{what}", headers=HEADERS, timeout=60)
        else:
            assert isinstance(what, dict)
            response = requests.put(
                f"{base}/{what['resourceType']}/{what['id']}", json=what, headers=HEADERS, timeout=60
            )
        assert response.status_code in (200, 201, 204), f"{method} {what}: {response.text[:1000]}"


def delete_everything(base: str) -> None:
    """Delete the test's resources, those that refer to others first (HAPI checks references)."""
    ids = {(r["resourceType"], r["id"]) for r in initial_resources()}
    ids |= {(w["resourceType"], w["id"]) for m, w in changes() if isinstance(w, dict)}
    for rtype, rid in sorted(ids, key=lambda k: (k[0] in ("Patient", "Medication"), k)):
        response = requests.delete(f"{base}/{rtype}/{rid}", headers=HEADERS, timeout=60)
        assert response.status_code in (200, 204), f"DELETE {rtype}/{rid}: {response.text[:500]}"


def options(base: str, bulk: bool = False) -> SourceOptions:
    return SourceOptions(server=base, concurrency=2, timeout=120.0, bulk=bulk)


@dataclass
class Screening:
    candidates: dict[str, Any]
    summary: str
    requests: int
    resources: int
    seconds: float


def screen(
    base: str, store_path: Path, *, full: bool = False, use_history: bool = True, bulk: bool = False
) -> Screening:
    """One run through the incremental source, in process (the overlap margin is shortened to 1 s, so
    that the test's own uploads are not all read again)."""
    trial = load_trial()
    source = IncrementalSource(
        ServerSource(options(base, bulk), make_client(options(base))),
        ResourceStore(store_path),
        trial_fingerprint(trial.path),
        full=full,
        use_history=use_history,
        overlap=timedelta(seconds=1),
    )
    started = time.monotonic()
    run = run_screening(source, trial, AS_OF)
    seconds = time.monotonic() - started
    document = json.loads(render_json(run))
    stats = source.stats()
    return Screening(
        document, source.read_summary(), int(stats["requests"]), int(stats["resources"]), seconds
    )


def assert_same(full: Screening, incremental: Screening) -> None:
    want = {p["patient"]: p for p in full.candidates["patients"]}
    got = {p["patient"]: p for p in incremental.candidates["patients"]}
    assert sorted(got) == sorted(want), "different patients in the initial population"
    for patient, entry in want.items():
        for criterion, result in entry["criteria"].items():
            assert got[patient]["criteria"].get(criterion) == result, f"{patient} {criterion} differs"
        assert got[patient]["status"] == entry["status"], patient
    assert incremental.candidates == full.candidates


@pytest.fixture
def own_patients(loaded_server: LoadedServer) -> Iterator[str]:
    base = loaded_server.base_url
    put(base, initial_resources())
    time.sleep(1.5)  # beyond the shortened overlap margin
    try:
        yield base
    finally:
        delete_everything(base)


def _stored(path: Path) -> Iterator[tuple[str, str]]:
    yield from ResourceStore(path).load()


def criteria(run: Screening, patient: str) -> dict[str, str]:
    for entry in run.candidates["patients"]:
        if entry["patient"] == patient:
            return {k: v["outcome"] for k, v in entry["criteria"].items()}
    raise KeyError(patient)


@pytest.mark.parametrize("bulk", [False, True], ids=["search", "bulk"])
def test_incremental_run_after_changes_equals_a_full_read(
    own_patients: str, tmp_path: Path, bulk: bool
) -> None:
    """Full reads by search or by Bulk export; the nightly changes through _history either way."""
    base = own_patients
    store = tmp_path / "store.sqlite"
    first = screen(base, store, bulk=bulk)
    assert first.summary.startswith("full read: no store yet")
    assert "Patient/inc-b" in {p["patient"] for p in first.candidates["patients"]}
    assert "Patient/inc-d" not in {p["patient"] for p in first.candidates["patients"]}
    assert criteria(first, "Patient/inc-a")["I4"] == "pass"

    apply_changes(base)
    incremental = screen(base, store, bulk=bulk)
    full = screen(base, tmp_path / "fresh.sqlite", full=True, bulk=bulk)
    assert_same(full, incremental)

    # The changes the test made are the ones the result shows (so the comparison above is not empty).
    patients = {p["patient"] for p in incremental.candidates["patients"]}
    assert {"Patient/inc-d", "Patient/inc-e"} <= patients and "Patient/inc-b" not in patients
    assert criteria(incremental, "Patient/inc-a")["I4"] == "fail"
    assert criteria(incremental, "Patient/inc-a")["E2"] == "fail"
    assert "incremental (_history" in incremental.summary
    assert "2 new patients" in incremental.summary and "left the population" in incremental.summary
    # The screening got every stored resource, not only the changed ones.
    assert incremental.resources == sum(1 for _ in _stored(store))
    print(
        f"\nfull: {full.requests} requests, {full.seconds:.2f} s; "
        f"incremental: {incremental.requests} requests, {incremental.seconds:.2f} s ({incremental.summary})"
    )

    # A second incremental run with nothing changed reads nothing new and gives the same result.
    quiet = screen(base, store, bulk=bulk)
    assert "0 changed, 0 new patients, 0 deleted" in quiet.summary
    assert_same(full, quiet)


def test_without_history_lastupdated_searches_catch_changes_and_new_patients(
    own_patients: str, tmp_path: Path
) -> None:
    base = own_patients
    store = tmp_path / "store.sqlite"
    screen(base, store, use_history=False)
    no_deletions = [(m, w) for m, w in changes() if m != "DELETE"]
    for _method, what in no_deletions:
        assert isinstance(what, dict)
        requests.put(
            f"{base}/{what['resourceType']}/{what['id']}", json=what, headers=HEADERS, timeout=60
        ).raise_for_status()
    incremental = screen(base, store, use_history=False)
    assert "incremental (_lastUpdated" in incremental.summary
    full = screen(base, tmp_path / "fresh.sqlite", full=True)
    # Updates, new resources, a move to another population patient and new patients are all seen.
    assert_same(full, incremental)
    assert criteria(incremental, "Patient/inc-a")["I4"] == "fail"
    assert {"Patient/inc-d", "Patient/inc-e"} <= {p["patient"] for p in incremental.candidates["patients"]}
    # Deletions are not: a store without _history is read in full once its last full read is too old.
    stale = IncrementalSource(
        ServerSource(options(base), make_client(options(base))),
        ResourceStore(store),
        trial_fingerprint(load_trial().path),
        use_history=False,
        refresh_days=0,
    )
    run_screening(stale, load_trial(), AS_OF)
    assert stale.read_summary().startswith("full read: the last full read is older than 0 days")


def test_cli_keeps_the_store_in_out_and_full_forces_a_full_read(
    loaded_server: LoadedServer, tmp_path: Path
) -> None:
    def cli(*extra: str) -> subprocess.CompletedProcess[str]:
        args = [
            "screen",
            "--server",
            loaded_server.base_url,
            "--as-of",
            AS_OF.isoformat(),
            "--out",
            str(tmp_path),
        ]
        return subprocess.run(
            [sys.executable, "-m", "fhirscreen.cli", *args, "--format", "json", *extra],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    first = cli()
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Store: full read: no store yet" in first.stderr
    assert (tmp_path / "store.sqlite").is_file()
    second = cli()
    assert second.returncode == 0 and "Store: incremental (_history since" in second.stderr
    assert json.loads(second.stdout)["patients"] == json.loads(first.stdout)["patients"]
    # Months later, from the store: every patient is screened again at the new date (windows move).
    later = cli("--as-of", "2026-09-01")
    assert later.returncode == 0 and "Store: incremental" in later.stderr
    later_full = cli("--as-of", "2026-09-01", "--full")
    assert json.loads(later.stdout)["patients"] == json.loads(later_full.stdout)["patients"]
    assert json.loads(later.stdout)["patients"] != json.loads(first.stdout)["patients"]
    forced = cli("--full", "-v")
    assert forced.returncode == 0 and "Store: full read: --full was given" in forced.stderr
    # One account of the read in the log: the store's, not the server source's inside it as well.
    assert len(re.findall(r"fhirscreen: server: \d+ requests", forced.stderr)) == 1, forced.stderr[-3000:]
    other_trial = tmp_path / "trial.yaml"
    other_trial.write_text(Path(load_trial().path).read_text() + "\n# a local edit\n")
    changed = cli("--trial", str(other_trial))
    assert "Store: full read: the trial file changed since the store was written" in changed.stderr
    assert date.fromisoformat(json.loads(changed.stdout)["as_of"]) == AS_OF


def test_a_read_that_fails_or_loses_data_leaves_the_store_as_it_was(
    own_patients: str, tmp_path: Path
) -> None:
    base = own_patients
    store_path = tmp_path / "store.sqlite"
    screen(base, store_path)
    before = ResourceStore(store_path).state()
    requests.put(
        f"{base}/Observation/inc-a-egfr",
        json=egfr("inc-a", "inc-a-egfr", 20, "2026-05-20"),
        headers=HEADERS,
        timeout=60,
    ).raise_for_status()
    plan = QueryPlan.for_trial(load_trial())

    def source() -> IncrementalSource:
        return IncrementalSource(
            ServerSource(options(base), make_client(options(base))),
            ResourceStore(store_path),
            trial_fingerprint(load_trial().path),
            overlap=timedelta(seconds=1),
        )

    # Killed halfway (the generator is abandoned), and failed halfway (an error inside the read).
    halfway = source().read(plan, DataQuality())
    next(halfway)
    halfway.close()
    failing = source().read(plan, DataQuality())
    next(failing)
    with pytest.raises(SourceError):
        failing.throw(SourceError("connection lost"))
    assert ResourceStore(store_path).state() == before
    assert not list(tmp_path.glob("*.tmp"))

    # Data lost after retries: the run goes on, but the store does not claim the newer high-water mark.
    lossy = source()
    quality = DataQuality()
    for count, _item in enumerate(lossy.read(plan, quality)):
        if count == 0:
            quality.lost("Observation search", "a page could not be read")
    assert "the store was NOT updated" in lossy.read_summary()
    assert ResourceStore(store_path).state() == before

    # The next good run still sees the change made before the failed ones.
    good = screen(base, store_path)
    assert "1 changed" in good.summary, good.summary
    assert criteria(good, "Patient/inc-a")["I4"] == "fail"
    assert ResourceStore(store_path).state() != before


def test_a_server_that_refuses_history_gets_a_full_read(
    own_patients: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HAPI always answers _history; a server that refuses it (400 for an unsupported operation) is
    simulated by failing those requests, and the run reads in full instead of failing the night."""
    base = own_patients
    store_path = tmp_path / "store.sqlite"
    reference = screen(base, store_path)
    pages = ServerSource.pages

    def refusing(self: ServerSource, path: str, label: str) -> Iterator[dict[str, Any]]:
        if "/_history" in path:
            raise SourceError(f"{label}: HTTP 400. Server says: history is not supported")
        yield from pages(self, path, label)

    monkeypatch.setattr(ServerSource, "pages", refusing)
    refused = screen(base, store_path)
    assert refused.summary.startswith("full read: reading the changes failed (")
    assert "history is not supported" in refused.summary
    assert_same(reference, refused)
