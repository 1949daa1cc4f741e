"""I4: eGFR >= 30 mL/min/1.73 m2 in the screening period.

The latest eGFR within ``window_days`` decides (criteria-codes.md Appendix A #6: "screening period" is
undefined; 90 days by default). Without one, eGFR is computed from the latest serum creatinine in the
window with the race-free CKD-EPI 2021 equation, and the reason says so.

Results of one day that no stated time orders (the same time, or a date-only result beside a timed one)
are settled by value, never by input order or resource id (``_settle``): the lowest eGFR (highest
creatinine) is the one shown, and when they fall on both sides of the threshold the criterion is
unknown ("conflicting results") for a coordinator to settle.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

from pydantic import ConfigDict

from fhirscreen.criteria._labs import (
    Lab,
    breach_of,
    code_of,
    lab_key,
    labs,
    naming_impossible,
    possible,
    possibly_latest,
    report_impossible,
    report_unit,
    unit_key,
)
from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, ValueSetRef, evaluator, result
from fhirscreen.criteria.demographics import impossible_birth, report_impossible_birth
from fhirscreen.fhir.dates import age_in_years, days_before, parse_date
from fhirscreen.fhir.resources import items
from fhirscreen.fhir.values import Quantity, quantity_of
from fhirscreen.record import PatientRecord


class EgfrParams(Params):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    window_days: int = 90
    min_egfr: float = 30.0  # mL/min/1.73 m2, inclusive
    egfr: ValueSetRef = "egfr"
    creatinine: ValueSetRef = "serum_creatinine"
    # Several eGFRs on the latest day: CKD-EPI 2021 first (criteria-codes.md I4), then the rest.
    prefer: tuple[str, ...] = ("98979-8", "98980-6", "62238-1")
    # A birth date giving an older age cannot be used to compute eGFR (as I1's oldest_possible_years).
    oldest_possible_years: int = 125


# --------------------------------------------------------------------------------- CKD-EPI 2021


def ckd_epi_2021(creatinine_mg_dl: float, age_years: int, female: bool) -> float:
    """eGFR (mL/min/1.73 m2) by the race-free CKD-EPI 2021 creatinine equation.

    Inker LA, Eneanya ND, Coresh J, et al. New creatinine- and cystatin C-based equations to estimate
    GFR without race. N Engl J Med 2021;385:1737-49 (https://kidney.org/ckd-epi-creatinine-equation-2021):
    142 x min(Scr/k, 1)^a x max(Scr/k, 1)^-1.200 x 0.9938^age x 1.012 [female],
    k = 0.7 (F) / 0.9 (M), a = -0.241 (F) / -0.302 (M), Scr in mg/dL (IDMS-standardised).
    """
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine_mg_dl / kappa
    egfr: float = 142.0 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938**age_years
    return egfr * 1.012 if female else egfr


_MG_DL = frozenset({"mg/dl", "mg/100ml", "mg%"})
_UMOL_L = frozenset({"umol/l", "micromol/l", "umol/liter"})
_MMOL_L = frozenset({"mmol/l"})
UMOL_PER_MG_DL = 88.4  # creatinine: 1 mg/dL = 88.4 umol/L


def creatinine_mg_dl(ctx: Context, lab: Lab) -> Quantity | None:
    """Serum creatinine in mg/dL (umol/L / 88.4; mmol/L x 1000 / 88.4); unknown units are reported, and so
    is a value that cannot be real (the value set's bounds: 0 or less, beyond any ever recorded)."""
    q = _creatinine(ctx, lab)
    return q if q is not None and possible(ctx, lab, q, "serum creatinine") else None


def _creatinine(ctx: Context, lab: Lab) -> Quantity | None:
    q = quantity_of(lab.obs)
    if q is None:
        return None
    key = unit_key(q.unit)
    if key in _MG_DL:
        return q.scaled(1.0, "mg/dL")
    if key in _UMOL_L:
        return q.scaled(1 / UMOL_PER_MG_DL, "mg/dL")
    if key in _MMOL_L:
        return q.scaled(1000 / UMOL_PER_MG_DL, "mg/dL")
    report_unit(ctx, lab, "serum creatinine", q.unit)
    return None


def egfr_value(ctx: Context, lab: Lab) -> Quantity | None:
    """An eGFR in mL/min/1.73 m2. Any mL/min-based unit is accepted on eGFR codes, the code asserting
    the normalisation (Synthea's dialysis module writes plain "mL/min", criteria-codes.md section 1).
    A value that cannot be real (the value set's bounds: below 0, above 250) is reported, not used."""
    q = _egfr(ctx, lab)
    return q if q is not None and possible(ctx, lab, q, "eGFR") else None


def _egfr(ctx: Context | None, lab: Lab) -> Quantity | None:
    """The eGFR in mL/min/1.73 m2 whatever its value; an unknown unit is reported when ``ctx`` is given."""
    q = quantity_of(lab.obs)
    if q is None:
        return None
    # A unitless value (e.g. valueString ">60") takes the unit the eGFR code defines.
    # "mL/min/{1.73_m2}" and its spellings, UCUM's "mL/(min.1.73.m2)" too.
    if not q.unit or unit_key(q.unit).startswith(("ml/min", "ml/(min")):
        return q.scaled(1.0, "mL/min/1.73m2")
    if unit_key(q.unit).startswith(("ml/s", "ml/(s")):  # SI reporting (Nordic labs): 1 mL/s = 60 mL/min
        return q.scaled(60.0, "mL/min/1.73m2")
    if ctx is not None:
        report_unit(ctx, lab, "eGFR", q.unit)
    return None


# ------------------------------------------------------------------------------------- evaluator


@dataclass(frozen=True)
class Reading:
    lab: Lab
    egfr: Quantity
    text: str  # how the value was obtained, for the reason
    # Results that may be as recent as this one and read the other side of the threshold (_settle).
    conflict: tuple[Reading, ...] = ()


# Order of comparators from the lowest possible value to the highest, for "the lowest eGFR".
_LOW_FIRST = {"<": 0, "<=": 1, "": 2, ">=": 3, ">": 4}


def _settle(readings: list[Reading], threshold: float) -> Reading:
    """One reading from results that may be equally recent (``possibly_latest``): the same day, and no
    stated time makes one of them the later draw. Input order and resource ids must not choose.

    The lowest eGFR is the one shown (the worse kidney function; an undecidable bound such as "<60"
    counts at its bound, so a reading that cannot decide is not passed over for one that can). When
    the results fall on both sides of the threshold, the reading carries the others as ``conflict`` and
    I4 is unknown: the worse value alone would exclude a patient on a result that may be the one
    corrected or repeated (a lost patient), the better one would include a patient whose kidney
    function may be below the protocol's limit (I4 is a safety criterion). A coordinator settles which
    result stands.
    """
    ordered = sorted(
        readings, key=lambda r: (r.egfr.value, _LOW_FIRST.get(r.egfr.comparator or "", 2), lab_key(r.lab))
    )
    worst = ordered[0]
    sides = {r.egfr.at_least(threshold) for r in readings} - {None}
    if len(sides) > 1:
        return replace(worst, conflict=tuple(ordered[1:]))
    return worst


def _latest_egfr(record: PatientRecord, ctx: Context, params: EgfrParams, first: date) -> Reading | None:
    """The latest usable eGFR in the window; on the same day the preferred equation, then the later
    draw (a stated time), then ``_settle``."""
    usable = [(lab, q) for lab in labs(record, ctx.vs(params.egfr), first, ctx.as_of, ctx=ctx)
              if (q := egfr_value(ctx, lab)) is not None]
    if not usable:
        return None
    latest_day = usable[0][0].day

    def rank(item: tuple[Lab, Quantity]) -> int:
        codes = code_of(item[0].obs)
        return min((i for i, c in enumerate(params.prefer) if c in codes), default=len(params.prefer))

    same_day = [item for item in usable if item[0].day == latest_day]
    best = min(rank(item) for item in same_day)
    tied = possibly_latest([item for item in same_day if rank(item) == best], lambda item: item[0])
    readings = [
        Reading(lab, q, f"eGFR {_fmt(q)} mL/min/1.73 m2{_as_sent(lab)} {lab.on} ({lab.name})")
        for lab, q in tied
    ]
    return _settle(readings, params.min_egfr)


def _as_sent(lab: Lab) -> str:
    """" (0.9 mL/s/1.73m2 as reported)" for a result converted from SI units, so the chart's figure is
    recognisable; "" otherwise."""
    q = quantity_of(lab.obs)
    return f" ({q} as reported)" if q is not None and unit_key(q.unit).startswith(("ml/s", "ml/(s")) else ""


@dataclass(frozen=True)
class Computed:
    reading: Reading | None
    problem: str | None = None  # why creatinine could not be used


def _sex(record: PatientRecord) -> str | None:
    """male/female from Patient.gender, else the US Core birth-sex extension."""
    gender = record.patient.get("gender")
    if gender in ("male", "female"):
        return str(gender)
    for ext in items(record.patient.get("extension")):
        if isinstance(ext, dict) and str(ext.get("url", "")).endswith("us-core-birthsex"):
            return {"F": "female", "M": "male"}.get(str(ext.get("valueCode")))
    return None


def _from_creatinine(record: PatientRecord, ctx: Context, params: EgfrParams, first: date) -> Computed:
    """CKD-EPI 2021 from the latest usable creatinine in the window (the later draw of a day by stated
    time; results no time orders are settled by ``_settle``, or by the highest creatinine when one of
    them cannot give an eGFR)."""
    usable = [(lab, q) for lab in labs(record, ctx.vs(params.creatinine), first, ctx.as_of, ctx=ctx)
              if (q := creatinine_mg_dl(ctx, lab)) is not None]
    if not usable:
        return Computed(None)
    tied = possibly_latest(usable, lambda item: item[0])
    # Highest creatinine first: the worse kidney function, whatever the input order.
    tied.sort(
        key=lambda item: (-item[1].value, -_LOW_FIRST.get(item[1].comparator or "", 2), lab_key(item[0]))
    )
    computed = [_computed(record, ctx, params, lab, scr) for lab, scr in tied]
    readings = [c.reading for c in computed if c.reading is not None]
    if readings and (len(readings) == len(computed) or _settle(readings, params.min_egfr).conflict):
        return Computed(_settle(readings, params.min_egfr))
    return computed[0]


def _computed(record: PatientRecord, ctx: Context, params: EgfrParams, lab: Lab, scr: Quantity) -> Computed:
    """CKD-EPI 2021 from one creatinine.

    Where sex or age is not known exactly, every possible combination is computed, and the result
    is a range; it decides only when the whole range is on one side of the threshold. A birth date that
    cannot be real (I1's rule) gives no age to compute with.
    """
    birth = parse_date(record.patient.get("birthDate"))
    if birth is None:
        return Computed(None, f"creatinine {_fmt(scr)} mg/dL {lab.on} but no birth date to compute eGFR")
    impossible = impossible_birth(birth, ctx.as_of, params.oldest_possible_years)
    if impossible is not None:
        report_impossible_birth(ctx, record, impossible)
        return Computed(
            None, f"creatinine {_fmt(scr)} mg/dL {lab.on} but the birth date on record is impossible "
            f"({impossible}), so eGFR cannot be computed",
        )
    if birth.earliest > lab.day:
        report_impossible(ctx, lab.ref, "serum creatinine", "dated before the patient's birth date")
        before = "is dated before the birth date on record"
        return Computed(None, f"creatinine {_fmt(scr)} mg/dL {lab.on} {before}")
    sex = _sex(record)
    sexes = [sex == "female"] if sex else [True, False]
    # A birth date partial over the day of the result: the youngest age is 0.
    ages = {max(0, age_in_years(birth.latest, lab.day)), age_in_years(birth.earliest, lab.day)}
    values = [ckd_epi_2021(scr.value, age, female) for age in ages for female in sexes]
    low, high = min(values), max(values)
    # eGFR falls as creatinine rises, so a bound on creatinine is the opposite bound on eGFR.
    flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(scr.comparator or "")
    source = f"creatinine {_fmt(scr)} mg/dL {lab.on}"
    if scr.comparator in (">", ">="):
        egfr = Quantity(high, flipped, "mL/min/1.73m2")
    elif scr.comparator in ("<", "<="):
        egfr = Quantity(low, flipped, "mL/min/1.73m2")
    elif high - low > 1e-9 and low < params.min_egfr <= high:
        why = "sex is not recorded" if sex is None else "the birth date is partial"
        return Computed(None, f"{source} gives eGFR {low:.1f}-{high:.1f} (CKD-EPI 2021) because {why}")
    else:
        egfr = Quantity(low, None, "mL/min/1.73m2")
    assumed = "" if sex else " for either sex"
    text = f"eGFR {_fmt(egfr)} mL/min/1.73 m2 computed (CKD-EPI 2021{assumed}) from {source}"
    return Computed(Reading(lab, egfr, text))


def _fmt(q: Quantity) -> str:
    return f"{q.comparator or ''}{round(q.value, 1):g}"


def _decided(reading: Reading | None, threshold: float) -> bool:
    return reading is not None and reading.egfr.at_least(threshold) is not None


@evaluator("egfr", EgfrParams)
def egfr(record: PatientRecord, ctx: Context, params: EgfrParams) -> CriterionResult:
    """Latest eGFR in the window at or above the threshold (CKD-EPI 2021 from creatinine as fallback)."""
    first = days_before(ctx.as_of, params.window_days)
    res = _evaluate(record, ctx, params, first)
    # Results that cannot be real (an eGFR of -5) were left out; those as recent as the result that
    # decided (any in the window, when none did) are named, so that a coordinator sees the entry error.
    since = res.details.get("egfr_date")
    found = _impossible(record, ctx, params, first)
    return naming_impossible(res, [item for item in found if since is None or item[0].when >= since])


def _impossible(
    record: PatientRecord, ctx: Context, params: EgfrParams, first: date
) -> list[tuple[Lab, str, str]]:
    """The eGFRs and creatinines of the window whose value cannot be real: (result, value, why)."""
    found = []
    for vs, read, what, unit in (
        (params.egfr, _egfr, "eGFR", "mL/min/1.73 m2"),
        (params.creatinine, _creatinine, "creatinine", "mg/dL"),
    ):
        for lab in labs(record, ctx.vs(vs), first, ctx.as_of, ctx=ctx):
            q = read(ctx, lab)
            why = breach_of(lab, q) if q is not None else None
            if q is not None and why is not None:
                found.append((lab, f"{what} {_fmt(q)} {unit}{_as_sent(lab)}", why))
    return sorted(found, key=lambda item: (item[0].day, item[0].ref), reverse=True)


def _evaluate(record: PatientRecord, ctx: Context, params: EgfrParams, first: date) -> CriterionResult:
    measured = _latest_egfr(record, ctx, params, first)
    # The most recent kidney-function result wins, eGFR or creatinine (issue 8 s3): a creatinine after
    # the latest eGFR (an AKI 70 days ago, recovered since) is today's kidney function. On the same day
    # the lab's reported eGFR wins (its own calculation on that sample), and creatinine is used only
    # when that eGFR is a bound that cannot decide.
    if measured is not None:
        newer = _from_creatinine(record, ctx, params, measured.lab.day + timedelta(days=1))
        if newer.reading is not None or newer.problem is not None:
            prefix = f"{measured.text} is older; "
            if newer.reading is not None and newer.reading.conflict:
                return _conflicting(newer.reading, params, prefix=prefix)
            if newer.reading is not None and _decided(newer.reading, params.min_egfr):
                return _decide(newer.reading, params, prefix=prefix, computed=True)
            return _unknown(record, ctx, params, None, newer, prefix=prefix)
    if measured is not None and measured.conflict:
        # Same-day eGFRs on both sides of the threshold: a creatinine of that day is not a tie-breaker
        # (the lab's eGFRs were calculated from creatinines of that day too).
        return _conflicting(measured, params, prefix="")
    if measured is not None and _decided(measured, params.min_egfr):
        return _decide(measured, params, prefix="", computed=False)
    # No eGFR, or one whose bound (e.g. "<60") cannot settle the threshold: compute one from a
    # creatinine no older than that eGFR.
    computed = _from_creatinine(record, ctx, params, measured.lab.day if measured else first)
    if computed.reading is not None and computed.reading.conflict:
        prefix = f"{measured.text} does not decide; " if measured else ""
        return _conflicting(computed.reading, params, prefix=prefix)
    if computed.reading is not None and _decided(computed.reading, params.min_egfr):
        none = f"No eGFR in the last {params.window_days} days; "
        prefix = f"{measured.text} does not decide; " if measured else none
        return _decide(computed.reading, params, prefix=prefix, computed=True)
    return _unknown(record, ctx, params, measured, computed)


def _decide(reading: Reading, params: EgfrParams, *, prefix: str, computed: bool) -> CriterionResult:
    ok = reading.egfr.at_least(params.min_egfr)
    verdict = f"at or above {params.min_egfr:g}" if ok else f"below {params.min_egfr:g}"
    return result(
        Outcome.PASS if ok else Outcome.FAIL,
        f"{prefix}{reading.text}: {verdict}.",
        [reading.lab.ref],
        egfr=round(reading.egfr.value, 1), egfr_comparator=reading.egfr.comparator,
        egfr_date=reading.lab.when, computed_from_creatinine=computed,
    )


def _conflicting(reading: Reading, params: EgfrParams, *, prefix: str) -> CriterionResult:
    """Unknown: results of one day that no stated time orders fall on both sides of the threshold."""
    limit = f"{params.min_egfr:g}"
    shown = "; ".join(r.text for r in (reading, *reading.conflict))
    reason = (
        f"{prefix}Conflicting kidney results on {reading.lab.when}, none stated as the later draw: {shown}. "
        f"Some are below {limit} and some at or above it, so the latest kidney function is not known"
    )
    evidence = list(dict.fromkeys(r.lab.ref for r in (reading, *reading.conflict)))
    return result(
        Outcome.UNKNOWN, f"{reason}.", evidence,
        next_step="Check which same-day result stands (a repeat draw or a corrected report), or order a "
        "serum creatinine (eGFR) for the screening visit.",
    )


def _unknown(
    record: PatientRecord, ctx: Context, params: EgfrParams, measured: Reading | None, computed: Computed,
    prefix: str = "",
) -> CriterionResult:
    limit = f"{params.min_egfr:g}"
    evidence: list[str] = []
    if measured is not None:
        evidence.append(measured.lab.ref)
        reason = f"{measured.text} cannot tell whether eGFR is >= {limit}"
    elif computed.reading is not None:
        evidence.append(computed.reading.lab.ref)
        reason = f"{computed.reading.text} cannot tell whether eGFR is >= {limit}"
    elif computed.problem:
        reason = f"No eGFR in the last {params.window_days} days; {computed.problem}"
    else:
        reason = f"No eGFR or serum creatinine in the last {params.window_days} days"
        first = days_before(ctx.as_of, params.window_days)
        # An impossible value is named by ``egfr``; an unreadable one here.
        unusable = [lab for lab in labs(record, ctx.vs(params.egfr), first, ctx.as_of, ctx=ctx)
                    if not ((q := _egfr(ctx, lab)) is not None and breach_of(lab, q))]
        # Older results are only named: their units are not reported, as before.
        older = [lab for lab in labs(record, ctx.vs(params.egfr), None, first - timedelta(days=1), ctx=ctx)
                 if not ((q := _egfr(None, lab)) is not None and breach_of(lab, q))]
        if unusable:
            reason += f" with a usable value (eGFR {unusable[0].on} has no readable value or unit)"
            evidence.append(unusable[0].ref)
        elif older:
            value = quantity_of(older[0].obs)
            shown = f"{value} " if value is not None else ""
            reason += f" (latest eGFR {shown}{older[0].on} is older)"
            evidence.append(older[0].ref)
    if prefix and computed.problem:
        reason = computed.problem
    return result(
        Outcome.UNKNOWN, f"{prefix}{reason}.", evidence,
        next_step="Order a serum creatinine (eGFR) for the screening visit.",
    )
