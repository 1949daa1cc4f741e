"""Screen a population against a trial: every criterion for every patient, overall status, ranking."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Literal

from fhirscreen.criteria._partial_dates import over_partial_dates
from fhirscreen.criteria._tentative import unconfirmed_only
from fhirscreen.criteria.base import PATIENT_NOTE, Context, CriterionResult, Outcome, result
from fhirscreen.fhir.memo import resources_unchanged
from fhirscreen.fhir.resources import ref
from fhirscreen.quality import DATA_LOST, DataQuality
from fhirscreen.record import PatientRecord, Population
from fhirscreen.trial.loader import Criterion, Trial

if TYPE_CHECKING:
    from fhirscreen.report.facts import PatientFacts

Status = Literal["eligible", "possible", "ineligible"]
STATUS_ORDER: dict[str, int] = {"eligible": 0, "possible": 1, "ineligible": 2}


@dataclass(frozen=True)
class PatientScreen:
    patient_id: str
    results: dict[str, CriterionResult]  # in protocol order
    status: Status
    score: float  # share of computable criteria that pass, 0..1
    strength: float  # tie-breaker within a score: stronger evidence first (e.g. SLEDAI-2K)
    rank: int = 0
    # Why the status is more cautious than the criteria alone say (data lost in this run), or "".
    caveat: str = ""

    @property
    def ref(self) -> str:
        return f"Patient/{self.patient_id}"

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results.values() if r.outcome is outcome)

    @property
    def notes(self) -> tuple[str, ...]:
        """What a coordinator must know beside the status, whatever it is (already enrolled in this trial,
        screened for it before...): the criteria's ``PATIENT_NOTE`` details, in protocol order."""
        found = (r.details.get(PATIENT_NOTE) for r in self.results.values())
        return tuple(dict.fromkeys(str(note) for note in found if note))


@dataclass
class ScreeningRun:
    trial: Trial
    as_of: date
    source: str
    patients: list[PatientScreen]  # ranked
    quality: DataQuality
    patients_read: int  # all patients in the data, before the initial population
    skipped_types: dict[str, int] = field(default_factory=dict)
    # Sex, age and evidence descriptions per patient id, for the reports; filled by the pipeline (I/O edge)
    # while the records are in memory. Screening itself never reads it.
    facts: dict[str, PatientFacts] = field(default_factory=dict)


def population_evidence(record: PatientRecord, trial: Trial) -> list[str]:
    """The Conditions that put a patient in the initial population (an SLE diagnosis on record)."""
    vs = trial.population
    return [ref(c) for c in record.of_type("Condition") if vs.match(c.get("code")) is not None]


def overall_status(results: Iterable[CriterionResult]) -> Status:
    outcomes = [r.outcome for r in results]
    if Outcome.FAIL in outcomes:
        return "ineligible"
    if Outcome.UNKNOWN in outcomes:
        return "possible"
    return "eligible"


def _evaluation(criterion: Criterion, ctx: Context) -> Callable[[PatientRecord], CriterionResult]:
    """One criterion as a function of the record (read once, or at each end of its partial dates)."""

    def evaluate(record: PatientRecord) -> CriterionResult:
        res = criterion.kind.fn(record, ctx, criterion.params)
        if criterion.definition.type == "exclusion":
            res = unconfirmed_only(res, record)
        return res

    return evaluate


def screen_patient(
    record: PatientRecord, trial: Trial, as_of: date, quality: DataQuality | None = None
) -> PatientScreen:
    ctx = Context(as_of=as_of, value_sets=trial.value_sets, quality=quality or DataQuality())
    results: dict[str, CriterionResult] = {}
    with resources_unchanged():  # criteria only read the record: derived views are computed once
        for criterion in trial.criteria:
            cid = criterion.id
            try:
                results[cid] = over_partial_dates(record, as_of, _evaluation(criterion, ctx))
            except Exception as exc:
                ctx.quality.add(
                    "error",
                    record.ref,
                    "evaluator-error",
                    f"{cid} could not be evaluated ({type(exc).__name__}); reported as unknown",
                )
                results[cid] = result(
                    Outcome.UNKNOWN,
                    f"Could not be evaluated automatically ({type(exc).__name__}); "
                    "review the record by hand.",
                    next_step="Review this criterion in the chart.",
                )
    computable = [r for r in results.values() if r.outcome is not Outcome.MANUAL]
    score = share_passed(computable)
    strength = sum(float(r.details.get("strength", 0)) for r in results.values())
    if not math.isfinite(strength):
        strength = 0.0  # a NaN tie-break would make the ranking depend on input order
    return PatientScreen(record.id, results, overall_status(computable), score, strength)


def share_passed(computable: Sequence[CriterionResult]) -> float:
    """The score: the share of computable criteria that pass, to two decimals."""
    passed = sum(1 for r in computable if r.outcome is Outcome.PASS)
    return round(passed / len(computable), 2) if computable else 0.0


def rank(screens: Iterable[PatientScreen]) -> list[PatientScreen]:
    """Eligible, then possible, then ineligible; within a status fewer unknowns (higher score) and
    stronger evidence first; ties broken by patient id so runs are reproducible."""
    ordered = sorted(screens, key=lambda s: (STATUS_ORDER[s.status], -s.score, -s.strength, s.patient_id))
    return [
        PatientScreen(s.patient_id, s.results, s.status, s.score, s.strength, rank=i, caveat=s.caveat)
        for i, s in enumerate(ordered, start=1)
    ]


LOST_CAVEAT = (
    "data were lost in this run (see the data-quality findings): the record may be incomplete, so the "
    "patient is not offered as eligible; check the chart or rerun"
)


def caution(screens: Iterable[PatientScreen], quality: DataQuality) -> list[PatientScreen]:
    """Nobody whose record may be incomplete is offered as eligible (a wrong "eligible" costs a
    coordinator's day). Data lost for named patients (a search page that never came) touches them; data
    lost anywhere else (a file, a Bulk file) may hold anyone's records and touches everyone."""
    lost = [f.where for f in quality.findings if f.problem == DATA_LOST]
    if not lost:
        return list(screens)
    everyone = any(not where.startswith("Patient/") for where in lost)
    touched = {where.removeprefix("Patient/") for where in lost}
    return [_cautious(s) if everyone or s.patient_id in touched else s for s in screens]


def _cautious(screened: PatientScreen) -> PatientScreen:
    """A patient whose record may be incomplete: a criterion that fails on what is not on record
    (``nothing_on_record``: "no immunosuppressant on record") is unknown, for the lost data may hold
    it; nobody is eligible; and every such patient carries the caveat, whatever the status."""
    results = {
        cid: dataclasses.replace(
            r, outcome=Outcome.UNKNOWN, reason=f"{r.reason} {_LOST_ABSENCE}",
            next_step=r.next_step or "Check the chart: data were lost in this run.",
        )
        if r.outcome is Outcome.FAIL and r.details.get("nothing_on_record")
        else r
        for cid, r in screened.results.items()
    }
    if results == screened.results and screened.status != "eligible":
        # Nothing to change, but the coordinator still learns that this record may be incomplete.
        return dataclasses.replace(screened, caveat=LOST_CAVEAT)
    computable = [r for r in results.values() if r.outcome is not Outcome.MANUAL]
    status = overall_status(computable)
    if status == "eligible":
        status = "possible"
    return PatientScreen(
        screened.patient_id, results, status, share_passed(computable), screened.strength, screened.rank,
        LOST_CAVEAT,
    )


_LOST_ABSENCE = "Data were lost in this run, so what is not on record may be in what was lost."


ScreenOne = Callable[[PatientRecord, DataQuality], PatientScreen]
# How the chosen records are screened: in this process, in order (``in_order``), or spread over
# processes (``fhirscreen.parallel.screen_all``); either way the screens come back in record order.
ScreenAll = Callable[[Sequence[PatientRecord], ScreenOne, DataQuality], list[PatientScreen]]


def in_order(
    records: Sequence[PatientRecord], screen: ScreenOne, quality: DataQuality
) -> list[PatientScreen]:
    return [screen(record, quality) for record in records]


def screen_population(
    population: Population, trial: Trial, as_of: date, source: str, screen_all: ScreenAll = in_order
) -> ScreeningRun:
    chosen = [
        record
        for record in population.records.values()
        # Most records of a large population hold no resources (file sources keep only the initial
        # population's): nothing to look through.
        if record.resources and population_evidence(record, trial)
    ]

    def screen(record: PatientRecord, quality: DataQuality) -> PatientScreen:
        screened = screen_patient(record, trial, as_of, quality)
        # The record's derived views (lab index, exposures...) served its criteria; held for every
        # patient until the reports are written they were the largest part of the screening's memory.
        record.forget_views()
        return screened

    screens = screen_all(chosen, screen, population.quality)
    return ScreeningRun(
        trial=trial,
        as_of=as_of,
        source=source,
        patients=rank(caution(screens, population.quality)),
        quality=population.quality,
        patients_read=len(population.records) - population.without_patient,
        skipped_types=population.skipped,
    )
