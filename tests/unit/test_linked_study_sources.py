"""A ResearchStudy named only by a medication record's workflow-researchStudy extension (E5) is read by
every source as file mode reads it: server searches, Bulk exports, the incremental store and Spark's
routing fetch or keep it (``referenced_study_ids``), and a contained one is resolved from the record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import responses

from fhirscreen.criteria.base import Outcome
from fhirscreen.pipeline import run_screening
from fhirscreen.record import referenced_study_ids
from fhirscreen.screening import ScreeningRun
from fhirscreen.sources.base import QueryPlan
from fhirscreen.sources.files import FileSource
from fhirscreen.sources.server import study_ids
from fhirscreen.spark.partitions import route_split
from fhirscreen.store.delta import owner, referenced_shared
from fhirscreen.store.incremental import IncrementalSource
from fhirscreen.store.sqlite import ResourceStore, StoredResource
from fhirscreen.trial.loader import Trial
from tests.builders import medication_statement, record
from tests.unit.test_research_study import AS_OF, ClockedFhir, study, subject
from tests.unit.test_server_source import (
    TYPES,
    FakeFhir,
    capability,
    mock_candidate_export,
    population,
    source,
)

EXTENSION = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"
REGISTRY = study("reg", title="SLE outcomes 2026", category=[{"text": "Observational"}])


def given_within(reference: dict[str, Any], pid: str = "p0000", **extra: Any) -> dict[str, Any]:
    """Belimumab given on 2026-05-20 (no investigational product), linked to a study by the extension."""
    return medication_statement(
        "1092437",
        "2026-05-20",
        "2026-05-20",
        status="completed",
        display="belimumab",
        id="ms-reg",
        pid=pid,
        extension=[{"url": EXTENSION, "valueReference": reference}],
        **extra,
    )


def on_server() -> list[dict[str, Any]]:
    """One candidate whose belimumab was given within an observational registry that only the server
    holds (no ResearchSubject refers to it), and a study nothing refers to."""
    return [*population(1), given_within({"reference": "ResearchStudy/reg"}), REGISTRY, study("unreferenced")]


def e5(run: ScreeningRun, pid: str = "p0000") -> tuple[Outcome, str, tuple[str, ...]]:
    [screened] = [p for p in run.patients if p.patient_id == pid]
    res = screened.results["E5"]
    return res.outcome, res.reason, res.evidence


def file_mode(tmp_path: Path, trial: Trial, resources: list[dict[str, Any]]) -> ScreeningRun:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "data.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources))
    return run_screening(FileSource(folder), trial, AS_OF)


def studies_requested(fake: FakeFhir) -> list[str]:
    return [e for e in fake.log if e.startswith("ResearchStudy")]


# ------------------------------------------------------------------------------------ the shared rule


def test_the_studies_a_resource_refers_to() -> None:
    assert referenced_study_ids(subject()) == {"abc"}
    assert referenced_study_ids(given_within({"reference": "ResearchStudy/reg"})) == {"reg"}
    # As the record resolves them: absolute and versioned references by id; contained ones and
    # displays name no separate study.
    assert referenced_study_ids(given_within({"reference": "https://x.org/fhir/ResearchStudy/r2"})) == {"r2"}
    assert referenced_study_ids(given_within({"reference": "ResearchStudy/r3/_history/2"})) == {"r3"}
    assert referenced_study_ids(given_within({"reference": "#s"})) == set()
    assert referenced_study_ids(given_within({"display": "Lupus registry"})) == set()
    assert referenced_study_ids(given_within({"reference": "Medication/m"})) == set()
    assert study_ids([subject(), given_within({"reference": "ResearchStudy/reg"})]) == {"abc", "reg"}


def test_a_contained_study_named_by_the_extension_is_read(evaluate) -> None:
    """A medication record's extension pointing at a study contained in it (``#id``): that study is read
    as a separate one is (observational: no agent)."""
    contained = {**REGISTRY, "id": "s"}
    res = evaluate("E5", record(given_within({"reference": "#s"}, pid="p1", contained=[contained]), pid="p1"))
    assert res.outcome is Outcome.PASS, res.reason
    assert "observational study" in res.reason and "SLE outcomes 2026" in res.reason
    # Without it, the study is one nothing tells: an agent, as before.
    assert (
        evaluate("E5", record(given_within({"reference": "#s"}, pid="p1"), pid="p1")).outcome is Outcome.FAIL
    )


# ------------------------------------------------------------------------------------ server and Bulk


def test_server_search_reads_the_study_a_medication_record_names(tmp_path: Path, trial: Trial) -> None:
    resources = on_server()
    fake = FakeFhir(resources, caps=capability(types=(*TYPES, "ResearchStudy")))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        run = run_screening(source(), trial, AS_OF)
    assert studies_requested(fake) == ["ResearchStudy?_id=reg&_count=200"]
    outcome, reason, evidence = e5(run)
    assert outcome is Outcome.PASS, reason
    assert "observational study" in reason
    assert (outcome, reason, evidence) == e5(file_mode(tmp_path, trial, resources))


def test_bulk_reads_the_study_a_medication_record_names(tmp_path: Path, trial: Trial) -> None:
    resources = on_server()
    fake = FakeFhir(resources, caps=capability(types=(*TYPES, "ResearchStudy")))
    exported = [r for r in resources if r["resourceType"] not in ("Medication", "ResearchStudy")]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock_candidate_export(mock, exported)
        fake.install(mock)
        run = run_screening(source(bulk=True), trial, AS_OF)
    assert studies_requested(fake) == ["ResearchStudy?_id=reg&_count=200"]
    outcome, reason, evidence = e5(run)
    assert outcome is Outcome.PASS, reason
    assert (outcome, reason, evidence) == e5(file_mode(tmp_path, trial, resources))


# ------------------------------------------------------------------------------------ the store


def test_the_store_keeps_a_study_named_by_a_medication_record() -> None:
    held = [StoredResource(owner(r), r) for r in (given_within({"reference": "ResearchStudy/reg"}), REGISTRY)]
    assert referenced_shared(held) == {("ResearchStudy", "reg")}


def test_incremental_reads_keep_the_study_a_medication_record_names(tmp_path: Path, trial: Trial) -> None:
    """The full read stores the study (it is not dropped as unreferenced), and the next, incremental
    read screens as file mode does."""
    resources = on_server()
    fake = ClockedFhir(resources, caps=capability(types=(*TYPES, "ResearchStudy")))
    store = ResourceStore(tmp_path / "store.sqlite")
    summaries: list[str] = []
    runs: list[ScreeningRun] = []
    with responses.RequestsMock() as mock:
        fake.install(mock)
        for _run in range(2):
            incremental = IncrementalSource(source(), store, "trial-hash", use_history=False)
            runs.append(run_screening(incremental, trial, AS_OF))
            summaries.append(incremental.read_summary())
    assert summaries[0].startswith("full read") and summaries[1].startswith("incremental")
    assert {k for k in store.load() if k[0] == "ResearchStudy"} == {("ResearchStudy", "reg")}
    expected = e5(file_mode(tmp_path, trial, resources))
    assert expected[0] is Outcome.PASS
    for run in runs:
        assert e5(run) == expected


def test_the_key_of_a_store_from_before_extension_studies_were_kept_differs(
    tmp_path: Path, trial: Trial
) -> None:
    incremental = IncrementalSource(source(), ResourceStore(tmp_path / "s"), "trial-hash")
    key = json.loads(incremental.source_key(QueryPlan.for_trial(trial)))
    assert key["studies"] == "subject-or-extension"


# ------------------------------------------------------------------------------------ Spark routing


def test_spark_routes_the_study_a_medication_record_names() -> None:
    linked = given_within({"reference": "ResearchStudy/reg"}, pid="p1")
    lines = [json.dumps(REGISTRY), json.dumps(linked)]
    rows = list(route_split(lines, 0, 1, "export/x.ndjson", {"p1": "p1"}))
    assert ("M", "ResearchStudy/reg", ((0, 1, 0), lines[0])) in rows
    assert ("ref", "ResearchStudy/reg", "p1") in rows
