"""What a ResearchSubject says about exposure to a study's intervention (E5, E7 and E8 alike).

R4 ``ResearchSubject.status`` (research-subject-status) mixes recruitment states with treatment states.
Only some of them mean the patient received the study's intervention:

- dosed: on-study, on-study-intervention (receiving it); follow-up, on-study-observation, off-study
  (past it: the washout runs from the end of the study period);
- pending: pending-on-study (about to start: a question for the coordinator);
- not dosed: candidate, potential-candidate, screening, eligible, ineligible, not-registered;
- withdrawn: dosed when the record shows the intervention started (an ``actualArm``, or an
  ``assignedArm`` with a study period that began by the screening date); not dosed when it says the
  withdrawal came before any intervention (R5-style ``progress`` or an extension's text, e.g. "withdrawn
  before randomisation", "screen failure"); otherwise unknown.

No status is dropped at load (fhir/resources.py): a withdrawal after dosing is still exposure.

What the study is (``Study``): the reference's display, and the ResearchStudy it points at when the data
hold it (``PatientRecord.study``; every source reads the studies that ResearchSubjects refer to). Its
title, focus and keywords may name the product (E7, E8); its category, phase and names tell an
interventional study from an observational one, and its identifiers this trial from another (E5). A
study named only by a reference that the data do not hold cannot be read: the reasons say so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from fhirscreen.fhir.codes import codings
from fhirscreen.fhir.dates import day
from fhirscreen.fhir.resources import items, ref, reference_id

Exposure = Literal["dosing", "after-dosing", "pending", "not-dosed", "unknown"]

DOSING = frozenset({"on-study", "on-study-intervention"})
AFTER_DOSING = frozenset({"follow-up", "on-study-observation", "off-study"})
PENDING = frozenset({"pending-on-study"})
NOT_DOSED = frozenset(
    {"candidate", "potential-candidate", "screening", "eligible", "ineligible", "not-registered"}
)
WITHDRAWN = "withdrawn"

# Words that place a withdrawal before any intervention.
_BEFORE_INTERVENTION = re.compile(
    r"(before|prior to|without|never)\s+(any\s+|the\s+)?(first\s+)?"
    r"(dos|intervention|treatment|randomi[sz]|study (drug|product|treatment))"
    r"|screen(ing)?[- ]fail|not (dosed|treated|randomi[sz]ed)",
    re.IGNORECASE,
)


# A study named as observational is not an intervention (protocol E5 says "interventional agent").
# ("cohort" alone is not enough: interventional trials have dose-escalation cohorts.) A
# "non-interventional study" is the European name of an observational one.
_OBSERVATIONAL = re.compile(
    r"\b(registr(y|ies)|observational|natural history|biobank|cohort study|survey|non-?\s?interventional)\b",
    re.IGNORECASE,
)
# "Interventional", but not in "non-interventional".
_INTERVENTIONAL = re.compile(r"(?<!non)(?<!non-)(?<!non )\binterventional\b", re.IGNORECASE)
# R4 research-study-phase codes of a trial phase (n-a is not one); phases are given to interventional
# trials only (ClinicalTrials.gov).
_TRIAL_PHASES = frozenset(
    {"early-phase-1", "phase-1", "phase-1-phase-2", "phase-2", "phase-2-phase-3", "phase-3", "phase-4"}
)
_PHASE_TEXT = re.compile(r"\bphase\s*(?:[1-4]|i{1,3}|iv)\b", re.IGNORECASE)

StudyKind = Literal["interventional", "observational"]


def observational(study_text: str) -> bool:
    """True when a study's name says it is observational (a registry, a cohort): no agent is given."""
    return bool(_OBSERVATIONAL.search(study_text))


def _concept_texts(concept: object) -> list[str]:
    """The text, displays and codes of a CodeableConcept (nothing for one not in FHIR's form)."""
    if not isinstance(concept, Mapping):
        return []
    found = [str(concept["text"])] if isinstance(concept.get("text"), str) and concept["text"] else []
    for _system, code, display in codings(concept):
        found += [t for t in (display, code) if t]
    return found


def _trial_phase(phase: object) -> str | None:
    """The trial phase a ResearchStudy.phase names ("phase-2", "Phase 2"); None for n-a or none."""
    if not isinstance(phase, Mapping):
        return None
    for _system, code, display in codings(phase):
        if code.lower() in _TRIAL_PHASES:
            return display or code
    text = phase.get("text")
    if isinstance(text, str) and _PHASE_TEXT.search(text):
        return text
    return None


@dataclass(frozen=True)
class Study:
    """The study a ResearchSubject is on, as far as the data tell: its ``study`` Reference and, when the
    data hold it, the ResearchStudy that reference points at."""

    reference: Mapping[str, Any]  # ResearchSubject.study ({} when absent or not an object)
    resource: Mapping[str, Any] | None  # the ResearchStudy, resolved by the record; None when not held

    @property
    def ref(self) -> str | None:
        """``ResearchStudy/abc``, the resource behind the evidence, when the reference names one."""
        rid = reference_id(self.reference, "ResearchStudy")
        return f"ResearchStudy/{rid}" if rid else None

    @property
    def display(self) -> str:
        display = self.reference.get("display")
        return display if isinstance(display, str) else ""

    @property
    def title(self) -> str:
        title = self.resource.get("title") if self.resource is not None else None
        return title if isinstance(title, str) else ""

    @property
    def unread(self) -> bool:
        """Named only by a reference the data do not hold (no display): what it is cannot be told."""
        return self.resource is None and not self.display and self.ref is not None

    def concepts(self) -> list[Mapping[str, Any]]:
        """What may name the study's product, for a value set: the reference's display, then the
        study's title, focus and keywords (codes and text). Not its description: prose that may name a
        product only to exclude it ("no prior CAR-T therapy")."""
        found: list[Mapping[str, Any]] = [{"text": self.display}] if self.display else []
        if self.title:
            found.append({"text": self.title})
        if self.resource is not None:
            for element in ("focus", "keyword"):
                found += [c for c in items(self.resource.get(element)) if isinstance(c, Mapping)]
        return found

    def _reference_parts(self) -> list[str]:
        identifier = self.reference.get("identifier")
        value = identifier.get("value") if isinstance(identifier, Mapping) else None
        return [str(p) for p in (self.reference.get("reference"), value) if p]

    def text(self) -> str:
        """Everything that names the study, to tell this trial from another: the reference's display,
        reference and identifier, and the study's title and identifiers."""
        parts = [self.display, self.title, *self._reference_parts()]
        if self.resource is not None:
            parts += [
                str(i["value"]) for i in items(self.resource.get("identifier"))
                if isinstance(i, Mapping) and i.get("value")
            ]
        return " ".join(dict.fromkeys(p for p in parts if p))

    def name(self) -> str:
        """How a reason names the study: its display (else its title), reference and identifier; a study
        named only by a reference the data do not hold says that it could not be read."""
        parts = [self.display or self.title, *self._reference_parts()]
        named = " ".join(dict.fromkeys(p for p in parts if p))
        if self.unread:
            return f"{named} (not in the data: the study could not be read)"
        return named

    def kind(self) -> tuple[StudyKind | None, str]:
        """("interventional" | "observational" | None, how it was told).

        Interventional when the study's category or a name says so, or it has a trial phase (phases are
        given to interventional trials only); else observational when its category or a name says so
        (a registry, a cohort study, a non-interventional study); else not told (None). Any sign of an
        intervention wins: an exclusion errs towards counting the study."""
        resource = self.resource if self.resource is not None else {}
        categories = [t for c in items(resource.get("category")) for t in _concept_texts(c)]
        keywords = [t for c in items(resource.get("keyword")) for t in _concept_texts(c)]
        names = [self.text(), *keywords]
        if any(_INTERVENTIONAL.search(t) for t in categories):
            return "interventional", "by its category"
        phase = _trial_phase(resource.get("phase"))
        if phase is not None:
            return "interventional", f"{phase}"
        if any(_INTERVENTIONAL.search(t) for t in names):
            return "interventional", "by its name"
        if any(observational(t) for t in categories):
            return "observational", "by its category"
        if any(observational(t) for t in names):
            return "observational", "by its name"
        return None, ""


def is_this_study(text: str, ids: Sequence[str]) -> bool:
    """Whether a study's names (``Study.text``) name the trial being screened for (its NCT number): its
    own ResearchSubjects are neither another study (E5) nor prior cell therapy (E7, E8)."""
    return any(i.lower() in text.lower() for i in ids)


def study_of(subject: Mapping[str, Any], resource: Mapping[str, Any] | None) -> Study:
    """The ``Study`` of a ResearchSubject, with the ResearchStudy the record resolved (or None)."""
    reference = subject.get("study")
    return Study(reference if isinstance(reference, Mapping) else {}, resource)


@dataclass(frozen=True)
class Participation:
    """One ResearchSubject read for exposure."""

    subject: Mapping[str, Any]
    exposure: Exposure
    status: str
    start: date | None
    end: date | None  # None: open (still on study on the screening date) or not recorded
    why: str  # how the exposure was read, for reasons

    @property
    def ref(self) -> str:
        return ref(self.subject)

    @property
    def exposed(self) -> bool:
        return self.exposure in ("dosing", "after-dosing")


def _texts(value: object) -> Iterator[str]:
    """Every string inside an element (extension values, R5 progress reasons, CodeableConcept texts)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v)


def _withdrawn_before_intervention(subject: Mapping[str, Any]) -> bool:
    for element in ("extension", "modifierExtension", "progress", "statusReason", "note"):
        if any(_BEFORE_INTERVENTION.search(t) for t in _texts(subject.get(element))):
            return True
    return False


def participation(
    subject: Mapping[str, Any],
    as_of: date,
    *,
    dosing: frozenset[str] | tuple[str, ...] = DOSING,
    after_dosing: frozenset[str] | tuple[str, ...] = AFTER_DOSING,
    pending: frozenset[str] | tuple[str, ...] = PENDING,
) -> Participation:
    """Read one ResearchSubject's status (and, for withdrawals, its arms and period) as exposure."""
    period = subject.get("period")
    period = period if isinstance(period, Mapping) else {}
    start, end = day(period.get("start")), day(period.get("end"))
    if end is not None and end > as_of:
        end = None  # still on study on the screening date
    status = str(subject.get("status") or "")

    def read(exposure: Exposure, why: str) -> Participation:
        return Participation(subject, exposure, status, start, end, why)

    if status in dosing:
        return read("dosing", f"status {status}")
    if status in after_dosing:
        return read("after-dosing", f"status {status}")
    if status in pending:
        return read("pending", f"status {status}: about to start")
    if status == WITHDRAWN:
        if _withdrawn_before_intervention(subject):
            return read("not-dosed", "withdrawn before any intervention")
        started = start is not None and start <= as_of
        if subject.get("actualArm") or (subject.get("assignedArm") and started):
            arm = subject.get("actualArm") or subject.get("assignedArm")
            return read("after-dosing", f"withdrawn after starting arm {arm}")
        return read("unknown", "withdrawn; whether before or after the first study dose is not recorded")
    if status in NOT_DOSED:
        return read("not-dosed", f"status {status}: not dosed")
    return read("unknown", f"status {status or 'not recorded'}")
