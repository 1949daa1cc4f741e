"""Small FHIR R4 resource builders for tests: a handful of fields, sensible defaults, plain dicts."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

from fhirscreen.fhir.codes import SHORT_NAMES
from fhirscreen.quality import DataQuality
from fhirscreen.record import PatientRecord, PopulationBuilder

_ids = itertools.count(1)
PID = "p1"


def _id(prefix: str) -> str:
    return f"{prefix}{next(_ids)}"


def concept(system: str, code: str, display: str = "", text: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"coding": [{"system": SHORT_NAMES.get(system, system), "code": code}]}
    if display:
        c["coding"][0]["display"] = display
    if text is not None:
        c["text"] = text
    return c


def _status(system_suffix: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": f"http://terminology.hl7.org/CodeSystem/{system_suffix}", "code": code}]}


def patient(
    pid: str = PID, birth: str | None = "1985-03-15", gender: str = "female", **extra: Any
) -> dict[str, Any]:
    p: dict[str, Any] = {"resourceType": "Patient", "id": pid, "gender": gender}
    if birth is not None:
        p["birthDate"] = birth
    p.update(extra)
    return p


def condition(
    system: str,
    code: str,
    onset: str | None = "2020-01-01",
    *,
    pid: str = PID,
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    abatement: str | None = None,
    display: str = "",
    id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "resourceType": "Condition",
        "id": id or _id("cond"),
        "subject": {"reference": f"Patient/{pid}"},
        "code": concept(system, code, display),
    }
    if clinical:
        c["clinicalStatus"] = _status("condition-clinical", clinical)
    if verification:
        c["verificationStatus"] = _status("condition-ver-status", verification)
    if onset:
        c["onsetDateTime"] = onset
    if abatement:
        c["abatementDateTime"] = abatement
    c.update(extra)
    return c


def observation(
    code: str,
    when: str | None = "2026-05-01",
    *,
    system: str = "loinc",
    pid: str = PID,
    value: float | None = None,
    unit: str | None = None,
    comparator: str | None = None,
    string: str | None = None,
    coded: dict[str, Any] | None = None,
    low: float | None = None,
    high: float | None = None,
    interpretation: str | None = None,
    status: str = "final",
    id: str | None = None,
    display: str = "",
    **extra: Any,
) -> dict[str, Any]:
    o: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id or _id("obs"),
        "status": status,
        "subject": {"reference": f"Patient/{pid}"},
        "code": concept(system, code, display),
    }
    if when:
        o["effectiveDateTime"] = when
    if value is not None:
        q: dict[str, Any] = {"value": value}
        if unit is not None:
            q.update({"unit": unit, "system": "http://unitsofmeasure.org", "code": unit})
        if comparator:
            q["comparator"] = comparator
        o["valueQuantity"] = q
    if string is not None:
        o["valueString"] = string
    if coded is not None:
        o["valueCodeableConcept"] = coded
    if low is not None or high is not None:
        rr: dict[str, Any] = {}
        if low is not None:
            rr["low"] = {"value": low, **({"unit": unit} if unit else {})}
        if high is not None:
            rr["high"] = {"value": high, **({"unit": unit} if unit else {})}
        o["referenceRange"] = [rr]
    if interpretation:
        o["interpretation"] = [_status("v3-ObservationInterpretation", interpretation)]
    o.update(extra)
    return o


def medication_request(
    code: str,
    authored: str = "2025-01-01",
    *,
    system: str = "rxnorm",
    pid: str = PID,
    status: str = "active",
    display: str = "",
    dose: float | None = None,
    dose_unit: str = "mg",
    frequency: int = 1,
    period: float = 1,
    period_unit: str = "d",
    bounds_start: str | None = None,
    bounds_end: str | None = None,
    reason: dict[str, Any] | None = None,
    id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": id or _id("mr"),
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": authored,
        "medicationCodeableConcept": concept(system, code, display),
    }
    dosage: dict[str, Any] = {}
    repeat: dict[str, Any] = {"frequency": frequency, "period": period, "periodUnit": period_unit}
    if bounds_start or bounds_end:
        repeat["boundsPeriod"] = {k: v for k, v in (("start", bounds_start), ("end", bounds_end)) if v}
    if dose is not None or bounds_start or bounds_end:
        dosage["timing"] = {"repeat": repeat}
    if dose is not None:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": dose, "unit": dose_unit}}]
    if dosage:
        r["dosageInstruction"] = [dosage]
    if reason is not None:
        r["reasonCode"] = [reason]
    r.update(extra)
    return r


def medication_statement(
    code: str,
    start: str | None = "2025-01-01",
    end: str | None = None,
    *,
    system: str = "rxnorm",
    pid: str = PID,
    status: str = "active",
    display: str = "",
    id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "id": id or _id("ms"),
        "status": status,
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": concept(system, code, display),
    }
    if start or end:
        s["effectivePeriod"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    s.update(extra)
    return s


def medication_administration(
    code: str,
    when: str = "2026-05-01",
    *,
    system: str = "rxnorm",
    pid: str = PID,
    status: str = "completed",
    display: str = "",
    id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    a: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": id or _id("ma"),
        "status": status,
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": concept(system, code, display),
        "effectiveDateTime": when,
    }
    a.update(extra)
    return a


def medication_dispense(
    code: str,
    handed_over: str | None = "2026-05-01",
    *,
    days_supply: float | None = 30,
    quantity: float | None = None,
    quantity_unit: str = "tablet",
    system: str = "rxnorm",
    pid: str = PID,
    status: str = "completed",
    display: str = "",
    id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A pharmacy fill: handed over on a day, lasting ``days_supply`` days."""
    d: dict[str, Any] = {
        "resourceType": "MedicationDispense",
        "id": id or _id("md"),
        "status": status,
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": concept(system, code, display),
    }
    if handed_over:
        d["whenHandedOver"] = handed_over
    if days_supply is not None:
        d["daysSupply"] = {"value": days_supply, "unit": "days", "system": SHORT_NAMES["ucum"], "code": "d"}
    if quantity is not None:
        d["quantity"] = {"value": quantity, "unit": quantity_unit}
    d.update(extra)
    return d


def procedure(
    system: str,
    code: str,
    performed: str | None = "2026-05-01",
    *,
    pid: str = PID,
    status: str = "completed",
    display: str = "",
    text: str | None = None,
    id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    p: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": id or _id("proc"),
        "status": status,
        "subject": {"reference": f"Patient/{pid}"},
        "code": concept(system, code, display, text),
    }
    if performed:
        p["performedDateTime"] = performed
    p.update(extra)
    return p


def service_request(
    system: str,
    code: str,
    occurrence: str | None = "2026-08-01",
    *,
    pid: str = PID,
    status: str = "active",
    intent: str = "order",
    display: str = "",
    text: str | None = None,
    id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ServiceRequest (an order, by default, for a day after the screening date)."""
    r: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": id or _id("sr"),
        "status": status,
        "intent": intent,
        "subject": {"reference": f"Patient/{pid}"},
        "code": concept(system, code, display, text),
        "authoredOn": "2026-05-15",
    }
    if occurrence:
        r["occurrenceDateTime"] = occurrence
    r.update(extra)
    return r


def care_plan(
    *activities: dict[str, Any],
    pid: str = PID,
    status: str = "active",
    intent: str = "plan",
    id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A CarePlan; each activity is a dict such as ``{"detail": {...}}`` or ``{"reference": {...}}``."""
    r: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": id or _id("cp"),
        "status": status,
        "intent": intent,
        "subject": {"reference": f"Patient/{pid}"},
        "activity": list(activities),
    }
    r.update(extra)
    return r


def care_plan_activity(
    system: str, code: str, scheduled: str | None = "2026-08-01", *, status: str = "scheduled", **extra: Any
) -> dict[str, Any]:
    """``{"detail": ...}`` for care_plan(): a coded activity scheduled on a day (a one-day period)."""
    detail: dict[str, Any] = {"status": status, "code": concept(system, code)}
    if scheduled:
        detail["scheduledPeriod"] = {"start": scheduled, "end": scheduled}
    detail.update(extra)
    return {"detail": detail}


def appointment(
    system: str,
    code: str,
    start: str | None = "2026-08-01T09:00:00Z",
    *,
    pid: str = PID,
    status: str = "booked",
    element: str = "serviceType",
    id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An Appointment whose patient is a participant; the code goes in serviceType (or reasonCode...)."""
    r: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": id or _id("ap"),
        "status": status,
        element: [concept(system, code)],
        "participant": [{"actor": {"reference": f"Patient/{pid}"}, "status": "accepted"}],
    }
    if start:
        r["start"] = start
    r.update(extra)
    return r


def record(*resources: dict[str, Any], pid: str = PID, quality: DataQuality | None = None) -> PatientRecord:
    """A PatientRecord from resources; adds a default Patient when none is given."""
    builder = PopulationBuilder(quality or DataQuality())
    if not any(r.get("resourceType") == "Patient" for r in resources):
        builder.add(patient(pid), "test")
    for r in resources:
        builder.add(r, "test")
    return builder.build().records[pid]


AS_OF = date(2026, 6, 1)
