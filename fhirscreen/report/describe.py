"""One line per FHIR resource for explanations: type/id, what it is, when, and its value.

Privacy: a Patient is described by gender and age only; names, birth dates, addresses, telecoms and
identifiers are never printed, and no other resource's free-text notes are either.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from fhirscreen.fhir.codes import concept_label
from fhirscreen.fhir.dates import age_in_years, parse_date
from fhirscreen.fhir.resources import clinical_status, items, mapping, ref
from fhirscreen.record import PatientRecord

Resource = Mapping[str, Any]


def _day(value: object) -> str:
    # Dates are enough for screening windows; a dateTime's clock time adds noise. A string that is not a
    # date is not shown: a date element may hold anything (an identifier pasted in the wrong field).
    return value[:10] if isinstance(value, str) and parse_date(value) is not None else ""


# Patient.gender's codes (administrative-gender); any other string is not shown: it may hold anything.
GENDERS = frozenset({"male", "female", "other", "unknown"})


def gender_of(patient: Resource) -> str | None:
    gender = patient.get("gender")
    return gender if isinstance(gender, str) and gender in GENDERS else None


def _when(resource: Resource, prefix: str) -> str:
    """``2026-05-01`` or ``2025-01-01 to 2026-02-01`` (``to ongoing`` when the period is open)."""
    for suffix in ("DateTime", "Instant", "Date", "String"):
        value = resource.get(prefix + suffix)
        if isinstance(value, str):
            return _day(value) if suffix != "String" else value
    return _period(resource.get(prefix + "Period"))


def _period(period: object) -> str:
    if not isinstance(period, Mapping) or not (period.get("start") or period.get("end")):
        return ""
    start, end = _day(period.get("start")), _day(period.get("end"))
    return f"{start or '?'} to {end or 'ongoing'}"


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _quantity(q: Mapping[str, Any]) -> str:
    value = q.get("value")
    unit = q.get("unit") or q.get("code") or ""
    return f"{q.get('comparator') or ''}{_number(value)}{' ' + str(unit) if unit else ''}"


def value_text(element: Resource) -> str:
    """The value[x] of an Observation or component, with its unit; "" when there is none."""
    for key, shown in (("valueQuantity", _quantity), ("valueCodeableConcept", concept_label)):
        value = element.get(key)
        if isinstance(value, Mapping):
            return shown(value)
    ratio = element.get("valueRatio")
    if isinstance(ratio, Mapping):
        num, den = ratio.get("numerator") or {}, ratio.get("denominator") or {}
        return f"{_quantity(num)}:{_quantity(den)}" if num and den else ""
    value_range = element.get("valueRange")
    if isinstance(value_range, Mapping):
        low, high = value_range.get("low"), value_range.get("high")
        return f"{_quantity(low) if low else '?'}-{_quantity(high) if high else '?'}"
    for key in ("valueString", "valueInteger", "valueBoolean", "valueDateTime"):
        if key in element:
            return str(element[key]).lower() if key == "valueBoolean" else str(element[key])
    return ""


def _interpretation(obs: Resource) -> str:
    codes = [concept_label(c) for c in items(obs.get("interpretation")) if isinstance(c, Mapping)]
    return f" [{', '.join(codes)}]" if codes else ""


# No report shows an age no one has had (the oldest verified human lived 122 years); I1 and I4 say why
# such a birth date is not used, with the trial file's own limit.
_OLDEST_SHOWN = 125


def age_text(patient: Mapping[str, Any], as_of: date) -> str | None:
    """"38", or "37-38" when only the birth year or month is known; None without a birth date, or with
    one that cannot be real (after the as-of date, or an age over 125: an entry error)."""
    birth = parse_date(patient.get("birthDate"))
    if birth is None:
        return None
    oldest, youngest = age_in_years(birth.earliest, as_of), age_in_years(birth.latest, as_of)
    if birth.earliest > as_of or youngest > _OLDEST_SHOWN:
        return None
    return str(oldest) if oldest == youngest else f"{max(youngest, 0)}-{oldest}"


def _patient(patient: Resource, as_of: date | None) -> list[str]:
    parts = [gender_of(patient) or "gender not recorded"]
    age = age_text(patient, as_of) if as_of is not None else None
    if age is not None:
        parts.append(f"age {age}")
    if patient.get("deceasedBoolean") is True or patient.get("deceasedDateTime"):
        parts.append("deceased")
    return parts


def _observation(obs: Resource) -> list[str]:
    parts = [concept_label(obs.get("code")), _when(obs, "effective") or _day(obs.get("issued"))]
    value = value_text(obs)
    if value:
        parts.append(f"= {value}{_interpretation(obs)}")
    elif obs.get("interpretation"):
        parts.append(_interpretation(obs).strip())
    for comp in (items(obs.get("component")))[:4]:
        if isinstance(comp, Mapping):
            parts.append(f"{concept_label(comp.get('code'))} = {value_text(comp) or '?'}")
    return parts


def _condition(cond: Resource) -> list[str]:
    parts = [concept_label(cond.get("code")), clinical_status(cond) or "status not recorded"]
    onset = _when(cond, "onset") or _day(cond.get("recordedDate"))
    abated = _when(cond, "abatement")
    if onset:
        parts.append(f"onset {onset}")
    if abated:
        parts.append(f"abated {abated}")
    return parts


def _dose(dosage: object) -> str:
    if not isinstance(dosage, Mapping):
        return ""
    if dosage.get("text"):
        return str(dosage["text"])
    amounts = [_quantity(d["doseQuantity"]) for d in items(dosage.get("doseAndRate"))
               if isinstance(d, Mapping) and isinstance(d.get("doseQuantity"), Mapping)]
    if isinstance(dosage.get("dose"), Mapping):  # MedicationAdministration.dosage
        amounts.append(_quantity(dosage["dose"]))
    repeat = mapping(mapping(dosage.get("timing")).get("repeat"))
    if amounts and repeat.get("frequency") and repeat.get("period"):
        per = f"{_number(repeat['period'])} {repeat.get('periodUnit', '')}".rstrip()
        amounts[-1] += f" x{repeat['frequency']} per {per}"
    return ", ".join(amounts)


# The types ``_medication_use`` describes: every medication record a criterion reads (MEDICATION_TYPES).
MEDICATION_USES = frozenset({
    "MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense",
})


def _medication_use(use: Resource, record: PatientRecord | None) -> list[str]:
    """Drug, status, day and dose of an order, a statement, an administration or a fill (a fill's day is
    the day it was handed over, and its supply is said: the days it covers are what criteria read)."""
    medication = record.medication(use) if record is not None else None
    label = concept_label(use.get("medicationCodeableConcept")) if use.get("medicationCodeableConcept") else (
        concept_label(medication.get("code")) if medication else "medication not resolved"
    )
    parts = [label, str(use.get("status") or "status not recorded")]
    when = _day(use.get("authoredOn")) or _when(use, "effective")
    if not when and use.get("resourceType") == "MedicationDispense":
        handed = _day(use.get("whenHandedOver"))
        prepared = _day(use.get("whenPrepared"))
        when = f"handed over {handed}" if handed else (f"prepared {prepared}" if prepared else "")
    if not when and _day(use.get("dateAsserted")):
        when = f"asserted {_day(use['dateAsserted'])}"
    if when:
        parts.append(when)
    dosage = (use.get("dosageInstruction") or use.get("dosage") or [None])
    dose = _dose(dosage[0] if isinstance(dosage, list) and dosage else dosage)
    if dose:
        parts.append(dose)
    supply = _supply(use)
    if supply:
        parts.append(supply)
    return parts


def _supply(fill: Resource) -> str:
    """ "30-day supply (60 tablet)" for a fill; "" when it states neither."""
    days = mapping(fill.get("daysSupply")).get("value")
    quantity = mapping(fill.get("quantity"))
    amount = _quantity(quantity) if isinstance(quantity.get("value"), (int, float)) else ""
    if isinstance(days, (int, float)) and not isinstance(days, bool):
        return f"{_number(days)}-day supply" + (f" ({amount})" if amount else "")
    return f"quantity {amount}" if amount else ""


def _other(resource: Resource) -> list[str]:
    rtype = resource.get("resourceType")
    if rtype == "Procedure":
        status = str(resource.get("status") or "")
        return [concept_label(resource.get("code")), status, _when(resource, "performed")]
    if rtype == "ServiceRequest":
        intent = f"{resource.get('intent') or 'no intent'} {resource.get('status') or ''}".strip()
        return [concept_label(resource.get("code")), intent, _when(resource, "occurrence")]
    if rtype == "Appointment":
        what = [concept_label(c) for k in ("serviceType", "reasonCode") for c in items(resource.get(k))
                if isinstance(c, Mapping)]
        return [*what[:2], str(resource.get("status") or ""), _day(resource.get("start"))]
    if rtype == "CarePlan":
        activities = [concept_label(a["detail"].get("code")) for a in items(resource.get("activity"))
                      if isinstance(a, Mapping) and isinstance(a.get("detail"), Mapping)]
        status = f"{resource.get('intent') or ''} {resource.get('status') or ''}".strip()
        return [f"care plan ({', '.join(activities[:3]) or 'no coded activity'})", status,
                _period(resource.get("period"))]
    if rtype == "ResearchSubject":
        # E5/E7/E8 read the study's display (a registry, an MSC study by its name): shown with the reference.
        study = mapping(resource.get("study"))
        named = " ".join(str(study[k]) for k in ("reference", "display") if isinstance(study.get(k), str))
        return [f"on {named or 'study not given'}", str(resource.get("status") or ""),
                _period(resource.get("period"))]
    if rtype == "ResearchStudy":  # a study, not a person: its title is no identifier of the patient
        phase = resource.get("phase")
        return [str(resource.get("title") or ""), concept_label(phase) if isinstance(phase, Mapping) else "",
                str(resource.get("status") or "")]
    if rtype == "Encounter":
        kinds = [concept_label(c) for c in items(resource.get("type")) if isinstance(c, Mapping)]
        klass = mapping(resource.get("class"))
        kind = ", ".join(kinds[:2]) or str(klass.get("display") or klass.get("code") or "encounter")
        return [kind, str(resource.get("status") or ""), _period(resource.get("period"))]
    return [concept_label(resource.get("code"))] if resource.get("code") else []


def describe_resource(
    resource: Resource, record: PatientRecord | None = None, as_of: date | None = None,
) -> str:
    """``Observation/o1: eGFR (CKD-EPI 2021), 2026-05-01, = 55 mL/min/{1.73_m2}``; never a name or identifier.

    ``record`` resolves medicationReference; ``as_of`` turns a Patient's birth date into an age.
    """
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        parts = _patient(resource, as_of)
    elif rtype == "Observation":
        parts = _observation(resource)
    elif rtype == "Condition":
        parts = _condition(resource)
    elif rtype in MEDICATION_USES:
        parts = _medication_use(resource, record)
    else:
        parts = _other(resource)
    shown = ", ".join(p for p in parts if p)
    return f"{ref(resource)}: {shown}" if shown else ref(resource)


def find_resource(record: PatientRecord, reference: str) -> Resource | None:
    """The resource an evidence reference (``Type/id``) points at in the record, if it is there."""
    rtype, _, rid = reference.partition("/")
    if rtype == "Patient":
        return record.patient if rid == record.id else None
    if rtype == "Medication":
        return record.medications.get(rid)
    if rtype == "ResearchStudy":
        return record.studies.get(rid)
    return next((r for r in record.of_type(rtype) if r.get("id") == rid), None)
