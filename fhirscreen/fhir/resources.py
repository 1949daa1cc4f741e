"""Typed access to the parts of FHIR R4 resources that screening reads.

Resources stay plain JSON dicts: parsing every resource into pydantic models would cost more than
the whole evaluation, and the evaluators read a handful of fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard

from fhirscreen.fhir.codes import codings, normalised
from fhirscreen.fhir.dates import Span, day, span_bounds, span_of
from fhirscreen.fhir.memo import per_resource

Resource = dict[str, Any]

# What a resourceType and an id must look like (FHIR type names; FHIR's id datatype). Anything else is
# not read, and never quoted: such a value may be a name or a birth date, or hold a line break that
# would forge a line of the run's log.
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}")
# FHIR's id is 1-64 of [A-Za-z0-9-.]; exports from other systems also use "_" and longer ids, which are
# no risk (no space, quote or control character can hide a name or forge a log line), so they are read.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-._]{1,128}")
# The names found valid so far: one set lookup per resource instead of a match (bounded: few types).
_TYPE_NAMES: set[str] = set()
# The text of the not-fhir finding for a resourceType that is not a type name (with "; skipped").
NOT_A_TYPE_NAME = "resourceType is not a FHIR type name"


def is_type_name(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a string that can be a FHIR resource type name (``^[A-Z][A-Za-z]{1,63}$``)."""
    if not isinstance(value, str):
        return False
    if value in _TYPE_NAMES:
        return True
    if _TYPE_NAME.fullmatch(value) is None:
        return False
    if len(_TYPE_NAMES) < 4096:
        _TYPE_NAMES.add(value)
    return True


def is_fhir_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` can be read as an id: 1-128 letters, digits, '-', '.' and '_' (FHIR's 1-64 of
    letters, digits, '-' and '.', and what other systems' exports use)."""
    return isinstance(value, str) and _FHIR_ID.fullmatch(value) is not None

# The element that links each resource type to its patient.
PATIENT_LINK: dict[str, str] = {
    "Condition": "subject",
    "Observation": "subject",
    "MedicationStatement": "subject",
    "MedicationRequest": "subject",
    "MedicationAdministration": "subject",
    "MedicationDispense": "subject",
    "Procedure": "subject",
    "ResearchSubject": "individual",
    "DiagnosticReport": "subject",
    "Encounter": "subject",
    "ServiceRequest": "subject",
    "CarePlan": "subject",
    "Immunization": "patient",
    "AllergyIntolerance": "patient",
}

# Records that hygiene drops everywhere (criteria-codes.md 0.2).
_DROPPED_STATUS: dict[str, frozenset[str]] = {
    "Observation": frozenset({"cancelled", "entered-in-error"}),
    "MedicationRequest": frozenset({"cancelled", "entered-in-error", "draft"}),
    "MedicationStatement": frozenset({"not-taken", "entered-in-error"}),
    "MedicationAdministration": frozenset({"not-done", "entered-in-error"}),
    "MedicationDispense": frozenset({"cancelled", "entered-in-error", "declined"}),
    "Procedure": frozenset({"not-done", "entered-in-error"}),
    "ServiceRequest": frozenset({"revoked", "entered-in-error"}),
    "CarePlan": frozenset({"revoked", "entered-in-error"}),
    "Appointment": frozenset({"cancelled", "entered-in-error", "noshow"}),
    # ResearchSubject statuses are all kept: a withdrawal after dosing is still exposure (issue 8 s5);
    # criteria/_research.py decides what each status means.
}
_DROPPED_VERIFICATION = frozenset({"entered-in-error", "refuted"})
# Not (yet) a diagnosis: an exclusion resting on one is a question for the coordinator, never a fail.
TENTATIVE_VERIFICATION = frozenset({"provisional", "differential", "unconfirmed"})
_ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})


def ref(resource: Mapping[str, Any]) -> str:
    """``Type/id`` of a resource, the form used in evidence lists."""
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def reference_id(reference: object, resource_type: str | None = None) -> str | None:
    """The logical id in a Reference (``Patient/1``, an absolute URL, a history URL), or None."""
    if not isinstance(reference, Mapping):
        return None
    value = reference.get("reference")
    if not isinstance(value, str) or not value:
        return None
    parts = value.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2:
        return None
    if resource_type is not None and parts[-2] != resource_type:
        return None
    return parts[-1]


def patient_id_of(resource: Mapping[str, Any]) -> str | None:
    rtype = str(resource.get("resourceType"))
    if rtype == "Appointment":
        # An Appointment names its patient among the participants' actors.
        for participant in items(resource.get("participant")):
            if isinstance(participant, Mapping):
                pid = reference_id(participant.get("actor"), "Patient")
                if pid:
                    return pid
        return None
    link = PATIENT_LINK.get(rtype)
    if link is None:
        return None
    return reference_id(resource.get(link), "Patient")


def mapping(value: object) -> Mapping[str, Any]:
    """An element FHIR makes an object: {} for anything else (malformed data read as absent)."""
    if value.__class__ is dict:  # what JSON gives: no ABC check
        return value
    return value if isinstance(value, Mapping) else {}


def items(value: object) -> list[Any]:
    """A repeating element's items: [] for anything that is not a JSON list (malformed data read as
    absent, never an error)."""
    return value if value.__class__ is list else []


def json_kind(value: object) -> str:
    """What kind of JSON value this is, for a finding: never the value itself (it may be patient data)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def not_a_resource(value: object) -> str | None:
    """Why a parsed JSON value is not a FHIR resource (an object with a resourceType); None if it is."""
    if not isinstance(value, Mapping):
        return f"the JSON is {json_kind(value)}, not a FHIR resource (an object with a resourceType)"
    if not isinstance(value.get("resourceType"), str):
        return "the JSON is an object without a resourceType, not a FHIR resource"
    if not is_type_name(value["resourceType"]):
        return NOT_A_TYPE_NAME
    return None


def entry_problem(entry: object) -> str | None:
    """Why a Bundle entry holds no resource to read; None when it does (a ``resource`` object with a
    ``resourceType`` that is a FHIR type name, ``is_type_name``: another value is not quoted)."""
    if entry.__class__ is dict:  # what JSON gives, tested first: this runs for every entry read
        resource = entry.get("resource")
        if resource.__class__ is dict:
            rtype = resource.get("resourceType")
            if rtype.__class__ is str and rtype in _TYPE_NAMES:  # names seen valid (``is_type_name``)
                return None
    if not isinstance(entry, Mapping):
        return f"the entry is {json_kind(entry)}, not a JSON object"
    resource = entry.get("resource")
    if resource is None:
        return "the entry has no resource"
    if not isinstance(resource, Mapping):
        return f"the entry's resource is {json_kind(resource)}, not a JSON object"
    if not isinstance(resource.get("resourceType"), str):
        return "the entry's resource has no resourceType"
    if not is_type_name(resource["resourceType"]):
        return f"the entry's {NOT_A_TYPE_NAME}"
    return None


def is_usable(resource: Mapping[str, Any]) -> bool:
    """False for records that must be ignored: entered-in-error, refuted, cancelled, not taken."""
    rtype = resource.get("resourceType")
    if rtype.__class__ is not str:
        rtype = str(rtype)
    if rtype == "Condition":
        # Asked of every resource read (other patients' too): no set is built for the answer.
        return not _has_status(resource.get("verificationStatus"), _DROPPED_VERIFICATION)
    dropped = _DROPPED_STATUS.get(rtype)
    status = resource.get("status")
    if dropped and status.__class__ is str and status in dropped:  # a malformed status is no status
        return False
    return not (rtype == "MedicationStatement" and resource.get("taken") == "n")


def _has_status(concept: object, statuses: frozenset[str]) -> bool:
    """``bool(_status_codes(concept) & statuses)``."""
    if not isinstance(concept, Mapping):
        return False
    found = concept.get("coding")
    for coding in found if found.__class__ is list else ():  # ``codings`` inlined: no generator
        if coding.__class__ is dict or isinstance(coding, Mapping):
            code = coding.get("code")
            if isinstance(code, str) and code and normalised(coding.get("system"), code)[1] in statuses:
                return True
    return False


def _status_codes(concept: object) -> set[str]:
    if not isinstance(concept, Mapping):
        return set()
    return {code for _s, code, _d in codings(concept)}


def tentative(condition: Mapping[str, Any]) -> str | None:
    """'provisional', 'differential' or 'unconfirmed' when the diagnosis is not confirmed, else None."""
    codes = _status_codes(condition.get("verificationStatus")) & TENTATIVE_VERIFICATION
    return min(codes) if codes else None


def suspected(condition: Mapping[str, Any], label: str) -> str:
    """'suspected tuberculosis (provisional, Condition/c1)': how a reason names a tentative diagnosis."""
    return f"suspected {label} ({tentative(condition) or 'unconfirmed'}, {ref(condition)})"


def death_day(patient: Mapping[str, Any]) -> Any:
    """The day a patient died (deceasedDateTime), None when alive or the day is not recorded."""
    return day(patient.get("deceasedDateTime"))


def alive_until(patient: Mapping[str, Any], as_of: Any) -> Any:
    """The last day a patient's state can be current: the screening date, or the day of death if earlier.

    Conditions and observations dated after a recorded death are record errors, not the patient's state;
    evaluators of a current state (infection, pregnancy, labs) read the record as of this day.
    """
    died = death_day(patient)
    return died if died is not None and died < as_of else as_of


@per_resource
def clinical_status(condition: Mapping[str, Any]) -> str | None:
    codes = _status_codes(condition.get("clinicalStatus"))
    return next(iter(sorted(codes)), None)


def unstated_status(condition: Mapping[str, Any]) -> str:
    """", no clinical status (taken as active)" for a Condition without clinicalStatus, else "": a
    reason built on such an entry says so (criteria-codes.md 0.2: "treat as active ... and say so")."""
    return "" if clinical_status(condition) else ", no clinical status (taken as active)"


def _dated_choice(resource: Mapping[str, Any], prefix: str) -> Span | None:
    """A choice element ``prefix[x]`` as dateTime, Period, or a string that holds a (partial) date
    ("2026-05-01", "2026-05": read as its first day here; screening reads a partial date over its whole
    range, criteria/_partial_dates.py). None for an Age, a Range or words ("in childhood"): no day.

    One reading for every criterion: a date written as a string is a date, so one after the screening
    date is after it (not an undated record, counted as if it could be any day)."""
    span = span_of(resource, prefix)
    if span is not None:
        return span
    text = day(resource.get(prefix + "String"))
    return Span(text, text) if text is not None else None


# abatement[x] choices that say the condition has abated without giving a day: an age or range of age
# (the day would need the birth date), or words in abatementString ("in childhood").
_ABATED_UNDATED = ("abatementAge", "abatementRange")


@per_resource
def abated_on(condition: Mapping[str, Any]) -> Span | None:
    """When ``abatement[x]`` says the condition ended: abatementDateTime/Period, or abatementString holding
    a date. None when it says nothing of a day (see ``abated``)."""
    return _dated_choice(condition, "abatement")


def abated(condition: Mapping[str, Any]) -> bool:
    """True when ``abatement[x]`` says the condition has ended, dated or not (criteria-codes.md 0.2: active
    means no abatement[x]): a date or period, abatementBoolean true, an abatementString (a date or words)
    or an abatementAge/Range."""
    if condition.get("abatementBoolean") is True or abated_on(condition) is not None:
        return True
    text = condition.get("abatementString")
    if isinstance(text, str) and text.strip():
        return True
    return any(isinstance(condition.get(key), Mapping) for key in _ABATED_UNDATED)


def onset_span(condition: Mapping[str, Any]) -> Span | None:
    """When a condition began, by ``onset[x]`` (dateTime, Period or a string holding a date)."""
    return _dated_choice(condition, "onset")


@per_resource  # read by most criteria, for every value set they match
def condition_span(condition: Mapping[str, Any]) -> Span:
    """When a condition held: onset (``onset_span``; else recordedDate) to abatement (open when still
    present)."""
    onset = onset_span(condition)
    start = onset.start if onset else day(condition.get("recordedDate"))
    abatement = abated_on(condition)
    end = abatement.latest if abatement else None
    ended = clinical_status(condition) in {"resolved", "inactive", "remission"} or abated(condition)
    if end is None and ended:
        # Ended without a day (a resolved status, abatementBoolean true, an abatement age or words): it held
        # at some point up to when it was recorded.
        end = day(condition.get("recordedDate")) or start
    return Span(start, end)


def is_active_on(condition: Mapping[str, Any], on: Any) -> bool:
    """Active at a day: clinicalStatus active/recurrence/relapse (or missing) and not abated by then; an
    abatement without a day (abatementBoolean true, an age, words) is taken as before the screening date:
    the record says so at screening."""
    status = clinical_status(condition)
    if status is not None and status not in _ACTIVE_CLINICAL:
        return False
    span = condition_span(condition)
    if span.start is not None and span.start > on:
        return False
    if span.end is not None and span.end <= on:
        return False
    return not (abated(condition) and abated_on(condition) is None)


# What a component replaces when it is read as an Observation of its own.
_RESULT_KEYS = ("code", "interpretation", "referenceRange", "dataAbsentReason", "component", "hasMember")


def observation_parts(observation: Mapping[str, Any]) -> Iterator[Resource]:
    """The Observation, then each ``component`` read as an Observation of its own (issue 8 s3).

    A SLEDAI-2K total, a blood pressure or a complement panel may be held in ``Observation.component``:
    each component keeps its parent's id (evidence names the parent), subject, status and dates, with
    its own code, value[x], interpretation and reference range.
    """
    yield dict(observation) if not isinstance(observation, dict) else observation
    for component in items(observation.get("component")):
        if not isinstance(component, Mapping) or not isinstance(component.get("code"), Mapping):
            continue
        part = {k: v for k, v in observation.items() if k not in _RESULT_KEYS and not k.startswith("value")}
        part.update(component)
        part["_component"] = True
        yield part


@per_resource  # read for every lab, window and value set
def observation_day(observation: Mapping[str, Any]) -> Any:
    """The clinically relevant day of an Observation: effective[x], else issued."""
    bounds = span_bounds(observation, "effective")  # what span_of gives, without building a Span
    if bounds is not None:
        start, end = bounds
        return end or start  # Span.latest
    return day(observation.get("issued"))


def procedure_span(procedure: Mapping[str, Any]) -> Span | None:
    """When a Procedure was done: ``performed[x]`` as dateTime, Period or a string holding a date
    ("2026-05-01", "2026-05"). An Age or Range (a year of life or more) is left undated: too coarse for a
    window, it is reported, not counted (E9)."""
    return _dated_choice(procedure, "performed")
