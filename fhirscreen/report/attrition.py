"""The attrition table: patients left after each criterion, in protocol order (as OHDSI ATLAS's
inclusion report), with how many each criterion alone excludes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhirscreen.criteria.base import Outcome
from fhirscreen.screening import PatientScreen
from fhirscreen.trial.loader import Trial

INITIAL = "initial-population"


@dataclass(frozen=True)
class AttritionRow:
    criterion: str  # a criterion id, or "initial-population" for the first row
    title: str
    remaining: int  # patients that failed none of the criteria up to and including this one
    # Patients this criterion alone excludes: they fail it and no other criterion. None on the first row.
    gain: int | None
    passed: int | None
    failed: int | None
    unknown: int | None
    manual: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "title": self.title,
            "remaining": self.remaining,
            "gain": self.gain,
            "pass": self.passed,
            "fail": self.failed,
            "unknown": self.unknown,
            "manual": self.manual,
        }


def _fails(screen: PatientScreen, criterion_id: str) -> bool:
    found = screen.results.get(criterion_id)
    return found is not None and found.outcome is Outcome.FAIL


def _count(screens: Sequence[PatientScreen], criterion_id: str, outcome: Outcome) -> int:
    return sum(1 for s in screens if (r := s.results.get(criterion_id)) is not None and r.outcome is outcome)


def attrition_rows(screens: Sequence[PatientScreen], criteria: Sequence[tuple[str, str]],
                   population_title: str = "Initial population") -> list[AttritionRow]:
    """One row for the initial population, then one per (criterion id, title) in the order given."""
    rows = [AttritionRow(INITIAL, population_title, len(screens), None, None, None, None, None)]
    remaining = list(screens)
    ids = [cid for cid, _title in criteria]
    for cid, title in criteria:
        remaining = [s for s in remaining if not _fails(s, cid)]
        others = [o for o in ids if o != cid]
        gain = sum(1 for s in screens if _fails(s, cid) and not any(_fails(s, o) for o in others))
        rows.append(AttritionRow(
            cid, title, len(remaining), gain,
            _count(screens, cid, Outcome.PASS), _count(screens, cid, Outcome.FAIL),
            _count(screens, cid, Outcome.UNKNOWN), _count(screens, cid, Outcome.MANUAL),
        ))
    return rows


def trial_attrition(screens: Sequence[PatientScreen], trial: Trial) -> list[AttritionRow]:
    """The attrition table of a trial's criteria, in protocol order (manual ones never exclude)."""
    criteria = [(c.id, c.definition.title) for c in trial.criteria]
    return attrition_rows(screens, criteria, trial.definition.trial.population.description)
