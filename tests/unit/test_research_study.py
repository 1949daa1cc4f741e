"""The ResearchStudy behind a ResearchSubject: read by every source, joined by reference, and used by E5,
E7 and E8 (criteria/_research.py ``Study``) when the subject names its study only by a reference."""

from __future__ import annotations

import email.utils
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from fhirscreen.criteria._research import KindReading, Study, is_this_study
from fhirscreen.criteria.base import Outcome
from fhirscreen.pipeline import run_screening
from fhirscreen.quality import DataQuality
from fhirscreen.report.describe import describe_resource, find_resource
from fhirscreen.screening import ScreeningRun
from fhirscreen.sources.base import QueryPlan
from fhirscreen.sources.files import FileSource
from fhirscreen.spark.partitions import route_split
from fhirscreen.store.delta import owner, referenced_shared
from fhirscreen.store.incremental import IncrementalSource
from fhirscreen.store.sqlite import SCHEMA_VERSION, ResourceStore, StoredResource, StoreState
from fhirscreen.trial.loader import Trial
from tests.builders import medication_statement, record
from tests.unit.test_server_source import (
    TYPES,
    FakeFhir,
    capability,
    mock_candidate_export,
    population,
    read_all,
    source,
)

AS_OF = date(2026, 6, 1)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PHASE = "http://terminology.hl7.org/CodeSystem/research-study-phase"
PURPOSE = "http://terminology.hl7.org/CodeSystem/research-study-prim-purp-type"


def subject(
    status: str = "on-study",
    study: str = "ResearchStudy/abc",
    *,
    pid: str = "p1",
    rid: str = "rs1",
    start: str | None = "2026-03-01",
    **extra: Any,
) -> dict[str, Any]:
    """A ResearchSubject that names its study only by a reference (no display)."""
    rs: dict[str, Any] = {
        "resourceType": "ResearchSubject",
        "id": rid,
        "status": status,
        "study": {"reference": study},
        "individual": {"reference": f"Patient/{pid}"},
    }
    if start:
        rs["period"] = {"start": start}
    rs.update(extra)
    return rs


def study(sid: str = "abc", title: str | None = None, **extra: Any) -> dict[str, Any]:
    rs: dict[str, Any] = {"resourceType": "ResearchStudy", "id": sid, "status": "active"}
    if title is not None:
        rs["title"] = title
    rs.update(extra)
    return rs


MSC = "Umbilical cord mesenchymal stem cell infusion in refractory lupus"
MSC_STUDY = study(title=MSC, phase={"coding": [{"system": PHASE, "code": "phase-2"}]})


# ------------------------------------------------------------------------------------ the criteria


def test_e7_reads_the_msc_study_behind_a_bare_reference(evaluate):
    without = evaluate("E7", record(subject()))
    assert without.outcome is Outcome.PASS  # as before: nothing names the study

    res = evaluate("E7", record(subject(), MSC_STUDY))
    assert res.outcome is Outcome.FAIL
    assert "ResearchStudy/abc" in res.reason and MSC in res.reason
    assert res.evidence == ("ResearchSubject/rs1", "ResearchStudy/abc")


def test_e7_a_study_that_cannot_be_read_is_named_in_the_passing_reason(evaluate):
    res = evaluate("E7", record(subject()))
    assert res.outcome is Outcome.PASS
    assert "ResearchStudy/abc (status on-study, ResearchSubject/rs1)" in res.reason
    assert "not in the data" in res.reason and "MSC therapy cannot be told" in res.reason
    assert "ResearchSubject/rs1" in res.evidence
    # A candidate's study, or one that ended before the window, is not worth a word.
    assert "not in the data" not in evaluate("E7", record(subject("candidate"))).reason
    old = subject("off-study", start="2020-01-01", period={"start": "2020-01-01", "end": "2020-06-01"})
    assert "not in the data" not in evaluate("E7", record(old)).reason


def test_e7_pending_in_a_resolved_msc_study_is_unknown(evaluate):
    res = evaluate("E7", record(subject("pending-on-study"), MSC_STUDY))
    assert res.outcome is Outcome.UNKNOWN
    assert "ResearchStudy/abc" in res.reason


@pytest.mark.parametrize(
    "where",
    [
        {"focus": [{"coding": [{"system": RXNORM, "code": "1986438", "display": "tisagenlecleucel"}]}]},
        {"keyword": [{"text": "anti-CD19 CAR-T cells"}]},
        {"title": "Anti-CD19 CAR-T cell therapy in refractory SLE"},
    ],
    ids=["focus-code", "keyword", "title"],
)
def test_e8_reads_the_study_title_focus_and_keywords(evaluate, where):
    res = evaluate("E8", record(subject(), study(**{"title": "Study XYZ-001 in refractory SLE", **where})))
    assert res.outcome is Outcome.FAIL, res.reason
    assert "ResearchStudy/abc" in res.reason
    assert "ResearchStudy/abc" in res.evidence


def test_e8_a_study_that_cannot_be_read_is_named_in_the_passing_reason(evaluate):
    res = evaluate("E8", record(subject("follow-up")))
    assert res.outcome is Outcome.PASS
    assert "whether it gave a cellular therapy cannot be told: ResearchStudy/abc" in res.reason


UC_MSC_PROSE = (
    "Participants receive a single infusion of umbilical cord mesenchymal stromal cells on Day 0 and are "
    "followed for 52 weeks."
)
CAR_T_PROSE = "Participants receive anti-CD19 CAR-T cells after lymphodepletion."


def test_e7_e8_read_the_description_in_plain_words(evaluate):
    """A study whose title and keywords do not name the product, but whose description says it gives it."""
    msc = study(title="Study XYZ-001 in refractory SLE", description=UC_MSC_PROSE)
    res = evaluate("E7", record(subject(), msc))
    assert res.outcome is Outcome.FAIL, res.reason
    assert "ResearchStudy/abc" in res.reason and "its description naming" in res.reason
    assert res.evidence == ("ResearchSubject/rs1", "ResearchStudy/abc")
    assert evaluate("E7", record(subject("candidate"), msc)).outcome is Outcome.PASS  # not dosed
    # E8 excepts it as MSC therapy, and fails a CAR-T study named so in its description.
    assert evaluate("E8", record(subject(), msc)).outcome is Outcome.PASS
    car_t = study(title="Study XYZ-002 in refractory SLE", description=CAR_T_PROSE)
    res = evaluate("E8", record(subject(), car_t))
    assert res.outcome is Outcome.FAIL, res.reason
    assert "ResearchStudy/abc" in res.evidence
    # A CAR-T study by its title whose description also names MSC is a CAR-T study: not excepted.
    both = study(title="Anti-CD19 CAR-T in SLE", description=f"{UC_MSC_PROSE} {CAR_T_PROSE}")
    assert evaluate("E8", record(subject(), both)).outcome is Outcome.FAIL


@pytest.mark.parametrize(
    "description",
    [
        "Prior MSC or CAR-T therapy excluded.",
        "Anifrolumab every 4 weeks. Patients previously treated with MSCs or CAR-T cells are not eligible.",
        "A study of anifrolumab in lupus nephritis.\nExclusion criteria:\n- mesenchymal stem cells\n"
        "- CAR-T cell therapy",
        "Open to patients with no prior mesenchymal stromal cell or CAR-T therapy.",
    ],
    ids=["excluded", "not-eligible", "eligibility-section", "negated"],
)
def test_a_description_naming_the_product_not_as_given_is_a_question(evaluate, description):
    """Prose may name a product only to exclude it: not a study of that product, but not nothing either
    (never a silent pass, never a fail): unknown, with the study named."""
    resolved = study(title="Anifrolumab in lupus nephritis", description=description)
    for criterion in ("E7", "E8"):
        res = evaluate(criterion, record(subject(), resolved))
        assert res.outcome is Outcome.UNKNOWN, (criterion, res.reason)
        assert "Anifrolumab in lupus nephritis" in res.reason and "do not say the study gave it" in res.reason
        assert res.evidence == ("ResearchSubject/rs1", "ResearchStudy/abc")
        assert res.next_step
        # Not dosed in that study: nothing to ask.
        assert evaluate(criterion, record(subject("candidate"), resolved)).outcome is Outcome.PASS
    # E8: a study that names a cellular therapy only as a mechanism is a question, not a fail.
    il2 = study(title="Low-dose IL-2 in SLE",
                description="Participants receive low-dose IL-2 injections to expand regulatory T cells.")
    res = evaluate("E8", record(subject(), il2))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "Low-dose IL-2 in SLE" in res.reason
    # E7: a study that ended before the 52 weeks is not a question.
    old = subject("off-study", start="2020-01-01", period={"start": "2020-01-01", "end": "2020-06-01"})
    assert evaluate("E7", record(old, resolved)).outcome is Outcome.PASS


def test_e5_an_observational_study_by_its_category_is_not_an_agent(evaluate):
    assert evaluate("E5", record(subject())).outcome is Outcome.FAIL  # an unknown study counts
    registry = study(title="SLE outcomes 2026", category=[{"text": "Observational"}])
    res = evaluate("E5", record(subject(), registry))
    assert res.outcome is Outcome.PASS
    assert (
        "SLE outcomes 2026 ResearchStudy/abc (observational study by 'Observational' in its category"
        in res.reason
    )


def _given_within(reference: dict[str, Any]) -> dict[str, Any]:
    """Belimumab given on 2026-05-20, linked to a study by the standard extension."""
    url = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"
    ext = [{"url": url, "valueReference": reference}]
    return medication_statement(
        "1092437", "2026-05-20", "2026-05-20", status="completed", display="belimumab", id="ms1",
        extension=ext,
    )


def test_e5_a_drug_given_within_an_observational_study_is_not_an_agent(evaluate):
    """The study a medication record is linked to (workflow-researchStudy) is read as a ResearchSubject's:
    a drug given within an observational registry is not an interventional agent."""
    registry = study(title="SLE outcomes 2026", category=[{"text": "Observational"}])
    res = evaluate("E5", record(_given_within({"reference": "ResearchStudy/abc"}), registry))
    assert res.outcome is Outcome.PASS, res.reason
    assert "MedicationStatement/ms1" in res.reason and "observational study" in res.reason
    by_display = _given_within({"display": "Lupus registry (non-interventional)"})
    assert evaluate("E5", record(by_display)).outcome is Outcome.PASS
    # An interventional study, or one that nothing tells (as for a ResearchSubject), gives an agent.
    trial = study(title="Phase 2 study of XYZ", phase={"coding": [{"system": PHASE, "code": "phase-2"}]})
    res = evaluate("E5", record(_given_within({"reference": "ResearchStudy/abc"}), trial))
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("MedicationStatement/ms1", "ResearchStudy/abc")
    assert evaluate("E5", record(_given_within({"reference": "ResearchStudy/abc"}))).outcome is Outcome.FAIL


def test_e5_a_drug_given_within_a_study_of_unclear_kind_is_a_question(evaluate):
    unclear = study(title="Randomized registry of lupus care")
    res = evaluate("E5", record(_given_within({"reference": "ResearchStudy/abc"}), unclear))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "MedicationStatement/ms1" in res.reason and "unclear kind" in res.reason
    assert res.evidence == ("MedicationStatement/ms1", "ResearchStudy/abc")
    assert res.next_step is not None and "Randomized registry of lupus care" in res.next_step


def test_e5_reads_the_description_for_the_kind_when_nothing_else_tells(evaluate):
    """As E7 and E8 read it for the product: last, in plain words only."""
    registry = study(title="SLE-2026 study", description="A prospective registry of adults with lupus.")
    res = evaluate("E5", record(subject(), registry))
    assert res.outcome is Outcome.PASS, res.reason
    assert "observational study by 'registry' in its description" in res.reason
    # Words about the participants' past, or an eligibility section, are no sign: counted as before.
    past = study(title="SLE-2026 study", description="Patients previously enrolled in registries may join.")
    assert evaluate("E5", record(subject(), past)).outcome is Outcome.FAIL
    # A name or category that tells decides: the description is not read.
    named = study(title="Phase 2 study of XYZ", description="Long-term observational follow-up.")
    assert evaluate("E5", record(subject(), named)).outcome is Outcome.FAIL


def test_e5_a_coded_phase_wins_over_a_registry_name(evaluate):
    """A research-study-phase code is FHIR's own statement: a trial phase, so an interventional study,
    whatever its title says. The reason names what the code decided over."""
    coded = study(title="SLE registry", phase={"coding": [{"system": PHASE, "code": "phase-3"}]})
    res = evaluate("E5", record(subject(), coded))
    assert res.outcome is Outcome.FAIL
    decided = "interventional by its phase coded phase-3 (a code decides over 'registry' in its name)"
    assert decided in res.reason
    assert res.evidence == ("ResearchSubject/rs1", "ResearchStudy/abc")


def test_e5_a_non_interventional_study_is_observational(evaluate):
    res = evaluate("E5", record(subject(), study(title="Non-interventional study of belimumab use")))
    assert res.outcome is Outcome.PASS
    assert "observational study by 'Non-interventional' in its name" in res.reason


def test_e5_this_trial_is_told_by_the_study_identifier(evaluate):
    registry = "https://clinicaltrials.gov"
    own = study(identifier=[{"system": registry, "value": "NCT06737380"}], title="UC-MSC in SLE")
    assert evaluate("E5", record(subject(), own)).outcome is Outcome.PASS
    other = study(identifier=[{"system": registry, "value": "NCT01234567"}])
    assert evaluate("E5", record(subject(), other)).outcome is Outcome.FAIL


def test_e5_a_study_that_cannot_be_read_says_so(evaluate):
    res = evaluate("E5", record(subject()))
    assert res.outcome is Outcome.FAIL  # as before: another study, of unknown kind
    assert "ResearchStudy/abc (not in the data: the study could not be read)" in res.reason
    assert res.evidence == ("ResearchSubject/rs1",)


def test_a_contained_study_is_read(evaluate):
    rs = subject(study="#s", contained=[{"resourceType": "ResearchStudy", "id": "s", "title": MSC}])
    res = evaluate("E7", record(rs))
    assert res.outcome is Outcome.FAIL
    assert MSC in res.reason


def test_the_study_is_read_on_every_reading_of_partial_dates(screen):
    """Screening reads a partial date at each end of its range on a rewritten record: the study goes too."""
    res = screen("E7", record(subject(start="2026-03"), MSC_STUDY))
    assert res.outcome is Outcome.FAIL
    assert "ResearchStudy/abc" in res.reason


def test_explain_describes_the_study():
    rec = record(subject(), MSC_STUDY)
    found = find_resource(rec, "ResearchStudy/abc")
    assert found is not None
    assert describe_resource(found, rec) == f"ResearchStudy/abc: {MSC}, phase-2, active"


# ------------------------------------------------------------------------------------ file mode


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "birthDate": "1990-01-01", "gender": "female"}


def sle(pid: str, cid: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid or f"c-{pid}",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "55464009"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": "2020-01-01",
    }


def ndjson(path: Path, *resources: dict[str, Any]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))


def e7(run: ScreeningRun, pid: str = "p1") -> tuple[Outcome, str, tuple[str, ...]]:
    [screened] = [p for p in run.patients if p.patient_id == pid]
    res = screened.results["E7"]
    return res.outcome, res.reason, res.evidence


def test_file_mode_ndjson_joins_the_study(tmp_path: Path, trial: Trial) -> None:
    # Bulk order: ResearchStudy.ndjson is read before the subjects that refer to it, and before the
    # Condition that makes p1 a candidate.
    ndjson(tmp_path / "Condition.ndjson", sle("p1"))
    ndjson(tmp_path / "Patient.ndjson", patient("p1"), patient("p2"))
    ndjson(tmp_path / "ResearchStudy.ndjson", study("other", title="Unrelated"), MSC_STUDY)
    ndjson(tmp_path / "ResearchSubject.ndjson", subject(), subject(pid="p2", rid="rs2"))
    run = run_screening(FileSource(tmp_path), trial, AS_OF)
    outcome, reason, evidence = e7(run)
    assert outcome is Outcome.FAIL
    assert "ResearchStudy/abc" in reason and MSC in reason
    assert "ResearchStudy/abc" in evidence
    assert "ResearchStudy" not in run.skipped_types  # read, not skipped


def test_file_mode_without_the_study_says_it_could_not_be_read(tmp_path: Path, trial: Trial) -> None:
    ndjson(tmp_path / "data.ndjson", patient("p1"), sle("p1"), subject())
    outcome, reason, _evidence = e7(run_screening(FileSource(tmp_path), trial, AS_OF))
    assert outcome is Outcome.PASS
    assert "ResearchStudy/abc (status on-study, ResearchSubject/rs1)" in reason


def test_file_mode_bundle_with_the_study_inside(tmp_path: Path, trial: Trial) -> None:
    entries = [
        ("urn:uuid:p1", patient("p1")),
        ("urn:uuid:c1", sle("urn:uuid:p1", "c1") | {"subject": {"reference": "urn:uuid:p1"}}),
        ("urn:uuid:study-1", {k: v for k, v in MSC_STUDY.items() if k != "id"}),
        ("urn:uuid:rs1", subject(study="urn:uuid:study-1") | {"individual": {"reference": "urn:uuid:p1"}}),
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"fullUrl": url, "resource": res} for url, res in entries],
    }
    (tmp_path / "p1.json").write_text(json.dumps(bundle))
    outcome, reason, evidence = e7(run_screening(FileSource(tmp_path), trial, AS_OF))
    assert outcome is Outcome.FAIL
    assert "ResearchStudy/study-1" in reason
    assert "ResearchStudy/study-1" in evidence


def test_file_mode_bundle_of_studies_apart_from_the_patient_bundles(tmp_path: Path, trial: Trial) -> None:
    """A collection Bundle of the site's studies, and a patient Bundle that refers to one of them."""
    patient_bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (patient("p1"), sle("p1"), subject())],
    }
    studies = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": MSC_STUDY}]}
    (tmp_path / "a-patient.json").write_text(json.dumps(patient_bundle))
    (tmp_path / "z-studies.json").write_text(json.dumps(studies))
    outcome, reason, _evidence = e7(run_screening(FileSource(tmp_path), trial, AS_OF))
    assert outcome is Outcome.FAIL
    assert "ResearchStudy/abc" in reason


def test_spark_routes_the_study_to_the_candidates_that_refer_to_it() -> None:
    lines = [json.dumps(MSC_STUDY), json.dumps(subject()), json.dumps(subject(pid="p2", rid="rs2"))]
    rows = list(route_split(lines, 0, 1, "export/x.ndjson", {"p1": "p1"}))
    assert ("M", "ResearchStudy/abc", ((0, 1, 0), lines[0])) in rows
    assert ("ref", "ResearchStudy/abc", "p1") in rows
    assert not any(kind == "ref" and value == "p2" for kind, _key, value in rows)
    assert not any(kind in ("skip", "odd") for kind, _key, _value in rows)


# ------------------------------------------------------------------------------------ server mode


def with_subject(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [*resources, subject(pid="p0000"), MSC_STUDY, study("unreferenced", title="Another study")]


def test_server_fetches_the_referenced_studies_by_id() -> None:
    fake = FakeFhir(with_subject(population(2)), caps=capability(types=(*TYPES, "ResearchStudy")))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        resources, quality = read_all(source())
    assert {r["id"] for r in resources if r["resourceType"] == "ResearchStudy"} == {"abc"}
    assert [e for e in fake.log if e.startswith("ResearchStudy")] == ["ResearchStudy?_id=abc&_count=200"]
    assert quality.findings == []


def test_server_screening_names_the_study(trial: Trial) -> None:
    fake = FakeFhir(with_subject(population(1)), caps=capability(types=(*TYPES, "ResearchStudy")))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        run = run_screening(source(), trial, AS_OF)
    outcome, reason, evidence = e7(run, "p0000")
    assert outcome is Outcome.FAIL
    assert "ResearchStudy/abc" in reason and "ResearchStudy/abc" in evidence


def test_a_server_without_research_study_goes_on_with_a_warning(trial: Trial) -> None:
    fake = FakeFhir(with_subject(population(1)))  # ResearchStudy not in the CapabilityStatement
    with responses.RequestsMock() as mock:
        fake.install(mock)
        run = run_screening(source(), trial, AS_OF)
    assert not any(e.startswith("ResearchStudy") for e in fake.log)
    [warning] = [f for f in run.quality.findings if f.problem == "type-not-supported"]
    assert "ResearchStudy" in warning.message and warning.severity == "warning"
    outcome, reason, _evidence = e7(run, "p0000")
    assert outcome is Outcome.PASS
    assert "ResearchStudy/abc (status on-study, ResearchSubject/rs1)" in reason
    assert not run.quality.partial


class RefusingFhir(FakeFhir):
    """A server that refuses the ResearchStudy search (a scope the token lacks)."""

    def handle(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        if "/ResearchStudy" in str(request.url):
            self.log.append("ResearchStudy refused")
            issue = {"severity": "error", "code": "forbidden"}
            outcome = {"resourceType": "OperationOutcome", "issue": [issue]}
            return 403, {"Content-Type": "application/fhir+json"}, json.dumps(outcome)
        return super().handle(request)


def test_a_refused_study_search_costs_only_the_studies(trial: Trial) -> None:
    fake = RefusingFhir(with_subject(population(1)), caps=capability(types=(*TYPES, "ResearchStudy")))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        run = run_screening(source(), trial, AS_OF)
    assert "ResearchStudy refused" in fake.log
    [warning] = [f for f in run.quality.findings if f.problem == "not-readable"]
    assert "research studies" in warning.message
    assert not run.quality.partial
    assert e7(run, "p0000")[0] is Outcome.PASS  # read as before studies were read


def test_bulk_fetches_the_studies_the_export_refers_to() -> None:
    """A Patient-level export holds no ResearchStudy (outside the Patient compartment): the studies the
    exported ResearchSubjects refer to are fetched by id afterwards, as Medications are."""
    fake = FakeFhir(with_subject(population(2)), caps=capability(types=(*TYPES, "ResearchStudy")))
    exported = [r for r in fake.resources if r["resourceType"] not in ("Medication", "ResearchStudy")]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock_candidate_export(mock, exported)
        fake.install(mock)
        resources, quality = read_all(source(bulk=True))
    assert {r["id"] for r in resources if r["resourceType"] == "ResearchStudy"} == {"abc"}
    assert [e for e in fake.log if e.startswith("ResearchStudy")] == ["ResearchStudy?_id=abc&_count=200"]
    assert not quality.partial


# ------------------------------------------------------------------------------------ the store


def test_the_store_keeps_studies_as_shared_resources() -> None:
    assert owner(MSC_STUDY) is None
    held = [StoredResource(owner(r), r) for r in (subject(), subject(study="#s"), MSC_STUDY)]
    assert referenced_shared(held) == {("ResearchStudy", "abc")}


class ClockedFhir(FakeFhir):
    """FakeFhir that tells its time (a ``Date`` header), as the store needs for its high-water mark."""

    def handle(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        status, headers, body = super().handle(request)
        return status, {**headers, "Date": email.utils.formatdate(usegmt=True)}, body


def test_the_store_keeps_the_referenced_studies_for_incremental_reads(tmp_path: Path, trial: Trial) -> None:
    """A full read stores the studies the population's subjects refer to (and only those); the next,
    incremental read (``_lastUpdated``) yields them again, so that it screens as the full read did."""
    fake = ClockedFhir(with_subject(population(1)), caps=capability(types=(*TYPES, "ResearchStudy")))
    store = ResourceStore(tmp_path / "store.sqlite")
    plan = QueryPlan.for_trial(trial)
    read: list[list[dict[str, Any]]] = []
    summaries = []
    with responses.RequestsMock() as mock:
        fake.install(mock)
        for _run in range(2):
            incremental = IncrementalSource(source(), store, "trial-hash", use_history=False)
            read.append([r for r, _origin in incremental.read(plan, DataQuality())])
            summaries.append(incremental.read_summary())
    assert summaries[0].startswith("full read") and summaries[1].startswith("incremental")
    assert {k for k in store.load() if k[0] == "ResearchStudy"} == {("ResearchStudy", "abc")}
    for resources in read:
        assert {r["id"] for r in resources if r["resourceType"] == "ResearchStudy"} == {"abc"}
    assert any(e.startswith("ResearchStudy?_id=abc&_lastUpdated=") for e in fake.log)


def test_a_store_written_before_studies_were_read_is_read_in_full(tmp_path: Path, trial: Trial) -> None:
    incremental = IncrementalSource(source(), ResourceStore(tmp_path / "s"), "trial-hash")
    plan = QueryPlan.for_trial(trial)
    key = incremental.source_key(plan)
    before = json.loads(key)
    del before["shared"]
    state = StoreState(SCHEMA_VERSION, json.dumps(before, sort_keys=True), "2026-06-01T00:00:00.000Z", "")
    assert (incremental._full_reason(state, key) or "").startswith("the search plan changed")


THIS_TRIAL = study(
    "uc-msc-sle", title="UC-MSC Cell Therapy Study for Systemic Lupus Erythematosus (SLE) Patients",
    identifier=[{"system": "https://clinicaltrials.gov", "value": "NCT06737380"}],
)


@pytest.mark.parametrize(
    "status", ["pending-on-study", "eligible", "screening", "candidate", "not-registered"]
)
@pytest.mark.parametrize("criterion", ["E5", "E7", "E8"])
def test_this_trial_s_own_research_subject_is_not_prior_cell_therapy(evaluate, criterion, status):
    """A patient consented, or about to be dosed, in this UC-MSC trial: its ResearchSubject is this
    enrolment, not a prior MSC or cellular therapy nor another study; another MSC study still counts."""
    own = subject(status, "ResearchStudy/uc-msc-sle")
    res = evaluate(criterion, record(own, THIS_TRIAL))
    assert res.outcome is Outcome.PASS, res.reason
    assert "ResearchSubject/rs1" not in res.evidence
    if criterion == "E7":
        other = evaluate("E7", record(own, THIS_TRIAL, subject("on-study", rid="rs2"), MSC_STUDY))
        assert other.outcome is Outcome.FAIL and "ResearchSubject/rs2" in other.evidence


@pytest.mark.parametrize(
    "extra",
    [
        {"note": [{"text": "Withdrawn before randomisation"}]},
        {"period": {"start": "2026-06-10"}},  # on-study from after the screening date: this enrolment
    ],
    ids=["withdrawn-before-intervention", "starts-after-screening"],
)
@pytest.mark.parametrize("criterion", ["E5", "E7", "E8"])
def test_this_trial_s_subject_not_yet_dosed_is_exempt(evaluate, criterion, extra):
    status = "withdrawn" if "note" in extra else "on-study"
    res = evaluate(criterion, record(subject(status, "ResearchStudy/uc-msc-sle", **extra), THIS_TRIAL))
    assert res.outcome is Outcome.PASS, res.reason


def test_this_trial_s_enrolled_subject_may_have_been_dosed(evaluate):
    """On-study in this single-dose trial with an open period: its UC-MSC dose may already have been
    given (a re-screen), so E7 must not pass; E5 leaves the question to E7 and says so; E8 excepts MSC."""
    rec = record(subject("on-study", "ResearchStudy/uc-msc-sle"), THIS_TRIAL)
    e7 = evaluate("E7", rec)
    assert e7.outcome is Outcome.UNKNOWN, e7.reason
    assert "this trial" in e7.reason and "ResearchSubject/rs1" in e7.evidence
    assert e7.next_step and "re-screen" in e7.next_step
    e5 = evaluate("E5", rec)
    assert e5.outcome is Outcome.PASS
    assert e5.reason.startswith("Already enrolled in this trial: ")  # not a plain pass
    assert "asked under the MSC washout criterion" in e5.reason
    assert evaluate("E8", rec).outcome is Outcome.PASS


@pytest.mark.parametrize(
    ("status", "extra", "standing", "said"),
    [
        ("on-study", {}, "enrolled", "Already enrolled in this trial: "),
        ("on-study-intervention", {}, "enrolled", "Already enrolled in this trial: "),
        ("on-study", {"period": {"start": "2026-06-10"}}, "enrolled", "Already enrolled in this trial: "),
        ("candidate", {}, "in-recruitment", "In recruitment for this trial: "),
        ("screening", {}, "in-recruitment", "In recruitment for this trial: "),
        ("eligible", {}, "in-recruitment", "In recruitment for this trial: "),
        ("pending-on-study", {}, "in-recruitment", "In recruitment for this trial: "),
        ("ineligible", {}, "screened-before", "Screened for this trial before, not dosed: "),
        ("not-registered", {}, "screened-before", "Screened for this trial before, not dosed: "),
        ("withdrawn", {"note": [{"text": "Screen failure"}]}, "screened-before",
         "Screened for this trial before, not dosed: "),
    ],
    ids=["on-study", "on-study-intervention", "on-study-later", "candidate", "screening", "eligible",
         "pending", "ineligible", "not-registered", "screen-failure"],
)
def test_e5_says_where_the_patient_stands_in_this_trial(evaluate, status, extra, standing, said):
    """This trial's own subject, not dosed (or with its dose asked under E7): not another study, so E5
    passes, but its reason starts by saying so, naming the ResearchSubject, and the patient carries a
    note the reports show beside the status."""
    rec = record(subject(status, "ResearchStudy/uc-msc-sle", **extra), THIS_TRIAL)
    res = evaluate("E5", rec)
    assert res.outcome is Outcome.PASS, res.reason
    assert res.reason.startswith(said), res.reason
    assert "ResearchStudy/uc-msc-sle" in res.reason and "; ResearchSubject/rs1)" in res.reason
    assert res.reason.endswith("No investigational agent or participation in another interventional study "
                               "on record.")
    assert res.evidence == ()  # named, not evidence against the patient
    assert res.details["this_trial"] == [{"subject": "ResearchSubject/rs1", "standing": standing,
                                          "status": status}]
    note = res.details["patient_note"]
    assert note.startswith(said.removesuffix(": ")) and f"(ResearchSubject/rs1, {status} from 2026-" in note
    assert "UC-MSC" not in note  # the note is short: the reason names the study


@pytest.mark.parametrize(
    ("status", "extra", "outcome", "note"),
    [
        ("off-study", {"period": {"start": "2025-09-01", "end": "2026-01-01"}}, Outcome.PASS,
         "Dosed in this trial before, a re-screen (ResearchSubject/rs1, off-study 2025-09-01 to 2026-01-01)"),
        ("follow-up", {"period": {"start": "2025-09-01", "end": "2026-04-01"}}, Outcome.UNKNOWN,
         "Dosed in this trial before, a re-screen (ResearchSubject/rs1, follow-up 2025-09-01 to 2026-04-01)"),
        ("withdrawn", {}, Outcome.UNKNOWN,
         "On record in this trial, whether dosed is not recorded (ResearchSubject/rs1, withdrawn from "
         "2026-03-01)"),
    ],
    ids=["dosed-washed-out", "dosed-in-washout", "bare-withdrawal"],
)
def test_e5_notes_a_dose_of_this_trial_or_one_that_may_have_been_given(
    evaluate, status, extra, outcome, note
):
    """A dose of this trial's UC-MSC (a re-screen) is an agent with the 90-day washout, as before; the
    patient's note says so whatever E5's outcome; a bare withdrawal is not called a dose."""
    res = evaluate("E5", record(subject(status, "ResearchStudy/uc-msc-sle", **extra), THIS_TRIAL))
    assert res.outcome is outcome, res.reason
    assert res.details["patient_note"] == note
    assert res.details["this_trial"][0]["standing"] == ("unknown" if status == "withdrawn" else "dosed")
    if status == "withdrawn":
        assert res.reason.startswith("This trial, dosed or not (a re-screen if dosed), ")
        assert "dosed before" not in res.reason


def test_e5_another_study_fails_and_the_enrolment_in_this_trial_is_still_said(evaluate):
    rec = record(
        subject("on-study", "ResearchStudy/uc-msc-sle"), THIS_TRIAL,
        subject("on-study", "ResearchStudy/other", rid="rs2"),
        study("other", title="ABC-123 in SLE", phase={"coding": [{"system": PHASE, "code": "phase-2"}]}),
    )
    res = evaluate("E5", rec)
    assert res.outcome is Outcome.FAIL
    assert res.reason.startswith("On another study, ABC-123 in SLE ResearchStudy/other")
    assert " Already enrolled in this trial: " in res.reason
    assert res.evidence == ("ResearchSubject/rs2", "ResearchStudy/other")
    assert res.details["patient_note"].startswith("Already enrolled in this trial (ResearchSubject/rs1")


def test_e5_another_study_alone_gives_no_patient_note(evaluate):
    res = evaluate("E5", record(subject("candidate")))
    assert "patient_note" not in res.details and "this_trial" not in res.details


@pytest.mark.parametrize(
    ("status", "extra", "e5"),
    [
        ("off-study", {"period": {"start": "2025-09-01", "end": "2026-01-01"}}, Outcome.PASS),  # 90 d over
        ("follow-up", {"period": {"start": "2025-09-01", "end": "2026-04-01"}}, Outcome.UNKNOWN),
        ("on-study", {"period": {"start": "2025-09-01", "end": "2026-04-01"}}, Outcome.FAIL),
        ("withdrawn", {"actualArm": "UC-MSC 1e6/kg", "period": {"start": "2026-03-01"}}, Outcome.UNKNOWN),
        ("withdrawn", {"note": [{"text": "withdrew after the infusion"}]}, Outcome.UNKNOWN),
    ],
    ids=["off-study", "follow-up", "on-study-ended", "withdrawn-arm", "withdrawn-note"],
)
def test_this_trial_s_earlier_dose_is_msc_therapy_and_an_agent(evaluate, status, extra, e5):
    """A re-screened patient dosed in this single-dose UC-MSC trial received MSCs: E7 fails (within 52
    weeks), E5 reads the dose as any study's (90-day washout from the end of the period), E8 excepts it."""
    rec = record(subject(status, "ResearchStudy/uc-msc-sle", **extra), THIS_TRIAL)
    e7 = evaluate("E7", rec)
    assert e7.outcome is Outcome.FAIL, e7.reason
    assert "this trial" in e7.reason and "ResearchSubject/rs1" in e7.evidence
    res = evaluate("E5", rec)
    assert res.outcome is e5, res.reason
    if e5 is not Outcome.PASS:
        assert "This trial, dosed before (a re-screen)" in res.reason
        assert "ResearchSubject/rs1" in res.evidence
    e8 = evaluate("E8", rec)
    assert e8.outcome is Outcome.PASS, e8.reason
    assert "previous MSC therapy" in e8.reason and "excepted" in e8.reason


def test_this_trial_s_dose_over_52_weeks_ago_passes_e7_with_the_date(evaluate):
    old = {"period": {"start": "2024-09-01", "end": "2025-01-01"}}
    res = evaluate("E7", record(subject("off-study", "ResearchStudy/uc-msc-sle", **old), THIS_TRIAL))
    assert res.outcome is Outcome.PASS
    assert res.details["last_msc"] == "2025-01-01"


def test_this_trial_s_bare_withdrawal_is_a_question(evaluate):
    rec = record(subject("withdrawn", "ResearchStudy/uc-msc-sle"), THIS_TRIAL)
    assert evaluate("E7", rec).outcome is Outcome.UNKNOWN
    assert evaluate("E5", rec).outcome is Outcome.UNKNOWN


@pytest.mark.parametrize("written", ["NCT 06737380", "nct-06737380", "NCT\u201306737380", " Nct 0673-7380 "])
def test_this_trial_is_told_however_its_id_is_spaced_or_hyphenated(evaluate, written):
    rs = subject("on-study", "ResearchStudy/x")
    rs["study"]["display"] = f"{written} UC-MSC"
    res = evaluate("E5", record(rs))
    assert res.outcome is Outcome.PASS, res.reason
    assert "this trial" in res.reason
    assert is_this_study(f"{written} UC-MSC", ["NCT-06737380"])
    assert not is_this_study("NCT067373801", ["NCT06737380"])  # a longer number is another trial


# ------------------------------------------------------------------------------------ study kind (E5)


def kind_of(**resource: Any) -> KindReading:
    return Study({}, study(**resource)).kind()


ARM_TYPE = "http://hl7.org/fhir/research-study-arm-type"
R5_PHASE = "http://hl7.org/fhir/research-study-phase"
DESIGN = "http://hl7.org/fhir/study-design"


def coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


@pytest.mark.parametrize(
    ("resource", "observational", "interventional"),
    [
        ({"title": "SLE registry", "phase": {"text": "Phase 2"}},
         "'registry' in its name", "its phase 'Phase 2' (not a research-study-phase code)"),
        ({"title": "SLE registry", "phase": {"coding": [{"code": "phase-2"}]}},  # no system: not decisive
         "'registry' in its name", "its phase 'phase-2' (not a research-study-phase code)"),
        ({"title": "Observational study of ABC-123", "arm": [{"name": "ABC-123 10 mg",
                                                              "type": {"text": "Experimental"}}]},
         "'Observational' in its name", "an arm of type 'Experimental'"),
        ({"category": [{"text": "Observational"}],
          "arm": [{"name": "ABC-123 10 mg", "type": {"text": "Experimental"}}]},
         "'Observational' in its category", "an arm of type 'Experimental'"),
        ({"title": "SLE Registry sub-study: randomized, placebo-controlled trial of ABC-123"},
         "'Registry' in its name", "'randomized' in its name"),
        ({"title": "A Phase 2 trial of ABC-123 using the Lupus Registry platform"},
         "'Registry' in its name", "'Phase 2' in its name"),
        ({"title": "Lupus outcomes", "category": [{"text": "Observational"}],
          "keyword": [{"text": "interventional"}]},
         "'Observational' in its category", "'interventional' in its name"),
        ({"title": "SLE outcomes", "category": [{"text": "Observational"}, {"text": "Interventional"}]},
         "'Observational' in its category", "'Interventional' in its category"),
        ({"title": "Lupus cohort study", "primaryPurposeType": {"text": "Treatment"}},
         "'cohort study' in its name", "its primary purpose 'treatment' (not a code)"),
        # Codes that disagree: no code decides.
        ({"title": "ABC-123", "studyDesign": [coded(DESIGN, "SEVCO:01002")],
          "phase": coded(PHASE, "phase-2")},
         "its study design coded SEVCO:01002 (observational research)", "its phase coded phase-2"),
    ],
    ids=["registry-phase-text", "registry-phase-no-system", "observational-title-arm-text",
         "observational-category-arm-text", "registry-trial-words", "registry-phase-in-title",
         "category-keyword", "two-categories", "cohort-purpose-text", "codes-disagree"],
)
def test_conflicting_signs_that_no_code_settles_are_a_question(
    evaluate, resource, observational, interventional
):
    """Signs of both kinds and none decisive (free text only, or codes that disagree): the kind is
    unclear, and an on-study subject is a question for the coordinator, not an exclusion. The reason and
    the next step name the study; the reason names both sides."""
    reading = kind_of(**resource)
    assert reading.kind == "unclear" and reading.contested
    assert f"observational by {observational}" in reading.how and interventional in reading.how, reading.how
    res = evaluate("E5", record(subject(), study(**resource)))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert res.reason.startswith("On another study of unclear kind, ")
    assert "ResearchStudy/abc" in res.reason and reading.how in res.reason
    assert "if it gives an agent, the washout starts after the last study dose" in res.reason
    assert res.next_step and res.next_step.startswith("Ask whether ")
    assert "ResearchStudy/abc gives an investigational agent" in res.next_step
    assert res.evidence == ("ResearchSubject/rs1", "ResearchStudy/abc")
    assert res.details["washout_ends"] == "2026-08-30"  # the date still told, should it be one


@pytest.mark.parametrize(
    ("resource", "kind", "decided_by", "overruled"),
    [
        ({"title": "SLE registry", "phase": coded(PHASE, "phase-2")},
         "interventional", "its phase coded phase-2", "'registry' in its name"),
        ({"title": "SLE registry", "phase": coded(R5_PHASE, "phase-2")},
         "interventional", "its phase coded phase-2", "'registry' in its name"),
        ({"title": "Obinutuzumab dose-finding cohort study in lupus nephritis",
          "primaryPurposeType": coded(PURPOSE, "treatment")},
         "interventional", "its primary purpose coded treatment", "'cohort study' in its name"),
        ({"title": "Observational study of ABC-123", "arm": [{"type": coded(ARM_TYPE, "experimental")}]},
         "interventional", "an arm coded experimental", "'Observational' in its name"),
        ({"title": "Lupus registry", "studyDesign": [coded(DESIGN, "SEVCO:01001")]},
         "interventional", "its study design coded SEVCO:01001 (interventional research)",
         "'registry' in its name"),
        ({"title": "Randomized-cohort registry of SLE flares", "category": [coded(DESIGN, "SEVCO:01002")]},
         "observational", "its study design coded SEVCO:01002 (observational research)",
         "'Randomized' in its name"),
    ],
    ids=["phase-r4", "phase-r5", "purpose", "arm-type-r5", "design-interventional", "design-observational"],
)
def test_a_standard_code_decides_over_free_text(evaluate, resource, kind, decided_by, overruled):
    """Coded elements (research-study-phase, -prim-purp-type, -arm-type, study-design) are FHIR's own
    statement of the study's kind: they decide over titles, category text and keywords, and the reason
    says what they decided over."""
    reading = kind_of(**resource)
    assert (reading.kind, reading.contested) == (kind, True)
    assert reading.how == f"by {decided_by} (a code decides over {overruled})"
    res = evaluate("E5", record(subject(), study(**resource)))
    if kind == "interventional":
        assert res.outcome is Outcome.FAIL, res.reason
        assert f"; interventional {reading.how})" in res.reason
    else:
        assert res.outcome is Outcome.PASS, res.reason
        assert f"(observational study {reading.how}, no agent given)" in res.reason


def test_an_unclear_study_whose_washout_is_over_passes(evaluate):
    """Unclear or not, a study period that ended more than 90 days ago is washed out."""
    resource = study(title="SLE registry", phase={"text": "Phase 2"})
    old = subject(period={"start": "2025-01-01", "end": "2026-01-01"})
    res = evaluate("E5", record(old, resource))
    assert res.outcome is Outcome.PASS, res.reason
    assert "washout ended 2026-04-01" in res.reason
    recent = subject(period={"start": "2025-01-01", "end": "2026-05-01"})
    res = evaluate("E5", record(recent, resource))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "if it gives an agent, washout ends 2026-07-30" in res.reason


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ({"title": "ABC-123 in SLE", "arm": [{"type": {"coding": [{"code": "placebo-comparator"}]}}]},
         "interventional"),
        ({"title": "ABC-123 in SLE",
          "primaryPurposeType": {"coding": [{"system": PURPOSE, "code": "supportive-care"}]}},
         "interventional"),
        ({"title": "Open-label extension of ABC-123"}, "interventional"),
        ({"title": "ABC-123 Phase IIb in SLE"}, "interventional"),
        ({"title": "SLE outcomes registry", "arm": [{"type": {"text": "No Intervention"}}]}, "observational"),
        ({"title": "Lupus cohort study", "category": [{"text": "Observational"}]}, "observational"),
        ({"title": "Lupus registry (observational cohort)"}, "observational"),
        ({"title": "Study LUP-042"}, None),
    ],
    ids=[
        "placebo-arm", "purpose", "open-label", "phase-iib", "no-intervention-arm", "observational-category",
        "observational-name", "untold",
    ],
)
def test_study_kind(resource, expected):
    assert kind_of(**resource)[0] == expected
