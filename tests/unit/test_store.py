"""The incremental-read store (SQLite) and its pure helpers: history entries, population, clocks."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner

from fhirscreen.cli import main
from fhirscreen.store.delta import (
    history_entry,
    instant,
    is_population_condition,
    newer,
    owner,
    parse_instant,
    population_of,
    referenced_medications,
    since,
)
from fhirscreen.store.sqlite import SCHEMA_VERSION, ResourceStore, StoredResource, StoreError, StoreState
from tests import builders as b

STATE = StoreState(SCHEMA_VERSION, "key", "2026-12-01T02:30:00.000Z", "2026-12-01T02:30:00.000Z")


def stored(resource: dict[str, object]) -> StoredResource:
    return StoredResource(owner(resource), resource)


# -- history entries -----------------------------------------------------------------------------------


def test_a_history_entry_with_a_resource_is_its_new_version() -> None:
    obs = b.observation("98979-8", pid="p1", id="o1", meta={"versionId": "3"})
    entry = {"resource": obs, "request": {"method": "PUT", "url": "Observation/o1"}}
    assert history_entry(entry) == (("Observation", "o1"), obs, "3")


@pytest.mark.parametrize(
    "entry",
    [
        # HAPI: request.url carries the deleted version
        {
            "fullUrl": "http://h/fhir/Condition/c-1",
            "request": {"method": "DELETE", "url": "Condition/c-1/_history/2"},
        },
        # other servers: only a fullUrl
        {"fullUrl": "http://h/fhir/Condition/c-1/_history/2", "request": {"method": "DELETE"}},
    ],
)
def test_a_deletion_in_history_names_the_resource_and_version(entry: dict[str, object]) -> None:
    assert history_entry(entry) == (("Condition", "c-1"), None, "2")


def test_history_entries_that_say_nothing_usable_are_skipped() -> None:
    assert history_entry({"request": {"method": "DELETE"}}) is None
    assert history_entry({"resource": {"resourceType": "Observation"}}) is None
    assert history_entry({"response": {"status": "200"}}) is None


def test_numeric_versions_compare_as_numbers() -> None:
    assert newer("10", "9") and not newer("9", "10") and not newer("a", "b")


# -- population and ownership --------------------------------------------------------------------------


def test_population_is_who_the_population_search_would_find() -> None:
    codes = {"55464009", "M32.9", "M329"}
    resources = [
        stored(b.condition("snomed", "55464009", pid="sle")),
        stored(b.condition("icd10cm", "M329", pid="icd-undotted")),
        # a refuted SLE Condition is still returned by the search; screening ignores it later
        stored(b.condition("snomed", "55464009", pid="refuted", verification="refuted")),
        stored(b.condition("snomed", "38341003", pid="hypertension")),
        stored(b.observation("55464009", pid="obs-with-that-code")),
    ]
    assert population_of(resources, codes) == {"sle", "icd-undotted", "refuted"}
    assert not is_population_condition(b.observation("55464009"), codes)


def test_owner_of_each_kind_of_resource() -> None:
    assert owner(b.patient("p9")) == "p9"
    assert owner(b.observation("x", pid="p2")) == "p2"
    assert owner({"resourceType": "Medication", "id": "m1"}) is None
    subject = {"resourceType": "ResearchSubject", "id": "r", "individual": {"reference": "Patient/p3"}}
    assert owner(subject) == "p3"


def test_referenced_medications_are_separate_resources_only() -> None:
    separate = b.medication_request("1", medicationReference={"reference": "Medication/m1"})
    contained = b.medication_request("1", medicationReference={"reference": "#m2"})
    assert referenced_medications([stored(separate), stored(contained)]) == {"m1"}


# -- the server's clock ----------------------------------------------------------------------------------


def test_server_instants_and_http_dates_parse_to_utc() -> None:
    assert instant(parse_instant("2026-12-06T14:30:00.123+01:00")) == "2026-12-06T13:30:00.123Z"  # type: ignore[arg-type]
    assert instant(parse_instant("Sun, 06 Dec 2026 13:30:00 GMT")) == "2026-12-06T13:30:00.000Z"  # type: ignore[arg-type]
    assert parse_instant("2026-12-06T13:30:00") is None  # no zone: cannot be compared with the server's
    assert parse_instant("yesterday") is None


def test_the_next_read_starts_an_overlap_before_the_high_water_mark() -> None:
    assert since("2026-12-06T13:30:00.000Z", timedelta(minutes=10)) == "2026-12-06T13:20:00.000Z"
    assert since("", timedelta(minutes=10)) is None


# -- the SQLite store ------------------------------------------------------------------------------------


def test_a_full_write_then_an_incremental_apply(tmp_path: Path) -> None:
    store = ResourceStore(tmp_path / "store.sqlite")
    assert store.state() is None
    p = b.patient("p1")
    obs = b.observation("98979-8", pid="p1", id="o1", value=80)
    store.replace_all({("Patient", "p1"): stored(p), ("Observation", "o1"): stored(obs)}, STATE)
    assert store.state() == STATE
    assert store.load()[("Observation", "o1")] == StoredResource("p1", obs)
    assert store.path.stat().st_mode & 0o077 == 0  # patient data: the owner's only

    changed = b.observation("98979-8", pid="p1", id="o1", value=20)
    later = StoreState(SCHEMA_VERSION, "key", "2026-12-02T02:30:00.000Z", STATE.full_read_at)
    store.apply({("Observation", "o1"): stored(changed)}, [("Patient", "p1")], later)
    assert store.load() == {("Observation", "o1"): StoredResource("p1", changed)}
    assert store.state() == later
    assert not list(tmp_path.glob("*.tmp"))


def test_an_apply_that_fails_changes_nothing(tmp_path: Path) -> None:
    store = ResourceStore(tmp_path / "store.sqlite")
    obs = b.observation("98979-8", pid="p1", id="o1")
    store.replace_all({("Observation", "o1"): stored(obs)}, STATE)
    unserialisable = StoredResource("p1", {"resourceType": "Observation", "id": "o2", "value": object()})
    later = StoreState(SCHEMA_VERSION, "key", "2026-12-02T02:30:00.000Z", STATE.full_read_at)
    with pytest.raises(TypeError):
        store.apply({("Observation", "o2"): unserialisable}, [("Observation", "o1")], later)
    assert store.state() == STATE
    assert set(store.load()) == {("Observation", "o1")}


def test_a_file_that_is_not_a_store_is_reported_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    path.write_text("this is not SQLite")
    with pytest.raises(StoreError, match="not a usable fhirscreen store"):
        ResourceStore(path).state()
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE unrelated (x)")
    with pytest.raises(StoreError):
        ResourceStore(other).state()


def test_full_needs_a_server_and_an_out_dir(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["screen", "--full", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--full needs --server and --out" in result.output
    assert not (tmp_path / "store.sqlite").exists()


# -- when a full read happens ------------------------------------------------------------------------------


def incremental_source(tmp_path: Path, server: str = "http://127.0.0.1:9/fhir", **kwargs: object) -> object:
    from fhirscreen.sources.factory import SourceOptions
    from fhirscreen.sources.server import ServerSource, make_client
    from fhirscreen.store.incremental import IncrementalSource

    options = SourceOptions(server=server, **kwargs)  # type: ignore[arg-type]
    return IncrementalSource(
        ServerSource(options, make_client(options)), ResourceStore(tmp_path / "s"), "trial-hash"
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"server": "http://127.0.0.1:9/other"}, "the store was read from another server"),
        ({"trial": "edited"}, "the trial file changed since the store was written"),
        ({"observations": "all"}, "the search plan changed"),
        ({"bulk": True}, "the search plan changed"),
    ],
)
def test_a_store_read_for_another_server_trial_or_plan_is_read_in_full(
    tmp_path: Path, change: dict[str, object], reason: str
) -> None:
    from fhirscreen.sources.base import QueryPlan
    from fhirscreen.store.incremental import IncrementalSource
    from fhirscreen.trial.loader import load_trial

    plan = QueryPlan.for_trial(load_trial())
    before = incremental_source(tmp_path)
    assert isinstance(before, IncrementalSource)
    state = StoreState(SCHEMA_VERSION, before.source_key(plan), STATE.high_water, STATE.full_read_at)
    assert before._full_reason(state, before.source_key(plan)) is None

    options = {k: v for k, v in change.items() if k in ("observations", "bulk")}
    after = incremental_source(tmp_path, str(change.get("server", "http://127.0.0.1:9/fhir")), **options)
    assert isinstance(after, IncrementalSource)
    if "trial" in change:
        after.trial_hash = "edited"
    assert (after._full_reason(state, after.source_key(plan)) or "").startswith(reason)


def test_a_store_from_another_schema_version_or_without_a_mark_is_read_in_full(tmp_path: Path) -> None:
    from fhirscreen.store.incremental import IncrementalSource

    source = incremental_source(tmp_path)
    assert isinstance(source, IncrementalSource)
    old = StoreState("0", "k", STATE.high_water, STATE.full_read_at)
    assert source._full_reason(old, "k") == "the store was written by another version of fhirscreen"
    unmarked = StoreState(SCHEMA_VERSION, "k", "", "")
    assert source._full_reason(unmarked, "k") == "the store has no usable high-water mark"
    assert source._full_reason(
        None,
        "k",
    ).startswith("no store yet")  # type: ignore[union-attr]
    source.force_full = True
    assert source._full_reason(STATE, "key") == "--full was given"


def test_a_type_the_plan_newly_reads_means_a_full_read(tmp_path: Path) -> None:
    from dataclasses import replace

    from fhirscreen.sources.base import QueryPlan
    from fhirscreen.store.incremental import IncrementalSource
    from fhirscreen.trial.loader import load_trial

    source = incremental_source(tmp_path)
    assert isinstance(source, IncrementalSource)
    plan = QueryPlan.for_trial(load_trial())
    state = StoreState(SCHEMA_VERSION, source.source_key(plan), STATE.high_water, STATE.full_read_at)
    wider = replace(plan, resource_types=(*plan.resource_types, "Encounter"))
    assert (source._full_reason(state, source.source_key(wider)) or "").startswith("the search plan changed")


@pytest.mark.usefixtures("bundled_trial_in_cli")
def test_a_server_that_tells_no_time_is_said_so_not_that_the_read_did_not_finish(tmp_path: Path) -> None:
    """Without a Date header or meta.lastUpdated no change can be tracked: the run reads in full and says
    why the store was not kept (it said "the read did not finish", after a read that finished)."""
    from tests.unit.test_server_source import BASE, FakeFhir, population

    out = tmp_path / "out"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        FakeFhir(population(2)).install(mock)  # sends no Date header and no meta.lastUpdated
        argv = ["screen", "--server", BASE, "--as-of", "2026-06-01", "--out", str(out)]
        result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.stderr
    assert "the server tells no time" in result.stderr
    assert "the read did not finish" not in result.stderr


# -- malformed entries in the changes -----------------------------------------------------------------------

NEW_MARK = "2026-12-02T02:30:00.000Z"
HISTORY = "Observation history (changes since the last run)"


def changes_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pages: dict[str, list[dict[str, object]]], history: bool
) -> tuple[object, object, list[tuple[str, str, str]]]:
    """An incremental read of a store holding one SLE patient (and a Medication) against a server whose
    change pages (by the start of their path) are ``pages``: (the source, the store, the findings)."""
    from datetime import datetime, timezone

    from fhirscreen.quality import DataQuality
    from fhirscreen.sources.base import QueryPlan
    from fhirscreen.store.incremental import IncrementalSource
    from fhirscreen.trial.loader import load_trial

    source = incremental_source(tmp_path)
    assert isinstance(source, IncrementalSource)
    source.use_history = history
    plan = QueryPlan.for_trial(load_trial())
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    resources = [
        b.patient("p1"),
        b.condition("snomed", "55464009", pid="p1", id="c1"),
        b.observation("98979-8", pid="p1", id="o1", value=80),
        {"resourceType": "Medication", "id": "m1"},
        {**b.medication_request("5521", pid="p1"), "medicationReference": {"reference": "Medication/m1"}},
    ]
    state = StoreState(SCHEMA_VERSION, source.source_key(plan), STATE.high_water, now)
    source.store.replace_all({(str(r["resourceType"]), str(r["id"])): stored(r) for r in resources}, state)
    types = [*plan.resource_types, "Medication", "ResearchStudy"]
    statement = {
        "rest": [{"resource": [{"type": t, "interaction": [{"code": "history-type"}]} for t in types]}]
    }
    monkeypatch.setattr(source.server, "capability_statement", lambda: statement)
    monkeypatch.setattr(source, "_server_clock", lambda: NEW_MARK)
    monkeypatch.setattr(source.server, "read_patients", lambda *args, **kwargs: iter(()))

    def served(path: str, label: str) -> list[dict[str, object]]:
        return next((p for start, p in pages.items() if path.startswith(start)), [])

    monkeypatch.setattr(source.server, "pages", served)
    quality = DataQuality()
    list(source.read(plan, quality))
    return source, source.store, [(f.where, f.problem, f.severity) for f in quality.findings]


def _page(*entries: object) -> dict[str, object]:
    return {"resourceType": "Bundle", "type": "history", "entry": list(entries)}


def test_malformed_history_entries_are_findings_naming_page_and_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each entry a ``_history`` page holds that cannot be applied is said, by page and entry, with the
    search path's problem codes; the other changes are applied and the store is updated."""
    changed = b.observation("98979-8", pid="p1", id="o1", value=20)
    pages = {
        "Observation/_history": [
            _page({"resource": changed}),
            _page(
                5,
                {"request": {"method": "PUT", "url": "Observation/o2"}},
                {"resource": {"id": "o3"}},
                {"resource": {"resourceType": "Observation", "status": "final"}},
                {"resource": {"resourceType": "Observation", "id": "not an id"}},
            ),
        ]
    }
    source, store, found = changes_read(tmp_path, monkeypatch, pages, history=True)
    assert found == [
        (f"{HISTORY}, page 2, entry 0", "not-fhir", "warning"),
        (f"{HISTORY}, page 2, entry 1", "not-fhir", "warning"),
        (f"{HISTORY}, page 2, entry 2", "not-fhir", "warning"),
        (f"{HISTORY}, page 2, entry 3", "no-id", "warning"),
        (f"{HISTORY}, page 2, entry 4", "invalid-id", "warning"),
    ]
    assert store.state().high_water == NEW_MARK  # type: ignore[attr-defined]
    assert source.summary.not_stored == ""  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "request_",
    [
        {"method": "DELETE"},
        {"method": "DELETE", "url": "Observation?code=98979-8"},
        {"method": "delete", "url": 7},
    ],
)
def test_a_deletion_that_cannot_be_read_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request_: dict[str, object]
) -> None:
    """A DELETE entry whose resource cannot be told may be the deletion of a stored resource: the delta
    is not trusted (lost data: the run is partial, the store keeps its state and the next run reads
    these changes again)."""
    pages = {"Observation/_history": [_page({"request": request_})]}
    source, store, found = changes_read(tmp_path, monkeypatch, pages, history=True)
    assert found == [(f"{HISTORY}, page 1, entry 0", "data-lost", "error")]
    assert store.state().high_water == STATE.high_water  # type: ignore[attr-defined]
    assert "data was lost" in source.summary.not_stored  # type: ignore[attr-defined]


def test_malformed_entries_of_last_updated_searches_are_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``_history``: the population and shared-resource searches' malformed entries are said as a
    full read's searches say them."""
    pages = {
        "Condition?": [{"resourceType": "Bundle", "type": "searchset", "entry": [{"search": {}}]}],
        "Medication?": [
            {"resourceType": "Bundle", "type": "searchset", "entry": [{}, {"resource": {"id": "m1"}}]}
        ],
    }
    _source, store, found = changes_read(tmp_path, monkeypatch, pages, history=False)
    assert found == [
        ("Condition search (new population diagnoses), page 1, entry 0", "not-fhir", "warning"),
        ("Medication search (changes), page 1, entry 0", "not-fhir", "warning"),
        ("Medication search (changes), page 1, entry 1", "not-fhir", "warning"),
    ]
    assert store.state().high_water == NEW_MARK  # type: ignore[attr-defined]


@pytest.mark.parametrize("search", ["Condition?", "Medication?"])
def test_a_change_search_the_server_says_failed_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, search: str
) -> None:
    """Without ``_history``: a population or shared-resource change search whose page carries an error
    OperationOutcome (the server's "this search did not give every match") may have missed changes, as a
    full read's search would have: lost data, the store keeps its state, the next run reads them again."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "too-costly", "diagnostics": "query timed out"}],
    }
    entry = {"resource": outcome, "search": {"mode": "outcome"}}
    pages = {search: [{"resourceType": "Bundle", "type": "searchset", "entry": [entry]}]}
    source, store, found = changes_read(tmp_path, monkeypatch, pages, history=False)
    label = (
        "Condition search (new population diagnoses)"
        if search == "Condition?"
        else "Medication search (changes)"
    )
    assert found == [(label, "data-lost", "error")]
    assert store.state().high_water == STATE.high_water  # type: ignore[attr-defined]
    assert "data was lost" in source.summary.not_stored  # type: ignore[attr-defined]
