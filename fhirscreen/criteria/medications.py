"""I5 (background therapy for at least 12 weeks) and E4 (regimen changed in the last 12 weeks).

Both read the same drugs: non-biologic immunosuppressants and antimalarials, each a value set of the
trial file. Exposure comes from the shared normalised view (``_medications``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from fhirscreen.criteria._dosing import Dose
from fhirscreen.criteria._medications import (
    Drug,
    Exposure,
    Interval,
    dose_mg,
    exposures,
    first_drug,
    merge,
    regular_interval,
)
from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, ValueSetRef, evaluator, result
from fhirscreen.fhir.codes import coding_items, codings, concept_label
from fhirscreen.fhir.dates import day
from fhirscreen.record import PatientRecord


class BackgroundTherapyParams(Params):
    drugs: list[Drug]  # counted: antimalarials and non-biologic immunosuppressants
    report_only: tuple[Drug, ...] = ()  # named in the reason, never counted (Appendix A #8)
    local_forms: ValueSetRef  # topical/ophthalmic/inhaled forms and routes: not systemic therapy
    min_days: int = 84  # 12 weeks
    max_gap_days: int = 30  # gaps up to this long between courses do not interrupt therapy
    # An order that states no duration is taken to last until the next order of the same drug when that
    # follows within this many days (a renewal); alone, it may have lasted this long.
    renewal_max_days: int = 366
    # Administrations given at a regular interval up to this long carry the therapy until the next dose is
    # due (weekly methotrexate injections); sparser ones cover only their day (or the drug's covers_days).
    dose_interval_max_days: int = 31


class RegimenChangeParams(Params):
    drugs: list[Drug]
    local_forms: ValueSetRef
    window_days: int = 84  # "<= 12 weeks prior to the Screening visit"
    # A record starting more than this many days after the drug's previous exposure ended is a (re)start.
    max_gap_days: int = 30
    renewal_max_days: int = 366
    dose_interval_max_days: int = 31


@dataclass(frozen=True)
class _Course:
    """The exposures of one drug, with the days they cover once renewals are chained."""

    drug: Drug
    items: tuple[Exposure, ...]  # dated, sorted by start
    intervals: tuple[Interval, ...]  # known exposure
    possible: tuple[Interval, ...]  # known exposure plus unrecorded continuation after unstated ends
    dose_interval: int | None = None  # days between the drug's administrations, when regular


def _systemic_by_drug(
    record: PatientRecord, ctx: Context, drugs: Sequence[Drug], local_forms: str
) -> tuple[dict[str, list[Exposure]], list[Exposure], list[Exposure]]:
    """Dated exposures on or before as-of per drug name, undated ones, and local (non-systemic) ones."""
    local = ctx.vs(local_forms)
    by_drug: dict[str, list[Exposure]] = {}
    undated: list[Exposure] = []
    local_hits: list[Exposure] = []
    for exp in exposures(record):
        drug = first_drug(exp, drugs, ctx.value_sets)
        if drug is None:
            continue
        if exp.is_local(local):
            local_hits.append(exp)
        elif exp.start is None:
            undated.append(exp)
        elif exp.seen_by(ctx.as_of):
            by_drug.setdefault(drug.name, []).append(exp)
    for items in by_drug.values():
        items.sort(key=lambda e: (e.start or date.min, e.ref))
    # Drugs in name order: reasons must not depend on the order the source delivered the resources in.
    return dict(sorted(by_drug.items())), undated, local_hits


def _course(
    drug: Drug, items: Sequence[Exposure], as_of: date, renewal_max_days: int, refill_grace_days: int,
    dose_interval_max_days: int,
) -> _Course:
    known: list[Interval] = []
    possible: list[Interval] = []
    given = [e.start for e in items if e.resource_type == "MedicationAdministration" and e.start is not None]
    interval = regular_interval(given, dose_interval_max_days)
    # A dose carries the therapy until the next one is due: one interval after it when the doses keep a
    # schedule (weekly methotrexate injections), else the days one dose is set to cover (a monthly
    # cyclophosphamide pulse) or its own day.
    reach = max(drug.covers_days - 1, interval or 0)
    for i, exp in enumerate(items):
        assert exp.start is not None
        last = exp.last_day(as_of) or exp.start
        if exp.resource_type == "MedicationAdministration":
            last = min(as_of, max(last, exp.start + timedelta(days=reach)))
        if exp.resource_type == "MedicationDispense" and exp.end_stated and exp.end is not None:
            # A fill's supply is not a stop date: refills come a few days late and patients keep stock.
            # The same grace that joins courses keeps the last fill current that long after it runs out.
            later = [e for e in items[i + 1:] if e.start is not None and e.start > exp.start]
            if not later:
                last = min(as_of, exp.end + timedelta(days=refill_grace_days))
        possible_last = last
        if not exp.end_stated and not exp.ongoing:
            renewal = _next_start(items, i, exp.start, renewal_max_days)
            if renewal is not None:
                last = max(last, renewal - timedelta(days=1))
                possible_last = last
            else:
                possible_last = min(as_of, exp.start + timedelta(days=renewal_max_days))
        known.append(Interval(exp.start, last))
        possible.append(Interval(exp.start, max(last, possible_last)))
    return _Course(drug, tuple(items), tuple(known), tuple(possible), interval)


def _next_start(items: Sequence[Exposure], index: int, start: date, within_days: int) -> date | None:
    for later in items[index + 1:]:
        if later.start is not None and later.start > start:
            return later.start if (later.start - start).days <= within_days else None
    return None


def _names(items: Sequence[Exposure]) -> str:
    return ", ".join(dict.fromkeys(e.label for e in items))


@evaluator("background_therapy", BackgroundTherapyParams)
def background_therapy(
    record: PatientRecord, ctx: Context, params: BackgroundTherapyParams
) -> CriterionResult:
    """A non-biologic immunosuppressant or antimalarial taken at screening and for >= 12 weeks before."""
    as_of = ctx.as_of
    need_from = as_of - timedelta(days=params.min_days)
    by_drug, undated, local_hits = _systemic_by_drug(record, ctx, params.drugs, params.local_forms)
    drugs = {d.name: d for d in params.drugs}
    courses = [
        _course(
            drugs[name], items, as_of, params.renewal_max_days, params.max_gap_days,
            params.dose_interval_max_days,
        )
        for name, items in by_drug.items()
    ]
    evidence = [e.ref for c in courses for e in c.items] + [e.ref for e in undated]
    # Switching between qualifying drugs does not interrupt background therapy (E4 judges the switch).
    known = merge([iv for c in courses for iv in c.intervals], params.max_gap_days)
    possible = merge([iv for c in courses for iv in c.possible], params.max_gap_days)
    names = ", ".join(c.drug.name for c in courses)
    extra = _also_found(record, ctx, params, local_hits)
    died = day(record.patient.get("deceasedDateTime"))
    if died is not None and died <= as_of:
        extra += f" The patient is recorded as deceased on {died.isoformat()}: therapy on record ends then."

    current = next((iv for iv in known if iv.end >= as_of), None)
    if current is not None and current.start <= need_from:
        weeks = (as_of - current.start).days // 7
        return result(
            Outcome.PASS,
            f"On {names} since {current.start.isoformat()} ({weeks} weeks before {as_of.isoformat()}).",
            evidence, therapy_start=current.start.isoformat(), drugs=[c.drug.name for c in courses],
        )
    if not courses and not undated:
        return result(
            Outcome.FAIL,
            "No non-biologic immunosuppressant or antimalarial on record (medication lists are taken as "
            f"complete).{extra}",
            [e.ref for e in local_hits],
            nothing_on_record=True,  # a fail on absence: unknown where data were lost (``caution``)
        )
    # Could have lasted 12 weeks: a past course that long, or an unrecorded stop that may be after as-of.
    long_past = [iv for iv in possible if (iv.end - iv.start).days >= params.min_days]
    if long_past or undated:
        return result(
            Outcome.UNKNOWN, _unknown_reason(courses, undated, known, params.min_days, as_of) + extra,
            evidence,
            next_step="Confirm the current background therapy and its start date with the patient.",
        )
    if current is not None:
        days = (as_of - current.start).days
        reported = [e for c in courses for e in c.items if e.start_asserted and e.start == current.start]
        if reported:
            return result(
                Outcome.UNKNOWN,
                f"{_names(reported)} reported as current on {current.start.isoformat()} ({days} days before "
                f"{as_of.isoformat()}); when it was started is not recorded.{extra}",
                evidence, next_step="Confirm the start date of the current background therapy.",
            )
        return result(
            Outcome.FAIL,
            f"On {names} only since {current.start.isoformat()} ({days} days), under "
            f"{params.min_days // 7} weeks before {as_of.isoformat()}.{extra}",
            evidence, therapy_start=current.start.isoformat(),
            nothing_on_record=True,  # an earlier course may be in data that were lost (``caution``)
        )
    last = max(iv.end for iv in known)
    return result(
        Outcome.FAIL,
        f"No current background therapy: the last course of {names} ended {last.isoformat()} and no course "
        f"lasted {params.min_days // 7} weeks.{extra}",
        evidence,
        nothing_on_record=True,  # the current course may be in data that were lost (``caution``)
    )


def _unknown_reason(
    courses: Sequence[_Course], undated: Sequence[Exposure], known: Sequence[Interval], min_days: int,
    as_of: date,
) -> str:
    long_known = [iv for iv in known if (iv.end - iv.start).days >= min_days]
    unstated = [e for c in courses for e in c.items if not e.end_stated and not e.ongoing]
    if long_known:
        iv = max(long_known, key=lambda i: i.end)
        names = ", ".join(c.drug.name for c in courses)
        return (f"A course of {names} from {iv.start.isoformat()} to {iv.end.isoformat()} ended before "
                f"{as_of.isoformat()}; no current therapy on record (the protocol's 'prior ... for >= 12 "
                "weeks' may mean a past course).")
    if unstated:
        latest = max(unstated, key=lambda e: e.start or date.min)
        state = "on hold" if latest.status == "on-hold" else latest.status or "ended"
        return (f"{latest.label} ordered {latest.when()} is {state} with no end date recorded: it may have "
                "been taken for 12 weeks or more, and may or may not still be taken.")
    return f"{_names(undated)} on record without dates ({', '.join(e.ref for e in undated)})."


def _also_found(
    record: PatientRecord, ctx: Context, params: BackgroundTherapyParams, local_hits: Sequence[Exposure]
) -> str:
    """Drugs worth naming although they do not count: judgement drugs and local forms."""
    judged = [e for e in exposures(record) if first_drug(e, params.report_only, ctx.value_sets)]
    notes = []
    if judged:
        notes.append(f"not counted by default: {_names(judged)}")
    if local_hits:
        notes.append(f"local (non-systemic) forms not counted: {_names(local_hits)}")
    return f" ({'; '.join(notes)})" if notes else ""


# ----------------------------------------------------------------------------------------------
# E4


@dataclass(frozen=True)
class _Event:
    kind: str  # "started", "changed", "stopped", "maybe"
    text: str
    refs: tuple[str, ...]


@evaluator("regimen_change", RegimenChangeParams)
def regimen_change(record: PatientRecord, ctx: Context, params: RegimenChangeParams) -> CriterionResult:
    """A non-biologic immunosuppressant or antimalarial started, changed or stopped in the last 12 weeks."""
    as_of = ctx.as_of
    first = as_of - timedelta(days=params.window_days)
    by_drug, undated, _local = _systemic_by_drug(record, ctx, params.drugs, params.local_forms)
    drugs = {d.name: d for d in params.drugs}
    events: list[_Event] = []
    for name, items in by_drug.items():
        course = _course(
            drugs[name], items, as_of, params.renewal_max_days, params.max_gap_days,
            params.dose_interval_max_days,
        )
        events += _starts_and_changes(course, first, params.max_gap_days)
        events += _step_changes(course, first, as_of)
        events += _stops(course, first, as_of)
    since = f"since {first.isoformat()}"
    definite = [e for e in events if e.kind != "maybe"]
    evidence = [r for e in events for r in e.refs]
    if definite:
        return result(
            Outcome.FAIL, f"Regimen change in the last {params.window_days // 7} weeks ({since}): "
            + "; ".join(e.text for e in definite) + ".",
            evidence, changes=[e.text for e in definite],
        )
    maybe = [e for e in events if e.kind == "maybe"]
    if maybe or undated:
        texts = [e.text for e in maybe] + [f"{e.label} undated ({e.ref})" for e in undated]
        return result(
            Outcome.UNKNOWN, f"A regimen change {since} cannot be ruled out: " + "; ".join(texts) + ".",
            evidence + [e.ref for e in undated],
            next_step="Confirm start dates, doses and stops of immunosuppressants/antimalarials "
            f"{since}.",
        )
    if not by_drug:
        return result(Outcome.PASS, "No non-biologic immunosuppressant or antimalarial on record.")
    names = ", ".join(by_drug)
    return result(
        Outcome.PASS, f"{names}: no start, dose change or stop {since}.",
        [e.ref for items in by_drug.values() for e in items],
    )


def _starts_and_changes(course: _Course, first: date, max_gap_days: int) -> list[_Event]:
    events: list[_Event] = []
    name = course.drug.name
    for i, exp in enumerate(course.items):
        assert exp.start is not None
        if exp.start < first:
            continue
        # The previous exposure continues into this record (a refill) if it lasted until shortly before it.
        earlier = [j for j, o in enumerate(course.items[:i]) if o.start is not None and o.start < exp.start]
        reach = exp.start - timedelta(days=max_gap_days + 1)
        recent = [j for j in earlier if course.possible[j].end >= reach]
        if not recent and exp.start_asserted:
            text = f"{exp.label} {exp.when()} with no start date: it may have started on or after {first}"
            events.append(_Event("maybe", f"{name}: {text}", (exp.ref,)))
            continue
        if not recent:
            verb = "restarted" if earlier else "started"
            text = f"{name} {verb} {exp.start.isoformat()} ({exp.label})"
            events.append(_Event("started", text, (exp.ref,)))
            continue
        previous = _comparable_previous(exp, [course.items[j] for j in recent])
        if previous is None:
            continue  # an administration, fill or med-list entry carrying on the therapy: no change
        same = _same_dose(previous, exp)
        if same is False:
            events.append(_Event(
                "changed", f"{name} dose changed on {exp.start.isoformat()} "
                f"({_dose_text(previous, _last_dose(previous))} -> {_dose_text(exp, _first_dose(exp))})",
                (previous.ref, exp.ref),
            ))
        elif same and (how_often := _frequency_change(previous, exp)):
            # "Any change" to the regimen: a new frequency is one even at the same daily dose.
            events.append(_Event(
                "changed", f"{name} frequency changed on {exp.start.isoformat()} at the same daily dose "
                f"({_dose_text(exp, _first_dose(exp))}: {how_often})", (previous.ref, exp.ref),
            ))
        elif same and (route := _route_change(previous, exp)):
            # Oral to subcutaneous methotrexate at the same dose is a change of regimen (Appendix A #13:
            # "dose-form switch? yes"): more of the drug reaches the blood.
            events.append(_Event(
                "changed", f"{name} route changed on {exp.start.isoformat()} at the same dose "
                f"({_dose_text(exp, _first_dose(exp))}: {route})", (previous.ref, exp.ref),
            ))
        elif same is None and exp.resource_type in ("MedicationRequest", "MedicationStatement"):
            events.append(_Event(
                "maybe", f"{name} re-ordered {exp.start.isoformat()} without a comparable dose "
                f"({previous.ref}, {exp.ref})", (previous.ref, exp.ref),
            ))
    return events


def _comparable_previous(exp: Exposure, earlier: Sequence[Exposure]) -> Exposure | None:
    """The earlier record whose dose ``exp`` is compared with; None when ``exp`` cannot change the regimen.

    Administrations are compared with administrations (pulse doses); a fill or statement only when it
    states a dose; an order always (an order without a comparable dose may be a change).
    """
    if exp.resource_type == "MedicationAdministration":
        given = [e for e in earlier if e.resource_type == "MedicationAdministration" and e.dose is not None]
        return given[-1] if given and exp.dose is not None else None
    if exp.dose is None and exp.resource_type != "MedicationRequest":
        return None
    prescribed = [e for e in earlier if e.resource_type != "MedicationAdministration"]
    dosed = [e for e in prescribed if e.dose is not None]
    if dosed:
        return dosed[-1]
    if exp.resource_type != "MedicationRequest":
        return None
    return prescribed[-1] if prescribed else None


def _stops(course: _Course, first: date, as_of: date) -> list[_Event]:
    """The drug's last exposure ending inside the window is a discontinuation (Appendix A #13)."""
    if any(iv.end >= as_of for iv in course.intervals):
        return []  # still taken on the screening date (possibly through another record)
    index = max(range(len(course.items)), key=lambda i: (course.intervals[i].end, i))
    latest, known_end = course.items[index], course.intervals[index].end
    name = course.drug.name
    state = "put on hold" if latest.status == "on-hold" else "stopped"
    if latest.resource_type == "MedicationDispense":
        state = "not refilled (the last fill's supply and a grace period ran out)"
    if latest.end_stated:
        if known_end < first:
            return []
        if latest.resource_type == "MedicationAdministration" and course.dose_interval is not None:
            assert latest.start is not None
            return [_Event(
                "stopped", f"{name} stopped: last dose {latest.start.isoformat()} ({latest.label}), given "
                f"every {course.dose_interval} days; the next, due {known_end.isoformat()}, is not recorded",
                (latest.ref,),
            )]
        return [_Event("stopped", f"{name} {state}: last exposure {known_end.isoformat()} ({latest.label})",
                       (latest.ref,))]
    if course.possible[index].end >= first:
        return [_Event(
            "maybe", f"{name} ({latest.label}, {latest.when()}) is {latest.status} with no end date: it may "
            f"have been {state} after {first.isoformat()}", (latest.ref,),
        )]
    return []


def _step_changes(course: _Course, first: date, as_of: date) -> list[_Event]:
    """Dose changes written inside one record: dosage lines of successive dates (400 mg a day until
    March, then 200 mg a day). A step starting in the window at another daily dose than the step before
    it is a change; steps of different doses whose dates cannot be read may be one."""
    events: list[_Event] = []
    name = course.drug.name
    for exp, possible in zip(course.items, course.possible, strict=True):
        if exp.dosing is None:
            continue
        if exp.dosing.steps_undated and possible.end >= first:
            events.append(_Event(
                "maybe", f"{name}: {exp.label} ({exp.when()}) lists doses of {_dose_text(exp, exp.dose)} in "
                f"steps whose dates are not recorded: the dose may have changed after {first.isoformat()}",
                (exp.ref,),
            ))
            continue
        for before, step in itertools.pairwise(exp.dosing.steps):
            if step.start is None or not first <= step.start <= as_of:
                continue
            same = _same_amount(exp, before.dose, exp, step.dose)
            if same is False:
                events.append(_Event(
                    "changed", f"{name} dose changed on {step.start.isoformat()} within one order "
                    f"({_dose_text(exp, before.dose)} -> {_dose_text(exp, step.dose)}; {exp.label})",
                    (exp.ref,),
                ))
            elif same is None:
                events.append(_Event(
                    "maybe", f"{name}: {exp.label} has a new dosage line from {step.start.isoformat()} whose "
                    f"dose cannot be compared with the one before it ({exp.ref})", (exp.ref,),
                ))
    return events


# How a systemic drug is given, from the route (SNOMED CT route codes) or the dose form in its name.
_ROUTE_CODES = {"26643006": "oral", "34206005": "injection", "78421000": "injection", "47625008": "injection"}
_INJECTED = re.compile(
    r"\b(inject\w*|subcutaneous\w*|intramuscular\w*|intravenous\w*|prefilled syringe|auto-?injector|"
    r"pen injector|cartridge)\b", re.IGNORECASE,
)
_SWALLOWED = re.compile(r"\b(oral\w*|tablets?|capsules?|by mouth)\b", re.IGNORECASE)


def _route_change(a: Exposure, b: Exposure) -> str | None:
    """"oral -> injection" when both records say how the drug is given and it differs, else None."""
    route_a, route_b = _route(a), _route(b)
    if route_a is None or route_b is None or route_a == route_b:
        return None
    return f"{route_a} -> {route_b}"


def _route(exp: Exposure) -> str | None:
    """"oral" or "injection", from a route code, else the words of the route, form and drug names; None
    when nothing says or they disagree."""
    coded = {_ROUTE_CODES[code] for c in exp.forms for _s, code, _d in codings(c) if code in _ROUTE_CODES}
    if len(coded) == 1:
        return coded.pop()
    words = " ".join(concept_label(c) for c in (*exp.forms, *exp.concepts))
    kinds = (("injection", _INJECTED), ("oral", _SWALLOWED))
    said = {kind for kind, named in kinds if named.search(words)}
    return said.pop() if len(said) == 1 else None


def _first_dose(exp: Exposure) -> Dose | None:
    """The daily dose the record starts with (its first step when the steps are dated)."""
    return exp.dosing.steps[0].dose if exp.dosing is not None and exp.dosing.steps else exp.dose


def _last_dose(exp: Exposure) -> Dose | None:
    """The daily dose the record ends with: what a later record is compared with."""
    return exp.dosing.steps[-1].dose if exp.dosing is not None and exp.dosing.steps else exp.dose


def _same_dose(a: Exposure, b: Exposure) -> bool | None:
    """True for a same-dose refill, False for a dose change, None when the doses cannot be compared."""
    return _same_amount(a, _last_dose(a), b, _first_dose(b))


def _same_amount(a: Exposure, dose_a: Dose | None, b: Exposure, dose_b: Dose | None) -> bool | None:
    """Whether daily dose ``dose_a`` of record ``a`` equals ``dose_b`` of ``b`` (None: not comparable)."""
    mg_a, mg_b = dose_mg(a, dose_a), dose_mg(b, dose_b)
    if mg_a is not None and mg_b is not None:
        return _close(mg_a, mg_b)
    if dose_a is None or dose_b is None or dose_a.unit != dose_b.unit or _codes(a) != _codes(b):
        return None
    return _close((dose_a.low, dose_a.high), (dose_b.low, dose_b.high))


def _frequency_change(a: Exposure, b: Exposure) -> str | None:
    """"twice a day -> once a day" when both records state how often and they differ, else None."""
    rate_a = a.dosing.per_day if a.dosing is not None else None
    rate_b = b.dosing.per_day if b.dosing is not None else None
    if rate_a is None or rate_b is None or _close(rate_a, rate_b):
        return None
    return f"{_how_often(rate_a)} -> {_how_often(rate_b)}"


def _how_often(rate: tuple[float, float]) -> str:
    low, high = (_times(r) for r in rate)
    return low if low == high else f"{low} to {high}"


def _times(per_day: float) -> str:
    """1 -> "once a day", 2/7 -> "twice a week", 0.5 -> "every 2 days"."""
    for unit, days in (("day", 1), ("week", 7), ("month", 30)):
        count = per_day * days
        if abs(count - round(count)) < 1e-6 and round(count) >= 1:
            n = round(count)
            return f"{_COUNT_WORDS.get(n, f'{n} times')} a {unit}"
    return f"every {1 / per_day:g} days" if per_day > 0 else "never"


_COUNT_WORDS = {1: "once", 2: "twice"}


def _close(x: tuple[float, float], y: tuple[float, float]) -> bool:
    return abs(x[0] - y[0]) < 1e-6 and abs(x[1] - y[1]) < 1e-6


def _codes(exp: Exposure) -> frozenset[tuple[str, str]]:
    out = set()
    for concept in exp.concepts:
        for coding in coding_items(concept):
            out.add((str(coding.get("system")), str(coding.get("code"))))
    return frozenset(out)


def _dose_text(exp: Exposure, dose: Dose | None) -> str:
    mg = dose_mg(exp, dose)
    if mg is not None:
        return f"{mg[0]:g} mg/day" if mg[0] == mg[1] else f"{mg[0]:g}-{mg[1]:g} mg/day"
    if dose is not None:
        return f"{dose.low:g} {dose.unit or 'unit(s)'}/day"
    return "dose not recorded"
