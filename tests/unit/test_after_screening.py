"""Records dated after the screening date are not evidence at that date, however the date is written.

A Condition's onset[x] and a Procedure's performed[x] may hold their date as dateTime, Period or a string
("onsetString": "2026-07-01"). Every criterion reads them by one rule (fhir/resources.py ``onset_span``,
``procedure_span``): a date written as a string is a date, so a cancer, a CAR-T infusion or an infection
dated after the screening date does not count (a re-screen with --as-of in the past, or a date entered
wrong), and one dated before it counts with its date rather than as an undated record.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from datetime import date, timedelta
from typing import Any

import pytest

from fhirscreen.criteria.base import CriterionResult, Outcome
from fhirscreen.paths import sample_data_dir
from fhirscreen.pipeline import load_population
from fhirscreen.quality import DataQuality
from fhirscreen.record import PatientRecord, PopulationBuilder
from fhirscreen.screening import screen_patient
from fhirscreen.sources.files import FileSource
from fhirscreen.trial.loader import Trial
from tests.builders import (
    AS_OF,
    concept,
    condition,
    medication_request,
    medication_statement,
    procedure,
    record,
)

BEFORE = "2026-05-01"  # a month before the screening date (AS_OF 2026-06-01)
AFTER = "2026-07-01"  # a month after it
LOCAL = "http://hospital.example/procedures"

# (criterion, Condition code, outcome when dated before the screening date)
CONDITIONS = [
    ("E12", ("icd10cm", "C50.911"), Outcome.FAIL),  # breast cancer
    ("E8", ("icd10cm", "Z92.850"), Outcome.FAIL),  # history of CAR-T therapy
    ("E10", ("icd10cm", "B20"), Outcome.FAIL),  # HIV disease
    ("E11", ("icd10cm", "J18.9"), Outcome.FAIL),  # pneumonia
    ("E13", ("snomed", "72892002"), Outcome.FAIL),  # normal pregnancy
    ("E2", ("icd10cm", "N18.6"), Outcome.FAIL),  # end-stage renal disease
    ("E7", ("icd10cm", "Z92.858"), Outcome.UNKNOWN),  # history of other cellular therapy
]
# (criterion, Procedure code and text, outcome when dated before the screening date)
PROCEDURES = [
    ("E8", ("cpt", "38228", None), Outcome.FAIL),  # CAR-T administration
    ("E7", (LOCAL, "x", "UC-MSC infusion"), Outcome.FAIL),
    ("E6", ("hcpcs", "J9312", None), Outcome.FAIL),  # rituximab infusion
    ("E2", ("snomed", "265764009", None), Outcome.FAIL),  # renal dialysis
    ("E9", ("snomed", "609588000", None), Outcome.FAIL),  # total knee replacement
]


def onset(when: str) -> dict[str, dict[str, Any]]:
    """Every way a Condition can date its start, each with ``when``."""
    return {
        "onsetDateTime": {"onsetDateTime": when},
        "onsetPeriod": {"onsetPeriod": {"start": when}},
        "onsetString": {"onsetString": when},
        "recordedDate": {"recordedDate": when},  # no onset[x]: when it was recorded
    }


def performed(when: str) -> dict[str, dict[str, Any]]:
    return {
        "performedDateTime": {"performedDateTime": when},
        "performedPeriod": {"performedPeriod": {"start": when, "end": when}},
        "performedString": {"performedString": when},
    }


def condition_cases() -> list[Any]:
    return [
        pytest.param(cid, system, code, encoding, before, id=f"{cid}-{code}-{encoding}")
        for cid, (system, code), before in CONDITIONS
        for encoding in onset(AFTER)
    ]


def procedure_cases() -> list[Any]:
    return [
        pytest.param(cid, system, code, text, encoding, before, id=f"{cid}-{code}-{encoding}")
        for cid, (system, code, text), before in PROCEDURES
        for encoding in performed(AFTER)
    ]


Screen = Callable[..., CriterionResult]


@pytest.mark.parametrize(("cid", "system", "code", "encoding", "before"), condition_cases())
def test_a_condition_dated_after_the_screening_date_is_not_evidence(
    screen: Screen, cid: str, system: str, code: str, encoding: str, before: Outcome
) -> None:
    nothing = screen(cid, record())
    later = screen(cid, record(condition(system, code, None, id="c", **onset(AFTER)[encoding])))
    assert later.outcome is nothing.outcome, later.reason
    assert "Condition/c" not in later.evidence

    earlier = screen(cid, record(condition(system, code, None, id="c", **onset(BEFORE)[encoding])))
    assert earlier.outcome is before, earlier.reason
    assert "Condition/c" in earlier.evidence
    # Read with its date, not as an undated entry.
    assert BEFORE in earlier.reason and "no onset date" not in earlier.reason, earlier.reason


@pytest.mark.parametrize(("cid", "system", "code", "text", "encoding", "before"), procedure_cases())
def test_a_procedure_dated_after_the_screening_date_is_not_evidence(
    screen: Screen, cid: str, system: str, code: str, text: str | None, encoding: str, before: Outcome
) -> None:
    def done(when: str) -> dict[str, Any]:
        return procedure(system, code, None, text=text, id="p", **performed(when)[encoding])

    nothing = screen(cid, record())
    later = screen(cid, record(done(AFTER)))
    assert later.outcome is nothing.outcome, later.reason
    assert "Procedure/p" not in later.evidence

    earlier = screen(cid, record(done(BEFORE)))
    assert earlier.outcome is before, earlier.reason
    assert "Procedure/p" in earlier.evidence
    assert "undated" not in earlier.reason and "without a date" not in earlier.reason, earlier.reason


def test_a_delivery_dated_by_a_string_ends_a_pregnancy(screen: Screen) -> None:
    """E13 reads the end of a pregnancy by the same rule: a delivery whose performedString holds a date."""
    pregnant = condition("snomed", "72892002", "2025-09-01")  # never closed
    delivery = procedure("snomed", "11466000", None, id="end", performedString="2026-05-22")
    res = screen("E13", record(pregnant, delivery))
    assert res.outcome is Outcome.PASS, res.reason
    assert "2026-05-22" in res.reason and res.evidence == ("Procedure/end",)
    later = procedure("snomed", "11466000", None, id="end", performedString=AFTER)
    assert screen("E13", record(pregnant, later)).outcome is Outcome.FAIL


def test_a_partial_onset_string_is_read_over_its_range(screen: Screen) -> None:
    """A partial date "2026-06" may mean a day before the screening date or after it: unknown, as for a
    partial onsetDateTime."""
    res = screen("E12", record(condition("icd10cm", "C50.911", None, id="c", onsetString="2026-06")))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "2026-06" in res.reason


# ------------------------------------------------- a period with an end only: "by 2026-05-01", start unknown

LONG_BEFORE = "2020-01-01"  # before every window


def _end_only_condition(system: str, code: str, end: str) -> dict[str, Any]:
    return condition(system, code, None, id="c", onsetPeriod={"end": end})


def _end_only_procedure(system: str, code: str, text: str | None, end: str) -> dict[str, Any]:
    return procedure(system, code, None, text=text, id="p", performedPeriod={"end": end})


# Conditions whose onset "by" a day inside the window may have been before it: unknown (the dated onset
# is unknown too for E7's history code, a question either way).
_POSSIBLY_IN_WINDOW = {"E11", "E7", "E13"}


@pytest.mark.parametrize(("cid", "system", "code", "before"), [c[:1] + c[1] + c[2:] for c in CONDITIONS],
                         ids=[f"{c[0]}-{c[1][1]}" for c in CONDITIONS])
def test_a_condition_whose_onset_period_has_only_an_end_is_dated_by_it(
    screen: Screen, cid: str, system: str, code: str, before: Outcome
) -> None:
    """onsetPeriod {end} says the condition began by that day: not an undated entry. Long before every
    window it reads as history (as a dated onset that day); by a day in the window it is that outcome, or
    unknown where the window decides (the start may be before it); by a day after the screening date it
    may have begun before it: unknown, never a silent pass."""
    nothing = screen(cid, record())
    dated = screen(cid, record(condition(system, code, LONG_BEFORE, id="c")))
    old = screen(cid, record(_end_only_condition(system, code, LONG_BEFORE)))
    assert old.outcome is dated.outcome, old.reason
    assert "Condition/c" in old.evidence or old.outcome is nothing.outcome
    assert "no onset date" not in old.reason and "undated" not in old.reason, old.reason

    recent = screen(cid, record(_end_only_condition(system, code, BEFORE)))
    expected = Outcome.UNKNOWN if cid in _POSSIBLY_IN_WINDOW else before
    assert recent.outcome is expected, recent.reason
    assert "Condition/c" in recent.evidence
    assert "no onset date" not in recent.reason and "undated" not in recent.reason, recent.reason

    later = screen(cid, record(_end_only_condition(system, code, AFTER)))
    assert later.outcome is Outcome.UNKNOWN, later.reason
    assert "Condition/c" in later.evidence and "ended by 2026-07-01" in later.reason


@pytest.mark.parametrize(("cid", "system", "code", "text", "before"),
                         [c[:1] + c[1] + c[2:] for c in PROCEDURES], ids=[c[0] for c in PROCEDURES])
def test_a_procedure_whose_performed_period_has_only_an_end(
    screen: Screen, cid: str, system: str, code: str, text: str | None, before: Outcome
) -> None:
    """performedPeriod {end}: under way up to that day. Ended in the window: in it (washouts count from the
    last day); long before: history, as a procedure that day; ended after the screening date: it may have
    been under way before it, unknown (it was a silent pass, as if done after screening)."""
    dated = screen(cid, record(procedure(system, code, LONG_BEFORE, text=text, id="p")))
    old = screen(cid, record(_end_only_procedure(system, code, text, LONG_BEFORE)))
    assert old.outcome is dated.outcome, old.reason
    recent = screen(cid, record(_end_only_procedure(system, code, text, BEFORE)))
    assert recent.outcome is before, recent.reason
    assert "Procedure/p" in recent.evidence
    later = screen(cid, record(_end_only_procedure(system, code, text, AFTER)))
    assert later.outcome is Outcome.UNKNOWN, later.reason
    assert "Procedure/p" in later.evidence and "ended by 2026-07-01" in later.reason
    assert later.next_step is not None and "Procedure/p" in later.next_step


def test_a_medication_taken_until_a_day_with_no_start_is_read_over_its_possible_start(screen: Screen) -> None:
    """effectivePeriod {end}: taken until that day, since an unrecorded day. A steroid course for asthma
    "until" last week may have lasted more than 14 days (E1: unknown, it read as one day); an MSC product
    "until" after the screening date may have been given before it (E7: unknown, it was a silent pass)."""
    asthma = concept("icd10cm", "J45.909", "Unspecified asthma, uncomplicated")
    steroid = medication_statement("8640", None, "2026-05-25", status="completed", id="ms",
                                   display="predniSONE 20 MG Oral Tablet", reasonCode=[asthma])
    res = screen("E1", record(steroid))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "MedicationStatement/ms" in res.evidence
    msc = medication_statement("x", None, AFTER, system="http://hospital.example/drugs", status="completed",
                               display="UC-MSC infusion", id="msc")
    res = screen("E7", record(msc))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "MedicationStatement/msc" in res.evidence


def _course_until(code: str, display: str, end: str, *, system: str = "rxnorm", authored: str | None = None,
                  **extra: Any) -> dict[str, Any]:
    """An order whose dosage timing gives only the day its course ends (``boundsPeriod`` {end})."""
    order = medication_request(
        code, authored, system=system, display=display, dose=20, bounds_end=end, id="mr", **extra
    )
    if authored is None:
        del order["authoredOn"]
    return order


def test_a_course_bounded_by_an_end_only_is_read_over_its_possible_start(screen: Screen) -> None:
    """dosage.timing.repeat.boundsPeriod {end}: the course ran until that day, from a day not recorded. An
    order with no other date was read as undated or not yet given: a CAR-T or MSC product "until" after the
    screening date was a silent pass (E8, E7), a steroid course for asthma "until" last week too (E1)."""
    car_t = _course_until("x", "Carvykti", AFTER, system="http://hospital.example/drugs")
    res = screen("E8", record(car_t))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "MedicationRequest/mr" in res.evidence and "ended by 2026-07-01" in res.reason
    msc = _course_until("x", "UC-MSC infusion", AFTER, system="http://hospital.example/drugs")
    assert screen("E7", record(msc)).outcome is Outcome.UNKNOWN
    asthma = concept("icd10cm", "J45.909", "Unspecified asthma, uncomplicated")
    steroid = _course_until("8640", "predniSONE 20 MG Oral Tablet", "2026-05-25", reasonCode=[asthma])
    res = screen("E1", record(steroid))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "MedicationRequest/mr" in res.evidence
    # An order's course does not start before the order was written: with ``authoredOn``, the start is
    # any day from it to the end, so a recent order stays recent (I5: under 12 weeks, as before).
    hcq = _course_until("5521", "hydroxychloroquine", AFTER, authored="2026-05-20")
    res = screen("I5", record(hcq))
    assert res.outcome is Outcome.FAIL, res.reason
    asthma = concept("icd10cm", "J45.909", "Unspecified asthma, uncomplicated")
    short = _course_until("8640", "predniSONE 20 MG Oral Tablet", "2026-05-25", authored="2026-05-20",
                          reasonCode=[asthma])
    assert screen("E1", record(short)).outcome is Outcome.PASS


def _study_subject(status: str, end: str, **extra: Any) -> list[dict[str, Any]]:
    subject = {
        "resourceType": "ResearchSubject", "id": "rs", "status": status, "period": {"end": end},
        "study": {"reference": "ResearchStudy/car-t"}, "individual": {"reference": "Patient/p1"}, **extra,
    }
    study = {"resourceType": "ResearchStudy", "id": "car-t", "status": "completed",
             "title": "Anti-CD19 CAR-T cell therapy in refractory SLE"}
    return [subject, study]


def test_a_study_participation_with_an_end_only_is_read_over_its_possible_start(screen: Screen) -> None:
    """ResearchSubject.period {end}: on the study until that day, since a day not recorded. One withdrawn
    after being assigned an arm, whose participation ended before screening, had started it (E8: as a
    dated start before screening reads; it was unknown, as if it might not have started). One on study
    until after the screening date may have joined before it or after: said so."""
    subject, study = _study_subject("withdrawn", BEFORE, assignedArm="CAR-T")
    withdrawn = screen("E8", record(subject, study))
    dated = screen("E8", record({**subject, "period": {"start": LONG_BEFORE, "end": BEFORE}}, study))
    assert withdrawn.outcome is dated.outcome is Outcome.FAIL, withdrawn.reason
    later = screen("E8", record(*_study_subject("on-study", AFTER)))
    assert later.outcome is Outcome.UNKNOWN, later.reason
    assert "ResearchSubject/rs" in later.evidence and "ended by 2026-07-01" in later.reason


# ------------------------------------------------------------------------ the whole class, on sample data

# Dated after the screening date on purpose: plans, and enrolments in a study from a later day.
_PLANS = frozenset({"ServiceRequest", "CarePlan", "Appointment", "ResearchSubject"})
_NOT_DONE = frozenset({"preparation", "on-hold", "in-progress"})


def _dates(node: object) -> Iterator[date]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key not in ("birthDate", "lastUpdated"):
                yield from _dates(value)
    elif isinstance(node, list):
        for value in node:
            yield from _dates(value)
    elif isinstance(node, str) and len(node) >= 10 and node[4] == "-" and node[7] == "-":
        with contextlib.suppress(ValueError):
            yield date.fromisoformat(node[:10])


def _moved(node: Any, by: timedelta) -> Any:
    """``node`` with every full date moved by ``by`` (partial dates kept: they are a year or month)."""
    if isinstance(node, Mapping):
        return {k: v if k == "lastUpdated" else _moved(v, by) for k, v in node.items()}
    if isinstance(node, list):
        return [_moved(v, by) for v in node]
    if isinstance(node, str) and len(node) >= 10 and node[4] == "-" and node[7] == "-":
        try:
            return (date.fromisoformat(node[:10]) + by).isoformat() + node[10:]
        except ValueError:
            return node
    return node


def _as_strings(resource: dict[str, Any]) -> dict[str, Any]:
    """onsetDateTime / performedDateTime written as onsetString / performedString."""
    for prefix in ("onset", "performed"):
        if isinstance(resource.get(prefix + "DateTime"), str):
            resource[prefix + "String"] = resource.pop(prefix + "DateTime")[:10]
    return resource


def _later_copies(population: Mapping[str, PatientRecord], pid: str, strings: bool) -> list[dict[str, Any]]:
    """Every sample patient's clinical records as ``pid``'s, each moved to start 3 days after the
    screening date (the plans left out)."""
    out = []
    for rec in population.values():
        for rtype, resources in rec.resources.items():
            if rtype in _PLANS:
                continue
            for res in resources:
                if rtype == "Procedure" and res.get("status") in _NOT_DONE:
                    continue
                days = list(_dates(res))
                if not days:
                    continue
                copy = _moved(res, AS_OF - min(days) + timedelta(days=3))
                copy["id"] = f"later-{len(out)}"
                for link in ("subject", "patient", "individual"):
                    if isinstance(copy.get(link), Mapping):
                        copy[link] = {"reference": f"Patient/{pid}"}
                out.append(_as_strings(copy) if strings else copy)
    return out


@pytest.mark.parametrize("strings", [False, True], ids=["dateTime", "string"])
def test_every_sample_record_moved_after_the_screening_date_leaves_an_eligible_patient_eligible(
    trial: Trial, strings: bool
) -> None:
    """Cancer, CAR-T, HIV, dialysis, infections, steroids, biologics... from every sample patient, dated
    after the screening date and given to an eligible patient: nothing changes."""
    population = load_population(FileSource(sample_data_dir()), trial).records
    pid = "sle-eligible-01"
    held = population[pid]
    builder = PopulationBuilder(DataQuality())
    for res in [held.patient, *(r for rs in held.resources.values() for r in rs)]:
        builder.add(res, "sample")
    for rec in population.values():  # the Medications and studies the copies refer to
        for shared in [*rec.medications.values(), *rec.studies.values()]:
            builder.add(dict(shared), "sample")
    copies = _later_copies(population, pid, strings)
    assert len(copies) > 300
    for res in copies:
        builder.add(res, "later")
    with_later = builder.build().records[pid]
    assert sum(len(rs) for rs in with_later.resources.values()) > len(copies)
    before = screen_patient(held, trial, AS_OF)
    after = screen_patient(with_later, trial, AS_OF)
    assert before.status == "eligible"
    changed = {
        cid: r.reason for cid, r in after.results.items() if r.outcome is not before.results[cid].outcome
    }
    assert not changed
    assert after.status == "eligible"
