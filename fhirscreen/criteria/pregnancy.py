"""E13: pregnant or breast-feeding now (the intention to become so is for the investigator).

Evidence is put on one timeline per state (pregnancy, breastfeeding): what says "yes" (a pregnancy
condition starting, a "pregnant" status, a positive hCG) and what says "no longer" (the condition
abating, a delivery or abortion code or procedure, a "not pregnant" status, a negative hCG). The latest
evidence on or before the screening date decides, if it is still recent enough to describe today; on one day,
"no longer" outranks "yes" (a delivery recorded on the day a pregnancy entry was closed), except between
test results: a positive and a negative test of one day are a conflict to settle with a repeat test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime

from fhirscreen.criteria._labs import (
    Lab,
    coded_observations,
    lab_instant,
    raw_breach,
    report_impossible,
    status_said,
)
from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, ValueSetRef, evaluator, result
from fhirscreen.fhir.codes import ValueSet, coding_items, concept_label, union
from fhirscreen.fhir.resources import (
    Resource,
    alive_until,
    condition_span,
    is_active_on,
    observation_day,
    procedure_span,
    ref,
    suspected,
    tentative,
    unstated_status,
)
from fhirscreen.fhir.values import Polarity, polarity, polarity_of_text, quantity_of
from fhirscreen.record import PatientRecord

# Reads a status or test Observation as positive/negative/indeterminate (None if unreadable).
_Verdict = Callable[[Resource], "Polarity | None"]

INTENTION = "intention to become pregnant or breast-feed must be confirmed by the investigator"

# Procedure.status of a delivery or abortion that happened (R4 EventStatus; "in-progress" is labour not
# yet over, "stopped" an operation abandoned, so neither says the pregnancy ended).
_PERFORMED = frozenset({"completed"})

# Units in which hCG thresholds are stated (mIU/mL = IU/L).
_HCG_UNITS = frozenset({"miu/ml", "m[iu]/ml", "iu/l", "[iu]/l", "mu/ml", "u/l"})


class PregnancyParams(Params):
    pregnancy_conditions: ValueSetRef
    pregnancy_ended_conditions: ValueSetRef  # delivery, abortive outcome, puerperium: pregnancy is over
    pregnancy_ending_procedures: ValueSetRef | None = None  # a delivery, caesarean or abortion performed
    lactation_conditions: ValueSetRef
    pregnancy_status_tests: ValueSetRef  # LOINC 82810-3 and the older 11449-6
    not_pregnant_values: ValueSetRef  # coded "Not pregnant" answers
    pregnant_values: ValueSetRef | None = None  # coded "Pregnant" answers (LOINC LA15173-0)
    uncertain_values: ValueSetRef | None = None  # "Possible pregnancy": a question until confirmed
    breastfeeding_status_tests: ValueSetRef
    hcg_qualitative_tests: ValueSetRef
    hcg_quantitative_tests: ValueSetRef
    hcg_window_days: int = 30  # a positive hCG this recent shows a current pregnancy
    # Used only when the lab gives no interpretation or reference range (criteria-codes.md E13).
    hcg_positive_at: float = 25.0  # mIU/mL
    hcg_negative_below: float = 5.0  # mIU/mL
    # How long a pregnancy entry or status can describe today (term is about 280 days from conception).
    pregnancy_max_days: int = 300
    lactation_max_days: int = 365


@dataclass(frozen=True)
class Event:
    day: date
    says: Polarity  # positive: pregnant/breast-feeding; negative: not (any more); indeterminate
    what: str
    ref: str
    max_age_days: int  # how long a positive event shows the state now
    ask_age_days: int | None  # beyond max_age, how long it still raises the question (None: forever)
    # A test result (hCG, a status answer), with its time when stated to the minute: two results of
    # one day that disagree are a conflict, not an answer (see ``_conflict``).
    test: bool = False
    moment: datetime | None = None

    def describe(self) -> str:
        return f"{self.what} on {self.day.isoformat()} ({self.ref})"


def _condition_events(
    record: PatientRecord, vs: ValueSet, as_of: date, max_age: int, undated: list[Resource]
) -> Iterator[Event]:
    """A state condition says "yes" from its start and "no longer" from its end (if ended by as-of)."""
    for cond in record.of_type("Condition"):
        label = vs.match(cond.get("code"))
        if label is None:
            continue
        span = condition_span(cond)
        if span.start is None:
            if is_active_on(cond, as_of):
                undated.append(cond)
            continue
        if tentative(cond):
            # "Possible pregnancy" is a question until confirmed (issue 8 s2), never "pregnant".
            if is_active_on(cond, as_of):
                yield Event(span.start, "indeterminate", suspected(cond, label), ref(cond), max_age, None)
            continue
        # A still-open entry past max_age is a question (never closed?), whatever its age.
        yield Event(span.start, "positive", f"{label}{unstated_status(cond)}", ref(cond), max_age, None)
        if not is_active_on(cond, as_of) and span.end is not None:
            yield Event(span.end, "negative", f"{label} ended", ref(cond), 0, 0)


def _ended_events(record: PatientRecord, vs: ValueSet, procedures: ValueSet | None) -> Iterator[Event]:
    """The pregnancy is over from the day of a delivery/abortion condition or a performed delivery procedure.

    An end dated before a pregnancy's start does not end it: the later "yes" decides on the timeline."""
    for cond in record.of_type("Condition"):
        label = vs.match(cond.get("code"))
        start = condition_span(cond).start
        if label is not None and start is not None:
            yield Event(start, "negative", label, ref(cond), 0, 0)
    if procedures is None:
        return
    for proc in record.of_type("Procedure"):
        # Only a procedure that was done: a caesarean in preparation or on hold is still a pregnancy.
        if proc.get("status") not in _PERFORMED:
            continue
        label = procedures.match(proc.get("code"))
        span = procedure_span(proc)
        done = span.latest if span is not None else None
        if label is not None and done is not None:  # an undated delivery cannot be placed on the timeline
            yield Event(done, "negative", f"{label} (procedure)", ref(proc), 0, 0)


def _observation_events(
    record: PatientRecord, ctx: Context, vs: ValueSet, verdict_of: _Verdict, max_age: int, ask_age: int
) -> Iterator[Event]:
    for obs in coded_observations(record, vs):  # a status or hCG held in Observation.component counts too
        label = vs.match(obs.get("code"))
        day = observation_day(obs)
        if label is None or day is None or _impossible(ctx, vs, obs, label):
            continue
        says = verdict_of(obs)
        if says is not None:
            written = _written_value(obs)
            what = f"{label} {says}{status_said(obs)}" + (
                f" ('{written}')" if says == "indeterminate" and written else ""
            )
            moment = lab_instant(Lab(obs, day))
            yield Event(day, says, what, ref(obs), max_age, ask_age, test=True, moment=moment)


def _undated_positives(
    record: PatientRecord, ctx: Context, vs: ValueSet, verdict_of: _Verdict
) -> Iterator[tuple[str, str]]:
    """('hCG positive, result has no date (Observation/x)', 'Observation/x'): a positive that cannot be
    placed in time, and may be current (a question, never dropped)."""
    for obs in coded_observations(record, vs):
        label = vs.match(obs.get("code"))
        if label is None or observation_day(obs) is not None or _impossible(ctx, vs, obs, label):
            continue
        if verdict_of(obs) == "positive":
            yield f"{label} positive, result has no date ({ref(obs)})", ref(obs)


def _impossible(ctx: Context, vs: ValueSet, obs: Resource, label: str) -> bool:
    """A number that cannot be real (a negative hCG: the value set's bounds) is an entry error, not a
    negative test: a finding, and no evidence."""
    bounds = vs.plausible
    impossible = raw_breach(obs, bounds) if bounds is not None and not bounds.unit else None
    if impossible is not None:
        report_impossible(ctx, ref(obs), f"{label} {impossible[0]}", impossible[1])
    return impossible is not None


def _written_value(obs: Resource) -> str:
    """The value as the record writes it ("Possible pregnancy"), for reasons."""
    value = obs.get("valueCodeableConcept")
    if isinstance(value, dict):
        return concept_label(value)
    return str(obs.get("valueString") or "")


class _StatusVerdict:
    """Pregnancy/breastfeeding status: a coded answer (uncertain, no, yes), else the words."""

    def __init__(self, yes: ValueSet, no: ValueSet, uncertain: ValueSet | None = None) -> None:
        self.yes, self.no, self.uncertain = yes, no, uncertain

    def __call__(self, obs: Resource) -> Polarity | None:
        value = obs.get("valueCodeableConcept")
        if isinstance(value, dict):
            if self.uncertain is not None and self.uncertain.match(value) is not None:
                return "indeterminate"
            if self.no.match(value) is not None:
                return "negative"
            if self.yes.match(value) is not None:
                return "positive"
        return _status_words(obs) or polarity(obs)


_STATE = r"(pregnan|breast|lactat|nursing)"
# "Not known", "declined to answer": no information (as if nothing were recorded).
_NO_ANSWER = re.compile(r"\bunknown\b|\bnot\s+(known|asked|assessed|recorded)\b|declined|\bunable\b")
# "Possible pregnancy", "may be pregnant", "pregnancy suspected", "unsure": a question until confirmed.
_UNCERTAIN = re.compile(
    r"\b(possib\w*|maybe|may\s+be|might\s+be|suspect\w*|unsure|not\s+sure|uncertain|unconfirmed|"
    r"probabl\w*|questionable|query|pending)\b|\?\s*" + _STATE
)
# The state over, said right after its noun ("Breastfeeding stopped", "Pregnancy ended (delivered
# 2026-05-10)", "breast-feeding: discontinued", "pregnancy was terminated"). Only the next word (or a
# linking verb) counts, so that "pregnancy test completed: positive" or "breastfeeding, delivered
# 2026-04-01" stay what they say; a past pregnancy ("previous pregnancy ended in miscarriage") is not
# this one. Delivered, miscarried and aborted end a pregnancy, weaned and suppressed a breastfeeding.
_OVER = r"(ended|stopped|discontinued|ceased|completed|finished|terminated)"
_LINK = r"\s*(?:[:=,-]\s*|\s(?:(?:has|have|had|was|is|were)\s+)?(?:been\s+)?(?:now\s+)?)"
_NOT_THIS_ONE = r"(?<!previous\s)(?<!prior\s)(?<!last\s)(?<!past\s)(?<!earlier\s)(?<!first\s)(?<!former\s)"
_ENDED_AFTER = (
    _NOT_THIS_ONE + r"\bpregnan\w*" + _LINK + r"(" + _OVER[1:-1] + r"|delivered|miscarried|aborted|lost)\b"
    + r"|" + _NOT_THIS_ONE + r"\b(breast[\s-]?feed\w*|breast[\s-]?fed|lactat\w*|nursing)" + _LINK
    + r"(" + _OVER[1:-1] + r"|weaned|suppressed)\b"
)
# A negation shortly before the state ("patient states she is not pregnant", "denies pregnancy",
# "stopped breastfeeding") or a denial or end after it ("pregnancy test: negative", "pregnant: no",
# "pregnancy ruled out", "breastfeeding stopped").
_NEGATED = re.compile(
    r"\b(not|no|non|never|denies|denied|negative\s+for|isn'?t|no\s+longer|stopped|ceased|without)\b"
    r"[\w\s'-]{0,30}?" + _STATE
    # Only right before the state: "discontinued methotrexate while breastfeeding" is breastfeeding.
    + r"|\b(ended|discontinued|finished)\s+(?:her\s+)?" + _STATE
    + r"|\bnon-?pregnant\b|\bweaned\b|" + _STATE
    + r"\w*[\w\s:=-]{0,20}?\b(negative|neg|ruled\s+out|denied|excluded|no|none)\b|" + _ENDED_AFTER
)


def _status_words(obs: Resource) -> Polarity | None:
    """Read a status written in words, with its negation and its doubt ('Possible pregnancy')."""
    value = obs.get("valueCodeableConcept")
    texts = [str(obs.get("valueString") or "")]
    if isinstance(value, dict):
        texts.append(str(value.get("text") or ""))
        texts += [str(c.get("display") or "") for c in coding_items(value)]
    for text in texts:
        low = " ".join(text.lower().split())
        if not low or _NO_ANSWER.search(low):
            continue
        if _UNCERTAIN.search(low):
            return "indeterminate"
        if _NEGATED.search(low):
            return "negative"
        if re.search(_STATE, low):
            return "positive"
        verdict = polarity_of_text(low)
        if verdict:
            return verdict
    return None


class _HcgVerdict:
    """hCG: the lab's verdict (interpretation, qualitative value, reference range), else the thresholds."""

    def __init__(self, positive_at: float, negative_below: float) -> None:
        self.positive_at, self.negative_below = positive_at, negative_below

    def __call__(self, obs: Resource) -> Polarity | None:
        verdict = polarity(obs)
        if verdict is not None:
            return verdict
        q = quantity_of(obs)
        if q is None or q.unit.lower() not in _HCG_UNITS:
            return None
        if q.at_least(self.positive_at):
            return "positive"
        if q.below(self.negative_below):
            return "negative"
        return "indeterminate" if q.exact else None


@dataclass(frozen=True)
class State:
    outcome: Outcome | None  # FAIL (now), UNKNOWN (open question), None (not now)
    text: str
    evidence: tuple[str, ...]
    next_step: str | None = None


def _current(events: list[Event], as_of: date, noun: str) -> State:
    """The latest evidence on or before the screening date decides, if recent enough."""
    order = {"positive": 0, "indeterminate": 1, "negative": 2}
    # Same day, same verdict: the evidence that lasts longest is last (a pregnancy status outlasts an
    # hCG: 300 against 30 days), then the reference and text, so that input order never decides.
    dated = sorted(
        (e for e in events if e.day <= as_of),
        key=lambda e: (
            e.day, order[e.says], e.max_age_days,
            float("inf") if e.ask_age_days is None else e.ask_age_days, e.ref, e.what,
        ),
    )
    if not dated:
        return State(None, f"no {noun} record", ())
    last, conflict = _settle_tests(dated)
    age = (as_of - last.day).days
    if conflict and age <= max(e.max_age_days for e in conflict):
        step = (f"Repeat the {noun} test to confirm." if noun == "pregnancy"
                else f"Confirm {noun} status with the patient.")
        return State(
            Outcome.UNKNOWN,
            f"conflicting {noun} results on {last.day.isoformat()}: "
            + "; ".join(f"{e.what} ({e.ref})" for e in conflict),
            tuple(e.ref for e in conflict),
            step,
        )
    if last.says == "negative":
        return State(None, f"latest: {last.describe()}", (last.ref,))
    if last.says == "indeterminate":
        if age <= last.max_age_days:
            step = (f"Repeat the {noun} test to confirm." if noun == "pregnancy"
                    else f"Confirm {noun} status with the patient.")
            return State(Outcome.UNKNOWN, last.describe(), (last.ref,), step)
        return State(None, f"no recent {noun} record", ())
    if age <= last.max_age_days:
        return State(Outcome.FAIL, last.describe(), (last.ref,))
    if last.ask_age_days is None or age <= last.ask_age_days:
        return State(
            Outcome.UNKNOWN,
            f"{last.describe()}, {age} days ago, and nothing on record since says it ended",
            (last.ref,),
            f"Confirm current {noun} status with the patient (and an hCG test if relevant).",
        )
    return State(None, f"no recent {noun} record (latest: {last.describe()})", (last.ref,))


def _settle_tests(dated: list[Event]) -> tuple[Event, list[Event]]:
    """The evidence that decides (the last of ``dated``, unless the day's test results say otherwise),
    and the latest day's test results that disagree (a positive and a negative hCG, or a "pregnant" and
    a "not pregnant" answer), or [].

    "No longer" outranks "yes" on one day for clinical events (a delivery recorded on the day the
    pregnancy entry closed, an hCG still positive on the day of delivery), and such an end decides.
    Two test results that disagree are not such a pair: reading them as "not pregnant" would offer a
    patient whom one test says is pregnant. As with the lab criteria's same-day results, a result
    stated later in the day (to the minute) wins over an earlier one, as a repeat would; without
    times, neither is known to be the repeat.
    """
    last = dated[-1]
    day = [e for e in dated if e.day == last.day]
    if any(not e.test and e.says == "negative" for e in day):
        return last, []  # an end recorded that day (delivery, abortion, the entry closed) decides
    tests = [e for e in day if e.test and e.says != "indeterminate"]
    known = [e.moment for e in tests if e.moment is not None]
    latest = max(known) if known else None
    tests = [e for e in tests if e.moment is None or e.moment == latest]
    verdicts = {e.says for e in tests}
    if verdicts == {"positive", "negative"}:
        return last, sorted(tests, key=lambda e: (e.says, e.ref, e.what))
    if last.test and verdicts and last.says not in verdicts:
        # An earlier result of the day, superseded by a later one: the later one decides.
        return tests[-1], []
    return last, []


def _pregnancy(record: PatientRecord, ctx: Context, p: PregnancyParams) -> tuple[State, list[Resource]]:
    as_of = alive_until(record.patient, ctx.as_of)
    undated: list[Resource] = []
    max_days = p.pregnancy_max_days
    events = list(_condition_events(record, ctx.vs(p.pregnancy_conditions), as_of, max_days, undated))
    procedures = ctx.vs(p.pregnancy_ending_procedures) if p.pregnancy_ending_procedures else None
    events += _ended_events(record, ctx.vs(p.pregnancy_ended_conditions), procedures)
    yes = ctx.vs(p.pregnancy_conditions)
    if p.pregnant_values:
        yes = union("pregnant", (yes, ctx.vs(p.pregnant_values)))
    uncertain = ctx.vs(p.uncertain_values) if p.uncertain_values else None
    status = _StatusVerdict(yes, ctx.vs(p.not_pregnant_values), uncertain)
    events += _observation_events(record, ctx, ctx.vs(p.pregnancy_status_tests), status, max_days, max_days)
    hcg = _HcgVerdict(p.hcg_positive_at, p.hcg_negative_below)
    for vs in (p.hcg_qualitative_tests, p.hcg_quantitative_tests):
        # A positive hCG older than the window could still be the same, ongoing pregnancy: ask.
        events += _observation_events(record, ctx, ctx.vs(vs), hcg, p.hcg_window_days, max_days)
    state = _current(events, as_of, "pregnancy")
    undated_tests = list(_undated_positives(record, ctx, ctx.vs(p.pregnancy_status_tests), status))
    for vs in (p.hcg_qualitative_tests, p.hcg_quantitative_tests):
        undated_tests += _undated_positives(record, ctx, ctx.vs(vs), hcg)
    if undated_tests and state.outcome is None:
        state = State(
            Outcome.UNKNOWN, "; ".join(t for t, _r in undated_tests), tuple(r for _t, r in undated_tests),
            "Confirm the date of the positive pregnancy test, or repeat it.",
        )
    return state, undated


def _breastfeeding(record: PatientRecord, ctx: Context, p: PregnancyParams) -> tuple[State, list[Resource]]:
    as_of = alive_until(record.patient, ctx.as_of)
    undated: list[Resource] = []
    yes = ctx.vs(p.lactation_conditions)
    events = list(_condition_events(record, yes, as_of, p.lactation_max_days, undated))
    status = _StatusVerdict(yes, ctx.vs(p.not_pregnant_values))
    max_days = p.lactation_max_days
    breastfeeding = ctx.vs(p.breastfeeding_status_tests)
    events += _observation_events(record, ctx, breastfeeding, status, max_days, max_days)
    return _current(events, as_of, "breastfeeding"), undated


@evaluator("pregnancy", PregnancyParams)
def pregnancy(record: PatientRecord, ctx: Context, params: PregnancyParams) -> CriterionResult:
    """Pregnant or breast-feeding on the screening date; the intention part is left to the investigator."""
    if str(record.patient.get("gender") or "").lower() == "male":
        return result(Outcome.PASS, "Not applicable: patient is male.", [record.ref])
    pregnant, undated_p = _pregnancy(record, ctx, params)
    feeding, undated_f = _breastfeeding(record, ctx, params)
    fails = [s for s in (pregnant, feeding) if s.outcome is Outcome.FAIL]
    if fails:
        named = (("pregnant", pregnant), ("breast-feeding", feeding))
        what = " and ".join(name for name, s in named if s.outcome is Outcome.FAIL)
        evidence = [e for s in fails for e in s.evidence]
        return result(Outcome.FAIL, f"Currently {what}: " + "; ".join(s.text for s in fails) + ".", evidence)
    questions = [s for s in (pregnant, feeding) if s.outcome is Outcome.UNKNOWN]
    undated = undated_p + undated_f
    if questions or undated:
        texts = [s.text for s in questions] + [f"undated open entry {ref(c)}" for c in undated]
        steps = [s.next_step for s in questions if s.next_step]
        if undated:
            steps.append("Confirm whether the undated pregnancy/breastfeeding entry is current.")
        evidence = [e for s in questions for e in s.evidence] + [ref(c) for c in undated]
        return result(
            Outcome.UNKNOWN, "Pregnancy or breastfeeding not ruled out: " + "; ".join(texts) + ".", evidence,
            next_step=" ".join(steps),
        )
    evidence = list(pregnant.evidence + feeding.evidence)
    return result(
        Outcome.PASS,
        f"Not pregnant or breast-feeding on record ({pregnant.text}; {feeding.text}); {INTENTION}.",
        evidence,
    )
