"""Reading result values out of Observations: quantities, titers, positive/negative, reference ranges.

Labs report the same fact in many shapes (criteria-codes.md section 0.5): a number with a comparator
(``valueQuantity`` or a string such as ">60"), a titer ("1:320", valueRatio 1:320, 320 {titer}), a
qualitative code or word ("Positive", "Non-reactive"), or only an interpretation flag. These helpers
take an Observation (or an Observation.component, which has the same value elements) and never raise
on malformed input: what cannot be read is None.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fhirscreen.fhir.codes import codings
from fhirscreen.fhir.resources import items

Polarity = Literal["positive", "negative", "indeterminate"]
Comparator = Literal["<", "<=", ">=", ">"]

_COMPARATORS: dict[str, str] = {
    "<": "<", "<=": "<=", ">=": ">=", ">": ">", "≤": "<=", "≥": ">=", "=<": "<=", "=>": ">=",
}


@dataclass(frozen=True)
class Quantity:
    """A numeric result. ``comparator`` "<"/"<=" makes ``value`` an upper bound, ">"/">=" a lower bound."""

    value: float
    comparator: str | None
    unit: str  # as reported ("" when none); compare units case-insensitively

    @property
    def exact(self) -> bool:
        return self.comparator is None

    def at_least(self, threshold: float) -> bool | None:
        """Is the true value >= threshold? None when the comparator leaves it open."""
        return _decide(self, threshold, inclusive=True)

    def above(self, threshold: float) -> bool | None:
        """Is the true value > threshold? None when the comparator leaves it open."""
        return _decide(self, threshold, inclusive=False)

    def below(self, threshold: float) -> bool | None:
        """Is the true value < threshold? None when the comparator leaves it open."""
        verdict = self.at_least(threshold)
        return None if verdict is None else not verdict

    def scaled(self, factor: float, unit: str) -> Quantity:
        """The same quantity in another unit (a positive factor keeps the comparator's direction)."""
        return Quantity(self.value * factor, self.comparator, unit)

    def __str__(self) -> str:
        number = f"{self.value:g}"
        return f"{self.comparator or ''}{number}{' ' + self.unit if self.unit else ''}"


def _decide(q: Quantity, threshold: float, *, inclusive: bool) -> bool | None:
    """Whether the true value is >= (inclusive) or > the threshold, given what the comparator allows."""
    v, c = q.value, q.comparator

    def holds(x: float) -> bool:
        return x >= threshold if inclusive else x > threshold

    if c is None:
        return holds(v)
    if c == ">":  # true value in (v, inf)
        return True if v >= threshold else None
    if c == ">=":  # [v, inf)
        return True if holds(v) else None
    if c == "<":  # (-inf, v)
        return False if v <= threshold else None
    # "<=": (-inf, v]
    return False if not holds(v) else None


# A number with optional comparator and thousands separators, then an optional unit.
_NUMBER_RE = re.compile(
    r"^\s*(?P<cmp><=|>=|=<|=>|≤|≥|<|>)?\s*(?P<num>[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+)\s*(?P<unit>.*?)\s*$"
)
_UNIT_RE = re.compile(r"^[A-Za-zµμ%{}\[\]()*^/.\d_²³ -]*$")  # "mL/min/1.73m²" as written on reports


def quantity_of(obs: Mapping[str, Any] | None) -> Quantity | None:
    """valueQuantity (or valueInteger), or a numeric valueString such as ">60", "<0.2", "1,234"."""
    if obs.__class__ is not dict and not isinstance(obs, Mapping):  # the ABC check only off JSON's dicts
        return None
    vq = obs.get("valueQuantity")
    if vq.__class__ is dict or isinstance(vq, Mapping):
        value = _number(vq.get("value"))
        if value is None:
            return None
        comparator = _COMPARATORS.get(str(vq.get("comparator") or "").strip())
        return Quantity(value, comparator, _unit_of(vq))
    vi = obs.get("valueInteger")
    if isinstance(vi, int) and not isinstance(vi, bool):
        return Quantity(float(vi), None, "")
    vs = obs.get("valueString")
    if isinstance(vs, str):
        return parse_quantity(vs)
    return None


def parse_quantity(text: str) -> Quantity | None:
    """A numeric string with optional comparator and unit; None for titers ("1:320") and words."""
    m = _NUMBER_RE.match(text)
    if not m:
        return None
    unit = m.group("unit")
    # "1:320", "1/320" are titers, not the number 1; any other trailing word is not a unit.
    if unit.startswith((":", "/")) or not _UNIT_RE.match(unit):
        return None
    try:
        value = float(m.group("num").replace(",", ""))
    except ValueError:
        return None
    comparator = _COMPARATORS.get(m.group("cmp") or "")
    return Quantity(value, comparator, unit)


def _number(value: object) -> float | None:
    """A finite number, else None: NaN and infinities are no value (nor "nan" or "inf" as text)."""
    if value.__class__ is float:
        return value if math.isfinite(value) else None
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float, str)):
            number = float(value)
            return number if math.isfinite(number) else None
    except (ValueError, OverflowError):
        return None
    return None


def _unit_of(q: Mapping[str, Any]) -> str:
    for key in ("unit", "code"):
        value = q.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


# ---------------------------------------------------------------------------------------------- titers

# "1:320", "1/320", "1 : 320", ">1:1280", "≥1:160"; the optional comparator sits right before it.
_TITER_RE = re.compile(r"(?P<cmp><=|>=|≤|≥|<|>)?\s*\b1\s*[:/]\s*(?P<den>\d{1,6})(?![\d.])")
_TITER_UNITS = frozenset({"", "{titer}", "titer", "{dilution}", "dilution", "{ratio}", "ratio", "1"})
# Of those, the units that say "dilution" by themselves; the others ("", ratio, 1) are also what an
# immunoassay's index is sent with (ANA 47383-5: 4.2, ref <= 1.0).
_DILUTION_UNITS = frozenset({"{titer}", "titer", "{dilution}", "dilution"})


def titer_quantity(obs: Mapping[str, Any] | None, *, bare_numbers: bool = True) -> Quantity | None:
    """The titer denominator D (of 1:D) with its comparator: "<1:40" gives Quantity(40, "<", "{titer}").

    Several titers in one string ("1:160 and 1:640", several patterns) give the highest. With
    ``bare_numbers`` False, a valueQuantity whose unit does not say titer or dilution ("", "ratio") is
    not read as one: only the Observation's code can say that it is a titer.
    """
    if not isinstance(obs, Mapping):
        return None
    vs = obs.get("valueString")
    if isinstance(vs, str):
        best: Quantity | None = None
        for m in _TITER_RE.finditer(vs):
            den = int(m.group("den"))
            if den <= 0:
                continue
            q = Quantity(float(den), _COMPARATORS.get(m.group("cmp") or ""), "{titer}")
            if best is None or q.value > best.value:
                best = q
        return best
    ratio = obs.get("valueRatio")
    if isinstance(ratio, Mapping):
        return _ratio_titer(ratio)
    vq = obs.get("valueQuantity")
    if isinstance(vq, Mapping):
        number = quantity_of(obs)
        if number is None or number.value <= 0 or number.unit.lower() not in _TITER_UNITS:
            return None  # "Index", "U/mL", "AU/mL" are immunoassay units, not dilutions
        if not bare_numbers and number.unit.lower() not in _DILUTION_UNITS:
            return None
        if number.value < 1:
            # 0.00625 is reported as the fraction 1/160; a "<" bound on the fraction is a ">" on D.
            return Quantity(round(1 / number.value), _flip(number.comparator), "{titer}")
        return Quantity(number.value, number.comparator, "{titer}")
    return None


def _ratio_titer(ratio: Mapping[str, Any]) -> Quantity | None:
    num, den = ratio.get("numerator"), ratio.get("denominator")
    if not isinstance(num, Mapping) or not isinstance(den, Mapping):
        return None
    n, d = _number(num.get("value")), _number(den.get("value"))
    if n is None or d is None or n <= 0 or d <= 0:
        return None
    comparator = _COMPARATORS.get(str(den.get("comparator") or num.get("comparator") or ""))
    if num.get("comparator") and not den.get("comparator"):
        # ">1":320 bounds the numerator, i.e. the ratio; flip it for the denominator of a 1:D titer.
        comparator = _flip(comparator)
    return Quantity(d / n, comparator, "{titer}")


def _flip(comparator: str | None) -> str | None:
    return {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(comparator or "")


def titer_of(obs: Mapping[str, Any] | None) -> int | None:
    """The titer denominator: 320 for "1:320", "1/320", "Positive 1:640" (640), valueRatio 1:320, 320 {titer}.

    Exact titers and lower bounds (">1:1280" gives 1280, a safe answer for "at least" thresholds)
    are returned; upper bounds ("<1:40") are not, because the true titer is unknown below them. Use
    ``titer_quantity`` when the comparator matters.
    """
    q = titer_quantity(obs)
    if q is None or q.comparator in ("<", "<="):
        return None
    return round(q.value)


# -------------------------------------------------------------------------------------------- polarity

_INTERPRETATION: dict[str, Polarity] = {
    "POS": "positive", "DET": "positive", "H": "positive", "HH": "positive", "HU": "positive",
    "A": "positive", "AA": "positive",
    "NEG": "negative", "ND": "negative", "N": "negative", "NR": "negative",
    "IND": "indeterminate", "E": "indeterminate", "EQV": "indeterminate",
}
# v3 "R" means "Resistant" (microbiology), not "reactive", so it is deliberately absent.

# SNOMED CT qualifier values used as valueCodeableConcept for qualitative results (section 0.5; the
# reactive/non-reactive and equivocal ids are those of the CDC/PHIN qualitative-result value sets).
_SNOMED_POLARITY: dict[str, Polarity] = {
    "10828004": "positive",  # Positive
    "260373001": "positive",  # Detected
    "52101004": "positive",  # Present
    "11214006": "positive",  # Reactive
    "260385009": "negative",  # Negative
    "260415000": "negative",  # Not detected
    "2667000": "negative",  # Absent
    "131194007": "negative",  # Non-Reactive
    "82334004": "indeterminate",  # Indeterminate
    "42425007": "indeterminate",  # Equivocal
    "419984006": "indeterminate",  # Inconclusive
}

# Order matters: negatives contain the positive words ("Not detected", "Non-reactive").
_NEGATIVE_RE = re.compile(
    r"\b(neg(ative)?|non[- ]?reactive|not\s+detected|none\s+detected|undetected|not\s+present|absent|nr)\b",
    re.IGNORECASE,
)
_INDETERMINATE_RE = re.compile(r"\b(indeterminate|equivocal|borderline|inconclusive|ind)\b", re.IGNORECASE)
_POSITIVE_RE = re.compile(r"\b(pos(itive)?|reactive|detected|present)\b", re.IGNORECASE)


def polarity_of_text(text: str) -> Polarity | None:
    """"Positive", "Reactive", "Detected" / "Negative", "Non-reactive", "Not detected" / "Equivocal"..."""
    if not text or not text.strip():
        return None
    if _INDETERMINATE_RE.search(text):
        return "indeterminate"
    if _NEGATIVE_RE.search(text):
        return "negative"
    if _POSITIVE_RE.search(text):
        return "positive"
    return None


def interpretation_codes(obs: Mapping[str, Any]) -> set[str]:
    """The interpretation codes (v3 / v2-0078 ``H``, ``POS``, ``L``...), upper-cased."""
    out: set[str] = set()
    for concept in items(obs.get("interpretation")):
        if concept.__class__ is dict or isinstance(concept, Mapping):
            out.update(code.upper() for _s, code, _d in codings(concept))
    return out


def interpretation_polarity(obs: Mapping[str, Any]) -> Polarity | None:
    found = {_INTERPRETATION[c] for c in interpretation_codes(obs) if c in _INTERPRETATION}
    if len(found) == 1:
        return found.pop()
    return "indeterminate" if found else None


def value_polarity(obs: Mapping[str, Any]) -> Polarity | None:
    """Polarity stated by the value itself: a coded or written qualitative result."""
    concept = obs.get("valueCodeableConcept")
    if isinstance(concept, Mapping):
        for system, code, display in codings(concept):
            if code in _SNOMED_POLARITY:
                return _SNOMED_POLARITY[code]
            if code.upper() in _INTERPRETATION and "snomed" not in system:
                return _INTERPRETATION[code.upper()]
            verdict = polarity_of_text(display)
            if verdict:
                return verdict
        return polarity_of_text(str(concept.get("text") or ""))
    vs = obs.get("valueString")
    if isinstance(vs, str):
        return polarity_of_text(vs)
    vb = obs.get("valueBoolean")
    if isinstance(vb, bool):
        return "positive" if vb else "negative"
    return None


def range_polarity(obs: Mapping[str, Any]) -> Polarity | None:
    """A number against referenceRange.high: above is positive, at or below is negative.

    When the range text announces a borderline/equivocal band, a value above ``high`` may sit in it,
    so it is indeterminate rather than positive.
    """
    q = quantity_of(obs)
    _low, high = reference_range(obs)
    if q is None or high is None:
        return None
    above = q.above(high)
    if above is None:
        return None
    if not above:
        return "negative"
    return "indeterminate" if _has_equivocal_band(obs) else "positive"


def _has_equivocal_band(obs: Mapping[str, Any]) -> bool:
    return any(_INDETERMINATE_RE.search(str(rr.get("text") or "")) for rr in _ranges(obs))


def polarity(obs: Mapping[str, Any] | None) -> Polarity | None:
    """Positive, negative or indeterminate, from (in order of authority):

    1. ``interpretation`` codes (the laboratory's own verdict: POS/DET/H/HH/A/AA, NEG/ND/N, IND/E);
    2. the qualitative value (SNOMED Positive/Negative/Detected..., or words such as "Non-reactive");
    3. a numeric value against ``referenceRange.high``.
    None when nothing says; the order follows criteria-codes.md I3 ("dsdna_positivity_order").
    """
    if not isinstance(obs, Mapping):
        return None
    return interpretation_polarity(obs) or value_polarity(obs) or range_polarity(obs)


# ------------------------------------------------------------------------------------ reference range


def _ranges(obs: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for rr in items(obs.get("referenceRange")):
        if rr.__class__ is dict or isinstance(rr, Mapping):
            yield rr


def reference_range(obs: Mapping[str, Any] | None) -> tuple[float | None, float | None]:
    """(low, high) of the general reference range: the first without ``appliesTo``/``age``, else the first."""
    if obs.__class__ is not dict and not isinstance(obs, Mapping):
        return None, None
    ranges = list(_ranges(obs))
    if not ranges:
        return None, None
    general = [rr for rr in ranges if not rr.get("appliesTo") and not rr.get("age")]
    chosen = (general or ranges)[0]
    low, high = _bound(chosen.get("low")), _bound(chosen.get("high"))
    if low is None and high is None and isinstance(chosen.get("text"), str):
        return range_of_text(chosen["text"])
    return low, high


# A range written out, as some feeds send it (only ``referenceRange.text``): "<30 IU/mL", "<= 9",
# "90-180 mg/dL", "0.6 to 1.2", ">60". The first band of a graded text ("Negative <20; Equivocal
# 20-25; Positive >25") is the normal range.
_NUM = r"(\d+(?:\.\d+)?|\.\d+)(?!\s*[:/]\s*\d)"  # not the 1 of a titer ("<1:40")
_BELOW_TEXT = re.compile(r"(?:<=|=<|≤|<)\s*" + _NUM)
_BETWEEN_TEXT = re.compile(_NUM + r"\s*(?:-|–|to)\s*" + _NUM)
_ABOVE_TEXT = re.compile(r"(?:>=|=>|≥|>)\s*" + _NUM)


def range_of_text(text: str) -> tuple[float | None, float | None]:
    """(low, high) of a reference range written as text; (None, None) when it says no numbers."""
    found = [
        (m.start(), kind, m)
        for kind, pattern in (("below", _BELOW_TEXT), ("between", _BETWEEN_TEXT), ("above", _ABOVE_TEXT))
        if (m := pattern.search(text)) is not None
    ]
    if not found:
        return None, None
    _at, kind, m = min(found, key=lambda hit: hit[0])
    if kind == "below":
        return None, float(m.group(1))
    if kind == "above":
        return float(m.group(1)), None
    low, high = float(m.group(1)), float(m.group(2))
    return (low, high) if low <= high else (None, None)


def _bound(q: object) -> float | None:
    return _number(q.get("value")) if q.__class__ is dict or isinstance(q, Mapping) else None


def is_below_range(obs: Mapping[str, Any]) -> bool | None:
    """Below the lab's low limit (interpretation L/LL, or value < referenceRange.low); None if unsure."""
    codes = interpretation_codes(obs)
    if codes & {"L", "LL", "LU"}:
        return True
    q = quantity_of(obs)
    low, _high = reference_range(obs)
    if q is not None and low is not None:
        return q.below(low)
    if codes & {"N", "H", "HH", "HU"}:
        return False
    return None
