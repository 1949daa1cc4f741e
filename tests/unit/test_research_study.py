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

from fhirscreen.criteria._research import Study, is_this_study
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
from tests.builders import record
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


def test_the_description_is_not_read_for_products(evaluate):
    """Prose may name a product only to exclude it: not a study of that product."""
    resolved = study(
        title="Anifrolumab in lupus nephritis", description="Prior MSC or CAR-T therapy excluded."
    )
    for criterion in ("E7", "E8"):
        res = evaluate(criterion, record(subject(), resolved))
        assert res.outcome is Outcome.PASS, res.reason
        assert "not in the data" not in res.reason  # the study was read


def test_e5_an_observational_study_by_its_category_is_not_an_agent(evaluate):
    assert evaluate("E5", record(subject())).outcome is Outcome.FAIL  # an unknown study counts
    registry = study(title="SLE outcomes 2026", category=[{"text": "Observational"}])
    res = evaluate("E5", record(subject(), registry))
    assert res.outcome is Outcome.PASS
    assert "SLE outcomes 2026 ResearchStudy/abc (observational study by its category" in res.reason


@pytest.mark.parametrize(
    "resolved",
    [
        study(title="SLE registry", phase={"coding": [{"system": PHASE, "code": "phase-3"}]}),
        study(title="SLE outcomes", category=[{"text": "Observational"}, {"text": "Interventional"}]),
    ],
    ids=["phase", "category"],
)
def test_e5_any_sign_of_an_intervention_wins(evaluate, resolved):
    res = evaluate("E5", record(subject(), resolved))
    assert res.outcome is Outcome.FAIL
    assert "ResearchStudy/abc" in res.reason
    assert res.evidence == ("ResearchSubject/rs1", "ResearchStudy/abc")


def test_e5_a_non_interventional_study_is_observational(evaluate):
    res = evaluate("E5", record(subject(), study(title="Non-interventional study of belimumab use")))
    assert res.outcome is Outcome.PASS
    assert "observational study by its name" in res.reason


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
    assert "asked under the MSC washout criterion" in e5.reason
    assert evaluate("E8", rec).outcome is Outcome.PASS


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


def kind_of(**resource: Any) -> tuple[str | None, str]:
    return Study({}, study(**resource)).kind()


@pytest.mark.parametrize(
    ("resource", "how"),
    [
        ({"category": [{"text": "Observational"}],
          "arm": [{"name": "ABC-123 10 mg", "type": {"text": "Experimental"}}]},
         "an arm of type Experimental"),
        ({"title": "SLE Registry sub-study: randomized, placebo-controlled trial of ABC-123"},
         "'randomized'"),
        ({"title": "Obinutuzumab dose-finding cohort study in lupus nephritis",
          "primaryPurposeType": {"coding": [{"system": PURPOSE, "code": "treatment"}]}},
         "primary purpose treatment"),
        ({"title": "A Phase 2 trial of ABC-123 using the Lupus Registry platform"}, "'Phase 2' in its name"),
        ({"title": "Lupus outcomes", "category": [{"text": "Observational"}],
          "keyword": [{"text": "interventional"}]}, "interventional by its name"),
    ],
    ids=["arm-type", "trial-words", "primary-purpose", "phase-in-title", "keyword"],
)
def test_observational_and_interventional_signs_conflict_so_the_kind_is_not_told(evaluate, resource, how):
    """Any sign of an intervention makes a study interventional or not told, never observational; not told
    is counted as another study (an on-study subject fails) and the reason names the conflict."""
    kind, told = kind_of(**resource)
    assert kind is None and how in told and told.startswith("observational by"), told
    res = evaluate("E5", record(subject(), study(**resource)))
    assert res.outcome is Outcome.FAIL, res.reason
    assert "counted as another interventional study" in res.reason


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
