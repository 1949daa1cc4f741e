"""I6: SLEDAI-2K >= 6 at screening.

A recorded score decides when one exists in the window (no standard code exists: the trial file lists
local codes, and any Observation whose code text/display names SLEDAI counts). Otherwise the items that
structured data show within the window give a lower bound with the SLEDAI-2K weights (Gladman DD et al.,
J Rheumatol 2002;29:288-91): it can pass the criterion, never fail it, because most items (headache,
rash, ulcers...) live in the examination, not in coded data (criteria-codes.md I6, Appendix A #9).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from fhirscreen.criteria._labs import (
    Lab,
    count_e9_per_l,
    dsdna_verdict,
    impossible_labs,
    is_present,
    lab_key,
    labs,
    naming_impossible,
    per_hpf,
    possibly_latest,
    protein_24h_g,
    temperature_c,
    upcr_g_per_g,
    value_text,
)
from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, ValueSetRef, evaluator, result
from fhirscreen.fhir.codes import ValueSet, concept_label
from fhirscreen.fhir.dates import day, days_before
from fhirscreen.fhir.resources import Resource, condition_span, ref, tentative
from fhirscreen.fhir.values import Quantity, is_below_range, quantity_of
from fhirscreen.record import PatientRecord

_STRICT = ConfigDict(extra="forbid", frozen=True, validate_default=True)

# Items derived from laboratory results and vital signs (the rest come from coded manifestations).
LAB_ITEMS = (
    "urinary_casts", "hematuria", "proteinuria", "pyuria", "low_complement", "increased_dna_binding",
    "fever", "thrombocytopenia", "leukopenia",
)


def _default_weights() -> dict[str, int]:
    # SLEDAI-2K descriptor weights (https://medicalcriteria.com/web/reusledai/); lupus headache (8) has
    # no structured evidence and is left out.
    return {
        "seizure": 8, "psychosis": 8, "organic_brain_syndrome": 8, "visual_disturbance": 8,
        "cranial_nerve_disorder": 8, "cva": 8, "vasculitis": 8, "arthritis": 4, "myositis": 4,
        "urinary_casts": 4, "hematuria": 4, "proteinuria": 4, "pyuria": 4, "rash": 2, "alopecia": 2,
        "mucosal_ulcers": 2, "pleurisy": 2, "pericarditis": 2, "low_complement": 2,
        "increased_dna_binding": 2, "fever": 1, "thrombocytopenia": 1, "leukopenia": 1,
    }


def _default_coded() -> dict[str, str]:
    return {
        "seizure": "seizure", "psychosis": "psychosis", "organic_brain_syndrome": "organic_brain_syndrome",
        "visual_disturbance": "lupus_visual_disturbance", "cranial_nerve_disorder": "cranial_neuropathy",
        "cva": "cerebral_infarction", "vasculitis": "vasculitis", "arthritis": "inflammatory_arthritis",
        "myositis": "myositis", "rash": "lupus_rash", "alopecia": "alopecia_nonscarring",
        "mucosal_ulcers": "oral_ulcers", "pleurisy": "pleurisy", "pericarditis": "pericarditis",
    }


class SledaiLabs(Params):
    model_config = _STRICT

    complement: ValueSetRef = "complement"
    anti_dsdna: ValueSetRef = "anti_dsdna"
    anti_dsdna_titer: ValueSetRef = "anti_dsdna_titer"
    platelets: ValueSetRef = "platelets"
    wbc: ValueSetRef = "wbc"
    protein_24h: ValueSetRef = "urine_protein_24h"
    upcr: ValueSetRef = "urine_protein_creatinine_ratio"
    urinary_casts: ValueSetRef = "urine_rbc_casts"
    urine_rbc: ValueSetRef = "urine_rbc_hpf"
    urine_wbc: ValueSetRef = "urine_wbc_hpf"
    temperature: ValueSetRef = "body_temperature"


class SledaiParams(Params):
    model_config = _STRICT

    window_days: int = 30
    threshold: int = 6
    score: ValueSetRef = "sledai_score"
    thrombocytopenia_below: float = 100.0  # 10^9/L
    leukopenia_below: float = 3.0  # 10^9/L
    proteinuria_above_g: float = 0.5  # g/24 h; UPCR g/g as a proxy
    hematuria_above_hpf: float = 5.0
    pyuria_above_hpf: float = 5.0
    fever_above_c: float = 38.0
    dsdna_min_titer: int = 10
    weights: dict[str, int] = Field(default_factory=_default_weights)
    coded_manifestations: dict[str, ValueSetRef] = Field(default_factory=_default_coded)
    labs: SledaiLabs = SledaiLabs()
    # SLEDAI-2K excludes hematuria/pyuria from infection or stones, and fever from infection.
    urine_confounders: ValueSetRef = "urinary_infection_or_stone"
    fever_confounders: ValueSetRef = "infection_for_fever"

    @model_validator(mode="after")
    def _every_item_weighted(self) -> SledaiParams:
        needed = set(LAB_ITEMS) | set(self.coded_manifestations)
        missing = sorted(needed - set(self.weights))
        if missing:
            raise ValueError(f"weights missing for SLEDAI-2K items: {', '.join(missing)}")
        unused = sorted(set(self.weights) - needed)
        if unused:
            raise ValueError(f"weights for unknown SLEDAI-2K items (a typo?): {', '.join(unused)}")
        return self


@dataclass(frozen=True)
class Item:
    name: str
    weight: int
    text: str  # "low C3 52 mg/dL (ref 90-180) on 2026-05-10"
    refs: tuple[str, ...]

    def __str__(self) -> str:
        label = self.name.replace("_", " ").replace("dna", "DNA").replace("cva", "CVA")
        return f"{label} ({self.weight}): {self.text}"


# ----------------------------------------------------------------------------------- conditions


def _documented_in(condition: Resource, first: date, last: date) -> bool:
    """Present during the window and documented in it (onset, recorded or abated within it): an
    "active" code with an old onset and nothing newer does not show activity at screening."""
    span = condition_span(condition)
    if not span.overlaps(first, last):
        return False
    dates = (span.start, day(condition.get("recordedDate")), span.end)
    return any(d is not None and first <= d <= last for d in dates)


def _present_in(condition: Resource, first: date, last: date) -> bool:
    return condition_span(condition).overlaps(first, last)


def _conditions(
    record: PatientRecord, vs: ValueSet, first: date, last: date, *, documented: bool
) -> list[Resource]:
    test = _documented_in if documented else _present_in
    # A suspected manifestation (provisional/differential/unconfirmed) scores no SLEDAI points.
    return [
        c for c in record.of_type("Condition")
        if vs.match(c.get("code")) and test(c, first, last) and tentative(c) is None
    ]


def coded_items(record: PatientRecord, ctx: Context, params: SledaiParams, first: date) -> list[Item]:
    items: list[Item] = []
    for name, vs_name in params.coded_manifestations.items():
        vs = ctx.vs(vs_name)
        found = _conditions(record, vs, first, ctx.as_of, documented=True)
        if found:
            c = found[0]
            start = condition_span(c).start
            when = f" since {start.isoformat()}" if start else ""
            text = f"coded manifestation {vs.match(c.get('code')) or concept_label(c.get('code'))}{when}"
            items.append(Item(name, params.weights[name], text, tuple(ref(x) for x in found)))
    return items


# ----------------------------------------------------------------------------------------- labs


Hits = list[tuple[Lab, str]]  # qualifying results (latest first) with their text for the reason


def _item(name: str, hits: Hits, params: SledaiParams) -> Item | None:
    if not hits:
        return None
    text = hits[0][1]  # the latest qualifying result is the one named
    return Item(name, params.weights[name], text, tuple(lab.ref for lab, _t in hits))


def lab_items(record: PatientRecord, ctx: Context, params: SledaiParams, first: date) -> list[Item]:
    sets = params.labs

    def results(name: str) -> list[Lab]:
        return labs(record, ctx.vs(name), first, ctx.as_of, ctx=ctx)

    def confounded(vs_name: str) -> bool:
        return bool(_conditions(record, ctx.vs(vs_name), first, ctx.as_of, documented=False))

    hits: dict[str, Hits] = {
        "low_complement": _low_complement(results(sets.complement)),
        "increased_dna_binding": _dsdna(ctx, params, results(sets.anti_dsdna)),
        "thrombocytopenia": _counts_below(
            ctx, results(sets.platelets), params.thrombocytopenia_below, "platelets"
        ),
        "leukopenia": _counts_below(ctx, results(sets.wbc), params.leukopenia_below, "WBC"),
        "proteinuria": _proteinuria(ctx, params, results(sets.protein_24h), results(sets.upcr)),
        "urinary_casts": [(lab, f"urinary casts {lab.on}") for lab in results(sets.urinary_casts)
                          if is_present(lab)],
    }
    if not confounded(params.urine_confounders):
        hits["hematuria"] = _per_hpf_above(ctx, results(sets.urine_rbc), params.hematuria_above_hpf, "RBC")
        hits["pyuria"] = _per_hpf_above(ctx, results(sets.urine_wbc), params.pyuria_above_hpf, "WBC")
    if not confounded(params.fever_confounders):
        hits["fever"] = _fever(ctx, params, results(sets.temperature))
    items = [_item(name, found, params) for name, found in hits.items()]
    return [item for item in items if item is not None]


def _low_complement(results: list[Lab]) -> list[tuple[Lab, str]]:
    return [(lab, f"{lab.name} {value_text(lab)} below the lab's range {lab.on}")
            for lab in results if is_below_range(lab.obs) is True]


def _dsdna(ctx: Context, params: SledaiParams, results: list[Lab]) -> list[tuple[Lab, str]]:
    titer_codes = ctx.vs(params.labs.anti_dsdna_titer)
    return [(lab, f"anti-dsDNA {value_text(lab)} positive {lab.on}")
            for lab in results if dsdna_verdict(lab, titer_codes, params.dsdna_min_titer) == "positive"]


def _counts_below(ctx: Context, results: list[Lab], limit: float, what: str) -> list[tuple[Lab, str]]:
    out = []
    for lab in results:
        q = count_e9_per_l(ctx, lab, f"{what} count")
        if q is not None and q.below(limit) is True:
            out.append((lab, f"{what} {q.comparator or ''}{q.value:g} x10^9/L (< {limit:g}) {lab.on}"))
    return out


def _proteinuria(
    ctx: Context, params: SledaiParams, day_totals: list[Lab], ratios: list[Lab]
) -> list[tuple[Lab, str]]:
    limit = params.proteinuria_above_g
    out = []
    for lab in day_totals:
        q = protein_24h_g(ctx, lab)
        if q is not None and q.above(limit) is True:
            text = f"24-h urine protein {q.comparator or ''}{q.value:g} g (> {limit:g})"
            out.append((lab, f"{text} {lab.on}"))
    for lab in ratios:
        q = upcr_g_per_g(ctx, lab)
        if q is not None and q.above(limit) is True:
            text = f"urine protein/creatinine {q.comparator or ''}{q.value:g} g/g (> {limit:g}; 24-h proxy)"
            out.append((lab, f"{text} {lab.on}"))
    out.sort(key=lambda pair: pair[0].day, reverse=True)
    return out


def _per_hpf_above(ctx: Context, results: list[Lab], limit: float, what: str) -> list[tuple[Lab, str]]:
    out = []
    for lab in results:
        q = per_hpf(ctx, lab, f"urine {what} per high-power field")
        if q is not None and q.above(limit) is True:
            out.append((lab, f"urine {what} {q.comparator or ''}{q.value:g}/hpf (> {limit:g}) {lab.on}"))
    return out


def _fever(ctx: Context, params: SledaiParams, results: list[Lab]) -> list[tuple[Lab, str]]:
    out = []
    for lab in results:
        q = temperature_c(ctx, lab)
        if q is not None and q.above(params.fever_above_c) is True:
            out.append((lab, f"temperature {q.value:.1f} C (> {params.fever_above_c:g}) {lab.on}"))
    return out


# ------------------------------------------------------------------------------------ evaluator


def recorded_score(
    record: PatientRecord, ctx: Context, params: SledaiParams, first: date | None
) -> Lab | None:
    """The latest SLEDAI score with a numeric value in [first, as_of] (the lowest of equally recent ones).

    A total held in ``Observation.component`` counts; the item components of a SLEDAI panel
    ("SLEDAI-2K seizure") do not, so a component must name a total or score.
    """
    scores = recorded_scores(record, ctx, params, first)
    return scores[0] if scores else None


def recorded_scores(
    record: PatientRecord, ctx: Context, params: SledaiParams, first: date | None, *, partial: bool = False
) -> list[Lab]:
    """The recorded totals that may be the latest (``possibly_latest``: the latest day, its latest stated
    time, and those without a time), lowest first: never input order or resource ids. With ``partial``,
    the totals of an instrument that leaves the serologic items out (``_PARTIAL``) instead."""
    found = []
    for lab in labs(record, ctx.vs(params.score), first, ctx.as_of, ctx=ctx):
        if (_PARTIAL.search(lab.name) is not None) != partial:
            continue
        descriptor = not _TOTAL.search(lab.name) and (lab.obs.get("_component") or _ITEM.search(lab.name))
        if descriptor and not partial:
            continue  # one descriptor of the instrument ("SLEDAI-2K seizure: 8"), not the total
        if quantity_of(lab.obs) is not None:
            found.append(lab)
    tied = possibly_latest(found, lambda lab: lab)
    return sorted(tied, key=lambda lab: (_value(lab), lab_key(lab)))


# An instrument that leaves the serologic items out ("Clinical SLEDAI-2K", "SLEDAI-2K excluding serology",
# the modified SLEDAI without anti-dsDNA and complement): its total is a lower bound of the SLEDAI-2K,
# which adds low complement (2) and increased DNA binding (2) to it.
_PARTIAL = re.compile(
    r"\bclinical\s+(?:selena[- ]?)?sledai|\bc-?sledai|\bm-?sledai|\bmodified\s+(?:selena[- ]?)?sledai|"
    r"\b(?:excluding|excl\.?|without|w/o|minus|no)\s+(?:the\s+)?"
    r"(?:serolog|lab(?:oratory|s)?\b|anti-?dsdna|dna\b|complement)",
    re.IGNORECASE,
)
SEROLOGIC_ITEMS = ("low_complement", "increased_dna_binding")


def _value(lab: Lab) -> float:
    q = quantity_of(lab.obs)
    return q.value if q is not None else 0.0


_TOTAL = re.compile(r"total|score|sum\b", re.IGNORECASE)
_ITEM = re.compile(
    r"seizure|psychosis|organic brain|visual|cranial|headache|\bcva\b|vasculitis|arthritis|myositis|"
    r"\bcasts?\b|h(a)?ematuria|proteinuria|pyuria|rash|alopecia|ulcer|pleurisy|pericarditis|complement|"
    r"\bdna\b|fever|thrombocytopenia|leukopenia",
    re.IGNORECASE,
)


@evaluator("sledai", SledaiParams)
def sledai(record: PatientRecord, ctx: Context, params: SledaiParams) -> CriterionResult:
    """Recorded SLEDAI-2K in the window, else a lower bound from structured data with SLEDAI-2K weights."""
    first = days_before(ctx.as_of, params.window_days)
    res = _sledai(record, ctx, params, first)
    # A recorded total that cannot be real (above 105, negative) was left out: named, so that the entry
    # error is seen where the outcome comes from the other totals or the items.
    return naming_impossible(res, impossible_labs(record, ctx.vs(params.score), first, ctx.as_of))


def _sledai(record: PatientRecord, ctx: Context, params: SledaiParams, first: date) -> CriterionResult:
    window = f"the {params.window_days} days before {ctx.as_of.isoformat()}"
    scores = recorded_scores(record, ctx, params, first)
    if scores:
        return _from_recorded(scores, params)

    items = coded_items(record, ctx, params, first) + lab_items(record, ctx, params, first)
    partial = recorded_scores(record, ctx, params, first, partial=True)
    if partial:
        return _from_partial(partial[0], items, params)
    bound = sum(item.weight for item in items)
    evidence = [r for item in items for r in item.refs]
    details: dict[str, Any] = {
        "sledai_2k": bound, "strength": bound, "sledai_source": "lower bound",
        "sledai_items": {item.name: item.weight for item in items},
    }
    listed = "; ".join(str(item) for item in items)
    if bound >= params.threshold:
        reason = f"No recorded SLEDAI-2K in {window}; coded data give a lower bound of {bound}: {listed}."
        return result(Outcome.PASS, reason, evidence, **details)
    older = recorded_score(record, ctx, params, None)
    stale = f" (latest recorded score {_score_text(older)} is older)" if older else ""
    found = f"a lower bound of {bound}: {listed}" if items else "no SLEDAI-2K item"
    reason = f"No recorded SLEDAI-2K in {window}{stale}; coded data show {found}, below {params.threshold}."
    if older is not None:
        evidence.append(older.ref)
    return result(
        Outcome.UNKNOWN, reason, evidence,
        next_step="Score SLEDAI-2K at the screening visit (exam, urinalysis, complement, anti-dsDNA).",
        **details,
    )


def _from_partial(lab: Lab, items: list[Item], params: SledaiParams) -> CriterionResult:
    """A recorded total without the serologic items: the SLEDAI-2K is that total plus the serologic
    items, which the window's labs may show (the lowest it can be) and at most both (the highest)."""
    q = quantity_of(lab.obs)
    assert q is not None  # recorded_scores only returns scores with a value
    serologic = [item for item in items if item.name in SEROLOGIC_ITEMS]
    shown = sum(item.weight for item in serologic)
    at_most = sum(params.weights[name] for name in SEROLOGIC_ITEMS)
    lowest = Quantity(q.value + shown, q.comparator, "")
    highest = Quantity(q.value + at_most, q.comparator, "")
    text = f"Recorded {lab.name} {_score_text(lab)} leaves the serologic items out"
    found = f"; the labs show {'; '.join(str(item) for item in serologic)}" if serologic else ""
    evidence = [lab.ref] + [r for item in serologic for r in item.refs]
    details: dict[str, Any] = {
        "sledai_2k": lowest.value, "strength": lowest.value, "sledai_source": "recorded without serology",
        "sledai_instrument": lab.name, "sledai_items": {item.name: item.weight for item in serologic},
    }
    if lowest.at_least(params.threshold) is True:
        reason = f"{text}{found}: the SLEDAI-2K is at least {lowest}, at or above {params.threshold}."
        return result(Outcome.PASS, reason, evidence, **details)
    if highest.at_least(params.threshold) is False:
        reason = (
            f"{text}: even with both (low complement 2, increased DNA binding 2) the SLEDAI-2K is at most "
            f"{highest}, below {params.threshold}."
        )
        return result(Outcome.FAIL, reason, evidence, **details)
    return result(
        Outcome.UNKNOWN,
        f"{text} (up to {at_most} more){found}: the SLEDAI-2K may be below {params.threshold} or not.",
        evidence,
        next_step="Check complement and anti-dsDNA at the screening visit and score the full SLEDAI-2K.",
        **details,
    )


def _score_text(lab: Lab) -> str:
    q = quantity_of(lab.obs)
    return f"{q.comparator or ''}{q.value:g} {lab.on}" if q else f"{lab.on}"


def _from_recorded(scores: list[Lab], params: SledaiParams) -> CriterionResult:
    """The latest recorded total decides. Equally recent totals (one day, no later stated time) show the
    lowest; when they fall on both sides of the threshold the criterion is unknown: the lower one
    alone would drop a patient on what may be a superseded entry, the higher one would include a
    patient on disease activity that another record of that day does not show."""
    lab = scores[0]
    values = [q for s in scores if (q := quantity_of(s.obs)) is not None]
    sides = {q.at_least(params.threshold) for q in values} - {None}
    if len(sides) > 1:
        shown = "; ".join(f"{s.name} {_score_text(s)}" for s in scores)
        return result(
            Outcome.UNKNOWN,
            f"Conflicting SLEDAI-2K totals recorded on {lab.when}, none stated as the later one: {shown}. "
            f"Some are below {params.threshold} and some at or above it.",
            list(dict.fromkeys(s.ref for s in scores)),
            next_step="Check which total stands (a corrected entry?), or score SLEDAI-2K at the screening "
            "visit.",
            sledai_source="recorded",
        )
    q = quantity_of(lab.obs)
    assert q is not None  # recorded_score only returns scores with a value
    instrument = lab.name
    ok = q.at_least(params.threshold)
    details: dict[str, Any] = {
        "sledai_2k": q.value, "strength": q.value,
        "sledai_source": "recorded", "sledai_instrument": instrument,
    }
    text = f"{instrument} {_score_text(lab)}"
    if ok is None:
        return result(
            Outcome.UNKNOWN, f"Recorded {text} cannot tell whether it is >= {params.threshold}.", [lab.ref],
            next_step="Record the exact SLEDAI-2K total at the screening visit.", **details,
        )
    verdict = f"at or above {params.threshold}" if ok else f"below {params.threshold}"
    return result(Outcome.PASS if ok else Outcome.FAIL, f"Recorded {text}: {verdict}.", [lab.ref], **details)
