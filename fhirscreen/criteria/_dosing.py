"""Daily dose from FHIR Dosage: amount x administrations per day, with dated taper steps.

A Dosage states its frequency in several places that EHRs fill differently: ``timing.repeat``
(frequency/frequencyMax per period/periodUnit, dayOfWeek, timeOfDay, when) and ``timing.code`` (the
HL7 GTSAbbreviation set: BID, TID, Q8H, WK...), often with ``repeat`` holding only bounds. Several
dosage lines are taken together when they share a ``sequence`` (or have none and no bounds of their
own), and are successive steps of a taper otherwise; steps whose dates can be read are kept dated so
that a criterion can ask for the dose on a given day.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from fhirscreen.fhir.codes import codings
from fhirscreen.fhir.dates import day
from fhirscreen.fhir.resources import items, mapping

UNIT_DAYS: dict[str, float] = {
    "s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0, "a": 365.0,
}
_UNIT_WORDS = {"day": "d", "days": "d", "week": "wk", "weeks": "wk", "month": "mo", "months": "mo",
               "hour": "h", "hours": "h", "hr": "h", "year": "a", "years": "a", "w": "wk", "m": "mo"}
# Timing.code (HL7 v3 GTSAbbreviation / FHIR timing-abbreviation, plus common pharmacy spellings)
# -> administrations per day. Institution-specified codes (JB, JE...) are unknown on purpose.
_TIMING_CODES: dict[str, float] = {
    "QD": 1, "DAILY": 1, "OD": 1, "QDAY": 1, "Q24H": 1, "ONCE": 1, "QOD": 0.5, "Q48H": 0.5, "Q72H": 1 / 3,
    "BID": 2, "TID": 3, "QID": 4, "AM": 1, "PM": 1, "QAM": 1, "QPM": 1, "QHS": 1, "HS": 1, "BED": 1,
    "QNOON": 1, "Q1H": 24, "Q2H": 12, "Q3H": 8, "Q4H": 6, "Q6H": 4, "Q8H": 3, "Q12H": 2,
    "WK": 1 / 7, "QW": 1 / 7, "QWK": 1 / 7, "Q1W": 1 / 7, "QOW": 1 / 14, "Q2W": 1 / 14, "BIW": 2 / 7,
    "TIW": 3 / 7, "MO": 1 / 30, "QMO": 1 / 30, "QM": 1 / 30,
}
_TIMING_WORDS: dict[str, float] = {
    "once daily": 1, "once a day": 1, "every day": 1, "daily": 1, "twice daily": 2, "twice a day": 2,
    "three times daily": 3, "three times a day": 3, "four times daily": 4, "four times a day": 4,
    "every other day": 0.5, "weekly": 1 / 7, "once weekly": 1 / 7, "once a week": 1 / 7,
    "every week": 1 / 7, "monthly": 1 / 30, "every month": 1 / 30, "at bedtime": 1,
}
_EVERY_N = re.compile(r"^Q(\d+(?:\.\d+)?)(H|HR|D|W|WK|MO)$")
_EVERY_N_DAYS = {"H": 1 / 24, "HR": 1 / 24, "D": 1.0, "W": 7.0, "WK": 7.0, "MO": 30.0}


@dataclass(frozen=True)
class Dose:
    """Amount per day, low..high (equal unless a dose range, frequencyMax or undated steps differ)."""

    low: float
    high: float
    unit: str  # as written ("" when none): "mg", "tablet", "{tbl}", "mL"...


@dataclass(frozen=True)
class DoseStep:
    """The daily dose over some days of a record: ``start``/``end`` None means the record's own span."""

    start: date | None
    end: date | None
    dose: Dose

    def covers(self, on: date) -> bool:
        return (self.start is None or self.start <= on) and (self.end is None or on <= self.end)


@dataclass(frozen=True)
class Dosing:
    """What the dosage lines of one record say: the overall range, and dated steps when readable."""

    dose: Dose | None
    steps: tuple[DoseStep, ...]  # empty when the dose is unknown
    starts: tuple[date, ...]  # the steps' own start days (bounds), for the record's span
    ends: tuple[date, ...]
    timing: str  # the time-of-day signature ("AM", "08:00", "MORN"...), to tell split doses apart
    single: bool = False  # a one-time dose (repeat.count 1, timing.code ONCE/STAT/NOW)
    # Administrations per day (low, high) over the lines, when each line states its timing and the
    # record has one step: what tells "200 mg twice a day" from "400 mg once a day" (E4's frequency).
    per_day: tuple[float, float] | None = None
    # Several steps of different doses whose days cannot all be told apart (collapsed into ``dose``):
    # the dose changed on some unrecorded day.
    steps_undated: bool = False

    def on(self, when: date) -> Dose | None:
        """The daily dose on a day: the dated step covering it, else the overall range."""
        covering = [s.dose for s in self.steps if s.start is not None and s.covers(when)]
        if covering:
            return Dose(min(d.low for d in covering), max(d.high for d in covering), covering[0].unit)
        return self.dose


def repeat_of(dosage: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(mapping(dosage.get("timing")).get("repeat"))


def duration_days(duration: object) -> float | None:
    if not isinstance(duration, Mapping):
        return None
    value = duration.get("value")
    unit = str(duration.get("code") or duration.get("unit") or "d").strip().lower()
    unit = _UNIT_WORDS.get(unit, unit)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or unit not in UNIT_DAYS:
        return None
    return float(value) * UNIT_DAYS[unit]


# ``dosing`` is a pure function of the dosage lines' content, and records repeat a few dosages ("10 mg
# once a day") across patients: each distinct content is read once. The key is the lines' repr, which
# tells every JSON value apart (1, 1.0 and True; -0.0 and 0.0; a list and a tuple), taken only for
# plain JSON (dicts with string keys, lists, strings, numbers, booleans, null), whose repr is exactly
# its content. Dosing is immutable, so one result is shared. Bounded so that odd data cannot grow it.
_READ: dict[tuple[str, bool, date | None], Dosing] = {}
_READ_MAX = 10_000
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def dosing(dosages: Sequence[Mapping[str, Any]], *, administration: bool, anchor: date | None) -> Dosing:
    """Read the dosage lines of one record; ``anchor`` is the day the first step starts without bounds."""
    key = _content_key(dosages, administration, anchor)
    if key is None:
        return _read_dosing(dosages, administration=administration, anchor=anchor)
    read = _READ.get(key)
    if read is None:
        read = _read_dosing(dosages, administration=administration, anchor=anchor)
        if len(_READ) < _READ_MAX:
            _READ[key] = read
    return read


def _content_key(
    dosages: Sequence[Mapping[str, Any]], administration: bool, anchor: date | None
) -> tuple[str, bool, date | None] | None:
    """The key of ``_READ`` for these arguments, None when they are not plain (then never cached)."""
    if administration.__class__ is not bool or (anchor is not None and anchor.__class__ is not date):
        return None
    try:
        return (repr(dosages), administration, anchor) if _plain_json(dosages) else None
    except RecursionError:  # absurdly deep JSON: read it uncached, as before
        return None


def _plain_json(value: object) -> bool:
    """Only dicts with string keys, lists, strings, numbers, booleans and null (exact types) below."""
    children: Iterable[Any]
    if isinstance(value, dict) and value.__class__ is dict:
        if not all(key.__class__ is str for key in value):
            return False
        children = value.values()
    elif isinstance(value, list) and value.__class__ is list:
        children = value
    else:
        return value.__class__ in _JSON_SCALARS
    for child in children:
        kind = child.__class__
        if kind is dict or kind is list:
            if not _plain_json(child):
                return False
        elif kind not in _JSON_SCALARS:
            return False
    return True


def _read_dosing(
    dosages: Sequence[Mapping[str, Any]], *, administration: bool, anchor: date | None
) -> Dosing:
    groups: dict[object, list[Mapping[str, Any]]] = {}
    for dosage in dosages:
        # Lines with the same sequence (or, without one, the same bounds) are taken together and add
        # up; different sequences/bounds are successive steps (a taper).
        bounds = repeat_of(dosage).get("boundsPeriod")
        sequence = dosage.get("sequence")
        # A sequence that is not a whole number (malformed) is read as none.
        key: object = (
            sequence
            if sequence.__class__ is int
            else repr(bounds) if bounds else "together"
        )
        groups.setdefault(key, []).append(dosage)
    if all(isinstance(k, int) for k in groups):
        groups = dict(sorted(groups.items(), key=lambda kv: int(str(kv[0]))))  # steps in sequence order
    timing = "|".join(sorted({_time_signature(d) for d in dosages}))
    single = bool(dosages) and all(_is_single(d) for d in dosages)
    spans = _step_spans(list(groups.values()), anchor)
    steps: list[DoseStep] = []
    readable = True
    for lines, (start, end) in zip(groups.values(), spans, strict=True):
        doses = [_line_dose(d, administration=administration) for d in lines]
        if any(d is None for d in doses) or len({d.unit for d in doses if d}) > 1:
            readable = False  # one unreadable line makes the total unknowable
            continue
        known = [d for d in doses if d is not None]
        total = Dose(sum(d.low for d in known), sum(d.high for d in known), known[0].unit)
        steps.append(DoseStep(start, end, total))
    starts = tuple(s for s, _e in spans if s is not None)
    # A step without an end (maintenance after a taper) leaves the record open-ended.
    ends = tuple(e for _s, e in spans if e is not None) if all(e is not None for _s, e in spans) else ()
    if not readable or not steps or len({s.dose.unit for s in steps}) > 1:
        return Dosing(None, (), starts, ends, timing, single)
    overall = Dose(min(s.dose.low for s in steps), max(s.dose.high for s in steps), steps[0].dose.unit)
    steps_undated = False
    if len(steps) > 1 and (any(s.start is None for s in steps) or any(s.end is None for s in steps[:-1])):
        # Steps whose days cannot all be told apart: only the range over them is known.
        steps_undated = len({(s.dose.low, s.dose.high) for s in steps}) > 1
        steps = [DoseStep(None, None, overall)]
    stated = [_stated_per_day(d) for d in dosages] if not administration and len(groups) == 1 else []
    said = [rate for rate in stated if rate is not None]
    rates = (sum(r[0] for r in said), sum(r[1] for r in said)) if said and len(said) == len(stated) else None
    return Dosing(overall, tuple(steps), starts, ends, timing, single, rates, steps_undated)


def _step_spans(
    groups: Sequence[Sequence[Mapping[str, Any]]], anchor: date | None
) -> list[tuple[date | None, date | None]]:
    """(start, end) of each group: its own boundsPeriod, else chained after the previous step by
    boundsDuration (a taper written as "40 mg for 5 days, then 30 mg for 5 days...")."""
    spans: list[tuple[date | None, date | None]] = []
    previous_end: date | None = None
    for lines in groups:
        repeat = repeat_of(lines[0])
        period = mapping(repeat.get("boundsPeriod"))
        start = day(period.get("start"))
        end = day(period.get("end"))
        if start is None:
            start = previous_end + timedelta(days=1) if previous_end is not None else anchor
        length = duration_days(repeat.get("boundsDuration"))
        if end is None and length is not None and start is not None:
            # boundsDuration counts from the first dose: 14 days from day 1 ends on day 14.
            end = start + timedelta(days=max(math.ceil(length) - 1, 0))
        spans.append((start, end))
        previous_end = end
    return spans


def _is_single(dosage: Mapping[str, Any]) -> bool:
    timing = mapping(dosage.get("timing"))
    if repeat_of(dosage).get("count") == 1:
        return True
    codes = {code.upper() for _s, code, _d in codings(mapping(timing.get("code")))}
    return bool(codes & {"ONCE", "STAT", "NOW"})


def _time_signature(dosage: Mapping[str, Any]) -> str:
    timing = mapping(dosage.get("timing"))
    repeat = repeat_of(dosage)
    parts = [str(w) for w in items(repeat.get("when")) if isinstance(w, str)]
    parts += [str(t) for t in items(repeat.get("timeOfDay")) if isinstance(t, str)]
    parts += [code.upper() for _s, code, _d in codings(mapping(timing.get("code")))
              if code.upper() in {"AM", "PM", "QAM", "QPM", "QHS", "HS", "BED", "QNOON"}]
    return ",".join(sorted(parts))


def _line_dose(dosage: Mapping[str, Any], *, administration: bool) -> Dose | None:
    amount = _amount(dosage, administration=administration)
    if amount is None:
        return None
    low, high, unit = amount
    if administration:
        return Dose(low, high, unit)  # what was given that day
    rate = per_day(dosage)
    if rate is None:
        return None
    low, high = low * rate[0], high * rate[1]
    cap = _max_per_day(dosage.get("maxDosePerPeriod"), unit)
    if cap is not None:  # "5-10 mg as needed, at most 20 mg a day"
        low, high = min(low, cap), min(high, cap)
    return Dose(low, high, unit)


def _max_per_day(ratio: object, unit: str) -> float | None:
    """maxDosePerPeriod as an amount per day, when its unit is the dose's."""
    numerator = _quantity(mapping(mapping(ratio).get("numerator")))
    days = duration_days(mapping(ratio).get("denominator"))
    if numerator is None or days is None or days <= 0 or numerator[2].lower() != unit.lower():
        return None
    return numerator[0] / days


def _amount(dosage: Mapping[str, Any], *, administration: bool) -> tuple[float, float, str] | None:
    if administration:
        dose = dosage.get("dose")
        return _quantity(dose) if isinstance(dose, Mapping) else None
    for dose_and_rate in items(dosage.get("doseAndRate")):
        if not isinstance(dose_and_rate, Mapping):
            continue
        quantity = dose_and_rate.get("doseQuantity")
        if isinstance(quantity, Mapping):
            return _quantity(quantity)
        dose_range = dose_and_rate.get("doseRange")
        if isinstance(dose_range, Mapping):
            low = _quantity(mapping(dose_range.get("low")))
            high = _quantity(mapping(dose_range.get("high")))
            if high is None:
                return None  # an open-ended range cannot bound the dose
            return ((low or high)[0], high[1], high[2])
    return None


def _quantity(q: Mapping[str, Any]) -> tuple[float, float, str] | None:
    value = q.get("value")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return None
    if value <= 0:
        # Not a dose: a -40 mg line is an entry error that must not lower a day's total, and an active
        # order of "0 mg" says nothing of what is taken (read as 0 mg/day it passed E3).
        return None
    code = str(q.get("code") or "").strip()
    # A SNOMED CT dose-form code (385055001 "Tablet") says less than its unit text.
    unit = str(q.get("unit") or "").strip() if not code or code.isdigit() else code
    return float(value), float(value), unit


def _stated_per_day(dosage: Mapping[str, Any]) -> tuple[float, float] | None:
    """``per_day`` when the dosage says how often (frequency or period, a timing code, times of day);
    None when "once a day" would only be ``per_day``'s assumption."""
    timing = mapping(dosage.get("timing"))
    repeat = repeat_of(dosage)
    said = ("frequency", "frequencyMax", "period", "when", "timeOfDay")
    if timing.get("code") is None and not any(repeat.get(key) is not None for key in said):
        return None
    return per_day(dosage)


def per_day(dosage: Mapping[str, Any]) -> tuple[float, float] | None:
    """(min, max) administrations per day. ``repeat.frequency``/``period`` win; else ``timing.code``;
    else one per ``when``/``timeOfDay`` entry; once daily when nothing is said. ``dayOfWeek`` thins a
    daily rate to the days named. None when the timing cannot be read (an unknown code)."""
    timing = mapping(dosage.get("timing"))
    repeat = repeat_of(dosage)
    when = [w for w in items(repeat.get("when")) if isinstance(w, str)]
    times = [t for t in items(repeat.get("timeOfDay")) if isinstance(t, str)]
    weekdays = [w for w in items(repeat.get("dayOfWeek")) if isinstance(w, str)]
    frequency = repeat.get("frequency")
    period = repeat.get("period")
    stated = isinstance(frequency, (int, float)) or isinstance(period, (int, float))
    code = timing.get("code")
    if not stated and isinstance(code, Mapping):
        rate = _code_rate(code)
        if rate is None:
            return None
        return rate, rate
    if not isinstance(frequency, (int, float)) or isinstance(frequency, bool):
        frequency = 1
    elif frequency <= 0:
        return None  # "0 or -2 times a day" cannot be read as a rate
    frequency_max = repeat.get("frequencyMax")
    if not isinstance(frequency_max, (int, float)) or frequency_max < frequency:
        frequency_max = frequency
    if period is None:
        period = 1
    unit = _UNIT_WORDS.get(str(repeat.get("periodUnit") or "d"), str(repeat.get("periodUnit") or "d"))
    if not isinstance(period, (int, float)) or period <= 0 or unit not in UNIT_DAYS:
        return None
    days = float(period) * UNIT_DAYS[unit]
    # "1 per day at 08:00 and 20:00" is two doses a day: each time of day is an administration.
    occasions = max(len(when), len(times)) if days == 1 else 0
    low, high = max(float(frequency), occasions) / days, max(float(frequency_max), occasions) / days
    if weekdays and days < 7:
        low, high = low * len(set(weekdays)) / 7, high * len(set(weekdays)) / 7
    return low, high


def _code_rate(code: Mapping[str, Any]) -> float | None:
    """Administrations per day of a Timing.code (any system: the abbreviations are shared)."""
    candidates = [c for _s, c, _d in codings(code)] + [str(code.get("text") or "")]
    candidates += [d for _s, _c, d in codings(code)]
    for raw in candidates:
        text = raw.strip().upper().replace(" ", "") if len(raw.strip()) <= 6 else raw.strip().upper()
        if text in _TIMING_CODES:
            return float(_TIMING_CODES[text])
        m = _EVERY_N.match(text)
        if m and float(m.group(1)) > 0:
            return 1 / (float(m.group(1)) * _EVERY_N_DAYS[m.group(2)])
        words = raw.strip().lower()
        if words in _TIMING_WORDS:
            return float(_TIMING_WORDS[words])
    return None
