"""ResearchSubject status decides exposure for E5, E7 and E8 alike (criteria/_research.py)."""

from __future__ import annotations

from typing import Any

import pytest

from fhirscreen.criteria.base import Outcome
from tests.builders import record


def subject(
    status: str,
    display: str = "NCT01234567 anifrolumab-like study drug",
    *,
    start: str | None = "2026-03-01",
    end: str | None = None,
    rid: str = "rs1",
    **extra: Any,
) -> dict[str, Any]:
    rs: dict[str, Any] = {
        "resourceType": "ResearchSubject",
        "id": rid,
        "status": status,
        "study": {"reference": "ResearchStudy/other", "display": display},
        "individual": {"reference": "Patient/p1"},
    }
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        rs["period"] = period
    rs.update(extra)
    return rs


MSC_STUDY = "Umbilical cord mesenchymal stem cell infusion for lupus"
CAR_T_STUDY = "Anti-CD19 CAR-T cell therapy in refractory SLE"


@pytest.mark.parametrize(
    "status", ["candidate", "potential-candidate", "screening", "eligible", "ineligible", "not-registered"]
)
@pytest.mark.parametrize(("criterion", "study"), [("E5", None), ("E7", MSC_STUDY), ("E8", CAR_T_STUDY)])
def test_recruitment_statuses_are_not_exposure(evaluate, status, criterion, study):
    rs = subject(status, study) if study else subject(status)
    res = evaluate(criterion, record(rs))
    assert res.outcome is Outcome.PASS, res.reason


@pytest.mark.parametrize(("criterion", "study"), [("E5", None), ("E7", MSC_STUDY), ("E8", CAR_T_STUDY)])
def test_on_study_intervention_is_exposure(evaluate, criterion, study):
    rs = subject("on-study-intervention", study) if study else subject("on-study-intervention")
    res = evaluate(criterion, record(rs))
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("ResearchSubject/rs1",)


@pytest.mark.parametrize(("criterion", "study"), [("E5", None), ("E7", MSC_STUDY), ("E8", CAR_T_STUDY)])
def test_withdrawal_after_dosing_is_still_exposure(evaluate, criterion, study):
    """A withdrawal after the first dose (the arm actually received is recorded) is not dropped at load."""
    kw = {"actualArm": "UC-MSC 1e6/kg", "end": "2026-04-15"}
    rs = subject("withdrawn", study, **kw) if study else subject("withdrawn", **kw)
    res = evaluate(criterion, record(rs))
    assert res.outcome in (Outcome.FAIL, Outcome.UNKNOWN)  # E5: last dose unknown, washout may run
    assert res.outcome is not Outcome.PASS
    if criterion != "E5":
        assert res.outcome is Outcome.FAIL
        assert "withdrawn after starting arm" in res.reason


@pytest.mark.parametrize(("criterion", "study"), [("E5", None), ("E7", MSC_STUDY), ("E8", CAR_T_STUDY)])
def test_bare_withdrawn_is_unknown(evaluate, criterion, study):
    rs = subject("withdrawn", study) if study else subject("withdrawn")
    res = evaluate(criterion, record(rs))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "withdrawn" in res.reason
    assert res.next_step


@pytest.mark.parametrize(("criterion", "study"), [("E5", None), ("E7", MSC_STUDY), ("E8", CAR_T_STUDY)])
def test_withdrawn_before_intervention_is_not_exposure(evaluate, criterion, study):
    why = [{"url": "http://hospital.example/why", "valueString": "Withdrawn before randomisation"}]
    rs = subject("withdrawn", study, extension=why) if study else subject("withdrawn", extension=why)
    assert evaluate(criterion, record(rs)).outcome is Outcome.PASS


def test_e5_observational_registry_is_not_an_agent(evaluate):
    rs = subject("on-study", "Lupus registry (observational cohort)")
    res = evaluate("E5", record(rs))
    assert res.outcome is Outcome.PASS
    assert "observational" in res.reason


def test_e5_dose_escalation_cohort_is_still_an_interventional_study(evaluate):
    res = evaluate("E5", record(subject("on-study", "Phase 1 dose-escalation cohort 3, drug XY-123")))
    assert res.outcome is Outcome.FAIL


@pytest.mark.parametrize(("criterion", "study"), [("E7", MSC_STUDY), ("E8", CAR_T_STUDY)])
def test_on_study_from_after_the_screening_date_is_a_question(evaluate, criterion, study):
    """As pending-on-study: the therapy may be given before Day 0."""
    res = evaluate(criterion, record(subject("on-study", study, start="2026-06-10")))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert res.evidence == ("ResearchSubject/rs1",)
