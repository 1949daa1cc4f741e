"""One therapy recorded several ways is one exposure: grouping medication records into therapies.

An order, the statement the patient confirmed it with (``basedOn``), the administrations that carried
it out (``request``), the pharmacy fills (``authorizingPrescription``) and its renewals
(``priorPrescription``, a shared ``groupIdentifier``, or the same drug re-ordered at the same dose and
times, overlapping) describe one therapy: their doses are not added. Distinct therapies taken on the
same day are, including two unlinked orders of one drug at different doses or times (10 mg tablets
plus 5 mg tablets, or a morning and an evening dose): nothing says one replaced the other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from fhirscreen.criteria._medications import Exposure, Interval, daily_mg


@dataclass(frozen=True)
class Use:
    """A record of one drug as a dose criterion sees it: ``factor`` converts its mg (prednisone-eq)."""

    exp: Exposure
    drug: str
    factor: float
    known: Interval
    possible: Interval


def same_therapy(a: Exposure, b: Exposure) -> bool:
    """Records of the same drug that describe one therapy (the caller checks drug and overlap)."""
    if _linked(a, b):
        return True
    if a.group is not None and a.group == b.group:
        return True
    for one, other in ((a, b), (b, a)):
        if one.dose is None and one.resource_type != "MedicationRequest" and other.dose is not None:
            return True  # a med-list entry or fill without a dose adds no dose of its own
    if a.dose is None or b.dose is None:
        return False  # an order without a dose may be another course: its dose is unknown
    timing_a = a.dosing.timing if a.dosing else ""
    timing_b = b.dosing.timing if b.dosing else ""
    return _close(daily_mg(a), daily_mg(b)) and a.dose.unit == b.dose.unit and timing_a == timing_b


def _linked(a: Exposure, b: Exposure) -> bool:
    return a.ref in b.links or b.ref in a.links or bool(set(a.links) & set(b.links))


def _close(x: tuple[float, float] | None, y: tuple[float, float] | None) -> bool:
    if x is None or y is None:
        return x is y
    return abs(x[0] - y[0]) < 1e-6 and abs(x[1] - y[1]) < 1e-6


def therapies(uses: Sequence[Use]) -> list[list[Use]]:
    """Uses grouped into therapies: same drug, and linked, or the same dose overlapping in time."""
    parent = list(range(len(uses)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(uses):
        for j in range(i + 1, len(uses)):
            b = uses[j]
            if a.drug != b.drug or not same_therapy(a.exp, b.exp):
                continue
            linked = _linked(a.exp, b.exp)
            overlap = a.possible.start <= b.possible.end and b.possible.start <= a.possible.end
            if linked or overlap:
                parent[find(j)] = find(i)
    groups: dict[int, list[Use]] = {}
    for i, use in enumerate(uses):
        groups.setdefault(find(i), []).append(use)
    return list(groups.values())


def _mg(use: Use, on: date) -> tuple[float, float] | None:
    mg = daily_mg(use.exp, on)
    return None if mg is None else (mg[0] * use.factor, mg[1] * use.factor)


def _governing(uses: Sequence[Use], on: date) -> tuple[float, float]:
    latest = max(uses, key=lambda u: (u.known.start, u.exp.ref))
    mg = _mg(latest, on)
    assert mg is not None
    return mg


def therapy_dose(therapy: Sequence[Use], on: date) -> tuple[float, float] | None:
    """(known, possible) daily dose of one therapy on a day; None when no record of it covers the day.

    The most recently started record with a dose governs (a renewal supersedes what it renews); the
    administrations given that day add up, and count when they exceed the order.
    """
    possible = [u for u in therapy if u.possible.start <= on <= u.possible.end]
    if not possible:
        return None
    known = [u for u in possible if u.known.start <= on <= u.known.end]
    given = [u for u in possible if u.exp.resource_type == "MedicationAdministration"]
    ordered = [u for u in possible if u.exp.resource_type != "MedicationAdministration"]
    low = high = 0.0
    dosed = [u for u in ordered if _mg(u, on) is not None]
    if dosed:
        high = _governing(dosed, on)[1]
        dosed_known = [u for u in dosed if u in known]
        if dosed_known:
            low = _governing(dosed_known, on)[0]
    elif ordered:
        high = math.inf  # the therapy is taken that day at a dose nobody recorded
    given_low = given_high = 0.0
    for use in given:
        mg = _mg(use, on)
        given_high += math.inf if mg is None else mg[1]
        if mg is not None and use in known:
            given_low += mg[0]
    return max(low, given_low), max(high, given_high)


def day_total(groups: Sequence[Sequence[Use]], on: date) -> tuple[float, float]:
    """(known, possible) total daily dose on a day: distinct therapies add up."""
    low = high = 0.0
    for therapy in groups:
        dose = therapy_dose(therapy, on)
        if dose is not None:
            low, high = low + dose[0], high + dose[1]
    return low, high


def change_days(groups: Sequence[Sequence[Use]], first: date, last: date) -> list[date]:
    """The days of [first, last] on which ``day_total`` may differ from the day before, with ``first``:
    a record's known or possible span starting, or ending the day before, and the same for a dated
    dosage step. On every other day the total is the one of the day before, so a search for the
    highest daily total need only look at these days."""
    if first > last:
        return []
    one = timedelta(days=1)
    edges = {first}
    for therapy in groups:
        for use in therapy:
            spans: list[tuple[date | None, date | None]] = [
                (use.known.start, use.known.end), (use.possible.start, use.possible.end)
            ]
            spans += [(s.start, s.end) for s in (use.exp.dosing.steps if use.exp.dosing else ())]
            for start, end in spans:
                if start is not None and first < start <= last:
                    edges.add(start)
                if end is not None and first <= end < last:  # end < last: the day after exists
                    edges.add(end + one)
    return sorted(edges)
