"""FHIR dates and periods, reduced to calendar days.

FHIR dates may be partial (``1980``, ``1980-04``); a partial date is kept as the range of days it
could mean so that callers can tell when it cannot decide a threshold.
"""

from __future__ import annotations

import calendar
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta

_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
# What may follow a full date: FHIR's time of day and zone (hours 00-23, minutes and seconds 00-59, a
# leap second 60; a zone from -13:59 to +14:00). Read leniently as FHIR data are written: the seconds
# or the zone may be missing (local time). A time that cannot be ("T25:00", "T10:61", "+25:00") or
# anything else after the date makes the whole value unreadable (a ``malformed-element`` finding).
_TIME_RE = re.compile(
    r"T(?:[01]\d|2[0-3]):[0-5]\d(?::(?:[0-5]\d|60)(?:\.\d{1,9})?)?(?:Z|[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00))?"
)


@dataclass(frozen=True)
class PartialDate:
    """A FHIR date as the first and last calendar day it can denote."""

    earliest: date
    latest: date
    text: str

    @property
    def exact(self) -> bool:
        return self.earliest == self.latest


# text -> parsed. Criteria read the same resource's dates many times (every window, every lab), and a
# record repeats its timestamps; PartialDate is immutable, so one parse per distinct text is shared.
# Bounded so that odd data cannot grow it without limit.
_PARSED: dict[str, PartialDate | None] = {}
_PARSED_MAX = 200_000


def parse_date(value: object) -> PartialDate | None:
    """Parse a FHIR date/dateTime/instant; None when absent or malformed (time and zone are dropped)."""
    if value.__class__ is not str:
        return _parse(value) if isinstance(value, str) else None
    try:
        return _PARSED[value]
    except KeyError:
        parsed = _parse(value)
        if len(_PARSED) < _PARSED_MAX:
            _PARSED[value] = parsed
        return parsed


def _parse(value: str) -> PartialDate | None:
    text = value.strip()
    m = _DATE_RE.match(text)
    if not m:
        return None
    if m.end() < len(text) and (m.group(3) is None or _TIME_RE.fullmatch(text, m.end()) is None):
        return None  # a time after a partial date, or one that is not a time of day (see _TIME_RE)
    try:
        year = int(m.group(1))
        if m.group(2) is None:
            return PartialDate(date(year, 1, 1), date(year, 12, 31), value)
        month = int(m.group(2))
        if m.group(3) is None:
            last = calendar.monthrange(year, month)[1]
            return PartialDate(date(year, month, 1), date(year, month, last), value)
        day = date(year, month, int(m.group(3)))
        return PartialDate(day, day, value)
    except ValueError:
        return None


def day(value: object) -> date | None:
    """The earliest day a FHIR date can denote (for ordering and windows), or None.

    Criteria read a partial date as this one day; screening then reads the record again with each partial
    date at the other end of its range and decides only what every reading agrees on
    (criteria/_partial_dates.py)."""
    parsed = parse_date(value)
    return parsed.earliest if parsed else None


@dataclass(frozen=True)
class Span:
    """When something happened or held: start and end days, either may be open (None)."""

    start: date | None
    end: date | None

    def overlaps(self, first: date, last: date) -> bool:
        if self.start is not None and self.start > last:
            return False
        return not (self.end is not None and self.end < first)

    @property
    def latest(self) -> date | None:
        return self.end or self.start


# prefix -> the keys of its date choices, in the order ``span_of`` reads them (not built per call).
_CHOICE_KEYS: dict[str, tuple[str, str, str]] = {}


def _choice_keys(prefix: str) -> tuple[str, str, str]:
    keys = _CHOICE_KEYS[prefix] = (prefix + "DateTime", prefix + "Instant", prefix + "Date")
    return keys


def span_of(element: Mapping[str, Any], prefix: str) -> Span | None:
    """The span of a choice element such as ``effective[x]``/``onset[x]``/``performed[x]``."""
    bounds = span_bounds(element, prefix)
    return None if bounds is None else Span(*bounds)


def span_bounds(element: Mapping[str, Any], prefix: str) -> tuple[date | None, date | None] | None:
    """``span_of`` as (start, end), for hot paths that need no Span object."""
    for key in _CHOICE_KEYS.get(prefix) or _choice_keys(prefix):
        value = element.get(key)
        if value is None:  # absent: ``day`` would say None
            continue
        d = day(value)
        if d is not None:
            return d, d
    period = element.get(prefix + "Period")
    if period.__class__ is dict or isinstance(period, Mapping):
        start, end = day(period.get("start")), day(period.get("end"))
        if start or end:
            return start, end
    return None


@functools.lru_cache(maxsize=1024, typed=True)  # every patient asks for the same few windows
def months_before(as_of: date, months: int) -> date:
    """Calendar months back (criteria-codes.md 0.3: '6 months' is calendar months)."""
    return as_of - relativedelta(months=months)


def days_before(as_of: date, days: int) -> date:
    return as_of - timedelta(days=days)


def age_in_years(birth: date, on: date) -> int:
    """Completed years of age on a day."""
    years = on.year - birth.year
    if (on.month, on.day) < (birth.month, birth.day):
        years -= 1
    return years
