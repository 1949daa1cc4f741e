"""The contract every criterion evaluator follows, and the registry of evaluator kinds.

An evaluator is a pure function of (patient record, context, params): no I/O, so each criterion can
be tested with a handful of resources.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo

from fhirscreen.fhir.codes import ValueSet
from fhirscreen.quality import DataQuality
from fhirscreen.record import PatientRecord


class Outcome(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"
    MANUAL = "manual"

    def __str__(self) -> str:
        return self.value


# A key of ``CriterionResult.details``: a fact about the patient that a coordinator must see beside the
# patient's status, whatever it is ("Already enrolled in this trial (ResearchSubject/x, on-study ...)").
# The reports show it with the patient (``PatientScreen.notes``); resource ids only, as every reason.
PATIENT_NOTE = "patient_note"


@dataclass(frozen=True)
class CriterionResult:
    """One criterion for one patient.

    For inclusion and exclusion alike, ``pass`` means "does not stand in the way of enrolment":
    an exclusion that applies is a ``fail``.
    """

    outcome: Outcome
    reason: str
    evidence: tuple[str, ...] = ()
    # Machine-readable facts behind the reason, e.g. {"washout_ends": "2026-03-14"}, {"sledai_2k": 8}.
    details: Mapping[str, Any] = field(default_factory=dict)
    # For unknown: what data would settle it, for the coordinators' worklist.
    next_step: str | None = None


def result(
    outcome: Outcome,
    reason: str,
    evidence: Iterable[str] = (),
    next_step: str | None = None,
    **details: Any,
) -> CriterionResult:
    """Build a result with evidence de-duplicated in a stable order."""
    return CriterionResult(outcome, reason, tuple(dict.fromkeys(evidence)), details, next_step)


@dataclass
class Context:
    """What every evaluator may read besides the record: the screening date and the trial's value sets."""

    as_of: date
    value_sets: Mapping[str, ValueSet]
    quality: DataQuality = field(default_factory=DataQuality)

    def vs(self, name: str) -> ValueSet:
        return self.value_sets[name]


def _known_value_set(name: str, info: ValidationInfo) -> str:
    known = (info.context or {}).get("value_sets")
    if known is not None and name not in known:
        raise ValueError(f"unknown value set {name!r}; it must be declared under value_sets")
    return name


# A parameter naming a value set of the trial file; checked when the trial file is loaded.
ValueSetRef = Annotated[str, AfterValidator(_known_value_set)]


class Params(BaseModel):
    """Base of every evaluator's parameters: typos in a trial file are errors, not silent defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=Params)
EvaluatorFn = Callable[[PatientRecord, Context, Any], CriterionResult]


@dataclass(frozen=True)
class EvaluatorKind(Generic[P]):
    name: str
    params: type[P]
    fn: Callable[[PatientRecord, Context, P], CriterionResult]
    summary: str


REGISTRY: dict[str, EvaluatorKind[Any]] = {}


def evaluator(
    name: str, params: type[P]
) -> Callable[
    [Callable[[PatientRecord, Context, P], CriterionResult]],
    Callable[[PatientRecord, Context, P], CriterionResult],
]:
    """Register an evaluator kind under the name trial files use in ``evaluator:``."""

    def register(
        fn: Callable[[PatientRecord, Context, P], CriterionResult],
    ) -> Callable[[PatientRecord, Context, P], CriterionResult]:
        if name in REGISTRY:
            raise RuntimeError(f"evaluator kind {name!r} registered twice")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name
        REGISTRY[name] = EvaluatorKind(name, params, fn, summary)
        return fn

    return register
