"""E7 (MSC therapy within 52 weeks) and E8 (any other cellular therapy, ever).

Neither has standard codes for most products (no SNOMED/CPT code for MSC or Treg therapy exists;
criteria-codes.md E7/E8), so evidence comes from the trial file's codes (ICD-10-CM history codes, CPT,
HCPCS, ICD-10-PCS, RxNorm) plus text patterns on procedure, medication and study names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

from fhirscreen.criteria import _events as ev
from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, ValueSetRef, evaluator, result
from fhirscreen.fhir.codes import ValueSet
from fhirscreen.fhir.dates import days_before
from fhirscreen.fhir.resources import alive_until
from fhirscreen.record import PatientRecord


class MscParams(Params):
    msc: ValueSetRef
    # Identifiers of the trial being screened for: its own ResearchSubjects not dosed (a patient consented
    # or about to be dosed) are not prior MSC therapy; one dosed (a re-screen) is (``_ThisTrial``).
    this_study: tuple[str, ...] = ()
    # ICD-10-CM Z92.858/Z92.859 "history of other/unspecified cellular therapy": could be MSC.
    unspecified_cellular: ValueSetRef | None = None
    window_days: int = 364  # 52 weeks (criteria-codes.md 0.3)


class CellularParams(Params):
    cellular: ValueSetRef  # CAR-T, Tregs and other non-MSC cellular products: fail
    hsct: ValueSetRef  # haematopoietic stem-cell transplant: cellular, not named by the protocol -> unknown
    msc: ValueSetRef  # excepted by the protocol ("with the exception of previous MSCs")
    unspecified_cellular: ValueSetRef | None = None  # unknown
    this_study: tuple[str, ...] = ()  # as MscParams.this_study


@dataclass(frozen=True)
class _ThisTrial:
    """The record without the ResearchSubjects of the trial being screened for, and those of them that
    show, or may show, that this single-dose trial's UC-MSC was given (criteria/_research.py
    ``this_trial_dosing``, the rule E5 reads them by): a subject not dosed (candidate, eligible, screening,
    pending-on-study, withdrawn before any intervention) is this enrolment, and is not prior therapy."""

    record: PatientRecord  # the record itself when it holds none (the usual case): derived views shared
    dosed: list[ev.Event]  # follow-up, off-study, on-study with an ended period, withdrawn after the dose
    unsure: list[ev.Event]  # on-study with an open period, a bare withdrawal: may have been dosed

    @staticmethod
    def of(record: PatientRecord, ids: Sequence[str], as_of: date) -> _ThisTrial:
        own = ev.this_trial_subjects(record, ids, as_of)
        if not own:
            return _ThisTrial(record, [], [])
        mine = {id(e.resource) for e, _dosing in own}
        others = [s for s in record.of_type("ResearchSubject") if id(s) not in mine]
        rest = replace(record, resources={**record.resources, "ResearchSubject": others}, _memo={})
        return _ThisTrial(
            rest,
            [e for e, dosing in own if dosing == "dosed"],
            [e for e, dosing in own if dosing in ("enrolled", "unknown")],
        )


def _records(record: PatientRecord, vs: ValueSet, as_of: date) -> list[ev.Event]:
    """Every record naming the therapy, known at screening (records dated after as-of are ignored).

    Found once per record and value set: E7 and E8 ask for each several times (given, unsure,
    planned, excepted), and matching product names against every record is most of their cost. The
    list is shared: callers filter it, never change it."""

    def find() -> list[ev.Event]:
        found = (
            ev.procedures(record, vs) + ev.medications(record, vs) + ev.conditions(record, vs)
            + ev.research_subjects(record, vs, as_of)
        )
        return [e for e in found if ev.happened_by(e, as_of)]

    return record.memo(f"cellular:{vs.name}:{id(vs)}:{as_of.isoformat()}", find)


def _events(record: PatientRecord, vs: ValueSet, as_of: date) -> list[ev.Event]:
    """The therapy received, as the records known at screening show it. Procedure statuses are read as E2
    and E9 read them: one in preparation or on hold was not given (yet); one of status unknown may not
    have been, and is a question (``_unsure``)."""
    return [
        e for e in _records(record, vs, as_of)
        if not ev.is_planned(e, as_of) and not ev.is_unsure(e)
    ]


def _unsure(record: PatientRecord, vs: ValueSet, as_of: date) -> list[ev.Event]:
    """Procedures naming the therapy recorded with status unknown (not known whether it was given)."""
    return [e for e in _records(record, vs, as_of) if ev.is_unsure(e)]


def _possibly_given(record: PatientRecord, vs: ValueSet, as_of: date) -> list[ev.Event]:
    """Given, or of status unknown: for the therapies that are a question (unknown) either way."""
    return [e for e in _records(record, vs, as_of) if not ev.is_planned(e, as_of)]


@dataclass(frozen=True)
class _NotGiven:
    """Procedures naming the therapy that were not given by screening (in preparation or on hold): not
    counted, but named in a passing reason so that the coordinator sees them."""

    note: str
    refs: list[str]

    @staticmethod
    def of(
        record: PatientRecord, vs: ValueSet, as_of: date, excepted: Mapping[str, int] | None = None
    ) -> _NotGiven:
        found = _records(record, vs, as_of)
        planned = [e for e in found if ev.is_planned(e, as_of)]
        if excepted is not None:  # E8: records excepted as MSC are not named (``_not_msc``)
            planned = _not_msc(planned, excepted)
        if not planned:
            return _NotGiven("", [])
        return _NotGiven(
            f" Recorded as not yet given (not counted): {ev.describe(planned)}, status {planned[0].status}.",
            ev.refs(planned),
        )


def _unread(record: PatientRecord, as_of: date, therapy: str, first: date | None = None) -> _NotGiven:
    """Studies the patient is on that the data do not hold (named only by a reference), from ``first``
    on: not counted (what they gave cannot be told), but named in a passing reason."""
    found = [
        e for e in ev.unread_studies(record, as_of)
        if first is None or e.span is None or e.span.latest is None or e.span.latest >= first
    ]
    if not found:
        return _NotGiven("", [])
    listed = "; ".join(e.label for e in found)
    return _NotGiven(
        f" Study not in the data, so whether it gave {therapy} cannot be told: {listed}.", ev.refs(found)
    )


def _window_words(days: int, adjective: bool = False) -> str:
    """'52 weeks' (or '52-week' before a noun); '365 days' when not a whole number of weeks."""
    count, unit = (days // 7, "week") if days % 7 == 0 else (days, "day")
    return f"{count}-{unit}" if adjective else f"{count} {unit}s"


def _newest_first(events: list[ev.Event], as_of: date) -> list[ev.Event]:
    return sorted(events, key=lambda e: e.last_day_by(as_of) or date.min, reverse=True)


@evaluator("msc_therapy", MscParams)
def msc_therapy(record: PatientRecord, ctx: Context, params: MscParams) -> CriterionResult:
    """MSC therapy within the washout (52 weeks) before screening; the washout end date is reported."""
    as_of = alive_until(record.patient, ctx.as_of)
    own = _ThisTrial.of(record, params.this_study, as_of)
    record = own.record
    first = days_before(as_of, params.window_days)
    window = _window_words(params.window_days)
    found = _events(record, ctx.vs(params.msc), as_of) + own.dosed
    recent = _newest_first([e for e in found if e.in_window(first, as_of)], as_of)
    if recent:
        last = recent[0].last_day_by(as_of) or as_of
        ends, day0 = ev.plus_days(last, params.window_days), ev.plus_days(last, params.window_days + 1)
        return result(
            Outcome.FAIL,
            f"MSC therapy within {window} before screening: {ev.describe(recent)}. "
            f"The {_window_words(params.window_days, adjective=True)} washout runs to {ends.isoformat()} "
            f"(Day 0 from {day0.isoformat()}; counted from the last dose on record).",
            ev.refs(recent), last_msc=last.isoformat(), washout_ends=ends.isoformat(),
            eligible_from=day0.isoformat(),
        )
    undated = [e for e in found if e.span is None]
    if undated:
        return result(
            Outcome.UNKNOWN,
            f"MSC therapy on record without a date: {ev.describe(undated)}.",
            ev.refs(undated),
            next_step=f"Confirm the date of the last MSC dose (washout {window}).",
        )
    unsure = [
        e for e in _unsure(record, ctx.vs(params.msc), as_of) if e.span is None or e.in_window(first, as_of)
    ]
    if unsure:
        return result(
            Outcome.UNKNOWN,
            f"MSC therapy recorded with status unknown: {ev.describe(_newest_first(unsure, as_of))}; "
            f"whether it was given (within {window} before screening) is a question.",
            ev.refs(unsure),
            next_step=f"Confirm whether the MSC therapy was given, and the date of the last dose "
            f"(washout {window}).",
        )
    studies = [e for e in [*own.unsure, *ev.research_questions(record, ctx.vs(params.msc), as_of)]
               if e.span is None or e.span.latest is None or e.span.latest >= first]
    doubts = [e for e in ev.research_doubts(record, ctx.vs(params.msc), as_of)
              if e.span is None or e.span.latest is None or e.span.latest >= first]
    if studies or doubts:
        said, asks = [], []
        if studies:
            said.append(f"On record in an MSC study, exposure not clear: {ev.describe(studies)}.")
            asks.append("Ask whether the patient received the study's MSC product, and when.")
        if own.unsure:
            asks = ["Ask whether the patient already received this trial's UC-MSC dose (a re-screen), and "
                    "when; if not, this is the enrolment being screened for."]
        if doubts:
            said.append(_doubt_words("MSC therapy", doubts))
            asks.append("Ask whether that study gave the patient MSC therapy, and when.")
        return result(
            Outcome.UNKNOWN, " ".join(said), ev.refs([*studies, *doubts]), next_step=" ".join(asks),
        )
    unspecified = _unspecified_in_window(record, ctx, params.unspecified_cellular, first)
    if unspecified:
        return result(
            Outcome.UNKNOWN,
            f"Cellular therapy of unstated type on record ({ev.describe(unspecified)}); it may have been MSC "
            f"therapy within {window} before screening.",
            ev.refs(unspecified),
            next_step="Ask which cellular therapy was given and when.",
        )
    planned = _NotGiven.of(record, ctx.vs(params.msc), as_of)
    unread = _unread(record, as_of, "MSC therapy", first)
    older = ev.latest(found, as_of)
    if older is not None and older.last_day is not None:
        ends = ev.plus_days(older.last_day, params.window_days)
        return result(
            Outcome.PASS,
            f"Last MSC therapy on record {older.last_day.isoformat()} ({older.label}), "
            f"more than {window} before screening; the washout ended {ends.isoformat()}."
            f"{planned.note}{unread.note}",
            [*ev.refs([older]), *planned.refs, *unread.refs], last_msc=older.last_day.isoformat(),
            washout_ends=ends.isoformat(),
        )
    return result(
        Outcome.PASS,
        f"No MSC therapy on record in the last {window} "
        f"(MSC therapy is rarely coded: confirm with the participant).{planned.note}{unread.note}",
        planned.refs + unread.refs,
    )


def _doubt_words(therapy: str, doubts: list[ev.Event]) -> str:
    """The reason for studies whose description names the therapy only in words that do not say they
    gave it (``_events.research_doubts``)."""
    return (f"On record in a study whose description names {therapy} only in words that do not say the "
            f"study gave it (an exclusion, a negation, the participants' past): {ev.describe(doubts)}.")


# How firmly a record names a therapy (``Event.source``): a code or name, a study's description in plain
# words, a description that does not say the study gave it.
_FIRMNESS = {"name": 2, "description": 1, "doubtful": 0}


def _excepted(msc: list[ev.Event]) -> dict[str, int]:
    """The records naming MSC, each with how firmly it names it (``_not_msc`` decides which are excepted
    from which class)."""
    firm: dict[str, int] = {}
    for e in msc:
        firm[e.ref] = max(firm.get(e.ref, 0), _FIRMNESS[e.source])
    return firm


def _not_msc(events: list[ev.Event], excepted: Mapping[str, int], named: bool = True) -> list[ev.Event]:
    """The events that are not excepted as MSC. Of the non-MSC cellular therapies (``named``, whose names
    never name MSC), a record is excepted only when it names MSC more firmly than the other therapy: one
    that names both as firmly is a combined therapy ("MSC and regulatory T cell co-infusion"), which
    includes the other, and a CAR-T study whose description also mentions MSC is a CAR-T study. Of the
    classes whose words an MSC record may use (HSCT: "mesenchymal stem cell transplant"; a history code
    of unstated type), a record naming MSC at least as firmly is the MSC therapy it names."""
    if named:
        return [e for e in events if excepted.get(e.ref, -1) <= _FIRMNESS[e.source]]
    return [e for e in events if excepted.get(e.ref, -1) < _FIRMNESS[e.source]]


def _unspecified_in_window(
    record: PatientRecord, ctx: Context, name: str | None, first: date
) -> list[ev.Event]:
    """History-of-cellular-therapy codes first recorded within the window, or undated.

    A "personal history of" code stays active for ever, so its onset (when the history was first noted,
    on or after the therapy) is what dates it, not its open span.
    """
    if not name:
        return []
    found = _possibly_given(record, ctx.vs(name), alive_until(record.patient, ctx.as_of))
    return [e for e in found if e.first_day is None or e.first_day >= first]


@evaluator("cellular_therapy", CellularParams)
def cellular_therapy(record: PatientRecord, ctx: Context, params: CellularParams) -> CriterionResult:
    """Any previous cellular therapy other than MSCs (CAR-T, Tregs...); HSCT is left to the investigator."""
    as_of = alive_until(record.patient, ctx.as_of)
    own = _ThisTrial.of(record, params.this_study, as_of)
    record = own.record
    # This trial's earlier dose is MSC therapy: excepted here, as any other MSC record.
    msc = _events(record, ctx.vs(params.msc), as_of) + own.dosed
    # Every MSC record is excepted, given or not: none of them is another cellular therapy.
    excepted = _excepted(_records(record, ctx.vs(params.msc), as_of))
    cellular = _not_msc(_events(record, ctx.vs(params.cellular), as_of), excepted)
    if cellular:
        cellular = _newest_first(cellular, as_of)
        return result(
            Outcome.FAIL,
            f"Previous cellular therapy on record: {ev.describe(cellular)}. Any cellular therapy other than "
            "MSCs excludes, at any time.",
            ev.refs(cellular), cellular_therapy=[e.label for e in cellular],
        )
    unknown: list[str] = []
    evidence: list[str] = []
    unsure = _not_msc(_unsure(record, ctx.vs(params.cellular), as_of), excepted)
    if unsure:
        unknown.append(
            f"Cellular therapy recorded with status unknown: {ev.describe(_newest_first(unsure, as_of))}; "
            "whether it was given is a question."
        )
        evidence += ev.refs(unsure)
    hsct = _not_msc(_possibly_given(record, ctx.vs(params.hsct), as_of), excepted, named=False)
    if hsct:
        unknown.append(
            f"Haematopoietic stem-cell transplant on record ({ev.describe(hsct)}): a cellular therapy the "
            "protocol does not name (its examples are Tregs and CAR-T)."
        )
        evidence += ev.refs(hsct)
    if params.unspecified_cellular:
        unspecified = _possibly_given(record, ctx.vs(params.unspecified_cellular), as_of)
        unspecified = _not_msc(unspecified, excepted, named=False)
        if unspecified:
            unknown.append(
                f"Cellular therapy of unstated type on record ({ev.describe(unspecified)}); "
                "only MSCs are excepted."
            )
            evidence += ev.refs(unspecified)
    studies = _not_msc(ev.research_questions(record, ctx.vs(params.cellular), as_of), excepted)
    if studies:
        unknown.append(f"On record in a cellular-therapy study, exposure not clear: {ev.describe(studies)}.")
        evidence += ev.refs(studies)
    doubts = _not_msc(ev.research_doubts(record, ctx.vs(params.cellular), as_of), excepted)
    if doubts:
        unknown.append(_doubt_words("a cellular therapy", doubts))
        evidence += ev.refs(doubts)
    if unknown:
        steps = []
        if unsure:
            steps.append("Confirm whether the cellular therapy recorded with status unknown was given.")
        if len(unknown) > len(steps):  # a finding other than the status question: the investigator's call
            steps.append(
                "Investigator to decide whether this prior cellular therapy excludes (MSCs are excepted)."
            )
        return result(
            Outcome.UNKNOWN, " ".join(unknown), evidence, next_step=" ".join(steps), hsct=bool(hsct),
        )
    planned = _NotGiven.of(record, ctx.vs(params.cellular), as_of, excepted=excepted)
    unread = _unread(record, as_of, "a cellular therapy")
    if msc:
        return result(
            Outcome.PASS,
            f"No cellular therapy other than MSCs on record; previous MSC therapy ({ev.describe(msc)}) is "
            f"excepted here (see the MSC washout criterion).{planned.note}{unread.note}",
            ev.refs(msc) + planned.refs + unread.refs,
        )
    return result(
        Outcome.PASS, f"No cellular therapy (CAR-T, Tregs or other) on record.{planned.note}{unread.note}",
        planned.refs + unread.refs,
    )
