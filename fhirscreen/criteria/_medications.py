"""One normalised view of a patient's medication exposure, shared by I5, E1, E3, E4, E5 and E6.

MedicationStatement, MedicationRequest, MedicationAdministration and MedicationDispense say the same
things in different places: what drug (a CodeableConcept or a reference to a contained or separate
Medication), over which days (effective[x]; authoredOn + timing bounds + dispense supply; a fill's
whenHandedOver + daysSupply), how much per day (dosage), and why (reasonCode / reasonReference). Each
record that is exposure becomes one ``Exposure``; plans, proposals and "do not give" orders are not
exposure. Evaluators never read the raw medication resources again. The view does not depend on the
screening date, so it is cached per record.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from fhirscreen.criteria._dosing import Dose, Dosing, dosing, duration_days
from fhirscreen.criteria.base import Params, ValueSetRef
from fhirscreen.fhir.codes import ValueSet, codings, concept_label, concept_signature
from fhirscreen.fhir.dates import day, span_of
from fhirscreen.fhir.resources import Resource, items, mapping, ref
from fhirscreen.record import RESEARCH_STUDY_EXTENSION, PatientRecord

MEDICATION_TYPES = (
    "MedicationStatement", "MedicationRequest", "MedicationAdministration", "MedicationDispense",
)

# The FHIR element that says "done with it" vs "still going" differs per type; these are the statuses
# whose exposure is over (ended at the last date the record states, or an unrecorded date after it).
ENDED_STATUSES = frozenset({"completed", "stopped", "on-hold", "unknown", "not-done"})
# A MedicationStatement "intended" is a plan, not exposure ("not-taken" is dropped by hygiene).
PLANNED_STATUSES = frozenset({"intended"})
# MedicationRequest.intent values that are not an order to treat: a suggestion, a plan, a patient's
# directive, an option among several (R4 medicationrequest-intent). Orders of every kind are therapy.
NOT_ORDER_INTENTS = frozenset({"proposal", "plan", "directive", "option"})
# MedicationDispense statuses under which nothing reached the patient (R4 medicationdispense-status);
# cancelled, declined and entered-in-error are already dropped by hygiene.
NOT_HANDED_OVER = frozenset({"preparation", "on-hold", "cancelled", "declined", "entered-in-error"})

_MASS_TO_MG: dict[str, float] = {
    "mg": 1.0, "g": 1000.0, "gm": 1000.0, "mcg": 0.001, "ug": 0.001, "µg": 0.001, "[mg]": 1.0,
}
# Units that mean "one of the dose form" (tablet, capsule...): the strength comes from the drug name.
_UNIT_DOSE_FORMS = re.compile(
    r"^(1|\{?(tbl|tab|tablet|tablets|cap|caps|capsule|capsules|each|ea|unit|dose|pill)s?\}?|)$", re.IGNORECASE
)
# "predniSONE 20 MG Oral Tablet" -> 20 mg per tablet; "... 5 MG/ML Oral Solution" -> 5 mg per mL.
_STRENGTH = re.compile(r"(\d+(?:\.\d+)?)\s*(MG|MCG|G)\b(?!\s*/)", re.IGNORECASE)
_CONCENTRATION = re.compile(r"(\d+(?:\.\d+)?)\s*(MG|MCG|G)\s*/\s*(?:(\d+(?:\.\d+)?)\s*)?ML\b", re.IGNORECASE)
_SOLID_FORM = re.compile(r"tablet|capsule|\bpill\b|lozenge", re.IGNORECASE)
_RESEARCH_STUDY_EXT = RESEARCH_STUDY_EXTENSION
# Elements that point at the order a record carries out: the same therapy, not another one.
_ORDER_LINKS = ("basedOn", "request", "authorizingPrescription", "priorPrescription")


@dataclass(frozen=True)
class Exposure:
    """One medication record, normalised.

    ``start``..``end`` are the days the record says the drug was taken. ``ongoing`` means the record
    is still active with no end it states (exposure runs through the screening date). ``end_stated``
    is False when ``end`` is merely the last date the record mentions (a stopped order with no
    duration): the drug may have been taken for an unrecorded time after it.
    """

    ref: str
    resource_type: str
    status: str
    concepts: tuple[Mapping[str, Any], ...]  # drug code(s): the medication concept and its ingredients
    forms: tuple[Mapping[str, Any], ...]  # dose forms and routes, for telling systemic from local use
    label: str
    start: date | None
    end: date | None
    end_stated: bool
    ongoing: bool
    dose: Dose | None
    reason_codes: tuple[Mapping[str, Any], ...]
    reason_refs: tuple[str, ...]  # "Condition/x" etc.
    research_study: str | None  # the workflow-researchStudy extension (reference or display), if any
    # The daily dose by day (taper steps) and the time-of-day signature, when the dosage says them.
    dosing: Dosing | None = None
    # "MedicationRequest/x" this record carries out or renews (basedOn, request, authorizingPrescription,
    # priorPrescription), and its groupIdentifier: records linked so are one therapy.
    links: tuple[str, ...] = ()
    group: str | None = None
    # True when ``start`` is only the day the statement was asserted (no effective[x]): the drug was taken
    # then, and may have been for long before.
    start_asserted: bool = False
    # The workflow-researchStudy extension's Reference ({} when it holds none), to read the study by.
    study_reference: Mapping[str, Any] | None = None
    # The ResearchStudy that Reference points at, when the data hold it: contained in the record (``#id``)
    # or a separate resource (``PatientRecord.linked_study``).
    study: Mapping[str, Any] | None = None
    # The displays of reasonReference ("Condition/x", "UTI prophylaxis"); "" for a reference that names
    # no resource: the reason's own words, read when the resource is not in the record.
    reason_displays: tuple[tuple[str, str], ...] = ()

    def matches(self, vs: ValueSet) -> str | None:
        """The display of the first concept that matches ``vs`` (codes first, then names)."""
        for concept in self.concepts:
            hit = vs.match(concept)
            if hit is not None:
                return hit
        return None

    def is_local(self, local_forms: ValueSet) -> bool:
        """True for topical, inhaled, ophthalmic... use (by route code, dose form or drug name)."""
        return any(local_forms.match(c) is not None for c in (*self.forms, *self.concepts))

    def seen_by(self, as_of: date) -> bool:
        """Dated and started on or before the screening date (later records are ignored)."""
        return self.start is not None and self.start <= as_of

    def last_day(self, as_of: date) -> date | None:
        """The last day known to be exposed, as seen on the screening date (ongoing -> as_of)."""
        if self.ongoing or self.end is None:
            return as_of if self.ongoing else None
        return min(self.end, as_of)

    def covers(self, as_of: date) -> bool:
        """Still taken on the screening date."""
        return self.seen_by(as_of) and self.last_day(as_of) == as_of

    def possible_last_day(self, as_of: date, unstated_days: int) -> date | None:
        """The latest day the exposure may have lasted: an unstated end extends up to ``unstated_days``."""
        last = self.last_day(as_of)
        if self.end_stated or self.ongoing or self.start is None:
            return last
        return min(as_of, max(last or self.start, self.start + timedelta(days=unstated_days - 1)))

    def when(self) -> str:
        """Dates for a reason: "2026-01-02 to 2026-02-01", "since 2025-10-01", "on 2026-05-01"."""
        if self.start is None:
            return "currently (undated)" if self.ongoing else "(undated)"
        if self.start_asserted:
            return f"reported {'as current ' if self.ongoing else ''}on {self.start.isoformat()}"
        if self.ongoing:
            return f"since {self.start.isoformat()}"
        if self.end is None or self.end == self.start:
            return f"on {self.start.isoformat()}"
        return f"{self.start.isoformat()} to {self.end.isoformat()}"


# ----------------------------------------------------------------------------------------------
# Parameters shared by the medication criteria: each drug is a named value set of the trial file.


class Drug(Params):
    """One ingredient: its name for reasons and the trial-file value set that recognises it."""

    name: str
    value_set: ValueSetRef
    # A single administration (e.g. a monthly IV cyclophosphamide pulse) covers this many days.
    covers_days: int = 1


# Drug list and value sets (held, so that their ids stay theirs) -> the drug named by each combination
# of concepts (their signature numbers, see ``concept_signature``). Criteria ask ``first_drug`` of every
# exposure for every drug list, a dozen value sets each; the same drugs recur from patient to patient.
# The drug lists and value sets of a loaded trial do not change.
_FIRST_DRUG: dict[tuple[int, int], tuple[object, object, dict[tuple[int, ...], Drug | None]]] = {}
_FIRST_DRUG_MAX = 50_000  # answers per drug list; beyond it (odd data), the drugs are matched each time
_NOT_ASKED: Any = object()


def first_drug(exposure: Exposure, drugs: Sequence[Drug], value_sets: Mapping[str, ValueSet]) -> Drug | None:
    """The first drug of ``drugs`` whose value set matches one of the exposure's concepts."""
    concepts = exposure.concepts
    numbers = tuple(concept_signature(c)[1] for c in concepts)
    if -1 in numbers:  # the table of signatures is full: no number to remember the answer by
        return _first_drug(concepts, drugs, value_sets)
    key = (id(drugs), id(value_sets))
    held = _FIRST_DRUG.get(key)
    if held is None or held[0] is not drugs or held[1] is not value_sets:
        held = _FIRST_DRUG[key] = (drugs, value_sets, {})
    answers = held[2]
    found: Drug | None = answers.get(numbers, _NOT_ASKED)
    if found is _NOT_ASKED:
        found = _first_drug(concepts, drugs, value_sets)
        if len(answers) < _FIRST_DRUG_MAX:
            answers[numbers] = found
    return found


def _first_drug(
    concepts: Sequence[Mapping[str, Any]], drugs: Sequence[Drug], value_sets: Mapping[str, ValueSet]
) -> Drug | None:
    for drug in drugs:
        match = value_sets[drug.value_set].match
        # ``exposure.matches`` inlined: criteria ask this of every exposure for every drug list.
        for concept in concepts:
            if match(concept) is not None:
                return drug
    return None


def exposures(record: PatientRecord) -> tuple[Exposure, ...]:
    """Every medication exposure on record (hygiene already applied by the record), cached."""
    return record.memo("medications.exposures", lambda: tuple(_build_all(record)))


def _build_all(record: PatientRecord) -> Iterator[Exposure]:
    death = day(record.patient.get("deceasedDateTime"))
    for rtype in MEDICATION_TYPES:
        for res in record.of_type(rtype):
            if not is_exposure(res):
                continue
            exp = exposure_of(record, res)
            if death is not None:
                # Nothing is taken after death: later records are not therapy, open ones end there.
                if exp.start is not None and exp.start > death:
                    continue
                if exp.ongoing or (exp.end is not None and exp.end > death):
                    exp = replace(exp, end=death, end_stated=True, ongoing=False)
            yield exp


def is_exposure(res: Resource) -> bool:
    """Plans, proposals, "do not give" orders and fills that never reached the patient are not exposure.

    The one rule for every reader of medication records (the medication criteria here, the cellular
    therapies through ``_events.medications``)."""
    rtype = res.get("resourceType")
    status = res.get("status")
    status = status if isinstance(status, str) else None  # a malformed status is no status
    if rtype == "MedicationStatement":
        return status not in PLANNED_STATUSES
    if rtype == "MedicationRequest":
        intent = res.get("intent")
        intent = intent if isinstance(intent, str) else None
        return intent not in NOT_ORDER_INTENTS and res.get("doNotPerform") is not True
    if rtype == "MedicationDispense":
        # Handed over, or completed (a fill that is done reached the patient even if undated).
        handed = bool(res.get("whenHandedOver")) or status in (None, "completed")
        return status not in NOT_HANDED_OVER and handed
    return True


def exposure_of(record: PatientRecord, res: Resource) -> Exposure:
    """One medication record, normalised (not cached; ``is_exposure`` says whether it is exposure)."""
    rtype = str(res.get("resourceType"))
    medication = record.medication(res)
    concepts = _drug_concepts(res, medication)
    dosages = _dosages(res)
    forms = [d.get("route") for d in dosages] + [medication.get("form") if medication else None]
    anchor = _anchor(res)
    read = dosing(dosages, administration=rtype == "MedicationAdministration", anchor=anchor)
    start, end, end_stated, ongoing = _span(res, read)
    study_reference = _research_study_reference(res)
    return Exposure(
        ref=ref(res),
        resource_type=rtype,
        status=str(res.get("status") or ""),
        concepts=tuple(concepts),
        forms=tuple(f for f in forms if isinstance(f, Mapping)),
        label=concept_label(concepts[0]) if concepts else "(no code)",
        start=start,
        end=end,
        end_stated=end_stated,
        ongoing=ongoing,
        dose=read.dose,
        reason_codes=tuple(c for c in items(res.get("reasonCode")) if isinstance(c, Mapping)),
        reason_refs=tuple(_reference_strings(res.get("reasonReference"))),
        reason_displays=tuple(_reference_displays(res.get("reasonReference"))),
        research_study=_research_study(res),
        study_reference=study_reference,
        study=record.linked_study(res, study_reference) if study_reference else None,
        dosing=read,
        links=tuple(_links(res)),
        group=_group(res),
        start_asserted=_asserted_only(res, start),
    )


def _asserted_only(res: Resource, start: date | None) -> bool:
    statement = res.get("resourceType") == "MedicationStatement"
    return start is not None and statement and span_of(res, "effective") is None


def _anchor(res: Resource) -> date | None:
    """The day a dosage without bounds of its own starts."""
    span = span_of(res, "effective")
    if span is not None and span.start is not None:
        return span.start
    return day(res.get("authoredOn")) or day(res.get("whenHandedOver")) or day(res.get("dateAsserted"))


def _links(res: Resource) -> Iterator[str]:
    for element in _ORDER_LINKS:
        value = res.get(element)
        if value is None:  # usually absent
            continue
        for target in _reference_strings(value if isinstance(value, list) else [value]):
            if target.startswith("MedicationRequest/"):
                yield target


def _group(res: Resource) -> str | None:
    identifier = res.get("groupIdentifier")
    if isinstance(identifier, Mapping) and identifier.get("value"):
        return f"{identifier.get('system') or ''}|{identifier['value']}"
    return None


def _drug_concepts(res: Resource, medication: Resource | None) -> list[Mapping[str, Any]]:
    concepts: list[Mapping[str, Any]] = []
    direct = res.get("medicationCodeableConcept")
    if isinstance(direct, Mapping):
        concepts.append(direct)
    if medication is not None:
        if isinstance(medication.get("code"), Mapping):
            concepts.append(medication["code"])
        for ingredient in items(medication.get("ingredient")):
            item = ingredient.get("itemCodeableConcept") if isinstance(ingredient, Mapping) else None
            if isinstance(item, Mapping):
                concepts.append(item)
    else:
        # An unresolved medicationReference may still carry a display ("Rituximab 100 MG/10 ML").
        reference = res.get("medicationReference")
        if isinstance(reference, Mapping) and reference.get("display"):
            concepts.append({"text": str(reference["display"])})
    return concepts


def _dosages(res: Resource) -> list[Mapping[str, Any]]:
    if res.get("resourceType") == "MedicationAdministration":
        dosage = res.get("dosage")
        return [dosage] if isinstance(dosage, Mapping) else []
    key = "dosage" if res.get("resourceType") == "MedicationStatement" else "dosageInstruction"
    return [d for d in items(res.get(key)) if isinstance(d, Mapping)]


def _reference_strings(references: object) -> Iterator[str]:
    if not references:  # usually absent
        return
    for reference in references or () if isinstance(references, list) else ():
        if isinstance(reference, Mapping) and isinstance(reference.get("reference"), str):
            parts = reference["reference"].split("/")
            if len(parts) >= 2:
                yield f"{parts[-2]}/{parts[-1]}"


def _reference_displays(references: object) -> Iterator[tuple[str, str]]:
    """(target as ``_reference_strings`` gives it, or "", display) of each Reference with a display."""
    for reference in references if isinstance(references, list) else ():
        if not isinstance(reference, Mapping) or not isinstance(reference.get("display"), str):
            continue
        display = reference["display"].strip()
        target = next(_reference_strings([reference]), "")
        if display:
            yield target, display


def _research_study_reference(res: Resource) -> Mapping[str, Any] | None:
    for ext in items(res.get("extension")):
        if isinstance(ext, Mapping) and ext.get("url") == _RESEARCH_STUDY_EXT:
            value = ext.get("valueReference")
            return value if isinstance(value, Mapping) else {}
    return None


def _research_study(res: Resource) -> str | None:
    for ext in items(res.get("extension")):
        if isinstance(ext, Mapping) and ext.get("url") == _RESEARCH_STUDY_EXT:
            value = ext.get("valueReference")
            if isinstance(value, Mapping):
                return str(value.get("reference") or value.get("display") or "ResearchStudy")
            return "ResearchStudy"
    return None


# ----------------------------------------------------------------------------------------------
# When: the span of exposure.


def _span(res: Resource, read: Dosing) -> tuple[date | None, date | None, bool, bool]:
    """(start, end, end_stated, ongoing) of one record."""
    rtype = res.get("resourceType")
    status = res.get("status")
    if rtype == "MedicationRequest":
        return _request_span(res, read)
    if rtype == "MedicationDispense":
        return _dispense_span(res, read)
    span = span_of(res, "effective")
    start = span.start if span else None
    end = span.end if span else None
    if start is None and end is not None:
        start = end  # "taken until 2026-03-01": exposure on that day at least, start not recorded
    if rtype == "MedicationAdministration":
        # An administration happened on its day(s).
        return start, end or start, True, False
    # MedicationStatement: an active statement without an end is still being taken.
    if span is not None and span.end is not None and "effectivePeriod" in res:
        return start, end, True, False
    if span is None:
        # No effective[x]: the patient said so on dateAsserted ("currently taking" when active).
        start = day(res.get("dateAsserted"))
        if status == "active":
            return start, None, False, True
        return start, start, False, False
    if status == "active":
        return start, None, False, True
    return start, start, False, False


def _request_span(res: Resource, read: Dosing) -> tuple[date | None, date | None, bool, bool]:
    authored = day(res.get("authoredOn"))
    bounds_start = min(read.starts) if read.starts else None
    bounds_end = max(read.ends) if read.ends else None
    dispense = mapping(res.get("dispenseRequest"))
    validity = mapping(dispense.get("validityPeriod"))
    start = bounds_start or authored or day(validity.get("start"))
    supply_end = _supply_end(dispense, start)
    validity_end = day(validity.get("end"))
    if read.single and bounds_end is None and start is not None:
        return start, start, True, False  # a one-time dose ("rituximab 1000 mg once"): its day
    if res.get("status") == "active":
        # An active order runs through the screening date unless its dosage bounds end it; a dispense
        # supply that ran out does not end a chronic order (renewals are often not recorded), but an
        # acute course (a steroid burst, an antibiotic) ends with its supply.
        if bounds_end is not None:
            return start, bounds_end, True, False
        acute = {c for _s, c, _d in codings(mapping(res.get("courseOfTherapyType")))} & {"acute"}
        if acute and (supply_end or validity_end):
            return start, supply_end or validity_end, True, False
        return start, None, False, True
    end = bounds_end or supply_end or validity_end
    if end is not None:
        return start, end, True, False
    return start, start, False, False


def _dispense_span(res: Resource, read: Dosing) -> tuple[date | None, date | None, bool, bool]:
    """A fill lasts its daysSupply from the day it was handed over (else quantity / units per day)."""
    start = day(res.get("whenHandedOver"))
    if start is None and res.get("status") in (None, "completed"):
        start = day(res.get("whenPrepared"))
    supply = duration_days(res.get("daysSupply"))
    if supply is None:
        supply = _supply_from_quantity(res.get("quantity"), read)
    if start is None or supply is None or supply <= 0:
        return start, start, False, False
    return start, start + timedelta(days=max(math.ceil(supply) - 1, 0)), True, False


def _supply_from_quantity(quantity: object, read: Dosing) -> float | None:
    """60 tablets at 2 tablets a day last 30 days (only when the units agree)."""
    q = mapping(quantity)
    value = q.get("value")
    dose = read.dose
    if dose is None or dose.high <= 0 or not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    unit = str(q.get("code") or q.get("unit") or "").strip().lower()
    same = unit == dose.unit.lower() or (_UNIT_DOSE_FORMS.match(unit) and _UNIT_DOSE_FORMS.match(dose.unit))
    return float(value) / dose.high if same else None


def _supply_end(dispense: Mapping[str, Any], start: date | None) -> date | None:
    supply = duration_days(dispense.get("expectedSupplyDuration"))
    if supply is None or start is None:
        return None
    repeats = dispense.get("numberOfRepeatsAllowed")
    fills = 1 + (repeats if isinstance(repeats, int) and repeats > 0 else 0)
    return start + timedelta(days=max(math.ceil(supply * fills) - 1, 0))


# ----------------------------------------------------------------------------------------------
# How much: the daily dose.


def dose_on(exposure: Exposure, when: date) -> Dose | None:
    """The record's daily dose on a day: the taper step covering it, else its overall range."""
    if exposure.dosing is None:
        return exposure.dose
    return exposure.dosing.on(when)


def daily_mg(exposure: Exposure, on: date | None = None) -> tuple[float, float] | None:
    """The daily dose in mg (low, high), over the whole record or ``on`` a day (taper steps): mass
    units convert directly; tablets, capsules and mL use the strength in the drug's name
    ("predniSONE 20 MG Oral Tablet"). None when it cannot be known."""
    return dose_mg(exposure, exposure.dose if on is None else dose_on(exposure, on))


def dose_mg(exposure: Exposure, dose: Dose | None) -> tuple[float, float] | None:
    """A daily dose of the record's drug (one of its taper steps, say) in mg, as ``daily_mg``."""
    if dose is None:
        return None
    unit = dose.unit.lower()
    if unit in _MASS_TO_MG:
        return dose.low * _MASS_TO_MG[unit], dose.high * _MASS_TO_MG[unit]
    names = [str(c.get("text") or "") for c in exposure.concepts]
    names += [display for c in exposure.concepts for _s, _c, display in codings(c)]
    if unit == "ml":
        per_ml = _first(_mg_per_ml(n) for n in names)
        return (dose.low * per_ml, dose.high * per_ml) if per_ml is not None else None
    if _UNIT_DOSE_FORMS.match(unit):
        # A bare number (Synthea writes doseQuantity without a unit) counts tablets only when the drug
        # is a tablet or capsule; an explicit "tablet" unit trusts the strength in any name.
        candidates = [n for n in names if unit or _SOLID_FORM.search(n)]
        per_unit = _first(_mg_per_unit(n) for n in candidates)
        return (dose.low * per_unit, dose.high * per_unit) if per_unit is not None else None
    return None


def _first(values: Iterable[float | None]) -> float | None:
    return next((v for v in values if v is not None), None)


def _mg_per_unit(name: str) -> float | None:
    if _CONCENTRATION.search(name):
        return None  # a solution: "1 dose" says nothing about the volume
    found = _STRENGTH.findall(name)
    if len(found) != 1:
        return None  # none, or a combination product
    value, unit = found[0]
    return float(value) * _MASS_TO_MG[unit.lower()]


def _mg_per_ml(name: str) -> float | None:
    m = _CONCENTRATION.search(name)
    if not m:
        return None
    per = float(m.group(3)) if m.group(3) else 1.0
    return float(m.group(1)) * _MASS_TO_MG[m.group(2).lower()] / per


# ----------------------------------------------------------------------------------------------
# Why: the indication.


def reason_concepts(
    record: PatientRecord, exposure: Exposure, *, displays: bool = True
) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The indication concepts (reasonCode, the codes of referenced Conditions/Observations), and the
    references that could not be resolved in the record.

    A reference the record does not hold is read as if it were not there: with ``displays``, its display,
    when it has one, is the reason's text ({"text": display}); and a record whose own reasons give no
    concept (none, or only references the record does not hold) takes those of the order it carries out
    (a fill, an administration, a statement based on an order)."""
    concepts, unresolved = _reasons(
        record, exposure.reason_codes, exposure.reason_refs, exposure.reason_displays if displays else ()
    )
    if not concepts:
        for order in record.of_type("MedicationRequest"):
            if ref(order) in exposure.links:
                found, missing = _reasons(
                    record,
                    [c for c in items(order.get("reasonCode")) if isinstance(c, Mapping)],
                    list(_reference_strings(order.get("reasonReference"))),
                    list(_reference_displays(order.get("reasonReference"))) if displays else [],
                )
                concepts += found
                unresolved += missing
    return concepts, unresolved


def _reasons(
    record: PatientRecord,
    codes: Sequence[Mapping[str, Any]],
    targets: Sequence[str],
    displays: Sequence[tuple[str, str]],
) -> tuple[list[Mapping[str, Any]], list[str]]:
    concepts: list[Mapping[str, Any]] = list(codes)
    unresolved: list[str] = []
    shown = dict(displays)
    for target in targets:
        rtype, _sep, rid = target.partition("/")
        found = next((r for r in record.of_type(rtype) if r.get("id") == rid), None)
        if found is not None and isinstance(found.get("code"), Mapping):
            concepts.append(found["code"])
        else:
            unresolved.append(target)
            if shown.get(target):
                concepts.append({"text": shown[target]})
    concepts += [{"text": display} for target, display in displays if not target]
    return concepts, unresolved


# ----------------------------------------------------------------------------------------------
# Spans of days.


@dataclass(frozen=True)
class Interval:
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def merge(intervals: Iterable[Interval], max_gap_days: int = 0) -> list[Interval]:
    """Union of day intervals; two intervals separated by at most ``max_gap_days`` days are joined."""
    out: list[Interval] = []
    for iv in sorted(intervals, key=lambda i: (i.start, i.end)):
        if out and (iv.start - out[-1].end).days - 1 <= max_gap_days:
            if iv.end > out[-1].end:
                out[-1] = Interval(out[-1].start, iv.end)
        else:
            out.append(iv)
    return out


def clip(intervals: Iterable[Interval], first: date, last: date) -> list[Interval]:
    inside = (i for i in intervals if i.end >= first and i.start <= last)
    return [Interval(max(i.start, first), min(i.end, last)) for i in inside]


def total_days(intervals: Iterable[Interval]) -> int:
    return sum(i.days for i in merge(intervals))


# The dosing interval is read from the most recent administrations: a schedule may have changed (daily
# in hospital, then weekly at home), and it is the current one that says when the next dose is due.
_RECENT_GAPS = 6
# A gap counts as on schedule within this fraction of the median (a dose a day or two early or late).
_ON_SCHEDULE = 0.25


def regular_interval(days: Iterable[date], max_days: int) -> int | None:
    """The regular interval in days between administrations given on ``days`` (weekly methotrexate -> 7).

    The median gap between consecutive dosing days over the last few administrations, when at least three
    and most of those gaps lie within a quarter of it; None when the doses are fewer, irregular, daily,
    or further apart than ``max_days`` (no schedule to carry the therapy on by).
    """
    distinct = sorted(set(days))[-(_RECENT_GAPS + 1):]
    gaps = [(b - a).days for a, b in itertools.pairwise(distinct)]
    if len(gaps) < 2:
        return None
    median = statistics.median_low(gaps)
    on_schedule = [g for g in gaps if abs(g - median) <= _ON_SCHEDULE * median]
    if median < 2 or median > max_days or 2 * len(on_schedule) <= len(gaps):
        return None
    return median

