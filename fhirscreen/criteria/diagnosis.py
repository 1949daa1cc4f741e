"""I2: an SLE diagnosis meeting ACR-1997 (>= 4 of 11) and/or SLICC-2012 (>= 4 of 17, >= 1 clinical and
>= 1 immunologic) classification criteria, counted from structured data.

Both rule sets are cumulative over the whole record ("serially or simultaneously, during any interval
of observation", Hochberg, Arthritis Rheum 1997;40:1725; Petri et al., Arthritis Rheum 2012;64:2677-86).
Classification items are rarely coded, so too few items evidenced is unknown, never fail
(criteria-codes.md I2.b, Appendix A #2). An SLE code is not itself an item.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import ConfigDict

from fhirscreen.criteria._labs import (
    Lab,
    ana_titer,
    dipstick_grade,
    dsdna_verdict,
    is_present,
    labs,
    occasions_below,
    protein_24h_g,
    upcr_g_per_g,
    value_text,
)
from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, ValueSetRef, evaluator, result
from fhirscreen.fhir.codes import ValueSet, coding_items, concept_label
from fhirscreen.fhir.resources import Resource, condition_span, ref
from fhirscreen.fhir.values import is_below_range, polarity, quantity_of, reference_range
from fhirscreen.record import PatientRecord

_STRICT = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ManifestationSets(Params):
    """Value sets of the coded manifestations that count as classification items."""

    model_config = _STRICT

    malar_rash: ValueSetRef = "lupus_malar_rash"
    subacute_cutaneous_lupus: ValueSetRef = "lupus_subacute_cutaneous"
    discoid_rash: ValueSetRef = "lupus_discoid"
    photosensitivity: ValueSetRef = "photosensitivity"
    oral_ulcers: ValueSetRef = "oral_ulcers"
    alopecia: ValueSetRef = "alopecia_nonscarring"
    arthritis: ValueSetRef = "inflammatory_arthritis"
    serositis: ValueSetRef = "serositis"
    lupus_nephritis: ValueSetRef = "lupus_nephritis"
    seizure: ValueSetRef = "seizure"
    psychosis: ValueSetRef = "psychosis"
    neuro_other: ValueSetRef = "neuro_slicc_other"
    hemolytic_anemia: ValueSetRef = "hemolytic_anemia"
    leukopenia_coded: ValueSetRef = "leukopenia_coded"
    lymphopenia_coded: ValueSetRef = "lymphopenia_coded"
    thrombocytopenia_coded: ValueSetRef = "thrombocytopenia_coded"
    antiphospholipid_coded: ValueSetRef = "antiphospholipid_coded"


class ClassificationLabs(Params):
    """Value sets of the laboratory tests behind classification items."""

    model_config = _STRICT

    ana: ValueSetRef = "ana"
    ana_titer: ValueSetRef = "ana_titer"  # ANA codes whose bare numbers are titers (5048-4)
    anti_dsdna: ValueSetRef = "anti_dsdna"
    anti_dsdna_titer: ValueSetRef = "anti_dsdna_titer"
    anti_sm: ValueSetRef = "anti_sm"
    anticardiolipin: ValueSetRef = "anticardiolipin"
    anti_beta2gp: ValueSetRef = "beta2_glycoprotein"
    lupus_anticoagulant: ValueSetRef = "lupus_anticoagulant"
    rpr: ValueSetRef = "rpr"
    treponemal: ValueSetRef = "treponemal"
    complement: ValueSetRef = "complement"
    direct_coombs: ValueSetRef = "direct_coombs"
    wbc: ValueSetRef = "wbc"
    lymphocytes: ValueSetRef = "lymphocytes_absolute"
    platelets: ValueSetRef = "platelets"
    protein_24h: ValueSetRef = "urine_protein_24h"
    upcr: ValueSetRef = "urine_protein_creatinine_ratio"
    dipstick: ValueSetRef = "urine_protein_dipstick"
    rbc_casts: ValueSetRef = "urine_rbc_casts"


class SleClassificationParams(Params):
    model_config = _STRICT

    sle_codes: ValueSetRef = "sle_specific"
    unspecified_lupus: ValueSetRef = "lupus_unspecified"
    not_sle: ValueSetRef = "lupus_not_sle"
    # A generic "lupus erythematosus" code (Synthea's 200936003) with the classification met passes,
    # flagged; false makes it unknown (criteria-codes.md Appendix A #2).
    unspecified_lupus_can_pass: bool = True
    acr_min_items: int = 4
    slicc_min_items: int = 4
    # SLICC stand-alone rule: biopsy-proven lupus nephritis with ANA or anti-dsDNA (Appendix A #3).
    slicc_standalone_nephritis: bool = False
    biopsy_proven_nephritis: ValueSetRef = "lupus_nephritis_classified"
    ana_abnormal_min_titer: int = 80
    anticardiolipin_medium_min: float = 40.0  # SLICC I4 "medium or high titer": 40 GPL/MPL units
    dsdna_elisa_fold: float = 2.0  # SLICC I2: "> 2-fold the reference range if tested by ELISA"
    leukopenia_below: float = 4.0
    lymphopenia_acr_below: float = 1.5
    lymphopenia_slicc_below: float = 1.0
    thrombocytopenia_below: float = 100.0
    acr_count_occasions: int = 2
    proteinuria_g_per_day: float = 0.5
    dipstick_min_grade: int = 3
    manifestations: ManifestationSets = ManifestationSets()
    labs: ClassificationLabs = ClassificationLabs()
    dsdna_min_titer: int = 10


# ------------------------------------------------------------------------- classification rules

# Each item is met by any of its findings (feature names produced by the collectors below).
ACR_1997: tuple[tuple[str, frozenset[str]], ...] = (
    ("1 malar rash", frozenset({"malar_rash"})),
    ("2 discoid rash", frozenset({"discoid_rash"})),
    ("3 photosensitivity", frozenset({"photosensitivity"})),
    ("4 oral ulcers", frozenset({"oral_ulcers"})),
    ("5 arthritis", frozenset({"arthritis"})),
    ("6 serositis", frozenset({"serositis"})),
    ("7 renal disorder", frozenset({"lupus_nephritis", "proteinuria_acr", "dipstick_acr", "rbc_casts"})),
    ("8 neurologic disorder", frozenset({"seizure", "psychosis"})),
    ("9 hematologic disorder", frozenset({
        "hemolytic_anemia", "leukopenia_acr", "lymphopenia_acr", "thrombocytopenia", "thrombocytopenia_coded",
    })),
    ("10 immunologic disorder", frozenset({
        "anti_dsdna", "anti_sm", "anticardiolipin", "lupus_anticoagulant", "false_positive_syphilis",
        "antiphospholipid_coded",
    })),
    ("11 antinuclear antibody", frozenset({"ana"})),
)
SLICC_CLINICAL: tuple[tuple[str, frozenset[str]], ...] = (
    ("C1 acute cutaneous lupus", frozenset({"malar_rash", "subacute_cutaneous_lupus"})),
    ("C2 chronic cutaneous lupus", frozenset({"discoid_rash"})),
    ("C3 oral or nasal ulcers", frozenset({"oral_ulcers"})),
    ("C4 non-scarring alopecia", frozenset({"alopecia"})),
    ("C5 synovitis", frozenset({"arthritis"})),
    ("C6 serositis", frozenset({"serositis"})),
    ("C7 renal", frozenset({"lupus_nephritis", "proteinuria_slicc", "rbc_casts"})),
    ("C8 neurologic", frozenset({"seizure", "psychosis", "neuro_other"})),
    ("C9 hemolytic anemia", frozenset({"hemolytic_anemia"})),
    ("C10 leukopenia or lymphopenia", frozenset({
        "leukopenia_slicc", "lymphopenia_slicc", "leukopenia_coded", "lymphopenia_coded",
    })),
    ("C11 thrombocytopenia", frozenset({"thrombocytopenia", "thrombocytopenia_coded"})),
)
SLICC_IMMUNOLOGIC: tuple[tuple[str, frozenset[str]], ...] = (
    ("I1 ANA", frozenset({"ana"})),
    # SLICC asks more of two tests than ACR does: anti-dsDNA by ELISA above twice the range, and
    # anticardiolipin at medium or high titer (``lab_findings``).
    ("I2 anti-dsDNA", frozenset({"anti_dsdna_slicc"})),
    ("I3 anti-Sm", frozenset({"anti_sm"})),
    ("I4 antiphospholipid", frozenset({
        "anticardiolipin_slicc", "anti_beta2gp", "lupus_anticoagulant", "false_positive_syphilis",
        "antiphospholipid_coded",
    })),
    ("I5 low complement", frozenset({"low_complement"})),
    # SLICC: a positive direct Coombs counts only in the absence of hemolytic anemia.
    ("I6 direct Coombs", frozenset({"direct_coombs"})),
)


@dataclass(frozen=True)
class Finding:
    feature: str
    text: str  # "ANA 1:320 on 2025-01-03", "Polyarthritis, unspecified (2021-03-01)"
    ref: str


Findings = dict[str, list[Finding]]


def met_items(rules: Iterable[tuple[str, frozenset[str]]], findings: Findings) -> dict[str, list[Finding]]:
    """The items of a rule set with at least one finding, each with its findings."""
    out: dict[str, list[Finding]] = {}
    for label, features in rules:
        present = features & findings.keys()  # most items have no finding: nothing to sort
        if not present:
            continue
        hits = [f for feature in sorted(present) for f in findings[feature]]
        if hits:
            out[label] = hits
    return out


# ----------------------------------------------------------------------------------- collectors


def _started_by(condition: Resource, as_of: date) -> bool:
    start = condition_span(condition).start
    return start is None or start <= as_of


def _conditions(record: PatientRecord, vs: ValueSet, as_of: date) -> list[Resource]:
    return [c for c in _started(record, as_of) if vs.match(c.get("code"))]


def _started(record: PatientRecord, as_of: date) -> list[Resource]:
    """The Conditions started by the screening date (or undated), in record order: found once per
    record for the twenty-odd value sets I2 reads."""
    by_day: dict[date, list[Resource]] = record.memo("diagnosis:started", dict)
    started = by_day.get(as_of)
    if started is None:
        started = by_day[as_of] = [c for c in record.of_type("Condition") if _started_by(c, as_of)]
    return started


def _condition_text(condition: Resource, vs: ValueSet | None = None) -> str:
    """The condition as the matching coding names it ("Glomerular disease in SLE", not the first
    coding's "Systemic lupus erythematosus"), with its onset."""
    start = condition_span(condition).start
    when = f" ({start.isoformat()})" if start else ""
    name = (vs.match(condition.get("code")) if vs else None) or concept_label(condition.get("code"))
    return f"{name}{when}"


def coded_findings(record: PatientRecord, ctx: Context, sets: ManifestationSets) -> Findings:
    """Coded manifestations on record up to the screening date, any clinical status (history counts)."""
    found: Findings = defaultdict(list)
    for feature, vs_name in sets:  # (field, value) in field order, as model_dump() gives them but cheaper
        vs = ctx.vs(vs_name)
        for c in _conditions(record, vs, ctx.as_of):
            if _verification(c) in _TENTATIVE:
                continue  # a suspected manifestation is not an evidenced classification item
            found[feature].append(Finding(feature, _condition_text(c, vs), ref(c)))
    return found


def _add(found: Findings, feature: str, lab: Lab, text: str | None = None) -> None:
    found[feature].append(Finding(feature, text or f"{lab.name} {value_text(lab)} {lab.on}", lab.ref))


def lab_findings(record: PatientRecord, ctx: Context, params: SleClassificationParams) -> Findings:
    """Laboratory classification items up to the screening date."""
    found: Findings = defaultdict(list)
    sets = params.labs

    def results(name: str) -> list[Lab]:
        return labs(record, ctx.vs(name), None, ctx.as_of, ctx=ctx)

    ana_titer_codes = ctx.vs(sets.ana_titer)
    for lab in results(sets.ana):
        verdict = polarity(lab.obs)  # the laboratory's own call first ("1:80", flagged normal: not abnormal)
        if verdict == "negative":
            continue
        titer = ana_titer(lab, ana_titer_codes)
        abnormal_titer = titer is not None and titer.at_least(params.ana_abnormal_min_titer) is True
        if verdict == "positive" or abnormal_titer:
            _add(found, "ana", lab, f"ANA {value_text(lab)} {lab.on}")
    titer_codes = ctx.vs(sets.anti_dsdna_titer)
    for lab in results(sets.anti_dsdna):
        if dsdna_verdict(lab, titer_codes, params.dsdna_min_titer) == "positive":
            text = f"anti-dsDNA {value_text(lab)} positive {lab.on}"
            _add(found, "anti_dsdna", lab, text)
            if not _elisa_within(lab, params.dsdna_elisa_fold):  # SLICC: "> 2-fold the range by ELISA"
                _add(found, "anti_dsdna_slicc", lab, text)
    for lab in results(sets.anticardiolipin):
        if polarity(lab.obs) == "positive":
            _add(found, "anticardiolipin", lab, f"{lab.name} positive {lab.on}")
            if _medium_or_high(lab, params.anticardiolipin_medium_min):  # SLICC: "medium or high titer"
                _add(found, "anticardiolipin_slicc", lab, f"{lab.name} {value_text(lab)} {lab.on}")
    for feature, name in (
        ("anti_sm", sets.anti_sm), ("anti_beta2gp", sets.anti_beta2gp),
        ("lupus_anticoagulant", sets.lupus_anticoagulant), ("direct_coombs", sets.direct_coombs),
    ):
        for lab in results(name):
            if polarity(lab.obs) == "positive":
                _add(found, feature, lab, f"{lab.name} positive {lab.on}")
    _false_positive_syphilis(found, results(sets.rpr), results(sets.treponemal))
    for lab in results(sets.complement):
        if is_below_range(lab.obs) is True:
            _add(found, "low_complement", lab, f"{lab.name} {value_text(lab)} below range {lab.on}")
    _blood_counts(found, ctx, params, results)
    _renal(found, ctx, params, results)
    return found


_ELISA = re.compile(r"\b(elisa|eia|enzyme[- ]linked|enzyme immunoassay)\b", re.IGNORECASE)
_MEDIUM_OR_HIGH = re.compile(r"\b(medium|moderate|moderately|high|strong|strongly)\b", re.IGNORECASE)


def _elisa_within(lab: Lab, fold: float) -> bool:
    """True for an ELISA result (Observation.method) at or below ``fold`` times its reference range."""
    method = lab.obs.get("method")
    if not isinstance(method, Mapping):
        return False
    if not _ELISA.search(f"{concept_label(method)} {method.get('text') or ''}"):
        return False
    q = quantity_of(lab.obs)
    _low, high = reference_range(lab.obs)
    return q is not None and high is not None and q.above(fold * high) is not True


def _medium_or_high(lab: Lab, at_least: float) -> bool:
    """An anticardiolipin result shown to be of medium or high titer: a value of ``at_least`` (40 GPL/MPL
    units) or more, or words saying so ("moderate positive"); a bare "positive" does not show it."""
    q = quantity_of(lab.obs)
    if q is not None:
        return q.at_least(at_least) is True
    return bool(_MEDIUM_OR_HIGH.search(value_text(lab)))


def _false_positive_syphilis(found: Findings, rpr: list[Lab], treponemal: list[Lab]) -> None:
    """A reactive non-treponemal test with a negative treponemal test (and none positive)."""
    reactive = [lab for lab in rpr if polarity(lab.obs) == "positive"]
    verdicts = [polarity(lab.obs) for lab in treponemal]
    if reactive and "negative" in verdicts and "positive" not in verdicts:
        negative = next(lab for lab, v in zip(treponemal, verdicts, strict=True) if v == "negative")
        text = f"reactive {reactive[0].name} {reactive[0].on}, treponemal test negative {negative.on}"
        found["false_positive_syphilis"].append(Finding("false_positive_syphilis", text, reactive[0].ref))
        found["false_positive_syphilis"].append(Finding("false_positive_syphilis", text, negative.ref))


def _occasions_text(what: str, hits: list[tuple[Lab, Any]], limit: float) -> str:
    shown = ", ".join(f"{q} {lab.on}" for lab, q in hits[:3])
    return f"{what} < {limit:g} x10^9/L on {len(hits)} occasion(s): {shown}"


def _blood_counts(found: Findings, ctx: Context, params: SleClassificationParams, results: Any) -> None:
    sets = params.labs
    wbc = occasions_below(ctx, results(sets.wbc), params.leukopenia_below, "leukocyte count")
    if len(wbc) >= params.acr_count_occasions:
        text = _occasions_text("WBC", wbc, params.leukopenia_below)
        found["leukopenia_acr"] += [Finding("leukopenia_acr", text, lab.ref) for lab, _q in wbc]
    if wbc:
        text = _occasions_text("WBC", wbc, params.leukopenia_below)
        found["leukopenia_slicc"] += [Finding("leukopenia_slicc", text, lab.ref) for lab, _q in wbc]
    lymph = results(sets.lymphocytes)
    low = occasions_below(ctx, lymph, params.lymphopenia_acr_below, "lymphocyte count")
    if len(low) >= params.acr_count_occasions:
        text = _occasions_text("lymphocytes", low, params.lymphopenia_acr_below)
        found["lymphopenia_acr"] += [Finding("lymphopenia_acr", text, lab.ref) for lab, _q in low]
    very_low = occasions_below(ctx, lymph, params.lymphopenia_slicc_below, "lymphocyte count")
    if very_low:
        text = _occasions_text("lymphocytes", very_low, params.lymphopenia_slicc_below)
        found["lymphopenia_slicc"] += [Finding("lymphopenia_slicc", text, lab.ref) for lab, _q in very_low]
    plt = occasions_below(ctx, results(sets.platelets), params.thrombocytopenia_below, "platelet count")
    if plt:
        text = _occasions_text("platelets", plt, params.thrombocytopenia_below)
        found["thrombocytopenia"] += [Finding("thrombocytopenia", text, lab.ref) for lab, _q in plt]


def _renal(found: Findings, ctx: Context, params: SleClassificationParams, results: Any) -> None:
    sets = params.labs
    limit = params.proteinuria_g_per_day
    quantified = [(lab, protein_24h_g(ctx, lab), "g/24 h") for lab in results(sets.protein_24h)]
    quantified += [(lab, upcr_g_per_g(ctx, lab), "g/g creatinine") for lab in results(sets.upcr)]
    for lab, q, unit in quantified:
        if q is None:
            continue
        text = f"{lab.name} {q.comparator or ''}{q.value:g} {unit} {lab.on}"
        if q.above(limit):  # ACR: "> 0.5 g per day"
            _add(found, "proteinuria_acr", lab, text)
        if q.at_least(limit):  # SLICC: ">= 500 mg protein/24 h"
            _add(found, "proteinuria_slicc", lab, text)
    strips: dict[date, Lab] = {}
    for lab in results(sets.dipstick):
        grade = dipstick_grade(lab)
        if grade is not None and grade >= params.dipstick_min_grade:
            strips.setdefault(lab.day, lab)
    if len(strips) >= params.acr_count_occasions:
        days = ", ".join(sorted(d.isoformat() for d in strips))
        for lab in strips.values():
            text = f"urine protein >= {params.dipstick_min_grade}+ by dipstick on {days}"
            _add(found, "dipstick_acr", lab, text)
    for lab in results(sets.rbc_casts):
        if is_present(lab):
            _add(found, "rbc_casts", lab, f"red cell casts {lab.on}")


# ------------------------------------------------------------------------------------ evaluator


@dataclass(frozen=True)
class Diagnosis:
    specific: list[Resource]
    tentative: list[Resource]  # specific SLE codes with a provisional/differential/unconfirmed status
    unspecified: list[Resource]
    not_sle: list[Resource]


_TENTATIVE = frozenset({"provisional", "differential", "unconfirmed"})


def _verification(condition: Resource) -> str | None:
    status = condition.get("verificationStatus")
    for coding in coding_items(status):
        if coding.get("code"):
            return str(coding["code"])
    return None


def diagnosis_codes(record: PatientRecord, ctx: Context, params: SleClassificationParams) -> Diagnosis:
    sle = _conditions(record, ctx.vs(params.sle_codes), ctx.as_of)
    return Diagnosis(
        specific=[c for c in sle if _verification(c) not in _TENTATIVE],
        tentative=[c for c in sle if _verification(c) in _TENTATIVE],
        unspecified=_conditions(record, ctx.vs(params.unspecified_lupus), ctx.as_of),
        not_sle=_conditions(record, ctx.vs(params.not_sle), ctx.as_of),
    )


def _summary(title: str, items: dict[str, list[Finding]], total: int) -> str:
    if not items:
        return f"{title}: no item evidenced (of {total})"
    shown = "; ".join(f"{label} ({hits[0].text})" for label, hits in items.items())
    return f"{title} {len(items)} of {total}: {shown}"


@evaluator("sle_classification", SleClassificationParams)
def sle_classification(
    record: PatientRecord, ctx: Context, params: SleClassificationParams
) -> CriterionResult:
    """SLE code plus ACR-1997 (>= 4 of 11) or SLICC-2012 (>= 4 of 17, >= 1 clinical + 1 immunologic) items."""
    dx = diagnosis_codes(record, ctx, params)
    lupus = dx.specific + dx.tentative + dx.unspecified
    if not lupus:
        if dx.not_sle:
            names = ", ".join(sorted({_condition_text(c, ctx.vs(params.not_sle)) for c in dx.not_sle}))
            return result(
                Outcome.FAIL,
                f"Only drug-induced or cutaneous-only lupus is coded ({names}); these are not SLE.",
                [ref(c) for c in dx.not_sle], diagnosis="not sle",
            )
        return result(Outcome.FAIL, "No systemic lupus erythematosus diagnosis on record.", diagnosis="none")

    findings: Findings = defaultdict(list)
    for source in (coded_findings(record, ctx, params.manifestations), lab_findings(record, ctx, params)):
        for feature, hits in source.items():
            findings[feature].extend(hits)
    if findings.get("hemolytic_anemia"):
        findings.pop("direct_coombs", None)

    acr = met_items(ACR_1997, findings)
    clinical = met_items(SLICC_CLINICAL, findings)
    immunologic = met_items(SLICC_IMMUNOLOGIC, findings)
    slicc = {**clinical, **immunologic}
    acr_met = len(acr) >= params.acr_min_items
    slicc_met = len(slicc) >= params.slicc_min_items and bool(clinical) and bool(immunologic)
    standalone = _standalone_nephritis(record, ctx, params, findings)
    if standalone and params.slicc_standalone_nephritis:
        slicc_met = True

    kind = "sle" if dx.specific else ("provisional sle" if dx.tentative else "unspecified lupus")
    dx_conditions = dx.specific or dx.tentative or dx.unspecified
    dx_vs = ctx.vs(params.unspecified_lupus if kind == "unspecified lupus" else params.sle_codes)
    diagnosis_text = "; ".join(sorted({_condition_text(c, dx_vs) for c in dx_conditions}))
    # Sorted, so that the evidence does not depend on the order the source delivered the resources in.
    evidence = sorted({ref(c) for c in dx_conditions})
    evidence += sorted({f.ref for hits in (*acr.values(), *slicc.values()) for f in hits} - set(evidence))
    details: dict[str, Any] = {
        "diagnosis": kind,
        "acr_items": list(acr), "slicc_items": list(slicc),
        "acr_count": len(acr), "slicc_count": len(slicc),
        "slicc_clinical": len(clinical), "slicc_immunologic": len(immunologic),
        "acr_met": acr_met, "slicc_met": slicc_met,
    }
    summary = (
        f"{_summary('ACR-1997', acr, len(ACR_1997))}. "
        f"{_summary('SLICC-2012', slicc, len(SLICC_CLINICAL) + len(SLICC_IMMUNOLOGIC))}"
        f"{f' ({len(clinical)} clinical, {len(immunologic)} immunologic)' if slicc else ''}."
    )
    if standalone and not params.slicc_standalone_nephritis:
        summary += f" Classified lupus nephritis with ANA/anti-dsDNA ({standalone}) is not counted alone."
    met = acr_met or slicc_met
    rules = " and ".join(r for r, ok in (("ACR-1997", acr_met), ("SLICC-2012", slicc_met)) if ok)

    if kind == "sle" and met:
        reason = f"SLE on record ({diagnosis_text}); {rules} met. {summary}"
        return result(Outcome.PASS, reason, evidence, **details)
    if kind == "unspecified lupus" and met and params.unspecified_lupus_can_pass and not dx.not_sle:
        reason = (
            f"Lupus coded without subtype ({diagnosis_text}; flagged: confirm systemic disease); "
            f"{rules} classification met. {summary}"
        )
        return result(Outcome.PASS, reason, evidence, **details)

    return result(
        Outcome.UNKNOWN, f"{_diagnosis_caveat(kind, diagnosis_text, dx, met, rules)} {summary}",
        evidence, next_step=_next_step(kind, met, params), **details,
    )


def _diagnosis_caveat(kind: str, diagnosis_text: str, dx: Diagnosis, met: bool, rules: str) -> str:
    met_text = f"; {rules} met" if met else ""
    if kind == "provisional sle":
        return f"SLE is coded only as provisional/differential ({diagnosis_text}){met_text}."
    if kind == "unspecified lupus":
        others = ", ".join(sorted({_condition_text(c) for c in dx.not_sle}))
        alongside = f", alongside {others}" if others else ""
        return f"Lupus is coded without subtype ({diagnosis_text}{alongside}){met_text}."
    return f"SLE on record ({diagnosis_text}) but too few classification items are evidenced in coded data."


def _next_step(kind: str, met: bool, params: SleClassificationParams) -> str:
    if kind != "sle" and met:
        return "Confirm with the rheumatologist that the lupus is systemic (not cutaneous or drug-induced)."
    need = f"{params.acr_min_items} ACR-1997 or {params.slicc_min_items} SLICC-2012 items"
    return f"Confirm from the rheumatology notes that they meet {need} (clinical items are rarely coded)."


def _standalone_nephritis(
    record: PatientRecord, ctx: Context, params: SleClassificationParams, findings: Findings
) -> str | None:
    """Text of the SLICC stand-alone evidence (classified lupus nephritis + ANA or anti-dsDNA), if any."""
    biopsy = _conditions(record, ctx.vs(params.biopsy_proven_nephritis), ctx.as_of)
    serology = findings.get("ana", []) + findings.get("anti_dsdna", [])
    if biopsy and serology:
        return f"{_condition_text(biopsy[0])}; {serology[0].text}"
    return None
