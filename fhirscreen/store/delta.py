"""Pure helpers of incremental reads: who a resource belongs to, who is in the population, what a
``_history`` entry says, and the server's clock. No I/O here (unit-tested)."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from fhirscreen.fhir.codes import coding_items
from fhirscreen.fhir.resources import Resource
from fhirscreen.record import SHARED_TYPES, patient_id, referenced_medication_id, referenced_study_ids
from fhirscreen.store.sqlite import Key, StoredResource

_VERSIONED = re.compile(r"(?:^|/)([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([^/?#]+))?/?$")


def owner(resource: Mapping[str, Any]) -> str | None:
    """The patient a resource belongs to (a Patient: itself); None for shared resources (Medication,
    ResearchStudy)."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    if rtype in SHARED_TYPES:
        return None
    try:
        return patient_id(resource)
    except (KeyError, AttributeError, TypeError):
        return None


def key_of(resource: Mapping[str, Any]) -> Key:
    return str(resource.get("resourceType")), str(resource.get("id"))


def is_population_condition(resource: Mapping[str, Any], codes: Collection[str]) -> bool:
    """True for a Condition that the population search (``Condition?code=c1,c2,...``, codes without
    their system) returns: any of its codings has one of the codes."""
    if resource.get("resourceType") != "Condition":
        return False
    concept = resource.get("code")
    for coding in coding_items(concept):
        code = coding.get("code")
        if isinstance(code, str) and code in codes:
            return True
    return False


def population_of(resources: Iterable[StoredResource], codes: Collection[str]) -> set[str]:
    """The patients a population search would find among these resources."""
    return {r.patient for r in resources if r.patient is not None and is_population_condition(r.body, codes)}


def referenced_medications(resources: Iterable[StoredResource]) -> set[str]:
    """Ids of separate Medications that stored resources point at (``referenced_medication_id``)."""
    return {mid for r in resources if (mid := referenced_medication_id(r.body)) is not None}


def referenced_shared(resources: Iterable[StoredResource]) -> set[Key]:
    """The shared resources (SHARED_TYPES) that stored resources point at: separate Medications, and the
    ResearchStudies that records refer to (``referenced_study_ids``: a ResearchSubject's study, a
    medication record's workflow-researchStudy extension)."""
    held = list(resources)
    keys: set[Key] = {("Medication", mid) for mid in referenced_medications(held)}
    for r in held:
        keys.update(("ResearchStudy", sid) for sid in referenced_study_ids(r.body))
    return keys


def history_entry(entry: Mapping[str, Any]) -> tuple[Key, Resource | None, str] | None:
    """(key, resource or None when deleted, version) of a ``_history`` Bundle entry; None if unusable.

    A deletion is an entry with ``request.method`` DELETE and no resource; its type and id come from
    ``request.url`` or ``fullUrl`` (``Type/id`` or ``Type/id/_history/v``).
    """
    request = entry.get("request")
    method = str(request.get("method", "")).upper() if isinstance(request, Mapping) else ""
    resource = entry.get("resource")
    if method != "DELETE" and isinstance(resource, dict):
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if not (isinstance(rtype, str) and isinstance(rid, str)):
            return None
        meta = resource.get("meta")
        version = str(meta.get("versionId", "")) if isinstance(meta, Mapping) else ""
        return (rtype, rid), resource, version
    if method != "DELETE":
        return None
    for where in (request.get("url") if isinstance(request, Mapping) else None, entry.get("fullUrl")):
        if isinstance(where, str):
            found = _VERSIONED.search(where.split("?")[0])
            if found:
                return (found.group(1), found.group(2)), None, found.group(3) or ""
    return None


def newer(version: str, than: str) -> bool:
    """Whether version ``version`` is later than ``than`` (numeric versions compared as numbers)."""
    if version.isdigit() and than.isdigit():
        return int(version) > int(than)
    return False


def parse_instant(value: str) -> datetime | None:
    """A FHIR instant or an HTTP date as an aware UTC datetime; None when it is neither."""
    text = value.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(timezone.utc)


def instant(moment: datetime) -> str:
    """A FHIR instant in UTC with milliseconds, e.g. 2026-12-06T13:30:00.000Z."""
    return (
        moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def since(high_water: str, overlap: timedelta) -> str | None:
    """Where the next read starts: the stored high-water mark minus an overlap margin."""
    moment = parse_instant(high_water)
    return instant(moment - overlap) if moment is not None else None
