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
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from fhirscreen.fhir.dates import day
from fhirscreen.fhir.resources import ref

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
# ("cohort" alone is not enough: interventional trials have dose-escalation cohorts.)
_OBSERVATIONAL = re.compile(
    r"\b(registr(y|ies)|observational|natural history|biobank|cohort study|survey)\b", re.IGNORECASE
)


def observational(study_text: str) -> bool:
    """True when a study's name says it is observational (a registry, a cohort): no agent is given."""
    return bool(_OBSERVATIONAL.search(study_text))


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
