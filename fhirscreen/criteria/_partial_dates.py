"""Partial dates ("2026-03", "2026") decide a criterion only when every day they can mean decides it.

fhir/dates.py keeps a partial date as the range of days it can denote, but criteria read a date as one
day (``day()``: the first). A window, a washout or a duration decided on that first day is a guess: a
rituximab dose dated "2026-02" may have been given on the 28th, still inside its washout; hydroxychloroquine
"since 2026-03" may have started on the 31st, under 12 weeks before screening. So a record holding partial
dates is screened at both ends of their ranges, for every criterion alike:

* as written (each partial date read as its first day, as ``day()`` does);
* each read as the latest day it can mean that is known at screening: its last day, or the screening date
  when the range runs past it (a dose "2026" may have been given the day before screening; a record of a
  day after screening is not yet known). This is the conservative reading both ways: for "within the last
  N days" it asks whether the event may be inside, for a duration of therapy it is the latest start;
* each read as its last day, when that is after the screening date (a plan "2026" may be for December).

A criterion is decided by a window, a washout or a duration: its outcome changes at most where the range
crosses the threshold or the screening date, so these readings find any range that straddles one. When
they agree, the outcome stands (with the second reading's reason: the dates a coordinator can rely on);
when they disagree, it is unknown, naming the partial date and what each reading gives. Several partial
dates in one record are moved together (all first days, then all latest days), not in every combination.
Records with complete dates only are screened once, exactly as before.

A period written with an end only (a Condition's onsetPeriod, a Procedure's performedPeriod, a medication
statement's or administration's effectivePeriod, a ResearchSubject's period, a medication's dosage
``timing.repeat.boundsPeriod``: "by 2026-07-01", its start not recorded) is read the same way, its start
as any day up to its end (``open_start``; a dosage's course from the day its record is anchored to, when
it has one: ``_course_floor``): an end inside a window may be in it or before it, an end before a window
is history, an end after the screening date may have started before it. It was read as undated (a
Condition, an order dated by its course only), or as on its end day only (a Procedure: one ended after the
screening date was a silent pass; an order "until" after it too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from fhirscreen.criteria.base import CriterionResult, Outcome, result
from fhirscreen.fhir.dates import PartialDate, parse_date
from fhirscreen.fhir.resources import Resource, ref
from fhirscreen.record import PatientRecord

# The elements whose strings are the FHIR dates criteria read (choice types, Period ends, Timing events,
# plain date elements), and the elements that hold such dates deeper down (periods, timings, dosages,
# CarePlan activities, contained resources). No other element is searched: a string elsewhere is never
# read as a date (an RxNorm code "5521" is not a year), and codes, references and values are most of a
# record. A set, so that each resource is searched by one intersection with its keys.
_DATE_ELEMENTS = frozenset({
    "onsetDateTime", "onsetString", "abatementDateTime", "abatementString", "recordedDate",
    "effectiveDateTime", "effectiveInstant", "issued", "performedDateTime", "performedString", "authoredOn",
    "whenHandedOver", "whenPrepared", "dateAsserted", "occurrenceDateTime", "start", "end",
})
_DATE_LISTS = frozenset({"event"})
_DATED_CONTAINERS = frozenset({
    "onsetPeriod", "abatementPeriod", "effectivePeriod", "performedPeriod", "occurrencePeriod",
    "occurrenceTiming", "scheduledPeriod", "scheduledTiming", "period", "requestedPeriod", "boundsPeriod",
    "validityPeriod", "timing", "repeat", "dosageInstruction", "dosage", "dispenseRequest", "activity",
    "detail", "contained",
})
_SEARCHED = _DATE_ELEMENTS | _DATE_LISTS | _DATED_CONTAINERS
# The same elements by resource type, for the resources themselves: most of a record's resources are
# Observations, and looking up their three date elements costs less than searching their keys.
_BY_TYPE: dict[str, tuple[str, ...]] = {
    "Condition": ("onsetDateTime", "onsetPeriod", "onsetString", "abatementDateTime", "abatementPeriod",
                  "abatementString", "recordedDate"),
    "Observation": ("effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"),
    "Procedure": ("performedDateTime", "performedPeriod", "performedString"),
    "MedicationRequest": ("authoredOn", "dosageInstruction", "dispenseRequest", "contained"),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod", "dateAsserted", "dosage", "contained"),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod", "dosage", "contained"),
    "MedicationDispense": ("whenHandedOver", "whenPrepared", "dosageInstruction", "contained"),
    "ServiceRequest": ("occurrenceDateTime", "occurrencePeriod", "occurrenceTiming", "authoredOn"),
    "CarePlan": ("period", "activity", "contained"),
    "Appointment": ("start", "end", "requestedPeriod"),
    "ResearchSubject": ("period",),
}
# Periods that may be written with an end only ("by 2026-07-01": it happened, or held, on or before that
# day; when it started is not recorded): a Condition's onset, a Procedure's performance, a medication
# statement's or administration's effective period. Such a start is read as a range too, from
# ``_EARLIEST`` to the end (``open_start``), so that a criterion decides only what every day it can mean
# gives: an end inside a window is possibly in it (the start may be before), an end before the window is
# history, an end after the screening date may have started before it. Observations are left out (their
# day is the end of their effective period, fhir/resources.py ``observation_day``).
_OPEN_START = frozenset({"onsetPeriod", "performedPeriod", "effectivePeriod", "period"})
_OPEN_START_TYPES = frozenset({
    "Condition", "Procedure", "MedicationStatement", "MedicationAdministration", "ResearchSubject",
})
# A medication's dosage timing (``dosage[].timing.repeat.boundsPeriod``, at any depth of its dosages): the
# days the course was to run, read the same way when only its end is written, its start from the day the
# record's dosing is anchored to when it has one (``_course_floor``: an order's course does not start
# before it was written, nor a fill's before it was handed over), else from ``_EARLIEST``. Not a plan's
# timing (ServiceRequest, CarePlan): when a plan was for is read by its own rule (criteria/_plans.py).
_OPEN_BOUNDS_TYPES = frozenset({
    "MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense",
})
_EARLIEST = date(1900, 1, 1)
_OPEN_TEXT = "the unrecorded start of a period ended by "
# How many partial dates a reason names before "(+N more)".
_NAMED = 3


@dataclass(frozen=True)
class Partial:
    """A partial date found in a resource: where, and the days it can mean."""

    ref: str
    when: PartialDate

    def describe(self) -> str:
        return f"{self.when.text} ({self.ref}: any day from {self.when.earliest} to {self.when.latest})"


def open_start(period: object, earliest: date = _EARLIEST) -> PartialDate | None:
    """The start of a Period written with an end only, as the range of days it can mean (``earliest`` to
    the latest day the end can mean); None for any other Period (or one that ends before ``earliest``)."""
    if not isinstance(period, Mapping) or period.get("start") is not None:
        return None
    end = parse_date(period.get("end"))
    if end is None or end.latest < earliest:
        return None
    return PartialDate(earliest, end.latest, f"{_OPEN_TEXT}{end.text}")


def _open_start_at(key: str, value: object, open_starts: bool, bounds: date | None) -> PartialDate | None:
    """``open_start`` of element ``key`` when it is one read so (``_find``), else None."""
    if open_starts and key in _OPEN_START:
        return open_start(value)
    if bounds is not None and key == "boundsPeriod":
        return open_start(value, bounds)
    return None


def _is_open(partial: Partial) -> bool:
    return partial.when.text.startswith(_OPEN_TEXT)


def _course_floor(resource: Mapping[str, Any]) -> date:
    """The earliest day an end-only dosage ``boundsPeriod`` of a medication record can start: the day its
    dosing is anchored to (criteria/_medications.py ``_anchor``: the effective period's start, the day an
    order was written or a fill handed over; the earliest it can mean, when partial), else ``_EARLIEST``.
    A statement's ``dateAsserted`` is when it was said, not a floor: the course may have begun before."""
    effective = resource.get("effectivePeriod")
    for value in (
        effective.get("start") if isinstance(effective, Mapping) else None,
        resource.get("effectiveDateTime"), resource.get("authoredOn"), resource.get("whenHandedOver"),
    ):
        parsed = parse_date(value) if isinstance(value, str) else None
        if parsed is not None:
            return max(parsed.earliest, _EARLIEST)
    return _EARLIEST


def _partial(value: object) -> PartialDate | None:
    if not isinstance(value, str) or len(value.strip()) > 7:  # "YYYY-MM" at most; a full date is longer
        return None
    parsed = parse_date(value)
    return parsed if parsed is not None and not parsed.exact else None


def _find(
    element: object,
    found: list[PartialDate],
    keys: Iterable[str] | None = None,
    open_starts: bool = False,
    bounds: date | None = None,
) -> None:
    """Every partial date in ``element`` (a resource, an element of it, or a list of them); ``keys``: the
    elements to look in, when known; ``open_starts``: a resource whose end-only periods count too
    (``open_start``); ``bounds``: a medication's, whose end-only dosage ``boundsPeriod`` do at any depth,
    starting on that day at the earliest (``_course_floor``)."""
    if element.__class__ is list:
        for value in element:
            _find(value, found, bounds=bounds)
        return
    if not (element.__class__ is dict or isinstance(element, Mapping)):
        return
    if keys is None:
        keys = _BY_TYPE.get(str(element.get("resourceType"))) or element.keys() & _SEARCHED
    for key in keys:
        value = element.get(key)
        if value is None or (value.__class__ is str and len(value) > 7):  # absent, or a full date
            continue
        if key in _DATE_ELEMENTS:
            parsed = _partial(value)
            if parsed is not None:
                found.append(parsed)
        elif key in _DATE_LISTS:
            found += [p for p in map(_partial, value if value.__class__ is list else ()) if p is not None]
        else:
            if (start := _open_start_at(key, value, open_starts, bounds)) is not None:
                found.append(start)
            _find(value, found, bounds=None if key == "contained" else bounds)


def partial_dates(record: PatientRecord) -> tuple[Partial, ...]:
    """The partial dates of a record's resources (the Patient's birth date is left to the age criterion,
    which already reads it as a range), cached per record."""

    def collect() -> tuple[Partial, ...]:
        out: list[Partial] = []
        found: list[PartialDate] = []
        for rtype, resources in record.resources.items():
            if rtype == "Patient":
                continue
            keys = _BY_TYPE.get(rtype)
            open_starts, bounded = rtype in _OPEN_START_TYPES, rtype in _OPEN_BOUNDS_TYPES
            for resource in resources:
                _find(resource, found, keys, open_starts, _course_floor(resource) if bounded else None)
                if found:
                    out += [Partial(ref(resource), when) for when in dict.fromkeys(found)]
                    found = []
        return tuple(out)

    return record.memo("partial_dates", collect)


def _rewrite(
    element: Any, read: Callable[[PartialDate], date], open_starts: bool = False, bounds: date | None = None
) -> Any:
    """``element`` with each partial date replaced by the day ``read`` gives, and (``open_starts``,
    ``bounds``: as ``_find``) each end-only period given the start ``read`` gives; unchanged parts are
    shared."""
    if element.__class__ is list:
        items = [_rewrite(value, read, bounds=bounds) for value in element]
        return items if any(a is not b for a, b in zip(items, element, strict=True)) else element
    if not (element.__class__ is dict or isinstance(element, Mapping)):
        return element
    out: dict[str, Any] | None = None
    for key in _BY_TYPE.get(str(element.get("resourceType"))) or element.keys() & _SEARCHED:
        value = element.get(key)
        if value is None:
            continue
        if key in _DATE_ELEMENTS:
            parsed = _partial(value)
            new = read(parsed).isoformat() if parsed is not None else value
        elif key in _DATE_LISTS and value.__class__ is list:
            new = [read(p).isoformat() if (p := _partial(v)) is not None else v for v in value]
            new = new if new != value else value
        else:
            new = _rewrite(value, read, bounds=None if key == "contained" else bounds)
            if (start := _open_start_at(key, value, open_starts, bounds)) is not None:
                new = {**new, "start": read(start).isoformat()}
        if new is not value:
            out = out if out is not None else dict(element)
            out[key] = new
    return out if out is not None else element


def read_at(record: PatientRecord, read: Callable[[PartialDate], date]) -> PatientRecord:
    """The record with every partial date read as one day (a new record: derived views start afresh)."""
    resources: dict[str, list[Resource]] = {
        rtype: [
            r if r.get("resourceType") == "Patient"
            else _rewrite(
                r, read, rtype in _OPEN_START_TYPES, _course_floor(r) if rtype in _OPEN_BOUNDS_TYPES else None
            )
            for r in held
        ]
        for rtype, held in record.resources.items()
    }
    return PatientRecord(record.patient, resources, record.medications, studies=record.studies)


def latest_known(as_of: date) -> Callable[[PartialDate], date]:
    """The latest day a partial date can mean that is known at screening (see the module docstring)."""

    def read(when: PartialDate) -> date:
        return when.latest if when.earliest > as_of else min(when.latest, as_of)

    return read


def _first_day(when: PartialDate) -> date:
    return when.earliest


def _last_day(when: PartialDate) -> date:
    return when.latest


def over_partial_dates(
    record: PatientRecord, as_of: date, evaluate: Callable[[PatientRecord], CriterionResult]
) -> CriterionResult:
    """``evaluate(record)``, decided over every day the record's partial dates can mean (module docstring)."""
    partials = partial_dates(record)
    if not partials:
        return evaluate(record)
    latest = latest_known(as_of)
    # One rewritten record per reading, shared by every criterion (and so are its derived views).
    at_latest = record.memo(f"partial_dates:latest:{as_of.isoformat()}", lambda: read_at(record, latest))
    at_first = record
    if any(_is_open(p) for p in partials):  # an end-only period: its start is written in
        at_first = record.memo("partial_dates:first", lambda: read_at(record, _first_day))
    readings = [(_first_day, evaluate(at_first)), (latest, evaluate(at_latest))]
    if any(p.when.latest > as_of for p in partials):
        at_last = record.memo("partial_dates:last", lambda: read_at(record, _last_day))
        readings.append((_last_day, evaluate(at_last)))
    kept = readings[1][1]
    if len({r.outcome for _read, r in readings}) == 1:
        named = [p for p in partials if p.ref in kept.evidence]
        if not named:
            return kept
        return result(
            kept.outcome,
            f"{kept.reason} ({_upper(_name(named))}: read above as {_days(named, latest)}; every day "
            f"{'it' if len(named) == 1 else 'they'} can mean gives the same outcome.)",
            kept.evidence, kept.next_step, **dict(kept.details), partial_dates=_detail(named),
        )
    cited = {e for _read, r in readings for e in r.evidence}
    named = [p for p in partials if p.ref in cited] or list(partials)
    shown = " ".join(
        f"Read as {_days(named, read)}: {r.outcome.value}. {r.reason}" for read, r in _distinct(readings)
    )
    return result(
        Outcome.UNKNOWN,
        f"{_upper(_name(named))}: the outcome depends on the day. {shown}",
        [e for _read, r in readings for e in r.evidence],
        next_step=f"Confirm the exact date of {_name(named, brief=True)}.",
        partial_dates=_detail(named),
    )


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _days(partials: list[Partial], read: Callable[[PartialDate], date]) -> str:
    """'2026-02-28' for one partial date; '2026-02-28 (2026-02), 2025-12-31 (2025)' for several."""
    if len(partials) == 1:
        return read(partials[0].when).isoformat()
    days = list(dict.fromkeys(f"{read(p.when).isoformat()} ({p.when.text})" for p in partials))
    return ", ".join(days[:_NAMED]) + (f" (+{len(days) - _NAMED} more)" if len(days) > _NAMED else "")


def _name(partials: list[Partial], brief: bool = False) -> str:
    """'partial date 2026-02 (MedicationAdministration/a1), any day from 2026-02-01 to 2026-02-28'."""
    shown = [
        f"{p.when.text} ({p.ref})" if brief
        else f"{p.when.text} ({p.ref}), any day from {p.when.earliest} to {p.when.latest}"
        for p in partials[:_NAMED]
    ]
    more = len(partials) - _NAMED
    words = "" if brief else "partial date " if len(partials) == 1 else "partial dates "
    if all(_is_open(p) for p in partials):  # end-only periods (``open_start``) say so
        words = ""
    return words + "; ".join(shown) + (f" (+{more} more)" if more > 0 else "")


def _detail(partials: list[Partial]) -> list[dict[str, str]]:
    return [
        {"reference": p.ref, "date": p.when.text, "earliest": p.when.earliest.isoformat(),
         "latest": p.when.latest.isoformat()}
        for p in partials
    ]


def _distinct(
    readings: list[tuple[Callable[[PartialDate], date], CriterionResult]],
) -> list[tuple[Callable[[PartialDate], date], CriterionResult]]:
    """One reading per outcome, in reading order."""
    seen: set[Outcome] = set()
    out = []
    for read, res in readings:
        if res.outcome not in seen:
            seen.add(res.outcome)
            out.append((read, res))
    return out
