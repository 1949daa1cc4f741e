"""Things planned for a patient: ServiceRequests, CarePlan activities and Appointments.

E9 (major surgery planned during the study) and E2 (renal replacement therapy expected) read plans
as well as Procedures. Each plan becomes a ``Plan``: what it asks for (its codes), when (a span, or
None when undated), and whether it is *firm*, i.e. decided and not merely proposed:

* ServiceRequest: ``doNotPerform`` is never a plan; ``completed`` is not the operation itself (the
  Procedure is) and ``revoked``/``entered-in-error`` never count. Firm = ``active`` with ``intent``
  plan or an order (order, original-order, reflex-order, filler-order, instance-order): E9 and E2 ask
  whether an operation is *planned*, and intent plan is exactly "an intention to ensure it occurs"
  (unlike a medication, where only an order is exposure). A ``proposal`` ("a suggestion ... without an
  intention"), ``directive`` or ``option``, and any request in ``draft``, ``on-hold`` or ``unknown``
  status, is not yet decided. When: ``occurrence[x]`` (dateTime, Period, Timing events and
  repeat.boundsPeriod); ``authoredOn`` is when it was written, not when it is for.
* CarePlan activity (``activity.detail``, or a *contained* ServiceRequest/Appointment that
  ``activity.reference`` points at; a reference to a separate resource is read as that resource, once):
  the CarePlan must not be revoked, entered-in-error or completed, and the activity not completed,
  cancelled, stopped or entered-in-error, nor ``doNotPerform``. Firm = an active CarePlan whose intent is
  plan or an order and an activity not-started, scheduled or in progress; a draft/on-hold plan, a
  proposal or option, or an activity on hold or of unknown status is undecided. (A CarePlan's intent is
  nearly always "plan"; the activity's own status says whether it is booked.) When:
  ``detail.scheduled[x]`` (Timing, Period; a scheduledString is undated), else the CarePlan's period.
* Appointment: cancelled, noshow and entered-in-error never count, fulfilled is done (the Procedure is
  the record of it), and an appointment the patient declined is none. Firm = booked, arrived or
  checked-in; proposed, pending and waitlist are undecided. What: ``serviceType``, ``reasonCode``,
  ``specialty``. When: start/end, else the ``requestedPeriod``s.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from fhirscreen.fhir.dates import Span, day, span_of
from fhirscreen.fhir.resources import Resource, items, ref
from fhirscreen.record import PatientRecord

ORDER_INTENTS = frozenset({"order", "original-order", "reflex-order", "filler-order", "instance-order"})
_SR_NEVER = frozenset({"completed", "revoked", "entered-in-error"})
_CAREPLAN_NEVER = frozenset({"completed", "revoked", "entered-in-error"})
_ACTIVITY_NEVER = frozenset({"completed", "cancelled", "stopped", "entered-in-error"})
_ACTIVITY_UNDECIDED = frozenset({"on-hold", "unknown"})
_APPOINTMENT_FIRM = frozenset({"booked", "arrived", "checked-in"})
_APPOINTMENT_UNDECIDED = frozenset({"proposed", "pending", "waitlist"})


@dataclass(frozen=True)
class Plan:
    """Something planned: the resource to cite, what it asks for, when, and whether it is decided."""

    resource: Resource
    concepts: tuple[Mapping[str, Any], ...]
    span: Span | None
    firm: bool
    state: str  # "ServiceRequest order, active", for reasons

    @property
    def ref(self) -> str:
        return ref(self.resource)

    def is_ahead(self, as_of: date) -> bool:
        """Dated on or after the screening date, or open-ended (started, no end)."""
        if self.span is None:
            return False
        last = self.span.end
        return last is None or last >= as_of or (self.span.start is not None and self.span.start >= as_of)

    def when(self) -> str:
        if self.span is None:
            return "no date"
        start, end = self.span.start, self.span.end
        if start and end and start != end:
            return f"{start.isoformat()} to {end.isoformat()}"
        if start and not end:
            return f"from {start.isoformat()}, open-ended"
        d = start or end
        return d.isoformat() if d else "no date"


def plans(record: PatientRecord) -> list[Plan]:
    """Every usable plan of the patient (hygiene already dropped revoked/cancelled/entered-in-error)."""
    out = [p for sr in record.of_type("ServiceRequest") if (p := service_request_plan(sr)) is not None]
    out += [p for ap in record.of_type("Appointment") if (p := appointment_plan(ap, record.id)) is not None]
    for care_plan in record.of_type("CarePlan"):
        out += care_plan_plans(care_plan, record.id)
    return out


# -- ServiceRequest ----------------------------------------------------------------------------------


def service_request_plan(sr: Mapping[str, Any], cite: Resource | None = None) -> Plan | None:
    status = str(sr.get("status") or "unknown")
    if sr.get("doNotPerform") is True or status in _SR_NEVER:
        return None
    intent = str(sr.get("intent") or "")
    firm = (intent == "plan" or intent in ORDER_INTENTS) and status == "active"
    concept = sr.get("code")
    return Plan(
        resource=cite if cite is not None else dict(sr),
        concepts=(concept,) if isinstance(concept, Mapping) else (),
        span=occurrence_span(sr, "occurrence"),
        firm=firm,
        state=f"ServiceRequest {intent or 'without intent'}, {status}",
    )


def occurrence_span(element: Mapping[str, Any], prefix: str) -> Span | None:
    """``occurrence[x]``/``scheduled[x]``: dateTime, Period or Timing (events, repeat.boundsPeriod)."""
    span = span_of(element, prefix)
    if span is not None:
        return span
    timing = element.get(prefix + "Timing")
    return timing_span(timing) if isinstance(timing, Mapping) else None


def timing_span(timing: Mapping[str, Any]) -> Span | None:
    days = [d for d in (day(e) for e in items(timing.get("event"))) if d is not None]
    repeat = timing.get("repeat")
    bounds = repeat.get("boundsPeriod") if isinstance(repeat, Mapping) else None
    if isinstance(bounds, Mapping):
        start, end = day(bounds.get("start")), day(bounds.get("end"))
        if start or end:
            days_start = min(days) if days else None
            first = min(filter(None, (start, days_start)), default=None)
            # Repeats with an open end go on: the span stays open unless both ends are known.
            return Span(first, max(filter(None, (end, *days)), default=None) if end else None)
    if days:
        return Span(min(days), max(days))
    return None


# -- Appointment -------------------------------------------------------------------------------------


def appointment_plan(appointment: Mapping[str, Any], patient_id: str | None = None) -> Plan | None:
    status = str(appointment.get("status") or "")
    if status not in _APPOINTMENT_FIRM | _APPOINTMENT_UNDECIDED:
        return None  # fulfilled (done), cancelled, noshow, entered-in-error, or no status
    if patient_id is not None and _patient_declined(appointment, patient_id):
        return None
    concepts: list[Mapping[str, Any]] = []
    for element in ("serviceType", "reasonCode", "specialty"):
        concepts += [c for c in appointment.get(element) or () if isinstance(c, Mapping)]
    return Plan(
        resource=dict(appointment),
        concepts=tuple(concepts),
        span=_appointment_span(appointment),
        firm=status in _APPOINTMENT_FIRM,
        state=f"Appointment {status}",
    )


def _patient_declined(appointment: Mapping[str, Any], patient_id: str) -> bool:
    for participant in items(appointment.get("participant")):
        actor = participant.get("actor") if isinstance(participant, Mapping) else None
        reference = actor.get("reference") if isinstance(actor, Mapping) else None
        if isinstance(reference, str) and reference.split("/_history")[0].endswith(f"Patient/{patient_id}"):
            return bool(participant.get("status") == "declined")
    return False


def _appointment_span(appointment: Mapping[str, Any]) -> Span | None:
    start, end = day(appointment.get("start")), day(appointment.get("end"))
    if start or end:
        return Span(start or end, end or start)
    periods = [p for p in items(appointment.get("requestedPeriod")) if isinstance(p, Mapping)]
    starts = [d for d in (day(p.get("start")) for p in periods) if d is not None]
    ends = [day(p.get("end")) for p in periods]
    if not starts and not any(ends):
        return None
    open_end = any(e is None for e in ends)
    return Span(min(starts) if starts else None, None if open_end else max(e for e in ends if e))


# -- CarePlan ----------------------------------------------------------------------------------------


def care_plan_plans(care_plan: Resource, patient_id: str | None = None) -> list[Plan]:
    status = str(care_plan.get("status") or "unknown")
    if status in _CAREPLAN_NEVER:
        return []
    intent = str(care_plan.get("intent") or "")
    plan_firm = status == "active" and (intent == "plan" or intent in ORDER_INTENTS)
    period = _period(care_plan.get("period"))
    out: list[Plan] = []
    for activity in items(care_plan.get("activity")):
        if not isinstance(activity, Mapping):
            continue
        detail = activity.get("detail")
        if isinstance(detail, Mapping):
            plan = _activity_plan(care_plan, detail, plan_firm, period, f"CarePlan {intent}, {status}")
            if plan is not None:
                out.append(plan)
        for contained in _contained(care_plan, activity.get("reference")):
            out += _contained_plan(care_plan, contained, plan_firm, patient_id)
    return out


def _period(period: object) -> Span | None:
    if not isinstance(period, Mapping):
        return None
    start, end = day(period.get("start")), day(period.get("end"))
    return Span(start, end) if start or end else None


def _activity_plan(
    care_plan: Resource, detail: Mapping[str, Any], plan_firm: bool, period: Span | None, state: str
) -> Plan | None:
    activity_status = str(detail.get("status") or "")
    if detail.get("doNotPerform") is True or activity_status in _ACTIVITY_NEVER:
        return None
    concept = detail.get("code")
    return Plan(
        resource=care_plan,
        concepts=(concept,) if isinstance(concept, Mapping) else (),
        span=occurrence_span(detail, "scheduled") or period,
        firm=plan_firm and activity_status not in _ACTIVITY_UNDECIDED,
        state=f"{state}, activity {activity_status or 'without status'}",
    )


def _contained(resource: Mapping[str, Any], reference: object) -> Sequence[Mapping[str, Any]]:
    value = reference.get("reference") if isinstance(reference, Mapping) else None
    if not (isinstance(value, str) and value.startswith("#")):
        return ()  # a separate ServiceRequest/Appointment is read as itself
    return [
        c for c in items(resource.get("contained")) if isinstance(c, Mapping) and c.get("id") == value[1:]
    ]


def _contained_plan(
    care_plan: Resource, contained: Mapping[str, Any], plan_firm: bool, patient_id: str | None
) -> Iterator[Plan]:
    rtype = contained.get("resourceType")
    inner = (
        service_request_plan(contained, cite=care_plan)
        if rtype == "ServiceRequest"
        else appointment_plan(contained, patient_id)
        if rtype == "Appointment"
        else None
    )
    if inner is not None:
        firm = inner.firm and plan_firm
        yield Plan(care_plan, inner.concepts, inner.span, firm, f"CarePlan: {inner.state}")
