"""E2: dialysis within 12 months before screening, or renal replacement therapy expected after enrolment.

Dialysis is evidenced by procedures, dialysis-only observations and dialysis-dependence conditions.
"Expected need for renal replacement therapy within six months" is a prognosis; the record can show it
only through end-stage kidney disease, awaiting-transplant status or a planned transplant/dialysis
(fail), while CKD stage 5 or an eGFR below 15 without dialysis is left to the investigator (unknown),
as criteria-codes.md E2 and Appendix A #11 recommend.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhirscreen.criteria import _events as ev
from fhirscreen.criteria import _plans
from fhirscreen.criteria._labs import Lab, possibly_latest, report_impossible, result_on, unit_key
from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, ValueSetRef, evaluator, result
from fhirscreen.fhir.dates import days_before, months_before
from fhirscreen.fhir.resources import is_active_on, unstated_status
from fhirscreen.record import PatientRecord

# At most this many resources are cited per finding; a dialysis patient has hundreds of sessions.
_MAX_EVIDENCE = 5
_ASK_INVESTIGATOR = "Investigator to judge whether dialysis or transplant is expected within 6 months."
_NUMBER = re.compile(r"^\s*(<=|>=|<|>|≤|≥)?\s*(\d+(?:\.\d+)?)")


class DialysisParams(Params):
    dialysis_procedures: ValueSetRef
    dialysis_status: ValueSetRef  # conditions that mean the patient is on dialysis (Z99.2, ESRF on dialysis)
    dialysis_observations: ValueSetRef | None = None  # labs only measured around a dialysis session
    end_stage: ValueSetRef  # active ESRD / awaiting transplant: renal replacement therapy expected
    kidney_transplant: ValueSetRef  # transplant procedures: planned -> expected RRT; done -> history
    ckd_stage_5: ValueSetRef  # active CKD 5 without dialysis: unknown
    transplant_history: ValueSetRef | None = None  # reported, never an exclusion by itself
    egfr: ValueSetRef | None = None  # latest eGFR below egfr_unknown_below: unknown
    egfr_unknown_below: float = 15
    egfr_lookback_days: int = 90
    window_months: int = 12


@dataclass
class _Findings:
    """Sentences for the reason, with the resources behind them, sorted by the outcome they lead to."""

    fail: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def cite(self, events: list[ev.Event], as_of: date) -> None:
        newest = sorted(events, key=lambda e: e.last_day_by(as_of) or date.min, reverse=True)
        self.evidence.extend(ev.refs(newest[:_MAX_EVIDENCE]))


def _newest_first(events: list[ev.Event], as_of: date) -> list[ev.Event]:
    return sorted(events, key=lambda e: e.last_day_by(as_of) or e.first_day or date.min, reverse=True)


def _check_dialysis(record: PatientRecord, ctx: Context, params: DialysisParams, f: _Findings) -> None:
    """Dialysis sessions, dialysis-only labs and dialysis-dependence conditions in the window."""
    as_of = ctx.as_of
    first = months_before(as_of, params.window_months)
    f.details["dialysis_window_start"] = first.isoformat()
    sessions = ev.procedures(record, ctx.vs(params.dialysis_procedures))
    # A session recorded with status "unknown" may not have happened: a question, not a fail.
    unsure = [
        e
        for e in sessions
        if e.status == "unknown" and ev.happened_by(e, as_of) and e.in_window(first, as_of)
    ]
    done = [e for e in sessions if not ev.is_planned(e, as_of) and e.status != "unknown"]
    if params.dialysis_observations:
        done += ev.observations(record, ctx.vs(params.dialysis_observations))
    done += ev.conditions(record, ctx.vs(params.dialysis_status))
    known = [e for e in done if ev.happened_by(e, as_of)]
    recent = _newest_first([e for e in known if e.in_window(first, as_of)], as_of)
    undated = [e for e in known if e.span is None]
    older = [e for e in known if e.span is not None and e not in recent]
    months = params.window_months
    if recent:
        last = recent[0].last_day_by(as_of)
        f.details["last_dialysis"] = last.isoformat() if last else None
        f.fail.append(
            f"Dialysis on record within {months} months before screening (since {first.isoformat()}): "
            f"{ev.describe(recent)}."
        )
        f.cite(recent, as_of)
    elif undated:
        f.unknown.append(f"Dialysis on record without a date: {ev.describe(undated)}.")
        f.evidence.extend(ev.refs(undated[:_MAX_EVIDENCE]))
        f.next_steps.append("Confirm when the patient was last dialysed.")
    if not recent and unsure:
        f.unknown.append(f"Dialysis recorded with status unknown in the window: {ev.describe(unsure)}.")
        f.cite(unsure, as_of)
        f.next_steps.append("Confirm whether the dialysis was performed.")
    if not recent and older:
        newest = ev.latest(older, as_of)
        if newest is not None and newest.last_day is not None:
            f.details["last_dialysis"] = newest.last_day.isoformat()
            f.notes.append(
                f"Last dialysis on record {newest.last_day.isoformat()}, "
                f"more than {months} months before screening."
            )
            f.evidence.append(newest.ref)


def _check_expected_rrt(record: PatientRecord, ctx: Context, params: DialysisParams, f: _Findings) -> None:
    """ESRD or awaiting transplant (active), or a transplant/dialysis that is planned but not yet done."""
    as_of = ctx.as_of
    esrd = [e for e in ev.conditions(record, ctx.vs(params.end_stage)) if is_active_on(e.resource, as_of)]
    if esrd:
        f.details["expected_rrt"] = True
        unstated = next((unstated_status(e.resource) for e in esrd if unstated_status(e.resource)), "")
        f.fail.append(
            f"Active {ev.describe(esrd)}{unstated}: renal replacement therapy (dialysis or transplant) is "
            "expected."
        )
        f.cite(esrd, as_of)
    not_done = [
        e for e in ev.procedures(record, ctx.vs(params.kidney_transplant))
        + ev.procedures(record, ctx.vs(params.dialysis_procedures))
        if ev.is_planned(e, as_of)
    ]
    # As in E9: a plan is dated after screening; one in preparation or on hold dated on or before it, or
    # undated, may have lapsed or been done since, and is a question.
    planned = [e for e in not_done if ev.is_planned_ahead(e, as_of)]
    unsure = [e for e in not_done if not ev.is_planned_ahead(e, as_of)]
    if planned:
        f.details["expected_rrt"] = True
        f.fail.append(
            f"Renal replacement therapy is planned: {ev.describe(planned)}, status {planned[0].status}."
        )
        f.cite(planned, as_of)
    if unsure:
        f.unknown.append(
            f"Planned renal replacement therapy without a later date: {ev.describe(unsure)}, "
            f"status {unsure[0].status}."
        )
        f.cite(unsure, as_of)
        f.next_steps.append(_ASK_INVESTIGATOR)
    _check_planned_rrt(record, ctx, params, f)


def _check_planned_rrt(record: PatientRecord, ctx: Context, params: DialysisParams, f: _Findings) -> None:
    """Transplant or dialysis ordered, booked or in a care plan (see _plans): a firm plan dated ahead or
    open-ended (a standing dialysis order) fails; a proposal, a plan on hold or an undated one is unknown.
    A plan dated before screening is left to the Procedures (a completed order is not the treatment)."""
    as_of = ctx.as_of
    sets = (ctx.vs(params.kidney_transplant), ctx.vs(params.dialysis_procedures))
    firm: list[str] = []
    unsure: list[str] = []
    cited: list[str] = []
    for plan in _plans.plans(record):
        # Care-plan activities count by code only (their texts name regimes, as in E9).
        codes_only = plan.resource.get("resourceType") == "CarePlan"
        label = next(
            (
                m
                for vs in sets
                for c in plan.concepts
                if (m := ev.code_match(vs, c) if codes_only else vs.match(c)) is not None
            ),
            None,
        )
        if label is None or not (plan.is_ahead(as_of) or plan.span is None):
            continue
        text = f"{label} ({plan.state}; {plan.when()})"
        (firm if plan.firm and plan.span is not None else unsure).append(text)
        cited.append(plan.ref)
    if firm:
        f.details["expected_rrt"] = True
        f.fail.append(f"Renal replacement therapy is planned: {'; '.join(firm[:3])}.")
    if unsure:
        f.unknown.append(
            f"Renal replacement therapy proposed, on hold or without a date: {'; '.join(unsure[:3])}."
        )
        f.next_steps.append(_ASK_INVESTIGATOR)
    f.evidence.extend(list(dict.fromkeys(cited))[:_MAX_EVIDENCE])


def _check_transplant_history(
    record: PatientRecord, ctx: Context, params: DialysisParams, f: _Findings
) -> None:
    """A functioning kidney graft is not an exclusion by itself (criteria-codes.md E2); it is reported."""
    as_of = ctx.as_of
    history = [
        e for e in ev.procedures(record, ctx.vs(params.kidney_transplant))
        if not ev.is_planned(e, as_of) and ev.happened_by(e, as_of)
    ]
    if params.transplant_history:
        statuses = ev.conditions(record, ctx.vs(params.transplant_history))
        history += [e for e in statuses if ev.happened_by(e, as_of)]
    if history:
        f.details["kidney_transplant_history"] = True
        f.notes.append(
            f"Kidney transplant history ({ev.describe(history, limit=2)}) is not an exclusion by itself; "
            "the investigator judges graft function."
        )
        f.evidence.extend(ev.refs(history[:2]))


def _egfr_value(obs: Mapping[str, Any]) -> tuple[str, float] | None:
    """(comparator, value in mL/min/1.73 m2) of an eGFR result; comparator is '' for an exact number. An
    eGFR reported in SI units (mL/s/1.73 m2, Nordic labs) is converted as I4 converts it (x 60): read as
    mL/min, 0.5 mL/s (30 mL/min) was "below 15"."""
    quantity = obs.get("valueQuantity")
    if isinstance(quantity, Mapping) and isinstance(quantity.get("value"), (int, float)):
        unit = str(quantity.get("code") or quantity.get("unit") or "")
        scale = 60.0 if unit_key(unit).startswith(("ml/s", "ml/(s")) else 1.0
        return str(quantity.get("comparator") or ""), float(quantity["value"]) * scale
    text = obs.get("valueString")
    if isinstance(text, str):
        m = _NUMBER.match(text)
        if m:
            comparator = {"≤": "<=", "≥": ">="}.get(m.group(1) or "", m.group(1) or "")
            scale = 60.0 if unit_key(text[m.end():]).startswith(("ml/s", "ml/(s")) else 1.0
            return comparator, float(m.group(2)) * scale
    return None


def _check_low_egfr(record: PatientRecord, ctx: Context, params: DialysisParams, f: _Findings) -> None:
    if not params.egfr:
        return
    first = days_before(ctx.as_of, params.egfr_lookback_days)
    vs = ctx.vs(params.egfr)
    results = [
        (e, v) for e in ev.observations(record, vs)
        if e.in_window(first, ctx.as_of) and (v := _egfr_value(e.resource)) is not None
    ]
    if vs.plausible is not None:
        # An eGFR that cannot be real (-5, 300) is an entry error: a finding, and not the latest eGFR.
        bounds = vs.plausible
        for event, (comparator, value) in results:
            why = bounds.breach(value, comparator or None)
            if why is not None:
                report_impossible(ctx, event.ref, f"eGFR {comparator}{value:g} mL/min/1.73m2", why)
        results = [(e, (c, v)) for e, (c, v) in results if bounds.breach(v, c or None) is None]
    if not results:
        return
    # The latest result; of equally recent ones (one day, no later stated time) the lowest, whatever the
    # input order: a low eGFR only raises the question for the investigator (unknown), so on a tie the
    # question is asked rather than settled by which record came first.
    tied = possibly_latest(results, lambda r: Lab(r[0].resource, r[0].last_day or date.min))
    low_first = {"<": 0, "<=": 1, "": 2, ">=": 3, ">": 4}
    event, (comparator, value) = min(tied, key=lambda r: (r[1][1], low_first.get(r[1][0], 2), r[0].ref))
    # "<20" cannot say it is below 15 and ">10" cannot either: only a value or bound that settles it counts.
    threshold = params.egfr_unknown_below
    below = (comparator in {"", "<", "<="} and value < threshold) or (
        comparator == "<" and value <= threshold
    )
    if below:
        f.details["latest_egfr"] = f"{comparator}{value:g}"
        f.unknown.append(
            f"Latest eGFR {comparator}{value:g} {result_on(event.resource, event.when())} is below "
            f"{params.egfr_unknown_below:g} "
            "without dialysis on record: the expected need for renal replacement therapy within six months "
            "is a prognosis for the investigator."
        )
        f.evidence.append(event.ref)
        f.next_steps.append(_ASK_INVESTIGATOR)


def _check_ckd5(record: PatientRecord, ctx: Context, params: DialysisParams, f: _Findings) -> None:
    stage5 = ev.conditions(record, ctx.vs(params.ckd_stage_5))
    ckd5 = [e for e in stage5 if is_active_on(e.resource, ctx.as_of)]
    if ckd5:
        f.details["ckd_stage_5"] = True
        f.unknown.append(
            f"Active {ev.describe(ckd5)} without dialysis on record: the expected need for renal replacement "
            "therapy within six months after enrolment is a prognosis for the investigator."
        )
        f.cite(ckd5, ctx.as_of)
        f.next_steps.append(_ASK_INVESTIGATOR)


@evaluator("dialysis", DialysisParams)
def dialysis(record: PatientRecord, ctx: Context, params: DialysisParams) -> CriterionResult:
    """Dialysis within N months, or ESRD / planned kidney transplant (expected renal replacement)."""
    f = _Findings()
    _check_dialysis(record, ctx, params, f)
    _check_expected_rrt(record, ctx, params, f)
    _check_ckd5(record, ctx, params, f)
    _check_low_egfr(record, ctx, params, f)
    _check_transplant_history(record, ctx, params, f)
    f.details.setdefault("expected_rrt", False)
    if f.fail:
        return result(Outcome.FAIL, " ".join(f.fail + f.notes), f.evidence, **f.details)
    if f.unknown:
        return result(
            Outcome.UNKNOWN, " ".join(f.unknown + f.notes), f.evidence,
            next_step=" ".join(dict.fromkeys(f.next_steps)), **f.details,
        )
    since = f.details["dialysis_window_start"]
    reason = (
        f"No dialysis on record in the last {params.window_months} months (since {since}), and no end-stage "
        "kidney disease, CKD stage 5 or planned kidney transplant."
    )
    return result(Outcome.PASS, " ".join([reason, *f.notes]), f.evidence, **f.details)
