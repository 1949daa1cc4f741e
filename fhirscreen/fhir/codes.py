"""Code systems, their aliases, and matching of codings against value sets.

EHRs send the same code system under several URIs (OIDs, Synthea's ``SNOMED-CT``), and ICD-10-CM
codes with or without the dot; everything is normalised here so that matching is a set lookup.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhirscreen.fhir.memo import new_table, per_resource
from fhirscreen.fhir.plausible import Plausible

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
UCUM = "http://unitsofmeasure.org"

# Short names used in trial files.
SHORT_NAMES: dict[str, str] = {
    "snomed": SNOMED,
    "icd10cm": ICD10CM,
    "icd10": ICD10,
    "loinc": LOINC,
    "rxnorm": RXNORM,
    "cpt": CPT,
    "hcpcs": HCPCS,
    "icd10pcs": ICD10PCS,
    "ucum": UCUM,
}

# Aliases seen in the wild (criteria-codes.md section 0.1), normalised to the canonical URI on input.
_ALIASES: dict[str, str] = {
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "snomed-ct": SNOMED,
    "http://snomed.info/sct/": SNOMED,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "icd-10-cm": ICD10CM,
    # WHO ICD-10 carries the same codes as ICD-10-CM for every value set here (issue 8 s2): an SLE
    # patient coded M32.1 under the WHO system is the same patient. Folded into ICD-10-CM on input.
    ICD10: ICD10CM,
    "urn:oid:2.16.840.1.113883.6.3": ICD10CM,
    "icd-10": ICD10CM,
    "http://id.who.int/icd/release/10": ICD10CM,
    "https://loinc.org": LOINC,
    "https://snomed.info/sct": SNOMED,
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "urn:oid:2.16.840.1.113883.6.12": CPT,
    "http://www.cms.gov/medicare/coding/hcpcsreleasecodesets": HCPCS,
    "http://www.nlm.nih.gov/research/umls/hcpcs": HCPCS,
    "urn:oid:2.16.840.1.113883.6.285": HCPCS,
    "urn:oid:2.16.840.1.113883.6.4": ICD10PCS,
    "http://hl7.org/fhir/sid/icd-10-pcs": ICD10PCS,  # seen in exports; not the registered URI
}

_ICD_SYSTEMS = frozenset({ICD10CM, ICD10})


def canonical_system(system: str | None) -> str:
    """The canonical URI for a code system URI or short name; unknown systems pass through. A system
    that is not text (malformed data: a list, a number) is no system, never an error."""
    if system.__class__ is str:
        return _canonical_str(system)
    if isinstance(system, str):
        return _canonical(system)
    return ""


@functools.lru_cache(maxsize=4096)
def _canonical_str(system: str) -> str:
    return _canonical(system)


def _canonical(system: str | None) -> str:
    if not system:
        return ""
    s = system.strip()
    low = s.lower()
    if low in SHORT_NAMES:
        short = SHORT_NAMES[low]
        return _ALIASES.get(short, short)
    alias = _ALIASES.get(low, _ALIASES.get(low.rstrip("/")))
    if alias is not None:
        return alias
    # An edition or version in the system URI (http://snomed.info/sct/731000124108, .../version/2025...)
    # belongs in Coding.version, but some exports put it here: it is still SNOMED CT.
    if low.startswith("http://snomed.info/sct/"):
        return SNOMED
    return s


def normalise_code(system: str, code: str) -> str:
    """ICD-10 codes are compared in upper case with the dot after the third character."""
    c = code.strip()
    if system in _ICD_SYSTEMS:
        c = c.upper().replace(".", "")
        if len(c) > 3:
            c = c[:3] + "." + c[3:]
    return c


# (system as sent, code as sent) -> normalised (system, code). Data use few distinct codes, and
# screening matches each one against dozens of value sets: normalising once per distinct pair is the
# single largest saving in evaluation. Bounded so that odd data cannot grow it without limit.
_NORMALISED: dict[tuple[str | None, str], tuple[str, str]] = {}
_NORMALISED_MAX = 200_000


def normalised(system: Any, code: str) -> tuple[str, str]:
    """``(canonical_system(system), normalise_code(...))``, cached for str/None systems."""
    key = (system, code)
    hit = _NORMALISED.get(key) if system is None or system.__class__ is str else None
    if hit is None:
        canonical = canonical_system(system)
        hit = (canonical, normalise_code(canonical, code))
        if (system is None or system.__class__ is str) and len(_NORMALISED) < _NORMALISED_MAX:
            _NORMALISED[key] = hit
    return hit


def coding_items(concept: object) -> list[Mapping[str, Any]]:
    """The codings of a CodeableConcept that are objects: none for a concept that is not an object or a
    ``coding`` that is not a list (malformed data read as no coding, never an error)."""
    if concept.__class__ is not dict and not isinstance(concept, Mapping):
        return []
    found = concept.get("coding")
    if found.__class__ is not list:
        return []
    return [c for c in found if c.__class__ is dict or isinstance(c, Mapping)]


def codings(concept: Mapping[str, Any] | None) -> Iterator[tuple[str, str, str]]:
    """(system, code, display) of every coding in a CodeableConcept, normalised; nothing for a concept
    that is not an object or a ``coding`` that is not a list (malformed data are no code, not an error)."""
    if not concept or (concept.__class__ is not dict and not isinstance(concept, Mapping)):
        return
    found = concept.get("coding")
    for coding in found if isinstance(found, list) else ():
        if coding.__class__ is not dict and not isinstance(coding, Mapping):  # JSON gives dicts
            continue
        code = coding.get("code")
        if not isinstance(code, str) or not code:
            continue
        system, norm = normalised(coding.get("system"), code)
        yield system, norm, str(coding.get("display") or "")


def concept_label(concept: Mapping[str, Any] | None) -> str:
    """A human label for a CodeableConcept: its text, else the first display, else the first code."""
    if not concept or (concept.__class__ is not dict and not isinstance(concept, Mapping)):
        return "(no code)"
    text = concept.get("text")
    if text and isinstance(text, str):
        return text
    first = None
    for _system, code, display in codings(concept):
        if display:
            return display
        first = first or code
    return first or "(no code)"


# A CodeableConcept as ``match`` reads it: per Coding (a Mapping) its normalised (system, code) key
# (None without a usable code) and display, then the concept's text.
Signature = tuple[tuple[tuple[tuple[str, str] | None, str], ...], str]

# signature -> a small number, the key of each ValueSet's answers. Bounded: past the limit new
# signatures get -1 and are matched directly (odd data must not grow memory without limit).
_SIGNATURE_NUMBERS: dict[Signature, int] = {}
_SIGNATURES_MAX = 100_000
# Answers remembered per value set (signatures carry displays and text, which vary in real data).
_RESULTS_MAX = 20_000
_UNKNOWN: Any = object()  # no answer remembered yet (None is an answer)


def _concept_signature(concept: Mapping[str, Any]) -> tuple[Signature, int]:
    """The signature of a CodeableConcept and its number (-1 when the table of numbers is full).

    Malformed data read as no code at all, never an error: a concept that is not an object (``"code":
    "M32.14"``), a ``coding`` that is not a list, a coding that is not an object, a text that is not a
    string."""
    parts = []
    if concept.__class__ is not dict and not isinstance(concept, Mapping):
        concept = {}
    codings = concept.get("coding")
    for coding in codings if isinstance(codings, list) else ():
        if coding.__class__ is not dict and not isinstance(coding, Mapping):
            continue
        code = coding.get("code")
        key = normalised(coding.get("system"), code) if isinstance(code, str) and code else None
        display = coding.get("display")
        parts.append((key, display if isinstance(display, str) else ""))
    text = concept.get("text")
    signature: Signature = (tuple(parts), text if isinstance(text, str) else "")
    number = _SIGNATURE_NUMBERS.get(signature)
    if number is None:
        if len(_SIGNATURE_NUMBERS) < _SIGNATURES_MAX:
            number = _SIGNATURE_NUMBERS[signature] = len(_SIGNATURE_NUMBERS)
        else:
            number = -1
    return signature, number


# A concept is matched against dozens of value sets: read once per patient. ``ValueSet.match`` (over
# a million calls at 50,000 people) looks in the table itself before calling the view.
_SIGNATURES = new_table()
concept_signature = per_resource(_concept_signature, _SIGNATURES)


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str = ""


@dataclass
class ValueSet:
    """A named set of codes: exact codes, ICD-10 style prefixes (``M32.1*``) and text patterns.

    Text patterns only apply where the trial file declares them (medications, cellular therapies),
    because free text is not a reliable diagnosis code.
    """

    name: str
    codes: dict[tuple[str, str], Code] = field(default_factory=dict)
    prefixes: dict[str, list[str]] = field(default_factory=dict)
    text_patterns: list[re.Pattern[str]] = field(default_factory=list)
    # The values a result of this set can physically take (a lab's value set only); not merged by include.
    plausible: Plausible | None = None
    # text -> does a pattern match it; texts repeat (drug names), regex searches are the cost.
    _text_hits: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)
    # signature number (see ``concept_signature``) -> answer of ``match``; emptied when the set changes.
    _results: dict[int, str | None] = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # ``_results`` is keyed by this process's signature numbers (``concept_signature``); another
        # process (a Spark worker unpickling the trial) numbers signatures afresh, so a cache that
        # travelled would answer for the wrong concepts. Caches stay behind.
        state = dict(self.__dict__)
        state["_results"] = {}
        state["_text_hits"] = {}
        return state

    def add(self, system: str, code: str, display: str = "") -> None:
        system = canonical_system(system)
        if code.endswith("*"):
            self.prefixes.setdefault(system, []).append(normalise_code(system, code[:-1]).rstrip("."))
        else:
            c = normalise_code(system, code)
            self.codes[(system, c)] = Code(system, c, display)
        self._results.clear()

    def add_text(self, pattern: str) -> None:
        self.text_patterns.append(re.compile(pattern, re.IGNORECASE))
        self._text_hits.clear()
        self._results.clear()

    def extend(self, other: ValueSet) -> None:
        self.codes.update(other.codes)
        for system, prefixes in other.prefixes.items():
            self.prefixes.setdefault(system, []).extend(prefixes)
        self.text_patterns.extend(other.text_patterns)
        self._text_hits.clear()
        self._results.clear()

    def has_code(self, system: str, code: str) -> bool:
        if (system, code) in self.codes:
            return True
        prefixes = self.prefixes.get(system)
        if prefixes:
            bare = code.replace(".", "")
            return any(bare.startswith(p.replace(".", "")) for p in prefixes)
        return False

    def match(self, concept: Mapping[str, Any] | None) -> str | None:
        """The display of the first matching coding (or the matching text), None if nothing matches."""
        if not concept:
            return None
        # Screening asks this for every resource against every value set a criterion reads (over a
        # million times at 50,000 people). The concept is reduced once to its signature (normalised
        # codes, displays, text), and the answer for a signature is computed once per value set:
        # real data use few distinct codings, so nearly every call is two dict lookups.
        held = _SIGNATURES.get(id(concept))
        if held is not None and held[0] is concept:
            signature, number = held[1]
        else:
            signature, number = concept_signature(concept)
        if number < 0:
            return self._match_signature(signature)
        results = self._results
        found: str | None = results.get(number, _UNKNOWN)
        if found is not _UNKNOWN:
            return found
        found = self._match_signature(signature)
        if len(results) < _RESULTS_MAX:
            results[number] = found
        return found

    def _match_signature(self, signature: Signature) -> str | None:
        codings, text = signature
        codes = self.codes
        prefixes = self.prefixes
        for key, display in codings:
            if key is None:
                continue
            if key in codes or (prefixes and self.has_code(*key)):
                known = codes.get(key)
                return display or (known.display if known else "") or key[1]
        if self.text_patterns:
            if text and self._text_matches(text):
                return text
            for _key, display in codings:
                if display and self._text_matches(display):
                    return display
        return None

    def _text_matches(self, text: str) -> bool:
        hit = self._text_hits.get(text)
        if hit is None:
            hit = any(p.search(text) for p in self.text_patterns)
            if len(self._text_hits) < 50_000:
                self._text_hits[text] = hit
        return hit

    def __contains__(self, concept: object) -> bool:
        return isinstance(concept, Mapping) and self.match(concept) is not None

    def searchable_codes(self) -> list[Code]:
        """Exact codes, for server searches (prefixes and text cannot be searched portably)."""
        return list(self.codes.values())


def union(name: str, sets: Iterable[ValueSet]) -> ValueSet:
    out = ValueSet(name)
    for vs in sets:
        out.extend(vs)
    return out
