"""The coordinators' worklist: for each possible patient, what data would settle each unknown criterion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhirscreen.criteria.base import CriterionResult, Outcome
from fhirscreen.screening import PatientScreen


@dataclass(frozen=True)
class WorkItem:
    criterion: str
    next_step: str


@dataclass(frozen=True)
class PatientWork:
    patient: str  # Patient/id
    items: tuple[WorkItem, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "items": [{"criterion": i.criterion, "next_step": i.next_step} for i in self.items],
        }


def next_step_of(found: CriterionResult) -> str:
    """The evaluator's next step; without one, the reason tells the coordinator what is missing."""
    return found.next_step or f"Review in the chart: {found.reason}"


def worklist(screens: Sequence[PatientScreen]) -> list[PatientWork]:
    """Possible patients in rank order, each with its unknown criteria in protocol order."""
    out = []
    for screen in screens:
        if screen.status != "possible":
            continue
        unknown = [(cid, r) for cid, r in screen.results.items() if r.outcome is Outcome.UNKNOWN]
        items = tuple(WorkItem(cid, next_step_of(r)) for cid, r in unknown)
        out.append(PatientWork(screen.ref, items))
    return out
