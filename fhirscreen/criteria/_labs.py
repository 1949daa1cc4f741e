"""Lab lookups shared by the SLE laboratory criteria (I2, I3, I4, I6): results of a value set in a
window, unit normalisation, and the autoantibody/count/urine readings the criteria share.

Private (leading underscore): not an evaluator module, so the registry does not import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any, Literal, TypeVar

from fhirscreen.criteria.base import Context, CriterionResult
from fhirscreen.fhir.codes import ValueSet, codings, concept_label
from fhirscreen.fhir.plausible import Plausible
from fhirscreen.fhir.resources import Resource, observation_day, observation_parts, ref
from fhirscreen.fhir.values import (
    Quantity,
    parse_quantity,
    polarity,
    quantity_of,
    reference_range,
    titer_quantity,
    value_polarity,
)
from fhirscreen.quality import IMPLAUSIBLE
from fhirscreen.record import PatientRecord


@dataclass(frozen=True)
class Lab:
    """One Observation of a value set, with the day it applies to, and the values a result of that
    value set can take (its ``plausible`` bounds, checked by the readers that convert units)."""

    obs: Resource
    day: date
    plausible: Plausible | None = field(default=None, compare=False, repr=False)

    @property
    def ref(self) -> str:
        return ref(self.obs)

    @property
    def name(self) -> str:
        return concept_label(self.obs.get("code"))

    @property
    def when(self) -> str:
        return self.day.isoformat()

    @property
    def on(self) -> str:
        """'on 2026-05-01' for a reason, '(preliminary) on 2026-05-01' for a result not yet final."""
        return result_on(self.obs, self.when)


# Observation statuses whose results are used but named in the reason (criteria-codes.md 0.2:
# "preliminary -> use but say so"); final, amended and corrected results are simply results.
_SAID_STATUSES = frozenset({"preliminary"})


def result_on(obs: Mapping[str, Any], when: str) -> str:
    """The day of a result for a reason ("on 2026-05-01"), after its status when that is worth saying
    ("(preliminary) on 2026-05-01"): every lab criterion words a result's day through here."""
    return f"{status_said(obs).lstrip()} on {when}".lstrip()


def status_said(obs: Mapping[str, Any]) -> str:
    """" (preliminary)" for a result whose status is worth saying, else "" (for reasons built apart)."""
    status = obs.get("status")
    said = isinstance(status, str) and status in _SAID_STATUSES  # a malformed status is no status
    return f" ({status})" if said else ""


def labs(
    record: PatientRecord, vs: ValueSet, first: date | None, last: date, *, ctx: Context
) -> list[Lab]:
    """Observations coded in ``vs`` dated within [first, last] (first None: no lower bound), latest first.

    Undated observations cannot be placed in a window and are left out, and so are results whose number
    cannot be real in any unit (``vs.plausible`` without a unit: a negative titer, complement or
    SLEDAI-2K above 105): an ``implausible-value`` finding each, never evidence. Bounds in a unit are
    checked by the reader that converts to it (``possible``).
    """
    kept, impossible = _of_set(record, vs)
    for lab, shown, why in impossible:
        if (first is None or first <= lab.day) and lab.day <= last:
            report_impossible(ctx, lab.ref, shown, why)
    if first is None:
        return [lab for lab in kept if lab.day <= last]
    return [lab for lab in kept if first <= lab.day <= last]


def impossible_labs(
    record: PatientRecord, vs: ValueSet, first: date | None, last: date
) -> list[tuple[Lab, str, str]]:
    """(result, its value as shown, why it cannot be real) for the results ``labs`` leaves out as
    impossible in [first, last], latest first: for reasons that name them."""
    _kept, impossible = _of_set(record, vs)
    return [item for item in impossible if (first is None or first <= item[0].day) and item[0].day <= last]


def _of_set(record: PatientRecord, vs: ValueSet) -> tuple[list[Lab], list[tuple[Lab, str, str]]]:
    """The dated results of ``vs`` (bounds attached), split into possible and impossible ones; once per
    record and value set."""
    index = _index(record)
    split = index.by_set.get(vs.name)
    if split is None:
        matched = index.dated_labs(vs)
        bounds = vs.plausible
        impossible: list[tuple[Lab, str, str]] = []
        if bounds is not None:
            matched = [Lab(lab.obs, lab.day, bounds) for lab in matched]
            if not bounds.unit:
                kept = []
                for lab in matched:
                    breach = raw_breach(lab.obs, bounds)
                    if breach is None:
                        kept.append(lab)
                    else:
                        impossible.append((lab, f"{lab.name} {breach[0]}", breach[1]))
                matched = kept
        split = index.by_set[vs.name] = (matched, impossible)
    return split


def raw_breach(obs: Mapping[str, Any], bounds: Plausible) -> tuple[str, str] | None:
    """(the value as reported, why it cannot be real) when a number of the result (its quantity, or
    either side of a ratio) is outside bounds that hold in any unit; None otherwise."""
    q = quantity_of(obs)
    if q is not None:
        why = bounds.breach(q.value, q.comparator)
        return (str(q), why) if why is not None else None
    ratio = obs.get("valueRatio")
    if isinstance(ratio, Mapping):
        parts = [quantity_of({"valueQuantity": ratio.get(side)}) for side in ("numerator", "denominator")]
        for part in parts:
            why = bounds.breach(part.value, part.comparator) if part is not None else None
            if why is not None:
                shown = ":".join(str(p) if p is not None else "?" for p in parts)
                return shown, why
    return None


def naming_impossible(res: CriterionResult, found: Sequence[tuple[Lab, str, str]]) -> CriterionResult:
    """``res`` with the results ``impossible_labs`` gives named in its reason and cited as its evidence
    (the entry error is seen where the outcome came from the other results)."""
    if not found:
        return res
    return replace(
        res, reason=res.reason + not_used((f"{shown} {lab.on}", why, lab.ref) for lab, shown, why in found),
        evidence=tuple(dict.fromkeys([*res.evidence, *(lab.ref for lab, _s, _w in found)])),
    )


def not_used(found: Iterable[tuple[str, str, str]]) -> str:
    """A sentence naming results left out as impossible, for a reason: (the result and its day, why, the
    reference) -> " Not used, impossible (an entry error?): eGFR -5 on 2026-05-20 (below 0;
    Observation/x)." ("" when there are none)."""
    shown = [f"{what} ({why}; {where})" for what, why, where in found]
    return f" Not used, impossible (an entry error?): {'; '.join(shown)}." if shown else ""


def report_impossible(ctx: Context, where: str, shown: str, why: str) -> None:
    """The ``implausible-value`` finding of a value that cannot be real; it names the resource and the
    clinical value, nothing about the patient."""
    ctx.quality.add("warning", where, IMPLAUSIBLE, f"{shown} is impossible ({why}): not used")


def possible(ctx: Context, lab: Lab, q: Quantity, what: str) -> bool:
    """Whether a result converted to the unit of its value set's bounds can be real; when it cannot, an
    ``implausible-value`` finding ("eGFR -5 mL/min/1.73m2 is impossible (below 0): not used")."""
    why = breach_of(lab, q)
    if why is None:
        return True
    report_impossible(ctx, lab.ref, f"{what} {q}", why)
    return False


def breach_of(lab: Lab, q: Quantity) -> str | None:
    """Why ``q`` (a result of ``lab`` in the unit of its bounds) cannot be real, or None."""
    bounds = lab.plausible
    if bounds is None or not bounds.unit:
        return None  # bounds in any unit were checked when the result was found (``labs``)
    if unit_key(q.unit) != unit_key(bounds.unit):
        raise ValueError(
            f"the plausible bounds of {lab.name} are in {bounds.unit}, but the result was read in {q.unit}"
        )
    return bounds.breach(q.value, q.comparator)


def lab_instant(lab: Lab) -> datetime | None:
    """The moment of a result when it is stated to the minute (effective[x], else issued), in UTC; None
    for a date-only (or period, or unreadable) time, which cannot be ordered within its day.

    A time without an offset (not valid FHIR, but seen) is read as UTC, like one with ``Z``.
    """
    obs = lab.obs
    text = obs.get("effectiveDateTime") or obs.get("effectiveInstant")
    if text is None and not any(k.startswith("effective") for k in obs):
        text = obs.get("issued")
    if not isinstance(text, str) or "T" not in text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


T = TypeVar("T")


def possibly_latest(items: Sequence[T], lab_of: Callable[[T], Lab]) -> list[T]:
    """Of results given latest day first (as ``labs`` gives them), the ones that may be the most recent:
    on the latest day, those at the latest stated time, and every one without a time (a date-only result
    cannot be ordered against a timed one of its day). A later draw the same day wins over an earlier
    one (a repeat); what remains is a tie that no order of the input may decide, so the caller settles
    it by value (clinically conservative), never by position or resource id.

    The result keeps the order of ``items``.
    """
    if not items:
        return []
    latest_day = max(lab_of(item).day for item in items)
    same_day = [item for item in items if lab_of(item).day == latest_day]
    moments = [lab_instant(lab_of(item)) for item in same_day]
    known = [m for m in moments if m is not None]
    last = max(known) if known else None
    return [item for item, m in zip(same_day, moments, strict=True) if m is None or m == last]


def lab_key(lab: Lab) -> tuple[str, str, str]:
    """A total order on results that does not depend on input order: reference, code label, value text
    (components of one Observation share its reference). For tie-breaks only."""
    return (lab.ref, lab.name, value_text(lab))


def coded_observations(record: PatientRecord, vs: ValueSet) -> list[Resource]:
    """The Observations (and components, read as Observations) whose code ``vs`` matches, in record
    order: what matching every part of ``record.of_type("Observation")`` would give, found through the
    record's code index."""
    index = _index(record)
    parts = index.parts
    return [parts[p] for p in index.positions(vs)]


def _index(record: PatientRecord) -> _LabIndex:
    return record.memo("_labs:index", lambda: _LabIndex(_parts(record)))


class _LabIndex:
    """A record's Observation parts, indexed once for every value set the criteria ask about.

    A record has a few hundred distinct codes but thousands of Observations, and the lab criteria ask
    for some forty value sets: looking codes up in a per-record index (built once) instead of matching
    every Observation against every value set is what keeps evaluation linear. Value sets with text
    patterns need the text, so they are matched once per distinct code element instead. Each index is
    built when first needed.
    """

    def __init__(self, parts: list[Resource]) -> None:
        self.parts = parts
        # value set name -> ``dated_labs`` split into possible and impossible results, for ``labs``
        self.by_set: dict[str, tuple[list[Lab], list[tuple[Lab, str, str]]]] = {}
        self._codes: dict[tuple[str, str], list[int]] | None = None
        self._concepts: dict[int, tuple[Any, list[int]]] | None = None
        self._labs: list[Lab | None] | None = None  # per part; None when undated
        self._rank: list[int] = []  # per dated part: its place in the order ``dated_labs`` gives

    def positions(self, vs: ValueSet) -> list[int]:
        """The positions (in ``parts``, ascending) of the parts whose code ``vs`` matches (when one code
        matches, the index's own list: read it, never change it)."""
        if vs.text_patterns:
            # Matched once per distinct code element rather than per Observation: kept resources share
            # equal elements (fhir/compact.py), and the answer depends on the element alone.
            if self._concepts is None:
                self._concepts = _concept_index(self.parts)
            groups = self._concepts.values()
            hits = [positions for concept, positions in groups if vs.match(concept) is not None]
        else:
            if self._codes is None:
                self._codes = _code_index(self.parts)
            index = self._codes
            if not vs.prefixes:  # exact codes only: the keys in both, looked up from the smaller side
                codes = vs.codes
                small, large = (codes, index) if len(codes) <= len(index) else (index, codes)
                hits = [index[key] for key in small if key in large]
            else:
                hits = [positions for key, positions in index.items() if vs.has_code(*key)]
        if not hits:
            return []
        if len(hits) == 1:
            return hits[0]
        return sorted({p for positions in hits for p in positions})

    def dated_labs(self, vs: ValueSet) -> list[Lab]:
        """The dated results of ``vs``, latest day first, then by id descending, then in record order."""
        if self._labs is None:
            self._date_parts()
        labs, rank = self._labs, self._rank
        assert labs is not None
        found = [p for p in self.positions(vs) if labs[p] is not None]
        found.sort(key=rank.__getitem__)
        return [labs[p] for p in found]  # type: ignore[misc]  # undated parts were left out

    def _date_parts(self) -> None:
        labs: list[Lab | None] = []
        for obs in self.parts:
            when = observation_day(obs)
            labs.append(Lab(obs, when) if isinstance(when, date) else None)
        # One stable sort of all results: a value set's results, sorted by their place in it, come in
        # the order a stable sort of their own would give.
        ordered = sorted(
            (p for p, lab in enumerate(labs) if lab is not None),
            key=lambda p: (labs[p].day, str(labs[p].obs.get("id"))),  # type: ignore[union-attr]
            reverse=True,
        )
        rank = [0] * len(labs)
        for place, p in enumerate(ordered):
            rank[p] = place
        self._labs, self._rank = labs, rank


def _parts(record: PatientRecord) -> list[Resource]:
    """Every Observation and every one of its components (read as Observations of their own)."""
    out: list[Resource] = []
    for obs in record.of_type("Observation"):
        if obs.get("component"):
            out.extend(observation_parts(obs))
        else:
            out.append(obs)
    return out


def _code_index(observations: list[Resource]) -> dict[tuple[str, str], list[int]]:
    """(system, code) -> positions of the Observations coded with it (each position once per key)."""
    index: dict[tuple[str, str], list[int]] = {}
    # A code element shared by many Observations (fhir/compact.py) is read once; ids are stable here
    # since ``observations`` holds every element for the whole loop.
    keys_of: dict[int, list[tuple[str, str]]] = {}
    for position, obs in enumerate(observations):
        concept = obs.get("code")
        if not concept:
            continue
        keys = keys_of.get(id(concept))
        if keys is None:
            keys = keys_of[id(concept)] = [(system, code) for system, code, _display in codings(concept)]
        for key in keys:
            positions = index.get(key)
            if positions is None:
                index[key] = [position]
            elif positions[-1] != position:
                positions.append(position)
    return index


def _concept_index(observations: list[Resource]) -> dict[int, tuple[Any, list[int]]]:
    """id(code element) -> (the element, positions of the Observations coded with it), for the value
    sets matched by text. Elements are held, so their ids stay theirs while the index lives."""
    groups: dict[int, tuple[Any, list[int]]] = {}
    for position, obs in enumerate(observations):
        concept = obs.get("code")
        if not concept:
            continue  # ``match`` says None to an empty code
        group = groups.get(id(concept))
        if group is None:
            groups[id(concept)] = (concept, [position])
        else:
            group[1].append(position)
    return groups


def code_of(obs: Mapping[str, Any]) -> set[str]:
    """The codes of an Observation's code (any system), for per-code preferences."""
    return {code for _s, code, _d in codings(obs.get("code"))}


def unit_key(unit: str) -> str:
    """A unit folded for comparison: lower case, no spaces, micro sign as ``u``, superscripts as digits.

    Folded once per distinct text: every count and bound check asks (12,600 times at 10,000 people),
    and feeds use a handful of unit spellings."""
    key = _UNIT_KEYS.get(unit)
    if key is None:
        folded = unit.strip().lower().replace(" ", "")
        key = folded.replace("µ", "u").replace("μ", "u").translate(_SUPERSCRIPTS)
        if len(_UNIT_KEYS) < 10_000:  # odd data cannot grow it without limit
            _UNIT_KEYS[unit] = key
    return key


_SUPERSCRIPTS = str.maketrans("²³", "23")
_UNIT_KEYS: dict[str, str] = {}


def report_unit(ctx: Context, lab: Lab, what: str, unit: str) -> None:
    ctx.quality.add(
        "warning", lab.ref, "unknown-unit",
        f"{lab.ref}: unit {unit or '(none)'!r} is not recognised for {what}; the result was not used",
    )


# --------------------------------------------------------------------------------- blood cell counts

# Every spelling of 10^9/L (= 10^3/uL, "K/uL") seen in lab feeds, and of cells per microlitre.
_PER_NANOLITRE = frozenset({
    "10*3/ul", "10^3/ul", "10e3/ul", "x10e3/ul", "x10*3/ul", "x10^3/ul", "k/ul", "thou/ul", "th/ul",
    "10*9/l", "10^9/l", "10e9/l", "x10e9/l", "x10*9/l", "x10^9/l", "/nl", "giga/l", "g/l{cells}",
    "10*3/mm3", "10^3/mm3", "k/mm3", "{cells}/nl",
})
_PER_MICROLITRE = frozenset({"/ul", "/mm3", "/mm^3", "cells/ul", "{cells}/ul", "/cumm", "#/ul", "cells/mm3"})


def count_e9_per_l(ctx: Context, lab: Lab, what: str) -> Quantity | None:
    """A blood cell count in 10^9/L (= 10^3/uL); per-uL counts are divided by 1,000 (criteria-codes I2.b)."""
    q = quantity_of(lab.obs)
    if q is None:
        return None
    key = unit_key(q.unit)
    if key in _PER_NANOLITRE:
        count = q.scaled(1.0, "10*9/L")
    elif key in _PER_MICROLITRE:
        count = q.scaled(0.001, "10*9/L")
    else:
        report_unit(ctx, lab, what, q.unit)
        return None
    return count if possible(ctx, lab, count, what) else None


def occasions_below(
    ctx: Context, results: Iterable[Lab], threshold: float, what: str
) -> list[tuple[Lab, Quantity]]:
    """Results whose count is certainly below ``threshold`` (10^9/L), one per day (the lowest that day)."""
    by_day: dict[date, tuple[Lab, Quantity]] = {}
    for lab in results:
        q = count_e9_per_l(ctx, lab, what)
        if q is None or q.below(threshold) is not True:
            continue
        kept = by_day.get(lab.day)
        if kept is None or q.value < kept[1].value:
            by_day[lab.day] = (lab, q)
    return [by_day[d] for d in sorted(by_day, reverse=True)]


# --------------------------------------------------------------------------------------------- urine

# UCUM first, then the spellings reports use ("mg/24 hr", "g/24 hours"; unit_key drops the spaces).
_G_PER_DAY = {
    f"{mass}/{per}": factor
    for mass, factor in (("g", 1.0), ("mg", 0.001))
    for per in ("(24.h)", "24h", "24.h", "d", "day", "(24h)", "24hr", "24hrs", "24hour", "24hours", "(24.hr)")
}
# A protein/creatinine mass ratio without a unit is mass/mass, i.e. g/g.
_G_PER_G = {"g/g": 1.0, "mg/mg": 1.0, "g/g{creat}": 1.0, "mg/mg{creat}": 1.0, "": 1.0, "{ratio}": 1.0,
            "ratio": 1.0, "mg/g": 0.001, "mg/g{creat}": 0.001, "mg/gcreat": 0.001,
            "mg/mmol": 0.00884, "mg/mmol{creat}": 0.00884, "g/mol{creat}": 0.00884, "g/mmol": 8.84}


def _scaled_by_unit(
    ctx: Context, lab: Lab, factors: dict[str, float], what: str, target: str
) -> Quantity | None:
    """The result converted with a unit -> factor table; an unknown unit is a data-quality finding."""
    q = quantity_of(lab.obs)
    if q is None:
        return None
    factor = factors.get(unit_key(q.unit))
    if factor is None:
        report_unit(ctx, lab, what, q.unit)
        return None
    scaled = q.scaled(factor, target)
    return scaled if possible(ctx, lab, scaled, what) else None


def protein_24h_g(ctx: Context, lab: Lab) -> Quantity | None:
    """24-hour urine protein in g/day (mg/24 h divided by 1,000)."""
    return _scaled_by_unit(ctx, lab, _G_PER_DAY, "24-hour urine protein", "g/d")


def upcr_g_per_g(ctx: Context, lab: Lab) -> Quantity | None:
    """Urine protein/creatinine ratio in g/g (mg/g / 1000; mg/mmol x 0.00884), criteria-codes.md I2.b."""
    return _scaled_by_unit(ctx, lab, _G_PER_G, "urine protein/creatinine ratio", "g/g")


# SNOMED "Urine protein test = +" ... "++++" (Synthea's 20454-5 answers; V-src in criteria-codes.md §1,
# 167278006 "++++" and 167273002/167274008 negative/trace read in two public FHIR IG value sets).
_DIPSTICK_SNOMED = {
    "167273002": 0, "167274008": 0, "167275009": 1, "167276005": 2, "167277001": 3, "167278006": 4,
}
_DIPSTICK_WORDS = {"negative": 0, "neg": 0, "trace": 0, "+": 1, "1+": 1, "++": 2, "2+": 2, "+++": 3, "3+": 3,
                   "++++": 4, "4+": 4}


def dipstick_grade(lab: Lab) -> int | None:
    """Urine dipstick protein as 0-4 "+": coded grades, "3+"/"+++" strings, or mg/dL by test strip.

    mg/dL follows the usual strip calibration (30 = 1+, 100 = 2+, 300 = 3+, 2000 = 4+).
    """
    concept = lab.obs.get("valueCodeableConcept")
    if isinstance(concept, Mapping):
        for _s, code, display in codings(concept):
            if code in _DIPSTICK_SNOMED:
                return _DIPSTICK_SNOMED[code]
            grade = _grade_from_text(display)
            if grade is not None:
                return grade
        return _grade_from_text(str(concept.get("text") or ""))
    text = lab.obs.get("valueString")
    if isinstance(text, str):
        grade = _grade_from_text(text)
        if grade is not None:
            return grade
    q = quantity_of(lab.obs)
    if q is None or unit_key(q.unit) not in ("mg/dl", ""):
        return None
    if q.comparator in ("<", "<="):
        return 0 if q.value <= 30 else None  # "<30 mg/dL" is below 1+; "<300" could be 2+
    for limit, grade in ((2000, 4), (300, 3), (100, 2), (30, 1)):
        if q.value >= limit:
            return grade
    return 0


def _grade_from_text(text: str) -> int | None:
    key = text.strip().lower().replace(" ", "")
    if key in _DIPSTICK_WORDS:
        return _DIPSTICK_WORDS[key]
    for word, grade in _DIPSTICK_WORDS.items():
        if key.endswith("=" + word) or key.startswith(word + "("):
            return grade
    return None


def per_hpf(ctx: Context, lab: Lab, what: str) -> Quantity | None:
    """Cells per high-power field; the code says "per HPF", so any unit naming HPF (or none) is accepted."""
    q = quantity_of(lab.obs)
    if q is None:
        return None
    key = unit_key(q.unit)
    if key and "hpf" not in key:
        report_unit(ctx, lab, what, q.unit)
        return None
    return q


def is_present(lab: Lab) -> bool | None:
    """A presence result (casts): positive/negative, or a count above zero."""
    verdict = polarity(lab.obs)
    if verdict == "positive":
        return True
    if verdict == "negative":
        return False
    q = quantity_of(lab.obs)
    if q is not None:
        return q.above(0)
    return None


def temperature_c(ctx: Context, lab: Lab) -> Quantity | None:
    """Body temperature in degrees Celsius (Fahrenheit converted)."""
    q = quantity_of(lab.obs)
    if q is None:
        return None
    key = unit_key(q.unit).replace("°", "deg").replace("[", "").replace("]", "")
    if key in ("cel", "degc", "c"):
        celsius = Quantity(q.value, q.comparator, "Cel")
    elif key in ("degf", "f"):
        celsius = Quantity((q.value - 32) * 5 / 9, q.comparator, "Cel")
    else:
        report_unit(ctx, lab, "body temperature", q.unit)
        return None
    why = breach_of(lab, celsius)
    if why is not None:  # 98.6 sent as Cel; 37 sent as degF
        converted = f" ({celsius.value:.1f} Cel)" if key in ("degf", "f") else ""
        report_impossible(ctx, lab.ref, f"body temperature {q}{converted}", why)
        return None
    return celsius


# ------------------------------------------------------------------------------------ autoantibodies

Verdict = Literal["positive", "negative", "indeterminate"]


def dsdna_verdict(lab: Lab, titer_codes: ValueSet, min_titer: int) -> Verdict | None:
    """Anti-dsDNA positivity (criteria-codes.md I3 order): interpretation, value vs reference range,
    qualitative value, then (for IFA titer codes only) a titer >= ``min_titer``; never a global cut-off.
    """
    verdict = polarity(lab.obs)
    if verdict is not None:
        return verdict
    if titer_codes.match(lab.obs.get("code")) is not None:
        q = titer_quantity(lab.obs)
        if q is not None:
            at_least = q.at_least(min_titer)
            if at_least is not None:
                return "positive" if at_least else "negative"
    return None


def ana_titer(lab: Lab, titer_codes: ValueSet) -> Quantity | None:
    """The end-point titer of an ANA result, None when it states none.

    - A dilution in a negative result ("Negative at 1:160", "Not detected at 1:80") is the dilution
      screened, not a titer.
    - A number sent without a titer unit ("", "ratio") or as a plain string ("320") is a titer only
      on a titer code (5048-4): on a presence code it is an immunoassay's index (47383-5: 4.2).
    """
    obs = lab.obs
    if value_polarity(obs) == "negative":
        return None
    on_titer_code = titer_codes.match(obs.get("code")) is not None
    titer = titer_quantity(obs, bare_numbers=on_titer_code)
    if titer is None and on_titer_code and isinstance(obs.get("valueString"), str):
        number = parse_quantity(obs["valueString"])
        if number is not None and number.value >= 1 and number.unit.lower() in _PLAIN_TITER_UNITS:
            titer = Quantity(number.value, number.comparator, "{titer}")
    return titer


_PLAIN_TITER_UNITS = frozenset({"", "{titer}", "titer"})


def value_text(lab: Lab) -> str:
    """The result as a coordinator would read it: "1:320", "45 IU/mL (ref <= 30)", "Positive"."""
    obs = lab.obs
    if isinstance(obs.get("valueString"), str):
        return str(obs["valueString"])
    t = titer_quantity(obs) if isinstance(obs.get("valueRatio"), Mapping) else None
    if t is not None:
        return f"{t.comparator or ''}1:{t.value:g}"
    q = quantity_of(obs)
    if q is not None:
        low, high = reference_range(obs)
        bounds = _range_text(low, high)
        return f"{q}{f' (ref {bounds})' if bounds else ''}"
    concept = obs.get("valueCodeableConcept")
    if isinstance(concept, Mapping):
        return concept_label(concept)
    return "(no value)"


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{low:g}-{high:g}"
    if high is not None:
        return f"<= {high:g}"
    if low is not None:
        return f">= {low:g}"
    return ""
