"""E9: major surgery within 90 days before Baseline (Day 0), or major surgery planned during the study.

"Major" has no single code (criteria-codes.md E9, Appendix A #19). A procedure is:
* major when a coding is in the trial file's major list (codes only: text never makes surgery major);
* minor when a coding or its text is in the minor list (biopsies, endoscopy, injections, dental work,
  dialysis, lines) - minor procedures never exclude, whatever else matches;
* possibly major when it is general anaesthesia (CPT 00100-01999 or SNOMED general-anaesthesia codes)
  not on the same day as a minor procedure, or when its text says surgery/-ectomy and nothing above
  decided it: unknown, for the coordinator to check;
* otherwise not surgery (screenings, education, imaging... Synthea emits hundreds of these).
Baseline is unknown at screening, so the window is counted back from the screening date
(conservative, criteria-codes.md 0.3) and the date the washout ends is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhirscreen.criteria import _events as ev
from fhirscreen.criteria import _plans
from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, ValueSetRef, evaluator, result
from fhirscreen.fhir.codes import CPT, ValueSet, codings
from fhirscreen.fhir.dates import days_before
from fhirscreen.fhir.resources import procedure_span
from fhirscreen.record import PatientRecord

MAJOR, ANAESTHESIA, POSSIBLE = "major", "anaesthesia", "possible"


class SurgeryParams(Params):
    major: ValueSetRef
    minor: ValueSetRef
    anaesthesia: ValueSetRef | None = None
    # CPT anaesthesia services are the numeric range 00100-01999 (criteria-codes.json E9).
    anaesthesia_cpt_range: tuple[int, int] | None = (100, 1999)
    possible_major: ValueSetRef | None = None  # text patterns that make an unlisted procedure "unknown"
    window_days: int = 90


@dataclass(frozen=True)
class _Rules:
    major: ValueSet
    minor: ValueSet
    anaesthesia: ValueSet | None
    cpt_range: tuple[int, int] | None
    possible: ValueSet | None

    def anaesthesia_label(self, concept: Mapping[str, Any] | None) -> str | None:
        if self.anaesthesia is not None and (label := ev.code_match(self.anaesthesia, concept)):
            return label
        if self.cpt_range is not None:
            low, high = self.cpt_range
            for system, code, display in codings(concept):
                if system == CPT and code.isdigit() and len(code) == 5 and low <= int(code) <= high:
                    return display or f"anaesthesia (CPT {code})"
        return None

    def classify(self, concept: Mapping[str, Any] | None) -> tuple[str, str] | None:
        """(kind, label) for a procedure code, or None for minor/non-surgical procedures."""
        label = ev.code_match(self.major, concept)
        if label is not None:
            return MAJOR, label
        if self.minor.match(concept) is not None:
            return None
        label = self.anaesthesia_label(concept)
        if label is not None:
            return ANAESTHESIA, label
        if self.possible is not None and (label := self.possible.match(concept)) is not None:
            return POSSIBLE, label
        return None


@dataclass
class _Sorted:
    recent: list[ev.Event] = field(default_factory=list)  # major, in the window
    recent_possible: list[ev.Event] = field(default_factory=list)
    planned: list[ev.Event] = field(default_factory=list)  # major, not done yet, dated after screening
    planned_unsure: list[ev.Event] = field(default_factory=list)  # planned without a later date, or possible
    older: list[ev.Event] = field(default_factory=list)
    undated: list[ev.Event] = field(default_factory=list)
    # ServiceRequests, CarePlan activities, Appointments: (plan, label, why it is only a question)
    plan_orders: list[tuple[_plans.Plan, str]] = field(default_factory=list)
    plan_questions: list[tuple[_plans.Plan, str, str]] = field(default_factory=list)


def _minor_days(record: PatientRecord, minor: ValueSet) -> set[date]:
    """Days with a minor procedure: anaesthesia on such a day is taken to be for it."""
    days: set[date] = set()
    for proc in record.of_type("Procedure"):
        span = procedure_span(proc)
        if span is not None and span.start is not None and minor.match(proc.get("code")) is not None:
            days.add(span.start)
    return days


def _sort(record: PatientRecord, ctx: Context, rules: _Rules, first: date) -> _Sorted:
    as_of = ctx.as_of
    out = _Sorted()
    minor_days = _minor_days(record, rules.minor)
    for proc in record.of_type("Procedure"):
        found = rules.classify(proc.get("code"))
        if found is None:
            continue
        kind, label = found
        event = ev.Event(proc, label, procedure_span(proc))
        if kind == ANAESTHESIA and event.first_day in minor_days:
            continue
        if event.status == "unknown" and kind == MAJOR:
            kind = POSSIBLE  # recorded, but whether it was done is unknown: a question, not a fail
        if ev.is_planned(event, as_of):
            ahead = ev.is_planned_ahead(event, as_of)
            (out.planned if kind == MAJOR and ahead else out.planned_unsure).append(event)
        elif event.starts_after(as_of):
            continue  # recorded as done after the screening date: not known at screening
        elif event.span is None:
            if kind == MAJOR:
                out.undated.append(event)
        elif event.in_window(first, as_of):
            (out.recent if kind == MAJOR else out.recent_possible).append(event)
        elif kind == MAJOR:
            out.older.append(event)
    _sort_plans(record, as_of, rules, first, out)
    return out


def _sort_plans(record: PatientRecord, as_of: date, rules: _Rules, first: date, out: _Sorted) -> None:
    """Planned operations recorded as orders, care-plan activities or appointments (see _plans)."""
    for plan in _plans.plans(record):
        found = next((f for c in plan.concepts if (f := rules.classify(c)) is not None), None)
        if found is None:
            continue
        kind, label = found
        if kind != MAJOR and plan.resource.get("resourceType") == "CarePlan":
            # Care-plan activities are mostly regimes ("Transplantation of kidney regime", "Post-surgical
            # wound care"): only a coded major operation counts, never a surgical-sounding word.
            continue
        ahead, undated = plan.is_ahead(as_of), plan.span is None
        if kind == MAJOR and plan.firm and ahead:
            out.plan_orders.append((plan, label))
        elif kind == MAJOR and plan.firm and undated:
            out.plan_questions.append((plan, label, "ordered without a date"))
        elif kind == MAJOR and (ahead or undated):
            out.plan_questions.append((plan, label, "proposed or on hold, not yet a firm order"))
        elif ahead:
            # Only dated plans raise the question: undated orders named "surgical ..." are mostly
            # standing lab or pathology orders.
            out.plan_questions.append((plan, label, "may be major surgery"))
        elif kind == MAJOR and plan.firm and plan.span is not None and plan.span.overlaps(first, as_of):
            out.plan_questions.append((plan, label, "ordered for a day in the window; no Procedure"))


def _describe_plans(items: list[tuple[_plans.Plan, str]] | list[tuple[_plans.Plan, str, str]]) -> str:
    parts = []
    for item in items[:3]:
        plan, label = item[0], item[1]
        why = f"; {item[2]}" if len(item) > 2 else ""
        parts.append(f"{label} ({plan.state}; {plan.when()}{why})")
    more = len(items) - 3
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _newest_first(events: list[ev.Event], as_of: date) -> list[ev.Event]:
    return sorted(events, key=lambda e: e.last_day_by(as_of) or e.first_day or date.min, reverse=True)


@evaluator("major_surgery", SurgeryParams)
def major_surgery(record: PatientRecord, ctx: Context, params: SurgeryParams) -> CriterionResult:
    """Major surgery within N days before screening, or planned after it; minor procedures never count."""
    as_of = ctx.as_of
    days = params.window_days
    first = days_before(as_of, days)
    rules = _Rules(
        ctx.vs(params.major), ctx.vs(params.minor),
        ctx.vs(params.anaesthesia) if params.anaesthesia else None,
        params.anaesthesia_cpt_range,
        ctx.vs(params.possible_major) if params.possible_major else None,
    )
    s = _sort(record, ctx, rules, first)
    details: dict[str, Any] = {"window_start": first.isoformat()}
    fail: list[str] = []
    evidence: list[str] = []
    if s.recent:
        recent = _newest_first(s.recent, as_of)
        last = recent[0].last_day_by(as_of) or as_of
        ends, day0 = ev.plus_days(last, days), ev.plus_days(last, days + 1)
        details.update(last_major_surgery=last.isoformat(), washout_ends=ends.isoformat(),
                       eligible_from=day0.isoformat())
        fail.append(
            f"Major surgery within {days} days before screening: {ev.describe(recent)}. "
            f"The {days}-day washout runs to {ends.isoformat()} (Day 0 from {day0.isoformat()})."
        )
        evidence += ev.refs(recent)
    if s.planned:
        planned = sorted(s.planned, key=lambda e: e.first_day or date.max)
        details["planned_major_surgery"] = [e.when() for e in planned]
        fail.append(
            f"Major surgery planned after screening: {ev.describe(planned)} (status {planned[0].status})."
        )
        evidence += ev.refs(planned)
    if s.plan_orders:
        orders = sorted(s.plan_orders, key=lambda p: (p[0].span.start if p[0].span else None) or date.max)
        details.setdefault("planned_major_surgery", []).extend(p.when() for p, _l in orders)
        fail.append(f"Major surgery planned after screening: {_describe_plans(orders)}.")
        evidence += list(dict.fromkeys(p.ref for p, _l in orders))
    if fail:
        return result(Outcome.FAIL, " ".join(fail), evidence, **details)
    unknown: list[str] = []
    if s.recent_possible:
        possible = _newest_first(s.recent_possible, as_of)
        last = possible[0].last_day_by(as_of) or as_of
        details.update(washout_ends=ev.plus_days(last, days).isoformat(),
                       eligible_from=ev.plus_days(last, days + 1).isoformat())
        unknown.append(
            f"Procedure(s) within {days} days before screening that may be major surgery "
            f"(not in the major or minor lists): {ev.describe(possible)}. "
            f"If major, the washout runs to {details['washout_ends']}."
        )
        evidence += ev.refs(possible)
    if s.planned_unsure:
        unknown.append(f"Planned procedure(s) without a later date, or not known to be major: "
                       f"{ev.describe(s.planned_unsure)}.")
        evidence += ev.refs(s.planned_unsure)
    if s.plan_questions:
        questions = _describe_plans(s.plan_questions)
        unknown.append(f"Planned procedure(s) that may be major surgery: {questions}.")
        evidence += list(dict.fromkeys(p.ref for p, _l, _w in s.plan_questions))
    if unknown:
        return result(
            Outcome.UNKNOWN, " ".join(unknown), evidence,
            next_step="Confirm whether the procedure was (or will be) major surgery, and its date.",
            **details,
        )
    return _pass(s, days, first, details)


def _pass(s: _Sorted, days: int, first: date, details: dict[str, Any]) -> CriterionResult:
    notes = [f"No major surgery on record in the last {days} days (since {first.isoformat()}), none planned."]
    evidence: list[str] = []
    newest = ev.latest(s.older, first)
    if newest is not None and newest.last_day is not None:
        ended = ev.plus_days(newest.last_day, days)
        details.update(last_major_surgery=newest.last_day.isoformat(), washout_ends=ended.isoformat())
        notes.append(f"Last major surgery on record: {newest.label} on {newest.last_day.isoformat()}.")
        evidence.append(newest.ref)
    if s.undated:
        # Undated surgical-history entries are usually old; reported, not counted, to keep false alarms low.
        notes.append(f"Major surgery without a date is on record, not counted: {ev.describe(s.undated)}.")
        evidence += ev.refs(s.undated)
    return result(Outcome.PASS, " ".join(notes), evidence, **details)
