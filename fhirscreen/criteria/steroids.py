"""E1 (non-SLE corticosteroid courses > 2 weeks in 12 weeks) and E3 (prednisone > 0.5 mg/kg/day in 4 weeks).

Systemic corticosteroids and their prednisone-equivalence factors are a table of the trial file; topical,
inhaled, ophthalmic and other local forms never count (by route code, dose form or drug name).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from fhirscreen.criteria._labs import report_impossible
from fhirscreen.criteria._medications import (
    Drug,
    Exposure,
    Interval,
    clip,
    daily_mg,
    exposures,
    first_drug,
    reason_concepts,
    total_days,
)
from fhirscreen.criteria._therapies import Use, change_days, day_total, therapies
from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, ValueSetRef, evaluator, result
from fhirscreen.fhir.codes import concept_label
from fhirscreen.fhir.dates import months_before
from fhirscreen.fhir.resources import condition_span, observation_day, ref
from fhirscreen.record import PatientRecord

# UCUM mass units and their common non-UCUM spellings (lower-cased), to kilograms.
_LB = 0.45359237
_OZ = _LB / 16
_KG: dict[str, float] = {
    "kg": 1.0, "kgs": 1.0, "kilogram": 1.0, "kilograms": 1.0, "g": 0.001, "gm": 0.001, "gram": 0.001,
    "grams": 0.001, "[lb_av]": _LB, "lb": _LB, "lbs": _LB, "lb_av": _LB, "pound": _LB, "pounds": _LB,
    "[oz_av]": _OZ, "oz": _OZ, "oz_av": _OZ, "ounce": _OZ, "ounces": _OZ,
}


class Steroid(Drug):
    # Prednisone-equivalent mg per mg of this drug; None: not converted (reported only, e.g. budesonide).
    factor: float | None = None
    # Daily doses at or below this many mg are physiological replacement, not treatment (hydrocortisone).
    replacement_max_mg: float | None = None


class SteroidCourseParams(Params):
    steroids: list[Steroid]
    local_forms: ValueSetRef
    sle_reasons: list[ValueSetRef]  # an indication in any of these is SLE treatment
    # Active non-SLE conditions usually treated with steroids: with one, reason-less courses are unknown.
    steroid_responsive_conditions: ValueSetRef | None = None
    window_days: int = 84  # "within the 12 weeks preceding the screening visit"
    max_days: int = 14  # "more than a total of 2 weeks" fails
    unstated_duration_days: int = 30  # an order without a duration may have lasted this long


class SteroidDoseParams(Params):
    steroids: list[Steroid]
    local_forms: ValueSetRef
    body_weight: ValueSetRef
    # A dialysis dry weight is not the weight a dose is prescribed by, but it is used when no other usable
    # body weight is on record (criteria-codes.md E3: "not 8341-0 dry weight ... unless nothing else").
    dry_weight: ValueSetRef | None = None
    window_days: int = 28  # "in the 4 weeks prior to the screening visit"
    max_mg_per_kg: float = 0.5  # more than this fails
    weight_max_age_months: int = 12
    # Without a weight, only a dose above max_mg_per_kg x this weight decides (Appendix A #12).
    assumed_max_weight_kg: float = 200.0
    # ... and a dose at or below max_mg_per_kg x this weight passes: no plausible adult weighs less.
    assumed_min_weight_kg: float | None = None
    unstated_duration_days: int = 30


@dataclass(frozen=True)
class _Use:
    """A systemic corticosteroid exposure as E1/E3 see it."""

    exp: Exposure
    drug: Steroid
    known: Interval
    possible: Interval


def _steroid_uses(
    record: PatientRecord, ctx: Context, steroids: Sequence[Steroid], local_forms: str, unstated_days: int
) -> tuple[list[_Use], list[Exposure]]:
    """Systemic steroid exposures started on or before as-of, and local-form ones (not counted)."""
    local = ctx.vs(local_forms)
    uses: list[_Use] = []
    local_hits: list[Exposure] = []
    for exp in exposures(record):
        drug = first_drug(exp, steroids, ctx.value_sets)
        if drug is None or not isinstance(drug, Steroid):
            continue
        if exp.is_local(local):
            local_hits.append(exp)
            continue
        if exp.start is None and exp.ongoing:
            # "Currently taking" with no date at all: current use on the screening date.
            today = Interval(ctx.as_of, ctx.as_of)
            uses.append(_Use(exp, drug, today, today))
            continue
        if not exp.seen_by(ctx.as_of) or exp.start is None:
            continue
        last = exp.last_day(ctx.as_of) or exp.start
        if exp.resource_type == "MedicationAdministration":
            last = min(ctx.as_of, max(last, exp.start + timedelta(days=drug.covers_days - 1)))
        possible = exp.possible_last_day(ctx.as_of, unstated_days) or last
        uses.append(_Use(exp, drug, Interval(exp.start, last), Interval(exp.start, max(last, possible))))
    return uses, local_hits


# ----------------------------------------------------------------------------------------------
# E1


@dataclass(frozen=True)
class _Indication:
    kind: str  # "sle", "non-sle", "unreadable", "none"
    text: str


def _indication(record: PatientRecord, ctx: Context, exp: Exposure, sle_sets: Sequence[str]) -> _Indication:
    # Codes only, not the display of a reference the record does not hold: the SLE value sets are codes,
    # so "Systemic lupus erythematosus" as a display would read as a non-SLE reason (unreadable instead).
    concepts, unresolved = reason_concepts(record, exp, displays=False)
    for concept in concepts:
        if any(ctx.vs(name).match(concept) is not None for name in sle_sets):
            return _Indication("sle", concept_label(concept))
    if concepts:
        return _Indication("non-sle", concept_label(concepts[0]))
    if unresolved:
        return _Indication("unreadable", f"reason {', '.join(unresolved)} not in the record")
    return _Indication("none", "no reason recorded")


@evaluator("non_sle_steroid_course", SteroidCourseParams)
def non_sle_steroid_course(
    record: PatientRecord, ctx: Context, params: SteroidCourseParams
) -> CriterionResult:
    """Systemic corticosteroids for a non-SLE reason on more than N days in total within the window."""
    as_of = ctx.as_of
    first = as_of - timedelta(days=params.window_days)
    uses, _local = _steroid_uses(
        record, ctx, params.steroids, params.local_forms, params.unstated_duration_days
    )
    in_window = [u for u in uses if u.possible.end >= first]
    kinds = ("sle", "non-sle", "unreadable", "none")
    groups: dict[str, list[tuple[_Use, _Indication]]] = {k: [] for k in kinds}
    replacement: list[_Use] = []
    for use in in_window:
        if _is_replacement(use):
            replacement.append(use)
            continue
        why = _indication(record, ctx, use.exp, params.sle_reasons)
        groups[why.kind].append((use, why))
    since = f"since {first.isoformat()}"
    evidence = [u.exp.ref for u in in_window]
    non_sle = groups["non-sle"]
    known_days = total_days(clip([u.known for u, _ in non_sle], first, as_of))
    doubtful = non_sle + groups["unreadable"]
    possible_days = total_days(clip([u.possible for u, _ in doubtful], first, as_of))
    described = "; ".join(_describe(u, why) for u, why in doubtful)
    limit = f"{params.max_days} days"
    if known_days > params.max_days:
        return result(
            Outcome.FAIL,
            f"Systemic corticosteroids for non-SLE reasons on {_days(known_days)} {since} "
            f"(more than {limit}): {described}.",
            evidence, non_sle_days=known_days,
        )
    if possible_days > params.max_days:
        return result(
            Outcome.UNKNOWN,
            f"Non-SLE corticosteroid use {since} is {_days(known_days)} on record but could be up to "
            f"{_days(possible_days)} (a course without end date or an unreadable reason): {described}.",
            evidence, non_sle_days=known_days,
            next_step="Confirm the duration and indication of these courses.",
        )
    unexplained = groups["none"]
    unexplained_days = total_days(clip([u.possible for u, _ in unexplained], first, as_of))
    notes = _course_notes(groups, replacement, known_days, unexplained_days)
    if unexplained_days > params.max_days and params.steroid_responsive_conditions:
        conditions = _active_conditions(record, ctx, params.steroid_responsive_conditions, first)
        if conditions:
            labels = ", ".join(dict.fromkeys(concept_label(c.get("code")) for c in conditions))
            return result(
                Outcome.UNKNOWN,
                f"Corticosteroids on {_days(unexplained_days)} {since} with no recorded reason, while a "
                f"steroid-responsive non-SLE condition was active ({labels}): {notes}.",
                evidence + [ref(c) for c in conditions], non_sle_days=known_days,
                next_step="Ask the prescriber whether the course treated SLE or the other condition.",
            )
    if not in_window:
        return result(Outcome.PASS, f"No systemic corticosteroid on record {since}.", non_sle_days=0)
    return result(Outcome.PASS, f"Non-SLE corticosteroid use {since} does not exceed {limit}: {notes}.",
                  evidence, non_sle_days=known_days)


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _is_replacement(use: _Use) -> bool:
    limit = use.drug.replacement_max_mg
    mg = daily_mg(use.exp)
    return limit is not None and mg is not None and mg[1] <= limit


def _describe(use: _Use, why: _Indication) -> str:
    return f"{use.exp.label} {use.exp.when()} for {why.text} ({use.exp.ref})"


def _course_notes(
    groups: Mapping[str, Sequence[tuple[_Use, _Indication]]], replacement: Sequence[_Use], non_sle_days: int,
    unexplained_days: int,
) -> str:
    notes = [f"{_days(non_sle_days)} for non-SLE reasons"]
    if groups["sle"]:
        notes.append(f"{len(groups['sle'])} course(s) for SLE")
    if groups["none"]:
        count = len(groups["none"])
        span = _days(unexplained_days)
        notes.append(f"{count} course(s) ({span}) without a recorded reason, counted as SLE treatment")
    if replacement:
        notes.append(f"physiological replacement not counted ({', '.join(u.exp.label for u in replacement)})")
    return "; ".join(notes)


def _active_conditions(
    record: PatientRecord, ctx: Context, value_set: str, first: date
) -> list[dict[str, Any]]:
    vs = ctx.vs(value_set)
    return [
        c for c in record.of_type("Condition")
        if vs.match(c.get("code")) is not None and condition_span(c).overlaps(first, ctx.as_of)
    ]


# ----------------------------------------------------------------------------------------------
# E3


@dataclass(frozen=True)
class _Weight:
    kg: float
    on: date
    ref: str


@evaluator("steroid_dose", SteroidDoseParams)
def steroid_dose(record: PatientRecord, ctx: Context, params: SteroidDoseParams) -> CriterionResult:
    """Highest daily prednisone-equivalent dose in the window, per kg of the latest body weight."""
    as_of = ctx.as_of
    first = as_of - timedelta(days=params.window_days)
    uses, _local = _steroid_uses(
        record, ctx, params.steroids, params.local_forms, params.unstated_duration_days
    )
    in_window = [u for u in uses if u.possible.end >= first]
    since = f"since {first.isoformat()}"
    if not in_window:
        return result(Outcome.PASS, f"No systemic corticosteroid on record {since}.")
    evidence = [u.exp.ref for u in in_window]
    unconverted = [u for u in in_window if u.drug.factor is None]
    counted = [u for u in in_window if u.drug.factor is not None]
    low_day, low, high = _daily_peaks(counted, first, as_of)
    weight, unreadable = _latest_weight(record, ctx, params.body_weight)
    oldest = months_before(as_of, params.weight_max_age_months)
    stale = weight is not None and weight.on < oldest
    usable = None if stale else weight
    dry = None
    if usable is None and params.dry_weight is not None:
        dry, _dry_unreadable = _latest_weight(record, ctx, params.dry_weight)
        usable = dry = dry if dry is not None and dry.on >= oldest else None
    notes = _dose_notes(counted, unconverted)
    details: dict[str, Any] = {"max_prednisone_eq_mg_day": round(low, 2)} if low > 0 else {}
    dose_known = math.isfinite(high)
    if usable is not None:
        evidence.append(usable.ref)
        details["weight_kg"] = round(usable.kg, 1)
        if low > 0:
            details["mg_per_kg_day"] = round(low / usable.kg, 3)
        threshold_mg = params.max_mg_per_kg * usable.kg
        per_kg = f"{usable.kg:.1f} kg on {usable.on.isoformat()}"
        if dry is not None:
            per_kg += ", a dry weight: no other usable body weight on record"
            details["dry_weight"] = True
        if low > threshold_mg:
            return result(
                Outcome.FAIL,
                f"Prednisone-equivalent {low:g} mg/day on {low_day} = {low / usable.kg:.2f} mg/kg/day "
                f"(weight {per_kg}), above {params.max_mg_per_kg:g} mg/kg/day: {notes}.",
                evidence, **details,
            )
        if high <= threshold_mg:
            return result(
                Outcome.PASS,
                f"Highest prednisone-equivalent {high:g} mg/day {since} = {high / usable.kg:.2f} "
                f"mg/kg/day (weight {per_kg}), not above {params.max_mg_per_kg:g}: {notes}.",
                evidence, **details,
            )
        why = (f"the dose could be up to {high:g} mg/day (a dose range, overlapping orders or a course "
               "whose end is not recorded)" if dose_known else "the dose is not recorded for every "
               "corticosteroid")
        return result(
            Outcome.UNKNOWN,
            f"Prednisone-equivalent {low:g} mg/day on record {since}, but {why}, so it cannot be bounded "
            f"below {threshold_mg:.1f} mg ({params.max_mg_per_kg:g} mg/kg x {per_kg}): {notes}.",
            evidence, next_step="Confirm the corticosteroid dose(s) taken in the last 4 weeks.", **details,
        )
    ceiling = params.max_mg_per_kg * params.assumed_max_weight_kg
    if low > ceiling:
        return result(
            Outcome.FAIL,
            f"Prednisone-equivalent {low:g} mg/day on {low_day} exceeds {params.max_mg_per_kg:g} mg/kg/day "
            f"at any weight up to {params.assumed_max_weight_kg:g} kg (no usable body weight): {notes}.",
            evidence, **details,
        )
    floor_kg = params.assumed_min_weight_kg
    if floor_kg is not None and high <= params.max_mg_per_kg * floor_kg:
        return result(
            Outcome.PASS,
            f"Highest prednisone-equivalent {high:g} mg/day {since} is not above {params.max_mg_per_kg:g} "
            f"mg/kg/day at any adult weight of {floor_kg:g} kg or more (no body weight needed): {notes}.",
            evidence, **details,
        )
    missing = "no body weight on record"
    if weight is not None:
        evidence.append(weight.ref)
        months = params.weight_max_age_months
        missing = f"latest body weight is from {weight.on.isoformat()}, over {months} months old"
    elif unreadable:
        evidence += [o.ref for o in unreadable]
        shown = ", ".join(dict.fromkeys(f"{o.why} ({o.ref})" for o in unreadable))
        missing = f"the body weight on record cannot be used: {shown}"
    return result(
        Outcome.UNKNOWN, f"Corticosteroids {since} but {missing}: {notes}.", evidence,
        next_step="Record a current body weight" + ("." if dose_known else " and the steroid dose(s)."),
        **details,
    )


def _daily_peaks(uses: Sequence[_Use], first: date, as_of: date) -> tuple[str, float, float]:
    """(day of the highest known dose, highest known daily pred-eq, highest possible daily pred-eq),
    with one therapy recorded several ways counted once (``_therapies``) and taper steps by date."""
    converted = [Use(u.exp, u.drug.name, u.drug.factor or 0.0, u.known, u.possible) for u in uses]
    groups = therapies(converted)
    best_day, best_low, best_high = first, 0.0, 0.0
    # Every day from ``first`` to ``as_of``, read only where the total may change (the first day
    # of the highest total is one of those).
    for d in change_days(groups, first, as_of):
        low, high = day_total(groups, d)
        if low > best_low:
            best_day, best_low = d, low
        best_high = max(best_high, high)
    return best_day.isoformat(), round(best_low, 4), best_high


def _dose_notes(counted: Sequence[_Use], unconverted: Sequence[_Use]) -> str:
    parts = []
    for use in counted:
        mg = daily_mg(use.exp)
        if mg is None:
            dose = "dose not recorded"
        else:
            amount = f"{mg[1]:g}" if mg[0] == mg[1] else f"{mg[0]:g}-{mg[1]:g}"
            steps = use.exp.dosing.steps if use.exp.dosing else ()
            taper = " in dated steps" if len(steps) > 1 else ""
            dose = f"{amount} mg/day{taper} x {use.drug.factor:g}"
        parts.append(f"{use.exp.label} {use.exp.when()} ({dose}; {use.exp.ref})")
    for use in unconverted:
        parts.append(f"{use.exp.label} {use.exp.when()} (no prednisone equivalence; not counted)")
    return "; ".join(parts)


@dataclass(frozen=True)
class _UnreadableWeight:
    ref: str
    why: str  # "unit 'stone'", "6000 kg, outside 20-400 kg"



def _latest_weight(
    record: PatientRecord, ctx: Context, value_set: str
) -> tuple[_Weight | None, list[_UnreadableWeight]]:
    """The latest readable body weight, and weights whose unit is not a mass unit (a data-quality
    finding each: such a weight is on record, so "no weight" would be wrong)."""
    vs = ctx.vs(value_set)
    best: _Weight | None = None
    unreadable: list[_UnreadableWeight] = []
    for obs in record.of_type("Observation"):
        if vs.match(obs.get("code")) is None:
            continue
        on = observation_day(obs)
        if not isinstance(on, date) or on > ctx.as_of:
            continue
        quantity = obs.get("valueQuantity")
        kg = _kilograms(quantity)
        if kg is None:
            if isinstance(quantity, Mapping) and isinstance(quantity.get("value"), (int, float)):
                unit = str(quantity.get("code") or quantity.get("unit") or "")
                unreadable.append(_UnreadableWeight(ref(obs), f"unit '{unit or 'no unit'}'"))
                ctx.quality.add("warning", ref(obs), "unknown-unit",
                                f"body weight in unit {unit or '(none)'!r} cannot be converted to kg")
            continue
        # A weight outside the value set's bounds (20-400 kg) is an entry error (grams as kg, a typo), not
        # a weight to dose by: 6000 kg made 40 mg of prednisone 0.01 mg/kg/day.
        if vs.plausible is not None and vs.plausible.unit not in ("", "kg"):
            raise ValueError(f"the plausible bounds of {value_set} must be in kg, not {vs.plausible.unit}")
        impossible = vs.plausible.breach(kg) if vs.plausible is not None else None
        if impossible is not None:
            unreadable.append(_UnreadableWeight(ref(obs), f"{kg:g} kg, {impossible}"))
            report_impossible(ctx, ref(obs), f"body weight {kg:g} kg", impossible)
            continue
        if best is None or on > best.on:
            best = _Weight(kg, on, ref(obs))
    return best, unreadable


def _kilograms(quantity: object) -> float | None:
    if not isinstance(quantity, Mapping):
        return None
    value = quantity.get("value")
    unit = str(quantity.get("code") or quantity.get("unit") or "").strip().lower()
    if not isinstance(value, (int, float)) or isinstance(value, bool) or unit not in _KG:
        return None
    return float(value) * _KG[unit]  # 0 or less: an implausible weight, said as such by the caller
