"""I3: positive ANA (titer >= 1:160) or positive anti-dsDNA within 6 calendar months before screening.

ANA titers arrive as strings, ratios or quantities (fhirscreen.fhir.values); an ANA reported only as
"positive" (immunoassay screens) does not show the 1:160 titer and leaves the ANA arm undecided
(criteria-codes.md Appendix A #4). Anti-dsDNA positivity is the laboratory's own call (interpretation
or reference range), never a global cut-off (Appendix A #5).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from pydantic import ConfigDict

from fhirscreen.criteria._labs import (
    Lab,
    ana_titer,
    dsdna_verdict,
    impossible_labs,
    labs,
    naming_impossible,
    value_text,
)
from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, ValueSetRef, evaluator, result
from fhirscreen.fhir.codes import ValueSet
from fhirscreen.fhir.dates import months_before
from fhirscreen.fhir.values import interpretation_polarity, polarity, value_polarity
from fhirscreen.record import PatientRecord

Arm = Literal["met", "not met", "undecided", "none"]


class AnaDsdnaParams(Params):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    window_months: int = 6  # calendar months before the screening date (criteria-codes.md 0.3)
    ana_min_titer: int = 160  # 1:160
    dsdna_min_titer: int = 10  # Crithidia IFA titer codes only: >= 1:10 is positive (ARUP)
    ana: ValueSetRef = "ana"
    ana_titer: ValueSetRef = "ana_titer"  # ANA codes whose bare numbers are titers (5048-4)
    anti_dsdna: ValueSetRef = "anti_dsdna"
    anti_dsdna_titer: ValueSetRef = "anti_dsdna_titer"


@dataclass(frozen=True)
class Reading:
    """One result of the window, read against the criterion."""

    lab: Lab
    verdict: Literal["met", "not met", "undecided"]
    text: str  # "ANA 1:80 on 2026-03-01", for the reason


@dataclass(frozen=True)
class ArmResult:
    """What the results of one test (ANA or anti-dsDNA) in the window show together."""

    readings: list[Reading]

    @property
    def status(self) -> Arm:
        verdicts = {r.verdict for r in self.readings}
        for status in ("met", "undecided", "not met"):
            if status in verdicts:
                return status
        return "none"

    @property
    def decisive(self) -> list[Reading]:
        """The readings that settle the status (all of them when none meets the criterion)."""
        status = self.status
        if status == "not met":
            return self.readings
        return [r for r in self.readings if r.verdict == status]


def read_ana(lab: Lab, min_titer: int, titer_codes: ValueSet) -> Reading:
    """One ANA result against the titer threshold: a titer decides; a result stated negative ("Negative
    at 1:160": the dilution screened) is below any titer; a bare "positive" (no titer, e.g. an
    immunoassay index), a bound that straddles the threshold, or a titer at the threshold the
    laboratory flags normal, is undecided."""
    if value_polarity(lab.obs) == "negative":
        return Reading(lab, "not met", f"ANA {value_text(lab)} (negative) {lab.on}")
    titer = ana_titer(lab, titer_codes)
    if titer is not None:
        at_least = titer.at_least(min_titer)
        text = f"ANA {value_text(lab)} {lab.on}"
        if at_least is None:
            return Reading(lab, "undecided", text)
        if at_least and interpretation_polarity(lab.obs) == "negative":
            return Reading(lab, "undecided", f"{text}, flagged normal/negative by the laboratory")
        return Reading(lab, "met" if at_least else "not met", text)
    if polarity(lab.obs) == "negative":
        return Reading(lab, "not met", f"ANA negative {lab.on}")
    return Reading(lab, "undecided", f"ANA {value_text(lab)} without a titer {lab.on}")


def read_dsdna(lab: Lab, ctx: Context, params: AnaDsdnaParams) -> Reading:
    verdict = dsdna_verdict(lab, ctx.vs(params.anti_dsdna_titer), params.dsdna_min_titer)
    if verdict == "positive":
        return Reading(lab, "met", f"anti-dsDNA {value_text(lab)} positive {lab.on}")
    if verdict == "negative":
        return Reading(lab, "not met", f"anti-dsDNA {value_text(lab)} negative {lab.on}")
    why = "indeterminate" if verdict else "not interpretable (no reference range or flag)"
    return Reading(lab, "undecided", f"anti-dsDNA {value_text(lab)} {why} {lab.on}")


@evaluator("ana_or_dsdna", AnaDsdnaParams)
def ana_or_dsdna(record: PatientRecord, ctx: Context, params: AnaDsdnaParams) -> CriterionResult:
    """ANA titer at or above the threshold, or a positive anti-dsDNA, within N calendar months."""
    first = months_before(ctx.as_of, params.window_months)
    res = _ana_or_dsdna(record, ctx, params, first)
    # Results whose number cannot be real (a negative index) were left out: a criterion that is not met
    # names them, so that the entry error is seen before a patient is set aside.
    impossible = [
        item for name in (params.ana, params.anti_dsdna)
        for item in impossible_labs(record, ctx.vs(name), first, ctx.as_of)
    ]
    return res if res.outcome is Outcome.PASS else naming_impossible(res, impossible)


def _ana_or_dsdna(
    record: PatientRecord, ctx: Context, params: AnaDsdnaParams, first: date
) -> CriterionResult:
    window = f"{first.isoformat()} to {ctx.as_of.isoformat()}"
    ana_results = labs(record, ctx.vs(params.ana), first, ctx.as_of, ctx=ctx)
    dsdna_results = labs(record, ctx.vs(params.anti_dsdna), first, ctx.as_of, ctx=ctx)
    titer_codes = ctx.vs(params.ana_titer)
    ana = ArmResult([read_ana(lab, params.ana_min_titer, titer_codes) for lab in ana_results])
    dsdna = ArmResult([read_dsdna(lab, ctx, params) for lab in dsdna_results])
    details = {"ana": ana.status, "anti_dsdna": dsdna.status, "window_start": first.isoformat()}
    threshold = f"1:{params.ana_min_titer}"

    met = [r for arm in (ana, dsdna) if arm.status == "met" for r in arm.decisive]
    if met:
        shown = "; ".join(r.text for r in met)
        return result(Outcome.PASS, f"{shown} (window {window}).", [r.lab.ref for r in met], **details)

    decisive = ana.decisive + dsdna.decisive
    evidence = [r.lab.ref for r in decisive]
    seen = "; ".join(r.text for r in ana.readings + dsdna.readings)
    if ana.status == "not met" and dsdna.status == "not met":
        return result(
            Outcome.FAIL,
            f"No ANA at or above {threshold} and no positive anti-dsDNA in {window}: {seen}.",
            evidence, **details,
        )
    reason = f"Not decided by the results in {window}: {seen}."
    if not seen:
        reason = f"No ANA or anti-dsDNA result in {window}."
    return result(Outcome.UNKNOWN, reason, evidence, next_step=_next_step(ana, dsdna, threshold), **details)


def _next_step(ana: ArmResult, dsdna: ArmResult, threshold: str) -> str:
    if dsdna.status == "undecided":
        return "Obtain the lab's interpretation (reference range) of the anti-dsDNA result, or repeat it."
    if ana.status == "undecided":
        return f"Obtain the ANA titer by immunofluorescence (needs {threshold}) or an anti-dsDNA test."
    if ana.status == "not met":
        return "Order an anti-dsDNA antibody test (the ANA in the window is below the titer needed)."
    return f"Order an ANA by immunofluorescence with titer (needs {threshold}) and an anti-dsDNA test."
