"""E10 (active hepatitis B, hepatitis C, HIV or tuberculosis) and E11 (any active infection).

E10 looks at diagnoses and at the tests that confirm each disease (criteria-codes.md E10): a positive
screening test that cannot tell past from present infection (isolated anti-HBc, HCV antibody, a
positive interferon-gamma release assay) is unknown, with the confirmatory test that would settle it.
E11 looks at infection diagnoses still open on the screening date; an acute infection left open for
months is more likely a problem-list entry nobody closed than an infection, so it is unknown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from fhirscreen.criteria._labs import coded_observations, raw_breach, report_impossible, result_on
from fhirscreen.criteria._medications import Exposure, exposures, reason_concepts
from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, ValueSetRef, evaluator, result
from fhirscreen.fhir.codes import ValueSet, coding_items, concept_label
from fhirscreen.fhir.dates import days_before, months_before
from fhirscreen.fhir.resources import (
    Resource,
    alive_until,
    clinical_status,
    condition_span,
    is_active_on,
    observation_day,
    ref,
    suspected,
    tentative,
    unstated_status,
)
from fhirscreen.fhir.values import Polarity, polarity, quantity_of
from fhirscreen.record import PatientRecord

# ----------------------------------------------------------------------------------------- shared


def _conditions(record: PatientRecord, vs: ValueSet, as_of: date) -> list[tuple[Resource, str]]:
    """Conditions of a value set recorded by the screening date (later ones are ignored), with labels."""
    found = []
    for cond in record.of_type("Condition"):
        label = vs.match(cond.get("code"))
        if label is None:
            continue
        start = condition_span(cond).start
        if start is not None and start > as_of:
            continue
        found.append((cond, label))
    # Onset then id: findings are listed in the same order whatever order the source delivered them in.
    found.sort(key=lambda f: (condition_span(f[0]).start or date.min, ref(f[0])))
    return found


def _since(cond: Resource) -> str:
    start = condition_span(cond).start
    return f" since {start.isoformat()}" if start else " (no onset date)"


@dataclass(frozen=True)
class LabResult:
    obs: Resource
    day: date
    verdict: Polarity
    label: str

    def describe(self) -> str:
        return f"{self.label} {self.verdict} {result_on(self.obs, self.day.isoformat())} ({ref(self.obs)})"


# How labs write a viral load below detection ("Undetectable", "TND", "<LLOQ" is *detected* below the
# quantification limit and stays positive).
_UNDETECTABLE = re.compile(
    r"\bundetectable\b|\btnd\b|target\s+not\s+detected|\bbdl\b|below\s+(the\s+)?(lower\s+)?"
    r"(limit\s+of\s+)?detection|<\s*(lod|llod)\b|no\s+(virus|viral\s+(rna|dna))\s+detected",
    re.IGNORECASE,
)


def _value_texts(obs: Resource) -> list[str]:
    texts = [str(obs.get("valueString") or "")]
    concept = obs.get("valueCodeableConcept")
    if isinstance(concept, dict):
        texts.append(str(concept.get("text") or ""))
        texts += [str(c.get("display") or "") for c in coding_items(concept)]
    return [t for t in texts if t]


def _viral_load_verdict(obs: Resource) -> Polarity | None:
    """A viral load with no stated polarity: a number is detected, a "<x" bound is not detected
    ("<20 IU/mL", "<1.30 log IU/mL"), and so are "Undetectable", "TND", "below detection"."""
    if any(_UNDETECTABLE.search(t) for t in _value_texts(obs)):
        return "negative"
    q = quantity_of(obs)
    if q is None:
        return None
    if q.comparator in ("<", "<="):
        return "negative"
    return "positive" if q.value > 0 else "negative"


def _lab_results(
    record: PatientRecord, ctx: Context, vs: ValueSet, as_of: date, *, viral_load: bool = False
) -> list[LabResult]:
    """Dated results of a test group up to the screening date, oldest first; unreadable values dropped."""
    out = []
    for obs, label, day, verdict in _readable_results(record, ctx, vs, viral_load):
        if day is not None and day <= as_of:
            out.append(LabResult(obs, day, verdict, label))
    # On one day, a positive outranks a negative: the later sort position decides "latest". Then the
    # reference and label, so that the result named does not depend on input order.
    order = {"negative": 0, "indeterminate": 1, "positive": 2}
    return sorted(out, key=lambda r: (r.day, order[r.verdict], ref(r.obs), r.label))


def _undated_positives(
    record: PatientRecord, ctx: Context, vs: ValueSet, *, viral_load: bool = False
) -> list[tuple[str, str]]:
    """('HIV-1 Ab positive, result has no date (Observation/x)', 'Observation/x') for each positive result
    of a test group with no effective[x] or issued: it cannot be placed in a look-back or against other
    results, but it is on record."""
    return [
        (f"{label} positive, result has no date ({ref(obs)})", ref(obs))
        for obs, label, day, verdict in _readable_results(record, ctx, vs, viral_load)
        if day is None and verdict == "positive"
    ]


def _readable_results(
    record: PatientRecord, ctx: Context, vs: ValueSet, viral_load: bool
) -> Iterator[tuple[Resource, str, date | None, Polarity]]:
    """(observation, label, day or None, verdict) of each result of a test group whose value can be read.

    A number that cannot be real (a negative viral load or antibody signal: the value set's bounds) is an
    entry error: a finding, and no result (it would read "not detected").
    """
    bounds = vs.plausible
    for obs in coded_observations(record, vs):  # a result held in Observation.component counts too
        label = vs.match(obs.get("code"))
        if label is None:
            continue
        impossible = raw_breach(obs, bounds) if bounds is not None and not bounds.unit else None
        if impossible is not None:
            report_impossible(ctx, ref(obs), f"{label} {impossible[0]}", impossible[1])
            continue
        if viral_load:
            verdict = (
                "negative" if any(_UNDETECTABLE.search(t) for t in _value_texts(obs))
                else polarity(obs) or _viral_load_verdict(obs)
            )
        else:
            verdict = polarity(obs)
        if verdict is not None:
            yield obs, label, observation_day(obs), verdict


def _undated_confirmatory(
    findings: Findings, disease: str, undated: list[tuple[str, str]], repeat: str
) -> None:
    """A positive confirmatory result without a date may be current: a question (HBsAg, HBV DNA, HCV RNA)."""
    for text, cited in undated:
        findings.unknown(
            f"{disease}: {text}, so it cannot be placed in the look-back",
            f"Confirm the date of the result, or repeat {repeat}.", cited,
        )


@dataclass
class Findings:
    """What one disease (or the whole criterion) contributes: exclusions, open questions, notes.

    Evidence is kept per kind so that a result cites only the resources behind its own outcome.
    """

    fails: list[str] = field(default_factory=list)
    unknowns: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fail_refs: list[str] = field(default_factory=list)
    unknown_refs: list[str] = field(default_factory=list)
    note_refs: list[str] = field(default_factory=list)

    def fail(self, text: str, *refs: str) -> None:
        self.fails.append(text)
        self.fail_refs.extend(refs)

    def unknown(self, text: str, next_step: str, *refs: str) -> None:
        self.unknowns.append(text)
        self.next_steps.append(next_step)
        self.unknown_refs.extend(refs)

    def note(self, text: str, *refs: str) -> None:
        self.notes.append(text)
        self.note_refs.extend(refs)

    def merge(self, other: Findings) -> None:
        for name in ("fails", "unknowns", "next_steps", "notes", "fail_refs", "unknown_refs", "note_refs"):
            getattr(self, name).extend(getattr(other, name))

    def outcome(self, fail_prefix: str, unknown_prefix: str, pass_reason: str) -> CriterionResult:
        if self.fails:
            return result(Outcome.FAIL, fail_prefix + "; ".join(self.fails) + ".", self.fail_refs)
        if self.unknowns:
            return result(
                Outcome.UNKNOWN, unknown_prefix + "; ".join(self.unknowns) + ".", self.unknown_refs,
                next_step=" ".join(dict.fromkeys(self.next_steps)),
            )
        return result(Outcome.PASS, pass_reason, self.note_refs)


def _windowed_confirmatory(
    findings: Findings, disease: str, results: list[LabResult], window_start: date, repeat: str
) -> None:
    """The latest result within the look-back decides; an older positive alone is an open question."""
    recent = [r for r in results if r.day >= window_start]
    if recent:
        latest = recent[-1]
        if latest.verdict == "positive":
            findings.fail(f"{disease}: {latest.describe()}", ref(latest.obs))
        elif latest.verdict == "indeterminate":
            findings.unknown(f"{disease}: {latest.describe()}", f"Repeat {repeat}.", ref(latest.obs))
        else:
            findings.note(f"{latest.label} negative on {latest.day.isoformat()}", ref(latest.obs))
        return
    if results and results[-1].verdict == "positive":
        old = results[-1]
        findings.unknown(
            f"{disease}: {old.describe()}, before the {window_start.isoformat()} look-back, not repeated",
            f"Repeat {repeat} to tell current from past infection.",
            ref(old.obs),
        )


# ------------------------------------------------------------------------------------------- E10


class ChronicInfectionParams(Params):
    hbv_conditions: ValueSetRef
    hcv_conditions: ValueSetRef
    hiv_conditions: ValueSetRef
    tb_conditions: ValueSetRef
    latent_tb_conditions: ValueSetRef  # latent TB / TB history: explain a positive IGRA, never exclude
    not_active_conditions: ValueSetRef  # immunity, exposure, screening: mentioned, never exclude
    hbsag_tests: ValueSetRef
    hbv_dna_tests: ValueSetRef
    anti_hbc_tests: ValueSetRef
    anti_hbs_tests: ValueSetRef
    hcv_rna_tests: ValueSetRef
    hcv_antibody_tests: ValueSetRef
    hiv_antibody_antigen_tests: ValueSetRef
    hiv_rna_tests: ValueSetRef
    igra_tests: ValueSetRef
    # HBV/HCV results older than this do not show *current* infection (acute HBV clears, HCV is cured).
    lab_lookback_months: int = 24
    # Appendix A #20: a positive IGRA cannot separate latent from active TB; unknown unless switched.
    igra_positive_is_fail: bool = False
    # Antiretroviral therapy: with it, an undetectable HIV RNA after a reactive screen is treated HIV;
    # without it (or a diagnosis), the undetectable RNA may instead show the screen was a false positive.
    antiretrovirals: ValueSetRef | None = None
    art_prophylaxis_reasons: ValueSetRef | None = None  # PrEP/PEP: an antiretroviral that is not therapy
    # ... or PrEP/PEP written in the order's dosage instruction or note (``_prophylaxis_said``).
    art_prophylaxis_instructions: ValueSetRef | None = None


def _active_condition_findings(
    findings: Findings,
    disease: str,
    conds: Iterable[tuple[Resource, str]],
    as_of: date,
    *,
    lifelong: bool = False,
) -> None:
    for cond, label in conds:
        if tentative(cond) and (is_active_on(cond, as_of) or lifelong):
            findings.unknown(
                f"{disease}: {suspected(cond, label)}{_since(cond)}",
                f"Confirm or rule out the suspected {disease} (the diagnosis is not confirmed).", ref(cond),
            )
        elif is_active_on(cond, as_of):
            findings.fail(f"{disease}: {label}{_since(cond)} ({ref(cond)}{unstated_status(cond)})", ref(cond))
        elif lifelong:
            # HIV is not cured; a "resolved" HIV entry is a record error, not a cure (criteria-codes.md E10).
            status = clinical_status(cond) or "ended"
            findings.fail(
                f"{disease}: {label} ({ref(cond)}), recorded as {status}, but HIV infection is lifelong",
                ref(cond),
            )
        else:
            findings.note(f"{label} is history, not active ({ref(cond)})", ref(cond))


def _hepatitis_b(record: PatientRecord, ctx: Context, p: ChronicInfectionParams, start: date) -> Findings:
    f = Findings()
    as_of = alive_until(record.patient, ctx.as_of)
    _active_condition_findings(f, "hepatitis B", _conditions(record, ctx.vs(p.hbv_conditions), as_of), as_of)
    hbsag = _lab_results(record, ctx, ctx.vs(p.hbsag_tests), as_of)
    dna = _lab_results(record, ctx, ctx.vs(p.hbv_dna_tests), as_of, viral_load=True)
    _windowed_confirmatory(f, "hepatitis B", hbsag, start, "HBsAg")
    _windowed_confirmatory(f, "hepatitis B", dna, start, "HBV DNA")
    _undated_confirmatory(f, "hepatitis B", _undated_positives(record, ctx, ctx.vs(p.hbsag_tests)), "HBsAg")
    _undated_confirmatory(
        f, "hepatitis B", _undated_positives(record, ctx, ctx.vs(p.hbv_dna_tests), viral_load=True), "HBV DNA"
    )
    anti_hbc = _lab_results(record, ctx, ctx.vs(p.anti_hbc_tests), as_of)
    if f.fails or not anti_hbc or anti_hbc[-1].verdict != "positive":
        return f
    core = anti_hbc[-1]
    anti_hbs = _lab_results(record, ctx, ctx.vs(p.anti_hbs_tests), as_of)
    dna_negative = [r for r in dna if r.day >= start and r.verdict == "negative"]
    if anti_hbs and anti_hbs[-1].verdict == "positive":
        f.note(f"anti-HBc and anti-HBs positive: resolved hepatitis B ({ref(core.obs)})", ref(core.obs))
    elif dna_negative and dna[-1].verdict == "negative":
        f.note(f"anti-HBc positive with HBV DNA not detected ({ref(core.obs)})", ref(core.obs))
    else:
        # Appendix A #21: isolated anti-HBc is past or occult infection; HBV DNA tells which.
        f.unknown(
            f"hepatitis B: isolated {core.describe()} (no anti-HBs, no HBV DNA)",
            "Order HBV DNA (and HBsAg) to rule out occult or active hepatitis B.",
            ref(core.obs),
        )
    return f


def _hepatitis_c(record: PatientRecord, ctx: Context, p: ChronicInfectionParams, start: date) -> Findings:
    f = Findings()
    as_of = alive_until(record.patient, ctx.as_of)
    _active_condition_findings(f, "hepatitis C", _conditions(record, ctx.vs(p.hcv_conditions), as_of), as_of)
    rna = _lab_results(record, ctx, ctx.vs(p.hcv_rna_tests), as_of, viral_load=True)
    _windowed_confirmatory(f, "hepatitis C", rna, start, "HCV RNA")
    _undated_confirmatory(
        f, "hepatitis C", _undated_positives(record, ctx, ctx.vs(p.hcv_rna_tests), viral_load=True), "HCV RNA"
    )
    antibody = _lab_results(record, ctx, ctx.vs(p.hcv_antibody_tests), as_of)
    if f.fails or f.unknowns or not antibody or antibody[-1].verdict != "positive":
        return f
    ab = antibody[-1]
    later_rna = [r for r in rna if r.day >= ab.day]
    if later_rna and later_rna[-1].verdict == "negative":
        cleared = later_rna[-1].day.isoformat()
        f.note(f"HCV antibody positive, RNA not detected on {cleared}: resolved", ref(ab.obs))
    else:
        f.unknown(
            f"hepatitis C: {ab.describe()} without an HCV RNA result since",
            "Order HCV RNA: antibody alone cannot tell current from cleared hepatitis C.",
            ref(ab.obs),
        )
    return f


def _antiretroviral_therapy(
    record: PatientRecord, ctx: Context, p: ChronicInfectionParams, as_of: date
) -> tuple[str, str] | None:
    """(drug, reference) of an antiretroviral taken at any time up to the screening date that is not
    stated to be pre- or post-exposure prophylaxis, or None."""
    if p.antiretrovirals is None:
        return None
    drugs = ctx.vs(p.antiretrovirals)
    reasons = ctx.vs(p.art_prophylaxis_reasons) if p.art_prophylaxis_reasons else None
    instructions = ctx.vs(p.art_prophylaxis_instructions) if p.art_prophylaxis_instructions else None
    found = []
    for exp in exposures(record):
        name = exp.matches(drugs) if exp.seen_by(as_of) else None
        if name is None or _prophylaxis(record, exp, reasons, instructions) is not None:
            continue
        found.append((exp.start or date.min, exp.ref, name))
    if not found:
        return None
    _start, reference, name = min(found)
    return name, reference


def _hiv(record: PatientRecord, ctx: Context, p: ChronicInfectionParams) -> Findings:
    """HIV from a diagnosis (lifelong), a detectable viral load, or a reactive antigen/antibody result.

    A reactive screen is HIV unless what followed it says otherwise (criteria-codes.md E10, the CDC
    laboratory algorithm): a negative supplemental or repeat assay and HIV-1 RNA not detected (NAT) is a
    false-positive screen; RNA not detected after a still-reactive screen is either treated HIV or a false
    positive, which a diagnosis or antiretroviral therapy on record settles as HIV.
    """
    f = Findings()
    as_of = alive_until(record.patient, ctx.as_of)
    conds = _conditions(record, ctx.vs(p.hiv_conditions), as_of)
    _active_condition_findings(f, "HIV", conds, as_of, lifelong=True)
    # HIV is lifelong, so results count at any date; an undetectable viral load on treatment is still HIV.
    rna = _lab_results(record, ctx, ctx.vs(p.hiv_rna_tests), as_of, viral_load=True)
    for r in rna:
        if r.verdict == "positive":
            f.fail(f"HIV: {r.describe()}", ref(r.obs))
    serology = _lab_results(record, ctx, ctx.vs(p.hiv_antibody_antigen_tests), as_of)
    undated = _undated_positives(record, ctx, ctx.vs(p.hiv_rna_tests), viral_load=True)
    undated += _undated_positives(record, ctx, ctx.vs(p.hiv_antibody_antigen_tests))
    for text, cited in undated:
        # Results count at any date, so a positive without one is HIV as a dated one is, unless dated
        # results not detected may be what followed it (a false-positive screen): then a question.
        if any(r.verdict == "negative" for r in (*rna, *serology)):
            f.unknown(
                f"HIV: {text}, and results not detected on record that it cannot be placed against",
                "Confirm the date of the result, or confirm with an HIV-1/2 differentiation assay.", cited,
            )
        else:
            f.fail(f"HIV: {text}", cited)
    if not serology:
        return f
    last = serology[-1]
    earlier_positive = [r for r in serology if r.verdict == "positive"]
    if not earlier_positive or f.fails:  # no reactive screen to weigh, or HIV already shown
        if last.verdict == "positive":
            f.fail(f"HIV: {last.describe()}", ref(last.obs))
        elif last.verdict == "indeterminate" and not f.fails:
            f.unknown(f"HIV: {last.describe()}", "Repeat HIV testing (differentiation assay).", ref(last.obs))
        return f
    reactive = earlier_positive[-1]
    # HIV-1 RNA on or after the reactive screen, all of it not detected (a detected one failed above).
    nat = [r for r in rna if r.day >= reactive.day]
    art = _antiretroviral_therapy(record, ctx, p, as_of)
    if last.verdict == "positive":
        if nat and art is None:
            f.unknown(
                f"HIV: {last.describe()}, then {nat[-1].describe()}, with no HIV diagnosis or antiretroviral "
                "therapy on record (a false-positive screen, or treated HIV?)",
                "Confirm with an HIV-1/2 differentiation assay and ask about antiretroviral therapy.",
                ref(last.obs), ref(nat[-1].obs),
            )
        elif art is not None:
            drug, drug_ref = art
            therapy = f"antiretroviral therapy ({drug}, {drug_ref})"
            f.fail(f"HIV: {last.describe()}, {therapy}", ref(last.obs), drug_ref)
        else:
            f.fail(f"HIV: {last.describe()}", ref(last.obs))
    elif last.verdict == "indeterminate":
        f.unknown(f"HIV: {last.describe()}", "Repeat HIV testing (differentiation assay).", ref(last.obs))
    elif nat and art is None:
        # criteria-codes.md E10: "a reactive screen followed by negative confirmation (supplemental/NAT)".
        f.note(
            f"HIV: {reactive.describe()} not confirmed: {last.describe()}, {nat[-1].describe()}",
            ref(reactive.obs), ref(last.obs), ref(nat[-1].obs),
        )
    else:
        f.unknown(
            f"HIV: {reactive.describe()} but {last.describe()}",
            "Discordant HIV results: confirm with an HIV-1/2 differentiation assay or HIV RNA.",
            ref(reactive.obs), ref(last.obs),
        )
    return f


def _tuberculosis(record: PatientRecord, ctx: Context, p: ChronicInfectionParams) -> Findings:
    f = Findings()
    as_of = alive_until(record.patient, ctx.as_of)
    _active_condition_findings(f, "tuberculosis", _conditions(record, ctx.vs(p.tb_conditions), as_of), as_of)
    latent = _conditions(record, ctx.vs(p.latent_tb_conditions), as_of)
    for cond, label in latent:
        f.note(f"{label}, not active tuberculosis ({ref(cond)})", ref(cond))
    igra = _lab_results(record, ctx, ctx.vs(p.igra_tests), as_of)
    if f.fails or not igra:
        return f
    last = igra[-1]
    if last.verdict == "positive":
        if p.igra_positive_is_fail:
            f.fail(f"tuberculosis: {last.describe()} (positive IGRA counted as active TB)", ref(last.obs))
        elif latent:
            f.note(f"{last.describe()}, explained by the latent TB diagnosis", ref(last.obs))
        else:
            f.unknown(
                f"tuberculosis: {last.describe()} with no TB diagnosis (latent or active TB?)",
                "Investigator to assess for active TB (symptoms, chest X-ray; sputum culture/NAAT).",
                ref(last.obs),
            )
    elif last.verdict == "indeterminate":
        f.unknown(f"tuberculosis: {last.describe()}", "Repeat the IGRA.", ref(last.obs))
    return f


@evaluator("chronic_infection", ChronicInfectionParams)
def chronic_infection(record: PatientRecord, ctx: Context, params: ChronicInfectionParams) -> CriterionResult:
    """Active hepatitis B/C, HIV or tuberculosis from diagnoses and confirmatory tests."""
    start = months_before(alive_until(record.patient, ctx.as_of), params.lab_lookback_months)
    parts = [
        _hepatitis_b(record, ctx, params, start),
        _hepatitis_c(record, ctx, params, start),
        _hiv(record, ctx, params),
        _tuberculosis(record, ctx, params),
    ]
    f = Findings()
    for part in parts:
        f.merge(part)
    alive = alive_until(record.patient, ctx.as_of)
    for cond, label in _conditions(record, ctx.vs(params.not_active_conditions), alive):
        f.note(f"{label} does not mean active infection ({ref(cond)})", ref(cond))
    reason = "No active hepatitis B, hepatitis C, HIV or tuberculosis on record"
    reason += f" ({'; '.join(f.notes)})." if f.notes else "."
    return f.outcome("Active infection: ", "Cannot rule out active infection: ", reason)


# ------------------------------------------------------------------------------------------- E11


class ActiveInfectionParams(Params):
    infections: ValueSetRef
    # An acute infection still open this long after onset is treated as an entry nobody closed.
    stale_after_days: int = 90
    # Systemic antibacterials, antivirals and antifungals: on one at screening is unknown (is it
    # treating an infection, or prophylaxis?), never pass.
    anti_infectives: ValueSetRef | None = None
    local_forms: ValueSetRef | None = None  # topical/ophthalmic/otic use is not systemic treatment
    # An order without a stated end may still be running this long after it started.
    unstated_course_days: int = 14
    # An anti-infective whose stated reason is one of these prevents an infection, not treats one.
    prophylaxis_reasons: ValueSetRef | None = None
    # ... and so does one whose dosage instruction or note says so in words these patterns find
    # ("PJP prophylaxis", "to prevent infection"), not negated and not beside treatment wording.
    prophylaxis_instructions: ValueSetRef | None = None
    # Words that point at treating a current infection ("x 7 days", "full dose", "then ...", "to prevent
    # spread"): said anywhere in an order's texts, its prophylaxis wording is not read (the question stays).
    # An infection of ``infections`` named after "for"/"of"/"due to" ("for shingles") does the same, and
    # so does a coded reason that is one of ``infections``.
    treatment_instructions: ValueSetRef | None = None


def _prophylaxis_reason(record: PatientRecord, exp: Exposure, prophylaxis: ValueSet) -> str | None:
    """The stated reason that makes an anti-infective prevention (its text as written), or None.

    The infection prevented may be named beside it ("PJP prophylaxis", "HSV suppression"): still prevention.
    """
    reasons, _unresolved = reason_concepts(record, exp)
    for concept in reasons:
        label = prophylaxis.match(concept)
        if label is not None:
            text = concept.get("text")
            return text if isinstance(text, str) and text.strip() else label
    return None


def _reason_may_be_infection(
    record: PatientRecord, exp: Exposure, infections: ValueSet, prophylaxis: ValueSet | None
) -> bool:
    """Whether the order's reason is an infection: a reasonCode, a referenced Condition or the display of
    a reference the record does not hold, of ``infections`` and not itself saying prophylaxis. Then no free
    text can make the order prophylaxis. A reference to a Condition the record does not hold is read as
    if it were not there (``reason_concepts``): an active infection would be in the record as a Condition,
    which E11 reads on its own."""
    concepts, _unresolved = reason_concepts(record, exp)
    return any(
        infections.match(c) is not None and (prophylaxis is None or prophylaxis.match(c) is None)
        for c in concepts
    )


@dataclass(frozen=True)
class _Reading:
    """What an order's texts are read with: prophylaxis wording, and what takes it back."""

    instructions: ValueSet
    treatment: ValueSet | None = None  # treatment of a current infection said in words
    infections: ValueSet | None = None  # an infection named ("for shingles", "PJP ppx, pneumonia")


def _prophylaxis(
    record: PatientRecord,
    exp: Exposure,
    reasons: ValueSet | None,
    instructions: ValueSet | None,
    *,
    infections: ValueSet | None = None,
    treatment: ValueSet | None = None,
) -> str | None:
    """Why an anti-infective is prevention, not treatment, for a reason ("PJP prophylaxis", "so its dosage
    instruction says"), or None: its stated reason first, then the words of its dosage and notes. With
    ``infections``, a coded reason that is an infection wins over the words (None)."""
    why = _prophylaxis_reason(record, exp, reasons) if reasons is not None else None
    if why is not None or instructions is None:
        return why
    if infections is not None and _reason_may_be_infection(record, exp, infections, reasons):
        return None
    return _prophylaxis_said(record, exp, _Reading(instructions, treatment, infections))


# Free text said around a prophylaxis phrase that takes it back: a negation just before it ("not for PJP
# prophylaxis", "no longer prophylactic", "non-prophylactic", "switched from prophylaxis") or an end just
# after it ("prophylaxis stopped"). Only the words of the same clause count.
_NEGATED_BEFORE = re.compile(
    r"\b(not|no|non|never|without|instead\s+of|rather\s+than|no\s+longer|stop(?:s|ped)?|discontinu\w*|"
    r"d/c|ceased?|changed?\s+from|switch(?:ed)?\s+from|off|completed|finished|ended)\b",
    re.IGNORECASE,
)
_NEGATED_AFTER = re.compile(
    r"^\W*(?:was\s+|is\s+|has\s+been\s+)?(stopped|discontinued|ceased|ended|completed|finished|held|"
    r"not\s+indicated|declined|no)\b",
    re.IGNORECASE,
)
# Treatment said anywhere in the text ("to treat", "treatment dose", "therapeutic", "active infection"):
# beside prophylaxis wording, the text is not unambiguous, and the question stays. "Prophylactic
# treatment", "suppressive therapy" and "treatment of latent TB" are prevention, not treatment.
_TREATMENT = re.compile(
    r"(?<!prophylactic )(?<!preventive )(?<!preventative )(?<!suppressive )"
    r"\b(treat(?:s|ed|ing|ment)?|therapeutic|curative)\b(?!\s+(?:of|for)\s+(?:latent|ltbi))"
    r"|\bactive\s+(?:infection|disease|tb|tuberculosis)\b",
    re.IGNORECASE,
)
_CLAUSES = re.compile(r"[.;\n]|\bbut\b", re.IGNORECASE)

# A sign of treatment is taken back only by a plain negation just before it ("not full dose", "not for
# pneumonia"), never by an end ("x 7 days completed": whether that infection has resolved is the question).
_NOT_BEFORE = re.compile(r"\b(not|no|non|never|without|instead\s+of|rather\s+than)\b", re.IGNORECASE)
# An infection named after these words is the one the order is for ("for shingles", "of zoster", "due to
# cellulitis"). The words between it and the next stop are tried against the E11 infection value set,
# whose own exclusions keep latent TB, exposure, history and prophylaxis out of it.
_NAMED_AFTER = re.compile(
    r"\b(?:(?P<prep>for|of)|due\s+to|secondary\s+to|because\s+of)\s+(?P<name>[^.,;:()\[\]/\n]+)",
    re.IGNORECASE,
)
_NAME_ENDS = re.compile(
    r"\b(?:then|to|while|until|after|before|since|and|or|with|on|at|in|per|now|x)\b|\d", re.IGNORECASE
)
# ... unless the infection is the one prevented: "for"/"of" governed by a prevention (or history,
# recurrence) word ("prevention of PJP pneumonia", "risk of infection", "recurrence of cellulitis"; not
# "prophylaxis due to cellulitis", a cause), written with one in
# its own words ("for herpes suppression", "for UTI prevention"), or named as recurrent ("suppressive
# therapy for recurrent genital herpes"). "Suppressive therapy for infected ..." is not prevention.
_PREVENTED_BY = re.compile(
    r"\b(prophyla\w*|ppx|prevent\w*|risk|histor\w*|hx|h/o|past|previous|prior|recurren\w*|exposure)\W*$",
    re.IGNORECASE,
)
_PREVENTED_NAME = re.compile(
    r"^\W*(recurrent|recurring|repeated|frequent)\b|\b(prophyla\w*|ppx|prevent\w*|suppress\w*)\b",
    re.IGNORECASE,
)


def _prophylaxis_said(record: PatientRecord, exp: Exposure, reading: _Reading) -> str | None:
    """ "so its dosage instruction says" when the dosage text, patient instruction, additional
    instruction or note of the record (or of the order it carries out) says prophylaxis in words
    ``reading.instructions`` finds, not taken back in its clause; None when none does, or when one of them
    points at treating an infection (then the text is not unambiguous): treatment wording, a sign of
    ``reading.treatment`` ("x 7 days", "full dose", "then ..."), or an infection named after "for"/"of"
    ("for shingles"). The text itself is not quoted: notes are free text."""
    said: str | None = None
    for owner, where, text in _instruction_texts(record, exp):
        clauses = _CLAUSES.split(" ".join(text.split()))
        if any(_said_in(clause, _TREATMENT) for clause in clauses) or _treatment_signs(clauses, reading):
            return None
        if said is None and any(_said_in(c, p) for c in clauses for p in reading.instructions.text_patterns):
            said = f"so its {where} says" if owner == exp.ref else f"so the {where} of {owner} says"
    return said


def _treatment_signs(clauses: list[str], reading: _Reading) -> bool:
    """Whether a clause says a sign of ``reading.treatment`` or names an infection of
    ``reading.infections`` after "for"/"of"/"due to", not negated just before."""
    signs = reading.treatment.text_patterns if reading.treatment is not None else []
    for clause in clauses:
        if any(_stated_in(clause, m) for p in signs for m in p.finditer(clause)):
            return True
        if reading.infections is None:
            continue
        if any(
            _stated_in(clause, m) and _names_infection(clause, m, reading.infections)
            for m in _NAMED_AFTER.finditer(clause)
        ):
            return True
        parts = _PARTS.split(clause)
        if any(_bare_infection(part, reading.instructions, reading.infections) for part in parts):
            return True
    return False


# An infection named on its own ("PJP prophylaxis, pneumonia", "Dx: cellulitis") is one too, unless
# its part of the text says prevention, recurrence or exposure, or starts with a negation.
_PARTS = re.compile(r"[,:()\[\]]|\s-\s")
_PREVENTED_PART = re.compile(
    r"\b(prophyla\w*|ppx|prevent\w*|suppress\w*|recurren\w*|recurring|(pre|post)[\s-]?exposure)\b"
    r"|^\W*(no|not|non|never|without|denies)\b",
    re.IGNORECASE,
)


def _bare_infection(part: str, instructions: ValueSet, infections: ValueSet) -> bool:
    """Whether a part of a clause names an infection without saying prophylaxis."""
    if not part.strip() or _PREVENTED_PART.search(part):
        return False
    if any(p.search(part) for p in instructions.text_patterns):
        return False
    return any(p.search(part) for p in infections.text_patterns)


def _stated_in(clause: str, m: re.Match[str]) -> bool:
    """A sign found in a clause is not negated in the three words before it."""
    before = " ".join(clause[: m.start()].split()[-3:])
    return not _NOT_BEFORE.search(before)


def _names_infection(clause: str, m: re.Match[str], infections: ValueSet) -> bool:
    """Whether the words after "for"/"of" (to the next stop) name an infection, not the one prevented."""
    name = m.group("name")
    end = _NAME_ENDS.search(name)
    name = " ".join((name[: end.start()] if end else name).split()[:6])
    if not name or _PREVENTED_NAME.search(name):
        return False
    if m.group("prep") and _PREVENTED_BY.search(clause[: m.start()]):
        return False
    return any(p.search(name) for p in infections.text_patterns)


def _said_in(clause: str, pattern: re.Pattern[str]) -> bool:
    """``pattern`` found in a clause and not taken back there (a negation in the four words before it,
    an end right after it)."""
    for m in pattern.finditer(clause):
        before = " ".join(clause[: m.start()].split()[-4:])
        after = clause[m.end():]
        if not _NEGATED_BEFORE.search(before) and not _NEGATED_AFTER.search(after):
            return True
    return False


_DOSAGE_TEXTS = ("text", "patientInstruction")


def _instruction_texts(record: PatientRecord, exp: Exposure) -> Iterator[tuple[str, str, str]]:
    """(the record's reference, "dosage instruction" or "note", text) of a medication record and of the
    orders it carries out (a fill, an administration, a statement based on an order)."""
    for reference in (exp.ref, *exp.links):
        resource = _find(record, reference)
        if resource is None:
            continue
        dosages = resource.get("dosageInstruction") or resource.get("dosage")
        for dosage in dosages if isinstance(dosages, list) else [dosages]:
            if not isinstance(dosage, dict):
                continue
            for key in _DOSAGE_TEXTS:
                if isinstance(dosage.get(key), str):
                    yield reference, "dosage instruction", dosage[key]
            for extra in dosage.get("additionalInstruction") or ():
                if isinstance(extra, dict):
                    label = concept_label(extra)
                    if label:
                        yield reference, "dosage instruction", label
        for note in resource.get("note") or ():
            if isinstance(note, dict) and isinstance(note.get("text"), str):
                yield reference, "note", note["text"]


def _find(record: PatientRecord, reference: str) -> Resource | None:
    rtype, _sep, rid = reference.partition("/")
    return next((r for r in record.of_type(rtype) if r.get("id") == rid), None)


def _on_anti_infective(
    record: PatientRecord, ctx: Context, params: ActiveInfectionParams, as_of: date
) -> Findings:
    f = Findings()
    if params.anti_infectives is None:
        return f
    drugs = ctx.vs(params.anti_infectives)
    local = ctx.vs(params.local_forms) if params.local_forms else None
    reasons = ctx.vs(params.prophylaxis_reasons) if params.prophylaxis_reasons else None
    instructions = ctx.vs(params.prophylaxis_instructions) if params.prophylaxis_instructions else None
    treatment = ctx.vs(params.treatment_instructions) if params.treatment_instructions else None
    infections = ctx.vs(params.infections)
    for exp in exposures(record):
        if not exp.seen_by(as_of) or exp.possible_last_day(as_of, params.unstated_course_days) != as_of:
            continue
        name = exp.matches(drugs)
        if name is None or (local is not None and exp.is_local(local)):
            continue
        why = _prophylaxis(record, exp, reasons, instructions, infections=infections, treatment=treatment)
        if why is not None:
            f.note(f"{name} ({exp.when()}, {exp.ref}) is prophylaxis ({why}), not treatment", exp.ref)
            continue
        f.unknown(
            f"on {name} at screening ({exp.when()}, {exp.ref}), which may be treating an infection "
            "(or be prophylaxis)",
            f"Ask what {name} is for: an infection being treated excludes until it has resolved.", exp.ref,
        )
    return f


# A name that doubts itself ("Suspected COVID-19", "Possible pneumonia") is a question, like a
# provisional verificationStatus (issue 8): the record does not say the infection is there.
_SUSPECTED_NAME = re.compile(r"\b(suspected|possible|probable|presumed|questionable)\b", re.IGNORECASE)


@evaluator("active_infection", ActiveInfectionParams)
def active_infection(record: PatientRecord, ctx: Context, params: ActiveInfectionParams) -> CriterionResult:
    """An infection diagnosis still active on the screening date (stale open entries are unknown)."""
    as_of = alive_until(record.patient, ctx.as_of)
    stale_before = days_before(as_of, params.stale_after_days)
    f = Findings()
    resolved: list[tuple[date, str, str]] = []
    for cond, label in _conditions(record, ctx.vs(params.infections), as_of):
        span = condition_span(cond)
        if not is_active_on(cond, as_of):
            ended = span.end or span.start
            if ended is not None:
                resolved.append((ended, label, ref(cond)))
            continue
        unstated = unstated_status(cond)
        if tentative(cond):
            f.unknown(
                f"{suspected(cond, label)}{_since(cond)}",
                f"Confirm or rule out the suspected {label}.", ref(cond),
            )
        elif _SUSPECTED_NAME.search(label):
            f.unknown(
                f"{label}{_since(cond)} ({ref(cond)}{unstated}): named as suspected, not confirmed",
                f"Confirm or rule out {label}.", ref(cond),
            )
        elif span.start is None:
            f.unknown(
                f"{label} is open with no onset date ({ref(cond)}{unstated})",
                f"Confirm whether {label} has resolved and update the problem list.", ref(cond),
            )
        elif span.start < stale_before:
            f.unknown(
                f"{label} has been open since {span.start.isoformat()}, over {params.stale_after_days} days "
                f"({ref(cond)}{unstated}): probably never closed",
                f"Confirm that {label} has resolved and close the entry.", ref(cond),
            )
        else:
            f.fail(f"{label}{_since(cond)} ({ref(cond)}{unstated})", ref(cond))
    f.merge(_on_anti_infective(record, ctx, params, as_of))
    pass_reason = "No active infection on record"
    if resolved:
        ended, label, last_ref = max(resolved)
        pass_reason += f" (latest: {label}, resolved by {ended.isoformat()})"
        f.note_refs.append(last_ref)
    pass_reason += "".join(f"; {note}" for note in f.notes) + "."
    return f.outcome("Active infection on the screening date: ", "Possibly active infection: ", pass_reason)
