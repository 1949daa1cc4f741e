"""Dated clinical events (procedures, conditions, medications, observations) that match a value set.

Shared by the "did X happen within a window" exclusions (E2 dialysis, E7/E8 cellular therapy, E9 surgery):
each finds the matching resources once, with the days they cover, and then applies its own window.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from fhirscreen.criteria._labs import coded_observations
from fhirscreen.criteria._medications import MEDICATION_TYPES, exposure_of, is_exposure
from fhirscreen.criteria._research import (
    Participation,
    ThisTrialDosing,
    is_this_study,
    mention,
    participation,
    study_of,
    this_trial_dosing,
)
from fhirscreen.fhir.codes import ValueSet, codings, concept_label
from fhirscreen.fhir.dates import Span, day, span_of
from fhirscreen.fhir.resources import (
    Resource,
    condition_span,
    items,
    mapping,
    observation_day,
    procedure_span,
    ref,
)
from fhirscreen.record import PatientRecord

# Procedure.status values that describe something not yet done (R4 EventStatus); "preparation" is the
# one criteria-codes.md 0.2 calls meaningful for "planned". in-progress counts as planned only when it
# is dated after the screening date.
_PLANNED_STATUS = frozenset({"preparation", "on-hold"})

Source = Literal["name", "description", "doubtful"]


@dataclass(frozen=True)
class Event:
    """A resource that matched a value set, with the label that matched and when it happened."""

    resource: Resource
    label: str
    span: Span | None
    also: tuple[str, ...] = ()  # resources behind it besides its own (the ResearchStudy a subject is on)
    # What named the therapy: a code or name (a study's title, focus, keywords), or only a study's
    # description, in plain words ("description") or in words that do not say the study gave it
    # ("doubtful": an exclusion, a negation; a question, never counted as the therapy given).
    source: Source = "name"

    @property
    def ref(self) -> str:
        return ref(self.resource)

    @property
    def first_day(self) -> date | None:
        return (self.span.start or self.span.end) if self.span else None

    @property
    def last_day(self) -> date | None:
        return self.span.latest if self.span else None

    @property
    def status(self) -> str:
        return str(self.resource.get("status") or "")

    def last_day_by(self, as_of: date) -> date | None:
        """The last day it held up to the screening date (an open or later end is cut at as-of)."""
        if self.span is None:
            return None
        end = self.span.end
        if end is None or end > as_of:
            start = self.span.start
            return as_of if start is None or start <= as_of else None
        return end

    def in_window(self, first: date, last: date) -> bool:
        return self.span is not None and self.span.overlaps(first, last)

    def starts_after(self, as_of: date) -> bool:
        start = self.first_day
        return start is not None and start > as_of

    def when(self) -> str:
        """The date(s) for a reason: a day, a period, or 'undated'."""
        if self.span is None:
            return "undated"
        start, end = self.span.start, self.span.end
        if start and end and start != end:
            return f"{start.isoformat()} to {end.isoformat()}"
        if start and not end and self.resource.get("resourceType") != "Procedure":
            return f"since {start.isoformat()}"
        d = start or end
        return d.isoformat() if d else "undated"


def code_match(vs: ValueSet, concept: Mapping[str, Any] | None) -> str | None:
    """Like ``ValueSet.match`` but on codings only (no text patterns): a code list that must win over text."""
    if not concept:
        return None
    for system, code, display in codings(concept):
        if vs.has_code(system, code):
            known = vs.codes.get((system, code))
            return display or (known.display if known else "") or code
    return None


def procedures(record: PatientRecord, vs: ValueSet) -> list[Event]:
    """Procedures whose code matches (codes, then the value set's text patterns)."""
    out = []
    for proc in record.of_type("Procedure"):
        label = vs.match(proc.get("code"))
        if label is not None:
            out.append(Event(proc, label, procedure_span(proc)))
    return out


def conditions(record: PatientRecord, vs: ValueSet) -> list[Event]:
    """Conditions whose code matches; the span runs from onset to abatement (open while active).

    Codes only: a value set's text patterns are for product names, and would misread diagnoses
    ("mesenchymal chondrosarcoma" is not MSC therapy).
    """
    out = []
    for cond in record.of_type("Condition"):
        label = code_match(vs, cond.get("code"))
        if label is not None:
            span = condition_span(cond)
            out.append(Event(cond, label, span if span.start or span.end else None))
    return out


def observations(record: PatientRecord, vs: ValueSet) -> list[Event]:
    out = []
    # Whole Observations only (not their components), found through the record's code index.
    whole = record.memo("_events:observation-ids", lambda: {id(o) for o in record.of_type("Observation")})
    for obs in coded_observations(record, vs):
        if id(obs) not in whole:
            continue
        label = vs.match(obs.get("code"))
        if label is not None:
            d = observation_day(obs)
            out.append(Event(obs, label, Span(d, d) if d else None))
    return out


def medication_concepts(record: PatientRecord, holder: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The concept(s) naming the drug: medicationCodeableConcept, else the referenced Medication's code."""
    concept = holder.get("medicationCodeableConcept")
    if concept.__class__ is dict or isinstance(concept, Mapping):
        yield concept
    medication = record.medication(holder)
    if medication is not None and isinstance(medication.get("code"), Mapping):
        yield medication["code"]
    reference = holder.get("medicationReference")
    if reference is not None and isinstance(reference, Mapping) and reference.get("display"):
        # A reference that cannot be resolved may still name the product.
        yield {"text": str(reference["display"])}


def medication_span(resource: Mapping[str, Any]) -> Span | None:
    """When a medication record says the drug was taken or ordered (criteria-codes.md 0.2)."""
    if resource.get("resourceType") == "MedicationRequest":
        start = day(resource.get("authoredOn"))
        end = None
        for dosage in items(resource.get("dosageInstruction")):
            timing = mapping(mapping(dosage).get("timing"))
            bounds = mapping(mapping(timing.get("repeat")).get("boundsPeriod"))
            start = start or day(bounds.get("start"))
            end = max(filter(None, (end, day(bounds.get("end")))), default=None)
        return Span(start, end or start) if start or end else None
    return span_of(resource, "effective")


def medications(record: PatientRecord, vs: ValueSet) -> list[Event]:
    """MedicationStatement/Request/Administration/Dispense whose drug matches (codes or text).

    Only records that are exposure by the rule the medication criteria apply (``is_exposure``): an order
    of intent proposal/plan/directive/option or doNotPerform, a statement "intended" and a fill never
    handed over are not therapy received.
    """
    out = []
    for rtype in MEDICATION_TYPES:
        for res in record.of_type(rtype):
            if not is_exposure(res):
                continue
            for concept in medication_concepts(record, res):
                label = vs.match(concept)
                if label is not None:
                    out.append(Event(res, label, _medication_event_span(record, res)))
                    break
    return out


def _medication_event_span(record: PatientRecord, res: Resource) -> Span | None:
    if res.get("resourceType") != "MedicationDispense":
        return medication_span(res)
    # A fill covers the days the medication criteria give it: handed over, through its supply.
    fill = exposure_of(record, res)
    return Span(fill.start, fill.end) if fill.start or fill.end else None


def research_subjects(record: PatientRecord, vs: ValueSet, as_of: date | None = None) -> list[Event]:
    """ResearchSubjects whose study names a matching product and whose status shows the patient was
    dosed (criteria/_research.py); screening, candidates, ineligible and not-registered are not exposure.
    What can match: the study reference's display, and the ResearchStudy's title, focus and keywords
    when the data hold it (``Study.concepts``), else its description in plain words (``mention``); the
    label then names that ResearchStudy."""
    return [
        e for e, taking in _subjects(record, vs, as_of) if taking.exposed and e.source != "doubtful"
    ]


def research_questions(record: PatientRecord, vs: ValueSet, as_of: date) -> list[Event]:
    """Matching ResearchSubjects whose exposure cannot be told (a bare 'withdrawn', pending-on-study), or
    that are to start after the screening date (on-study from a later day: about to be given, as
    pending-on-study is)."""
    return [
        e for e, taking in _subjects(record, vs, as_of)
        if e.source != "doubtful"
        and (taking.exposure in ("unknown", "pending") or (taking.exposed and e.starts_after(as_of)))
    ]


def research_doubts(record: PatientRecord, vs: ValueSet, as_of: date) -> list[Event]:
    """ResearchSubjects whose study names the product only in its description, in words that do not say
    the study gave it (an eligibility section, an exclusion, a negation: ``mention``), and whose status
    does not rule out exposure: whether the study gave it is a question (never a pass, never a fail)."""
    return [
        e for e, taking in _subjects(record, vs, as_of)
        if e.source == "doubtful" and taking.exposure != "not-dosed"
    ]


def _subjects(
    record: PatientRecord, vs: ValueSet, as_of: date | None
) -> Iterator[tuple[Event, Participation]]:
    for subject in record.of_type("ResearchSubject"):
        study = study_of(subject, record.study(subject))
        label = next((found for c in study.concepts() if (found := vs.match(c)) is not None), None)
        source: Source = "name"
        if label is None:
            said = mention(study.description(), vs.text_patterns)
            if said is None:
                continue
            source = "description" if said.conclusive else "doubtful"
            sentence = said.sentence if len(said.sentence) <= 160 else said.sentence[:157] + "..."
            label = f"{study.display or study.title or 'a study'}, its description naming '{said.said}': " \
                f"'{sentence}'"
        taking = participation(subject, as_of or date.max)
        read = (study.ref,) if study.resource is not None and study.ref else ()
        why = ", ".join((*read, taking.why))
        yield Event(subject, f"{label} ({why})", _period(subject), read, source), taking


def this_trial_subjects(
    record: PatientRecord, ids: Sequence[str], as_of: date
) -> list[tuple[Event, ThisTrialDosing]]:
    """The ResearchSubjects of the trial being screened for (``ids``: its NCT number), each with what it
    says about this trial's dose (criteria/_research.py ``this_trial_dosing``). Labelled
    ``this trial, UC-MSC in SLE ResearchStudy/x (status off-study)``."""
    if not ids:
        return []
    out = []
    for subject in record.of_type("ResearchSubject"):
        study = study_of(subject, record.study(subject))
        if not is_this_study(study.text(), ids):
            continue
        taking = participation(subject, as_of)
        read = (study.ref,) if study.resource is not None and study.ref else ()
        label = f"this trial, {study.name() or 'its ResearchSubject'} ({taking.why})"
        out.append((Event(subject, label, _period(subject), read), this_trial_dosing(taking, as_of)))
    return out


def unread_studies(record: PatientRecord, as_of: date) -> list[Event]:
    """ResearchSubjects on a study named only by a reference that the data do not hold, whose status does
    not rule out exposure: what that study gave cannot be told. Labelled
    ``ResearchStudy/x (status on-study, ResearchSubject/y)``."""
    out = []
    for subject in record.of_type("ResearchSubject"):
        study = study_of(subject, record.study(subject))
        if not study.unread:
            continue
        taking = participation(subject, as_of)
        if taking.exposure != "not-dosed" and not (taking.start is not None and taking.start > as_of):
            out.append(Event(subject, f"{study.ref} ({taking.why}, {ref(subject)})", _period(subject)))
    return out


def _period(resource: Mapping[str, Any]) -> Span | None:
    period = resource.get("period")
    if isinstance(period, Mapping):
        start, end = day(period.get("start")), day(period.get("end"))
        if start or end:
            return Span(start, end)
    return None


def label_of(resource: Mapping[str, Any]) -> str:
    return concept_label(resource.get("code"))


def is_planned(event: Event, as_of: date) -> bool:
    """A procedure not yet done at screening: status preparation/on-hold, or in progress from a later day.

    Not done is not yet a plan for after screening: see ``is_planned_ahead``."""
    if event.resource.get("resourceType") != "Procedure":
        return False
    if event.status in _PLANNED_STATUS:
        return True
    return event.status == "in-progress" and event.starts_after(as_of)


def is_planned_ahead(event: Event, as_of: date) -> bool:
    """Not done yet and dated after the screening date: a plan for later (E2, E9). One in preparation dated
    on or before screening, or undated, may have lapsed or been done since: a question, not a plan."""
    return is_planned(event, as_of) and event.starts_after(as_of)


def is_unsure(event: Event) -> bool:
    """A procedure recorded with status unknown: whether it was done is not known (a question, not a fact)."""
    return event.resource.get("resourceType") == "Procedure" and event.status == "unknown"


def happened_by(event: Event, as_of: date) -> bool:
    """Done (or under way) on or before the screening date; later records are not known at screening."""
    return not event.starts_after(as_of)


def latest(events: Iterable[Event], as_of: date) -> Event | None:
    dated = [e for e in events if e.last_day_by(as_of) is not None]
    return max(dated, key=lambda e: e.last_day_by(as_of) or date.min, default=None)


def iso(d: date) -> str:
    return d.isoformat()


def plus_days(d: date, days: int) -> date:
    return d + timedelta(days=days)


def refs(events: Iterable[Event]) -> list[str]:
    return [r for e in events for r in (e.ref, *e.also)]


def describe(events: Iterable[Event], limit: int = 3) -> str:
    """'Renal dialysis on 2026-03-01; Hemodialysis on 2026-02-01 (+2 more)' for reasons."""
    items = list(events)
    shown = "; ".join(f"{e.label} ({e.when()})" for e in items[:limit])
    more = len(items) - limit
    return shown + (f" (+{more} more)" if more > 0 else "")
