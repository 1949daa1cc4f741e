"""E5 (investigational agent) and E6 (commercial immunomodulatory biologic) washouts.

Both are anchored on Baseline (Day 0), which the EHR cannot know: they are computed against the
screening date plus ``baseline_offset_days`` (0: conservative), and every result names the day the
washout ends so a coordinator can schedule Day 0 (criteria-codes.md 0.3, Appendix A #14).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from fhirscreen.criteria._medications import Drug, Exposure, exposures, first_drug
from fhirscreen.criteria._research import (
    Standing,
    is_this_study,
    participation,
    study_of,
    this_trial_dosing,
    this_trial_standing,
)
from fhirscreen.criteria.base import (
    PATIENT_NOTE,
    Context,
    CriterionResult,
    Outcome,
    Params,
    ValueSetRef,
    evaluator,
    result,
)
from fhirscreen.fhir.codes import canonical_system, codings, concept_label
from fhirscreen.fhir.dates import day
from fhirscreen.fhir.resources import condition_span, procedure_span, ref
from fhirscreen.record import PatientRecord


class Biologic(Drug):
    half_life_days: float | None = None  # terminal half-life from the US label; None: not known


class BiologicWashoutParams(Params):
    biologics: list[Biologic]
    report_only: tuple[Drug, ...] = ()  # biologics named in the reason but not counted (Appendix A #16)
    # Any other biologic, by class (INN stems -mab/-cept/-kinra, ATC classes): the unknown-half-life rule.
    biologic_class: ValueSetRef | None = None
    min_washout_days: int = 90
    half_lives: float = 5
    # Unknown half-life: last dose under min_washout_days ago fails, up to this many days is unknown.
    unknown_half_life_decided_days: int = 180
    baseline_offset_days: int = 0  # Day 0 = screening date + this
    # A record that states no end (an order stopped on an unrecorded day) may have been given for up to this
    # many days after its date, unless a later record of the drug follows sooner: its last dose may be that
    # late, and is not recorded.
    unstated_course_days: int = 366


class InvestigationalParams(Params):
    products: ValueSetRef  # investigational product codes and names ("study drug", "placebo", NCT numbers)
    # Development codes ("BMS-986165"): read only on records with no code from a terminology of marketed
    # drugs (an RxNorm- or NDC-coded "PEG-3350" is a laxative, not a study drug).
    development_codes: ValueSetRef | None = None
    marketed_systems: tuple[str, ...] = ()
    participation: ValueSetRef | None = None  # weak evidence: "clinical trial participant" codes
    this_study: list[str]  # identifiers of this trial: its own ResearchSubjects are not another study
    washout_days: int = 90  # half-life of an investigational product is unknown: the 90-day floor applies
    # ResearchSubject.status (R4 research-subject-status): receiving the agent, past it, about to start.
    dosing_statuses: tuple[str, ...] = ("on-study", "on-study-intervention")
    after_dosing_statuses: tuple[str, ...] = ("follow-up", "on-study-observation", "off-study")
    pending_statuses: tuple[str, ...] = ("pending-on-study",)
    baseline_offset_days: int = 0
    unstated_course_days: int = 366  # as for biologics


@dataclass(frozen=True)
class _Washout:
    """One agent's washout as of Day 0."""

    outcome: Outcome
    text: str
    refs: tuple[str, ...]
    ends: date | None  # None: ongoing or not datable
    step: str | None = None  # for unknown: what settles it, when more than the criterion's next step

    def as_detail(self) -> dict[str, Any]:
        return {"what": self.text, "outcome": str(self.outcome), "washout_ends": _iso(self.ends)}


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


def _combine(
    washouts: Sequence[_Washout], day0: date, none_text: str, next_step: str, extra: str = "",
    first: str = "", **more: Any,
) -> CriterionResult:
    """Fail if any washout is running, else unknown if any is undecided, else pass; always name end dates.
    ``first``: a sentence that leads a passing reason and follows the others (E5: this trial's own
    subjects); ``more``: further details."""
    evidence = [r for w in washouts for r in w.refs]
    ends = [w.ends for w in washouts if w.ends is not None]
    details: dict[str, Any] = {"day0": day0.isoformat(), "washouts": [w.as_detail() for w in washouts]}
    if ends:
        details["washout_ends"] = max(ends).isoformat()
    details.update(more)
    for outcome in (Outcome.FAIL, Outcome.UNKNOWN):
        hits = [w for w in washouts if w.outcome is outcome]
        if hits:
            text = "; ".join(w.text for w in hits)
            steps = " ".join(dict.fromkeys(w.step or next_step for w in hits))
            after = f" {first}." if first else ""
            return result(outcome, f"{text}.{extra}{after}", evidence,
                          next_step=steps if outcome is Outcome.UNKNOWN else None, **details)
    lead = f"{first}. " if first else ""
    if not washouts:
        return result(Outcome.PASS, f"{lead}{none_text}.{extra}", **details)
    return result(Outcome.PASS, lead + "; ".join(w.text for w in washouts) + f".{extra}", evidence, **details)


# ----------------------------------------------------------------------------------------------
# E6


def washout_days(half_life_days: float, half_lives: float, minimum: int) -> int:
    """max(minimum, 5 half-lives) in whole days (rounded first: 5 x 19.4 is 97, not 97.000000001)."""
    return max(minimum, math.ceil(round(half_life_days * half_lives, 6)))


@evaluator("biologic_washout", BiologicWashoutParams)
def biologic_washout(record: PatientRecord, ctx: Context, params: BiologicWashoutParams) -> CriterionResult:
    """A commercial immunomodulatory biologic within max(90 days, 5 half-lives) of its last dose."""
    day0 = ctx.as_of + timedelta(days=params.baseline_offset_days)
    last_doses: dict[str, tuple[Biologic, Exposure, date | None]] = {}
    undated: list[_Washout] = []
    by_drug: dict[str, list[Exposure]] = {}
    found_doses = [(exp, _biologic(exp, ctx, params)) for exp in exposures(record)]
    for exp, drug in found_doses + _infusion_procedures(record, ctx, params):
        if drug is None:
            continue
        if exp.start is None and not exp.ongoing:
            text = f"{drug.name} ({exp.label}) on record without a date ({exp.ref}): last dose unknown"
            undated.append(_Washout(Outcome.UNKNOWN, text, (exp.ref,), None))
            continue
        if exp.start is not None and exp.start > ctx.as_of:
            continue
        # Ongoing (including "currently taking" with no date): the washout has not started.
        last = None if exp.ongoing and (exp.start is None or exp.covers(ctx.as_of)) else (
            exp.last_day(ctx.as_of) or exp.start)
        by_drug.setdefault(drug.name, []).append(exp)
        held = last_doses.get(drug.name)
        if held is None or _later(last, held[2]):
            last_doses[drug.name] = (drug, exp, last)
    washouts = []
    for drug, exp, last in last_doses.values():
        found = _biologic_washout(drug, exp, last, day0, params)
        if found.outcome is not Outcome.FAIL and last is not None:
            unrecorded = _unrecorded_last_dose(drug, by_drug[drug.name], last, ctx.as_of, day0, params)
            found = unrecorded or found
        washouts.append(found)
    washouts += undated
    counted = {id(exp) for exp, drug in found_doses if drug is not None}
    seen = [e for e in exposures(record) if e.seen_by(ctx.as_of) and id(e) not in counted]
    # (a counted biologic whose name also reads as one reported, "lymphocyte immune globulin" for
    # equine ATG, is counted only)
    reported = [e for e in seen if first_drug(e, params.report_only, ctx.value_sets)]
    extra = ""
    if reported:
        names = ", ".join(dict.fromkeys(e.label for e in reported))
        extra = f" Not counted as immunomodulatory biologics: {names}."
    return _combine(
        sorted(washouts, key=lambda w: w.ends or date.max), day0,
        "No immunomodulatory biologic on record",
        "Confirm the half-life/last dose with the investigator.", extra,
    )


# Procedure.status values under which nothing was given yet (R4 EventStatus); not-done and
# entered-in-error are dropped by the record's hygiene.
_NOT_GIVEN = frozenset({"preparation", "on-hold"})


def _infusion_procedures(
    record: PatientRecord, ctx: Context, params: BiologicWashoutParams
) -> list[tuple[Exposure, Biologic | None]]:
    """Procedures coded with a listed biologic's own code (an HCPCS J-code such as J9312 rituximab, in
    claims-like data): an administration on the procedure's date. Codes only: procedure names are not
    read as drug names."""
    sets = [(drug, ctx.vs(drug.value_set)) for drug in params.biologics]
    systems = {system for _drug, vs in sets for system, _code in vs.codes}
    out: list[tuple[Exposure, Biologic | None]] = []
    for proc in record.of_type("Procedure"):
        code = proc.get("code")
        if not isinstance(code, Mapping) or proc.get("status") in _NOT_GIVEN:
            continue
        drug = next((
            drug for system, value, _display in codings(code) if system in systems
            for drug, vs in sets if vs.has_code(system, value)
        ), None)
        if drug is None:
            continue
        span = procedure_span(proc)
        start = (span.start or span.end) if span is not None else None
        end = (span.end or span.start) if span is not None else None
        given = Exposure(
            ref=ref(proc), resource_type="Procedure", status=str(proc.get("status") or ""), concepts=(code,),
            forms=(), label=concept_label(code), start=start, end=end, end_stated=True, ongoing=False,
            dose=None, reason_codes=(), reason_refs=(), research_study=None,
        )
        out.append((given, drug))
    return out


_INN_STEM = re.compile(r"\b([a-z]{3,}(?:mab|cept|kinra|leukin))\b", re.IGNORECASE)


def _biologic(exp: Exposure, ctx: Context, params: BiologicWashoutParams) -> Biologic | None:
    """The listed biologic ``exp`` is, or one of the class (unknown half-life); None for report-only."""
    drug = first_drug(exp, params.biologics, ctx.value_sets)
    if isinstance(drug, Biologic):
        return drug
    if params.biologic_class is None or first_drug(exp, params.report_only, ctx.value_sets) is not None:
        return None
    hit = exp.matches(ctx.vs(params.biologic_class))
    if hit is None:
        return None
    stem = _INN_STEM.search(f"{hit} {exp.label}")
    name = stem.group(1).lower() if stem else exp.label
    return Biologic(name=name, value_set=params.biologic_class, half_life_days=None)


def _later(a: date | None, b: date | None) -> bool:
    """Is last dose ``a`` later than ``b``? None (ongoing) is the latest of all."""
    if a is None:
        return True
    return b is not None and a > b


def _biologic_washout(
    drug: Biologic, exp: Exposure, last: date | None, day0: date, params: BiologicWashoutParams
) -> _Washout:
    name = drug.name if exp.label.lower() == drug.name.lower() else f"{drug.name} ({exp.label})"
    refs = (exp.ref,)
    if last is None:
        minimum = params.min_washout_days
        if drug.half_life_days is not None:
            minimum = washout_days(drug.half_life_days, params.half_lives, params.min_washout_days)
        earliest = day0 + timedelta(days=minimum)
        text = (f"{name} is ongoing ({exp.when()}, {exp.ref}): the {minimum}-day washout starts after the "
                f"last dose (washout ends {earliest.isoformat()} at the earliest, if the last dose is on "
                f"{day0.isoformat()})")
        return _Washout(Outcome.FAIL, text, refs, earliest)
    dated = f"{name} {'last dose' if exp.end_stated else 'last date on record'} {last.isoformat()}"
    floor = params.min_washout_days
    if drug.half_life_days is None:
        earliest = last + timedelta(days=params.min_washout_days)
        decided = last + timedelta(days=params.unknown_half_life_decided_days)
        if day0 < earliest:
            text = f"{dated}; half-life unknown, so at least {floor} days: washout ends no earlier than "
            return _Washout(Outcome.FAIL, text + earliest.isoformat(), refs, earliest)
        if day0 < decided:
            text = (f"{dated}; half-life unknown: the washout ended {earliest.isoformat()} if "
                    f"{params.half_lives:g} half-lives are under {floor} days, and surely by "
                    f"{decided.isoformat()}")
            return _Washout(Outcome.UNKNOWN, text, refs, decided)
        text = f"{dated}, over {params.unknown_half_life_decided_days} days before Day 0"
        return _Washout(Outcome.PASS, text, refs, decided)
    days = washout_days(drug.half_life_days, params.half_lives, params.min_washout_days)
    ends = last + timedelta(days=days)
    rule = f"max({floor} d, {params.half_lives:g} x {drug.half_life_days:g} d) = {days} days"
    if day0 < ends:
        text = f"{dated}; washout {rule} ends {ends.isoformat()} (eligible for Day 0 on or after that date)"
        return _Washout(Outcome.FAIL, text, refs, ends)
    return _Washout(Outcome.PASS, f"{dated}; washout {rule} ended {ends.isoformat()}", refs, ends)


def _possible_last_dose(exp: Exposure, others: Sequence[Exposure], as_of: date, unstated_days: int) -> date:
    """The latest day a record without a stated end may have been given: up to ``unstated_days`` after its
    date, the screening date, or the day before the next record of the drug (a renewal), whichever first."""
    assert exp.start is not None
    possible = exp.possible_last_day(as_of, unstated_days) or exp.start
    later = [o.start for o in others if o.start is not None and o.start > exp.start]
    if later:
        possible = min(possible, min(later) - timedelta(days=1))
    return max(possible, exp.start)


def _unrecorded_last_dose(
    drug: Biologic, items: Sequence[Exposure], last: date, as_of: date, day0: date,
    params: BiologicWashoutParams,
) -> _Washout | None:
    """Unknown when a record of the drug without an end date (stopped on an unrecorded day) may have gone
    on late enough that its washout is still running; None when even the latest possible last dose is
    washed out (or every record states its end)."""
    unstated = [e for e in items if e.start is not None and not e.end_stated and not e.ongoing]
    reach = [(_possible_last_dose(e, items, as_of, params.unstated_course_days), e) for e in unstated]
    reach = [(possible, e) for possible, e in reach if possible > last]
    if not reach:
        return None
    possible, exp = max(reach, key=lambda pe: (pe[0], pe[1].ref))
    if drug.half_life_days is None:
        days = params.unknown_half_life_decided_days
        then = "with the half-life unknown, the washout would then end by"
    else:
        days = washout_days(drug.half_life_days, params.half_lives, params.min_washout_days)
        then = f"the {days}-day washout would then end"
    ends = possible + timedelta(days=days)
    if day0 >= ends:
        return None
    name = drug.name if exp.label.lower() == drug.name.lower() else f"{drug.name} ({exp.label})"
    state = exp.status or "ended"
    text = (f"{name} {exp.when()} is {state} with no end date ({exp.ref}): the last dose date is not "
            f"recorded and may be as late as {possible.isoformat()}; {then} {ends.isoformat()}")
    return _Washout(Outcome.UNKNOWN, text, (exp.ref,), ends)


# ----------------------------------------------------------------------------------------------
# E5


@evaluator("investigational_agent", InvestigationalParams)
def investigational_agent(
    record: PatientRecord, ctx: Context, params: InvestigationalParams
) -> CriterionResult:
    """An investigational agent (another study's ResearchSubject or study-drug records) within the washout."""
    day0 = ctx.as_of + timedelta(days=params.baseline_offset_days)
    washouts: list[_Washout] = []
    ignored: list[str] = []
    mine = [m for s in record.of_type("ResearchSubject") if (m := _this_trial(s, record, ctx.as_of, params))]
    for subject in record.of_type("ResearchSubject"):
        found = _subject_washout(subject, record.study(subject), ctx.as_of, day0, params)
        if isinstance(found, _Washout):
            washouts.append(found)
        elif found:
            ignored.append(found)
    products = ctx.vs(params.products)
    for exp in exposures(record):
        if not exp.seen_by(ctx.as_of) and not (exp.start is None and exp.ongoing):
            continue  # later records, and undated ones unless "currently taking"
        hit = exp.matches(products)
        if hit is None and params.development_codes and not _marketed(exp, params.marketed_systems):
            hit = exp.matches(ctx.vs(params.development_codes))
        if hit is not None:
            washouts.append(
                _product_washout(exp, hit, ctx.as_of, day0, params.washout_days, params.unstated_course_days)
            )
        elif exp.research_study:
            found = _linked_study_washout(exp, ctx.as_of, day0, params)
            if isinstance(found, _Washout):
                washouts.append(found)
            elif found:
                ignored.append(found)
    if params.participation:
        washouts += _participation_codes(record, ctx, params.participation, day0, params.washout_days)
    extra = f" Not counted: {'; '.join(ignored)}." if ignored else ""
    caveat = (f" The {params.washout_days}-day floor is used; 5 half-lives of the agent may be longer "
              "(investigator to confirm).") if washouts else ""
    own: dict[str, Any] = {}
    if mine:
        own = {
            PATIENT_NOTE: "; ".join(m.note for m in mine),
            "this_trial": [{"subject": m.ref, "standing": m.standing, "status": m.status} for m in mine],
        }
    return _combine(
        washouts, day0, "No investigational agent or participation in another interventional study on record",
        "Ask the patient about other studies and the date of the last study dose.", extra + caveat,
        first="; ".join(m.said for m in mine if m.said), **own,
    )


@dataclass(frozen=True)
class _OwnSubject:
    """A ResearchSubject of the trial being screened for, as E5 says it: where the patient stands
    (criteria/_research.py ``this_trial_standing``), the note the reports show beside the patient's
    status, and the sentence E5's reason gives when the subject is not counted (an enrolment, a
    screening, not another study; "" when it is counted as a washout: dosed, or unknown)."""

    ref: str
    status: str
    standing: Standing
    note: str
    said: str


_STANDING_WORDS: dict[Standing, str] = {
    "enrolled": "Already enrolled in this trial",
    "dosed": "Dosed in this trial before, a re-screen",
    "screened-before": "Screened for this trial before, not dosed",
    "in-recruitment": "In recruitment for this trial",
    "unknown": "On record in this trial, whether dosed is not recorded",
}


def _this_trial(
    subject: Mapping[str, Any], record: PatientRecord, as_of: date, params: InvestigationalParams
) -> _OwnSubject | None:
    """``subject`` as one of this trial's own (``_OwnSubject``), or None for another study's."""
    known = study_of(subject, record.study(subject))
    if not is_this_study(known.text(), params.this_study):
        return None
    taking = participation(
        subject, as_of, dosing=params.dosing_statuses, after_dosing=params.after_dosing_statuses,
        pending=params.pending_statuses,
    )
    standing = this_trial_standing(taking, as_of)
    start, end = taking.start, _ended(subject)
    later = start is not None and start > as_of
    when = (f" {start.isoformat()} to {end.isoformat()}" if start and end else
            f" from {start.isoformat()}" if start else f" to {end.isoformat()}" if end else "")
    words = _STANDING_WORDS[standing]
    note = f"{words} ({taking.ref}, {taking.status or 'no status'}{when})"
    where = (f"{known.name() or 'its ResearchStudy'} ({taking.why}{',' + when if when else ''}"
             f"{', after the screening date' if later else ''}; {taking.ref})")
    said = {
        "enrolled": (f"{words}: {where}; not dosed by the screening date, and not another study" if later else
                     f"{words}: {where}; not another study, and whether its dose was already given is asked "
                     "under the MSC washout criterion"),
        "screened-before": f"{words}: {where}; not another study",
        "in-recruitment": f"{words}: {where}; this enrolment, not another study",
    }.get(standing, "")
    return _OwnSubject(taking.ref, taking.status, standing, note, said)


def _ended(subject: Mapping[str, Any]) -> date | None:
    """The end of a ResearchSubject's period as recorded (``Participation.end`` drops one after the
    screening date: still on study then)."""
    period = subject.get("period")
    return day(period.get("end")) if isinstance(period, Mapping) else None


def _marketed(exp: Exposure, systems: Sequence[str]) -> bool:
    """Coded in a terminology of marketed products (RxNorm, NDC): not an investigational product."""
    wanted = {canonical_system(s) for s in systems}
    return any(system in wanted for concept in exp.concepts for system, _c, _d in codings(concept))


def _subject_washout(
    subject: Mapping[str, Any],
    resource: Mapping[str, Any] | None,
    as_of: date,
    day0: date,
    params: InvestigationalParams,
) -> _Washout | str | None:
    """The washout implied by one ResearchSubject (on the ResearchStudy ``resource`` when the data hold
    it); a string when it is recorded but does not count.

    This trial's own ResearchSubjects (criteria/_research.py ``this_trial_dosing``, as E7 and E8 read
    them): an earlier dose of this trial's UC-MSC (a re-screen) is an interventional agent, with the
    washout of any study's, and a bare withdrawal a question; one not dosed, or on-study with an open
    period (whether its dose was already given is asked under E7), is not counted here: None, and
    ``_this_trial`` says where the patient stands."""
    known = study_of(subject, resource)
    study = known.name() or "an unnamed study"
    taking = participation(
        subject, as_of, dosing=params.dosing_statuses, after_dosing=params.after_dosing_statuses,
        pending=params.pending_statuses,
    )
    start, end, status = taking.start, taking.end, taking.status
    own = is_this_study(known.text(), params.this_study)
    if own:
        # Not dosed, or enrolled with its dose a question for E7: not counted, said first (``_this_trial``).
        if this_trial_dosing(taking, as_of) in ("not-dosed", "enrolled"):
            return None
        kind, how, told = None, "", ""
    else:
        kind, how, contested = known.kind()
        # Signs of both kinds: the reason says which decided (a code), or that none did.
        told = f"; {how if kind == 'unclear' else f'{kind} {how}'}" if contested else ""
    if kind == "observational":
        by = f" {how}" if resource is not None else ""  # by name alone, as before the study was read
        return f"{study} (observational study{by}, no agent given)"
    # The ResearchSubject, and the ResearchStudy it is on when the data hold it.
    refs = (ref(subject), known.ref) if resource is not None and known.ref else (ref(subject),)
    where = f"{study} ({status}{', from ' + start.isoformat() if start else ''}; {refs[0]}{told})"
    if start is not None and start > as_of:
        if taking.exposure == "not-dosed":
            return None  # not dosed, and from a later day
        # Enrolled to start after the screening date: another agent may be given before Day 0.
        text = (f"Enrolled in another study from {start.isoformat()}, after the screening date, {where}: "
                "its agent may be given before Day 0")
        return _Washout(Outcome.UNKNOWN, text, refs, None)
    # A study whose signs disagree (criteria/_research.py ``Study.kind``): what would fail is a question.
    unclear = kind == "unclear"
    of_kind = " of unclear kind" if unclear else ""
    fail = Outcome.UNKNOWN if unclear else Outcome.FAIL
    step = (f"Ask whether {study} gives an investigational agent (an interventional study) and, if so, "
            "the date of the last study dose.") if unclear else None
    if_agent = "if it gives an agent, " if unclear else ""
    other = "This trial, dosed before (a re-screen)" if own else f"Another study{of_kind}"
    days = timedelta(days=params.washout_days)
    if taking.exposure == "dosing":
        if end is None:
            earliest = day0 + days
            text = (f"On another study{of_kind}, {where}: {if_agent}the washout starts after the last study "
                    f"dose (ends {earliest.isoformat()} at the earliest, if the last dose is on "
                    f"{day0.isoformat()})")
            return _Washout(fail, text, refs, earliest, step)
        outcome = fail if day0 < end + days else Outcome.PASS
        verb = "ends" if outcome is not Outcome.PASS else "ended"
        text = (f"{other}, {where}, ended {end.isoformat()}: {if_agent if outcome is fail else ''}washout "
                f"{verb} {(end + days).isoformat()}")
        return _Washout(outcome, text, refs, end + days, step if outcome is fail else None)
    if taking.exposure == "after-dosing":
        if end is not None and day0 >= end + days:
            ended = (end + days).isoformat()
            text = f"{other}, {where}, ended {end.isoformat()}: washout ended {ended}"
            return _Washout(Outcome.PASS, text, refs, end + days)
        bound = f"by {(end + days).isoformat()}" if end else "on an unknown date"
        after = "This trial, dosed before (a re-screen)" if own else f"After dosing in another study{of_kind}"
        text = f"{after}, {where}: last study dose not recorded, washout ends {bound}"
        if taking.why.startswith("withdrawn after"):
            text += f" ({taking.why})"
        return _Washout(Outcome.UNKNOWN, text, refs, end + days if end else None, step)
    if taking.exposure == "pending":
        return _Washout(Outcome.UNKNOWN, f"About to start another study{of_kind}, {where}", refs, None, step)
    if taking.exposure == "unknown":
        if end is not None and day0 >= end + days:
            return f"{study} ({taking.why}; study period ended {end.isoformat()}, washout over)"
        whether = "This trial, dosed or not (a re-screen if dosed)" if own else other
        text = f"{whether}, {where}: {taking.why}"
        return _Washout(Outcome.UNKNOWN, text, refs, end + days if end else None, step)
    return f"{study} ({taking.why})"


def _linked_study_washout(
    exp: Exposure, as_of: date, day0: date, params: InvestigationalParams
) -> _Washout | str | None:
    """A medication record linked to a study by the workflow-researchStudy extension, its drug not
    named as an investigational product: the study (``Exposure.study``: contained in the record or a
    separate resource) is read as a ResearchSubject's is (``Study.kind``).
    This trial's own study is not another's (None); an observational study gives no agent (a string, for
    "Not counted"); a study whose signs disagree leaves what would fail a question; any other study
    (interventional, or one nothing tells) gives an investigational agent."""
    reference = exp.study_reference or {}
    known = study_of({"study": reference}, exp.study)
    if is_this_study(known.text() or exp.research_study or "", params.this_study):
        return None
    study = known.name() or exp.research_study or "an unnamed study"
    kind, how, contested = known.kind()
    if kind == "observational":
        by = f" {how}" if known.resource is not None else ""
        return f"{exp.label} ({exp.ref}) within {study} (observational study{by}, no agent given)"
    what = f"{exp.label}, a product of {study}"
    found = _product_washout(exp, what, as_of, day0, params.washout_days, params.unstated_course_days)
    if known.resource is not None and known.ref:
        found = replace(found, refs=(*found.refs, known.ref))
    if kind == "unclear" and found.outcome is not Outcome.PASS:
        step = (f"Ask whether {study} gives an investigational agent (an interventional study) and, if so, "
                "the date of the last study dose.")
        text = f"{found.text}; the study is of unclear kind ({how}): if it gives an agent, this is one"
        return replace(found, outcome=Outcome.UNKNOWN, text=text, step=step)
    if contested:
        found = replace(found, text=f"{found.text}; {kind} {how}")
    return found


def _product_washout(
    exp: Exposure, what: str, as_of: date, day0: date, days: int, unstated_days: int
) -> _Washout:
    if exp.ongoing and (exp.start is None or exp.covers(as_of)):
        earliest = day0 + timedelta(days=days)
        text = (f"Investigational product {what} ongoing ({exp.when()}, {exp.ref}): washout ends "
                f"{earliest.isoformat()} at the earliest, if the last dose is on {day0.isoformat()}")
        return _Washout(Outcome.FAIL, text, (exp.ref,), earliest)
    last = exp.last_day(as_of) or exp.start
    assert last is not None
    ends = last + timedelta(days=days)
    if day0 < ends:
        text = f"Investigational product {what} last on record {last.isoformat()} ({exp.ref}): washout ends "
        return _Washout(Outcome.FAIL, text + ends.isoformat(), (exp.ref,), ends)
    possible = exp.possible_last_day(as_of, unstated_days) or last
    if possible > last and day0 < possible + timedelta(days=days):
        # Stopped on an unrecorded day: the last study dose may be late enough for the washout to run on.
        latest = possible + timedelta(days=days)
        text = (f"Investigational product {what} {exp.when()} is {exp.status or 'ended'} with no end date "
                f"({exp.ref}): the last dose date is not recorded and may be as late as "
                f"{possible.isoformat()}; the washout would then end {latest.isoformat()}")
        return _Washout(Outcome.UNKNOWN, text, (exp.ref,), latest)
    text = f"Investigational product {what} last on record {last.isoformat()}: washout ended "
    text += ends.isoformat()
    return _Washout(Outcome.PASS, text, (exp.ref,), ends)


def _participation_codes(
    record: PatientRecord, ctx: Context, value_set: str, day0: date, days: int
) -> list[_Washout]:
    """Weak evidence (a 'clinical trial participant' code) recent enough to matter: unknown, never fail."""
    vs = ctx.vs(value_set)
    first = day0 - timedelta(days=days)
    out = []
    for cond in record.of_type("Condition"):
        if vs.match(cond.get("code")) is None:
            continue
        span = condition_span(cond)
        if span.start is not None and span.start > ctx.as_of:
            continue
        if span.end is not None and span.end < first:
            continue
        when = span.start.isoformat() if span.start else "an unrecorded date"
        text = f"Clinical-trial participation recorded on {when} ({ref(cond)}); agent and last dose unknown"
        out.append(_Washout(Outcome.UNKNOWN, text, (ref(cond),), None))
    return out
