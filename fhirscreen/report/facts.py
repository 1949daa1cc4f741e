"""What the reports say about each screened patient beyond the criteria: sex, age and a one-line
description of every evidence resource (so report.html can be rendered again from candidates.json
alone), and, kept apart, the name and MRN shown only with ``--show-names``.

Built by the pipeline while the records are still in memory; the screening core is not involved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhirscreen.fhir.codes import coding_items
from fhirscreen.fhir.resources import items
from fhirscreen.record import PatientRecord
from fhirscreen.report.describe import age_text, describe_resource, find_resource, gender_of
from fhirscreen.screening import PatientScreen

MRN_TYPE = "MR"  # HL7 v2-0203 "Medical record number"
# Evidence resources described (and shown in report.html) per criterion; the rest are named in the
# criterion's evidence list. A classification criterion can cite a hundred Synthea Observations.
EVIDENCE_DESCRIBED = 12


@dataclass(frozen=True)
class PatientFacts:
    sex: str | None
    age: str | None  # "38", or "37-38" when only the birth year or month is known
    resources: dict[str, str] = field(default_factory=dict)  # evidence Type/id -> what, when, value
    identity: dict[str, str] = field(default_factory=dict)  # name, mrn: PHI, only with --show-names


def _name(patient: Mapping[str, Any]) -> str:
    names = [n for n in items(patient.get("name")) if isinstance(n, Mapping)]
    official = [n for n in names if n.get("use") == "official"] or names
    if not official:
        return ""
    name = official[0]
    if name.get("text"):
        return str(name["text"])
    given = " ".join(str(g) for g in items(name.get("given")))
    return " ".join(p for p in (given, str(name.get("family") or "")) if p)


def _mrn(patient: Mapping[str, Any]) -> str:
    for identifier in items(patient.get("identifier")):
        if not isinstance(identifier, Mapping):
            continue
        if any(c.get("code") == MRN_TYPE for c in coding_items(identifier.get("type"))):
            return str(identifier.get("value") or "")
    return ""


def identity(patient: Mapping[str, Any]) -> dict[str, str]:
    found = {"name": _name(patient), "mrn": _mrn(patient)}
    return {k: v for k, v in found.items() if v}


def patient_facts(record: PatientRecord, screen: PatientScreen, as_of: date) -> PatientFacts:
    described: dict[str, str] = {}
    for found in screen.results.values():
        for reference in found.evidence[:EVIDENCE_DESCRIBED]:
            if reference in described:
                continue
            resource = find_resource(record, reference)
            if resource is not None:
                text = describe_resource(resource, record, as_of)
                described[reference] = text.removeprefix(reference).removeprefix(": ")
    patient = record.patient
    return PatientFacts(
        sex=gender_of(patient),
        age=age_text(patient, as_of),
        resources=dict(sorted(described.items())),
        identity=identity(patient),
    )
