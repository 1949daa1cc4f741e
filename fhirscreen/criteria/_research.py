"""What a ResearchSubject says about exposure to a study's intervention (E5, E7 and E8 alike).

R4 ``ResearchSubject.status`` (research-subject-status) mixes recruitment states with treatment states.
Only some of them mean the patient received the study's intervention:

- dosed: on-study, on-study-intervention (receiving it); follow-up, on-study-observation, off-study
  (past it: the washout runs from the end of the study period);
- pending: pending-on-study (about to start: a question for the coordinator);
- not dosed: candidate, potential-candidate, screening, eligible, ineligible, not-registered;
- withdrawn: dosed when the record shows the intervention started (an ``actualArm``, or an
  ``assignedArm`` with a study period that began by the screening date) or its text states doses given
  ("withdrew after 3 doses"); not dosed when it says the withdrawal came before any intervention (R5-style
  ``progress``, a note or an extension's text, e.g. "withdrawn before randomisation", "screen failure",
  "never dosed"; not "not treated further", which follows a dose); otherwise unknown.

No status is dropped at load (fhir/resources.py): a withdrawal after dosing is still exposure.

What the study is (``Study``): the reference's display, and the ResearchStudy it points at when the data
hold it (``PatientRecord.study``; every source reads the studies that records refer to). Its
title, focus and keywords may name the product (E7, E8), and so may its description, in plain words or
in words that leave it a question (``mention``: an eligibility section, an exclusion, a negation); its
phase, primary purpose, arm types, study
design, category and names tell an interventional study from an observational one (``Study.kind``: codes
of the standard code systems decide over free text; signs of both kinds that no code settles leave it
unclear, a question), and its identifiers this trial from another (E5). A study named only by a
reference that the data do not hold cannot be read: the reasons say so.

This trial's own ResearchSubjects (``this_trial_dosing``, one rule for E5, E7 and E8): a subject not dosed
(recruitment statuses, pending-on-study, a withdrawal before any intervention, a period that starts after
the screening date) is this enrolment, not prior therapy; one dosed (follow-up, off-study, on-study with a
period that ended, a withdrawal after the dose) received this single-dose trial's UC-MSC: a re-screen.
Where the patient stands in this trial (``this_trial_standing``: enrolled, dosed, screened before, in
recruitment) is what E5 says first and the reports show beside the patient's status.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, NamedTuple

from fhirscreen.fhir.codes import codings
from fhirscreen.fhir.dates import day
from fhirscreen.fhir.resources import items, ref, reference_id

Exposure = Literal["dosing", "after-dosing", "pending", "not-dosed", "unknown"]

DOSING = frozenset({"on-study", "on-study-intervention"})
AFTER_DOSING = frozenset({"follow-up", "on-study-observation", "off-study"})
PENDING = frozenset({"pending-on-study"})
NOT_DOSED = frozenset(
    {"candidate", "potential-candidate", "screening", "eligible", "ineligible", "not-registered"}
)
WITHDRAWN = "withdrawn"

# Words that place a withdrawal before any intervention. "Not treated" only when nothing follows that
# implies a treatment before ("not treated further", "not dosed again" follow a dose).
_BEFORE_INTERVENTION = re.compile(
    r"\b(before|prior to|without|never)\s+(any\s+|the\s+)?(first\s+)?"
    r"(dos|intervention|treatment|randomi[sz]|study (drug|product|treatment))"
    r"|\bscreen(ing)?[- ]fail"
    r"|\b(not|never)\s+(dosed|treated|randomi[sz]ed)\b"
    r"(?!\s+(further|again|any\s?more|since|after|beyond|thereafter|past|with\s+further))",
    re.IGNORECASE,
)
# Words that state doses were given ("withdrew after 3 doses", "received the first infusion"): dosed,
# whatever else the text says (a withdrawal after dosing is exposure).
_COUNT = (
    r"(?:[1-9]\d*|one|two|three|four|five|six|seven|eight|nine|ten"
    r"|several|some|all|the|a|an|his|her|their)"
)
_DOSES_GIVEN = re.compile(
    r"\b(after|following|received|receiving|had|got|given|completed|completing)\s+"
    rf"(?:{_COUNT}\s+)?(?:(?:first|second|third|initial|last|final|study|planned)\s+)*"
    r"(dos(e|es|ing)|infusions?|injections?|cycles?|administrations?)\b"
    rf"|\b{_COUNT}\s+(doses|infusions|injections|cycles)\s+(given|received|administered)\b"
    r"|\bwithdr[a-z]*\s+after\s+(dosing|treatment|the\s+infusion)\b",
    re.IGNORECASE,
)


Kind = Literal["interventional", "observational"]
# What ``Study.kind`` tells: unclear when its signs disagree and none decides (a question).
StudyKind = Literal["interventional", "observational", "unclear"]

# A study named as observational is not an intervention (protocol E5 says "interventional agent").
# ("cohort" alone is not enough: interventional trials have dose-escalation cohorts.) A
# "non-interventional study" is the European name of an observational one.
_OBSERVATIONAL = re.compile(
    r"\b(registr(y|ies)|observational|natural history|biobank|cohort study|survey|non-?\s?interventional)\b",
    re.IGNORECASE,
)
# "Interventional", but not in "non-interventional".
_INTERVENTIONAL = re.compile(r"(?<!non)(?<!non-)(?<!non )\binterventional\b", re.IGNORECASE)
# Research-study-phase codes of a trial phase (n-a is not one); phases are given to interventional
# trials only (ClinicalTrials.gov).
_TRIAL_PHASES = frozenset(
    {"early-phase-1", "phase-1", "phase-1-phase-2", "phase-2", "phase-2-phase-3", "phase-3", "phase-4"}
)
_PHASE_TEXT = re.compile(r"\bphase\s*(?:[1-4]|i{1,3}|iv)[ab]?\b", re.IGNORECASE)
# Words only an interventional study's name uses ("randomized", "placebo", "trial").
_TRIAL_WORDS = re.compile(
    r"\b(randomi[sz]ed|randomi[sz]ation|placebo|(double|single|triple)[- ]blind(ed)?|open[- ]label"
    r"|dose[- ](escalation|finding|ranging)|trials?)\b",
    re.IGNORECASE,
)
# Research-study-arm-type: arms that give something. no-intervention is not (an interventional trial may
# have such an arm, and an observational study has no arms at all).
_INTERVENTION_ARM = re.compile(
    r"^\s*(experimental|(active|placebo|sham)[- ]?comparator)\b", re.IGNORECASE
)
# Research-study-prim-purp-type: ClinicalTrials.gov gives a primary purpose to interventional studies only
# (observational ones have a model and a time perspective).
_PURPOSES = frozenset({
    "treatment", "prevention", "diagnostic", "supportive-care", "screening", "health-services-research",
    "basic-science", "device-feasibility",
})

# The standard code systems of the elements that tell a study's kind, R4 (terminology.hl7.org) and R5
# (hl7.org/fhir). A code from one of them is decisive by FHIR semantics; the same words as text (a
# concept's text, a display, a coding without a system or from a local one, the study's title) are not.
_PHASE_SYSTEMS = frozenset({
    "http://terminology.hl7.org/CodeSystem/research-study-phase", "http://hl7.org/fhir/research-study-phase",
})
_PURPOSE_SYSTEMS = frozenset({
    "http://terminology.hl7.org/CodeSystem/research-study-prim-purp-type",
    "http://hl7.org/fhir/research-study-prim-purp-type",
})
# R4's ResearchStudy.arm.type has no binding; R5's comparisonGroup.type is bound to this code system.
_ARM_TYPE_SYSTEMS = frozenset({"http://hl7.org/fhir/research-study-arm-type"})
# R5 ResearchStudy.studyDesign (study-design: SEVCO codes); an R4 export may carry them in category.
_DESIGN_SYSTEMS = frozenset({
    "http://hl7.org/fhir/study-design", "http://terminology.hl7.org/CodeSystem/study-design",
    "https://fevir.net/sevco",
})
# SEVCO 01001 "Interventional research" and the assignment designs under it (randomized 01003 with its
# kinds 01006-01009, non-randomized 01005); 01002 "Observational research".
_DESIGN_KIND: dict[str, Kind] = {
    **{f"SEVCO:0100{n}": "interventional" for n in (1, 3, 5, 6, 7, 8, 9)},
    "SEVCO:01002": "observational",
}


def observational(study_text: str) -> bool:
    """True when a study's name says it is observational (a registry, a cohort): no agent is given."""
    return bool(_OBSERVATIONAL.search(study_text))


def _concept_texts(concept: object) -> list[str]:
    """The text, displays and codes of a CodeableConcept (nothing for one not in FHIR's form)."""
    if not isinstance(concept, Mapping):
        return []
    found = [str(concept["text"])] if isinstance(concept.get("text"), str) and concept["text"] else []
    for _system, code, display in codings(concept):
        found += [t for t in (display, code) if t]
    return found


def _coded(concept: object, systems: frozenset[str]) -> list[str]:
    """The codes of a CodeableConcept from one of ``systems`` (the standard code system of its element)."""
    if not isinstance(concept, Mapping):
        return []
    return [code for system, code, _display in codings(concept) if system in systems]


def _purpose(text: str) -> str | None:
    """The interventional primary purpose a primaryPurposeType names ("treatment"), by code or text."""
    found = re.sub(r"[\s_]+", "-", text.strip().lower())
    return found if found in _PURPOSES else None


def _phase(text: str) -> str | None:
    """The trial phase a phase code or text names ("phase-2", "Phase 2"); None for n-a or none."""
    if text.lower() in _TRIAL_PHASES or _PHASE_TEXT.search(text):
        return text
    return None


def _design(code: str) -> Kind | None:
    plain = code.strip().upper()
    return _DESIGN_KIND.get(plain if plain.startswith("SEVCO:") else f"SEVCO:{plain}")


@dataclass(frozen=True)
class Sign:
    """One thing a ResearchStudy says about its kind: which kind, in words for a reason, and whether it
    is a code of the element's standard code system (decisive) or free text."""

    kind: Kind
    how: str
    coded: bool


def _first(texts: Sequence[str], read: Callable[[str], str | None]) -> str | None:
    return next((found for t in texts if (found := read(t)) is not None), None)


def _element_signs(resource: Mapping[str, Any]) -> list[Sign]:
    """The signs of a ResearchStudy's coded elements: phase, primary purpose, arm types, study design
    (R5 studyDesign, or category), each coded (its standard code system) or as text."""
    signs: list[Sign] = []
    for key, systems, read, named, uncoded in (
        ("phase", _PHASE_SYSTEMS, _phase, "its phase", "not a research-study-phase code"),
        ("primaryPurposeType", _PURPOSE_SYSTEMS, _purpose, "its primary purpose", "not a code"),
    ):
        concept = resource.get(key)
        coded = _first(_coded(concept, systems), read)
        if coded is not None:
            signs.append(Sign("interventional", f"{named} coded {coded}", True))
        elif (worded := _first(_concept_texts(concept), read)) is not None:
            signs.append(Sign("interventional", f"{named} '{worded}' ({uncoded})", False))
    arms = [a.get("type") for a in items(resource.get("arm")) + items(resource.get("comparisonGroup"))
            if isinstance(a, Mapping)]
    coded = next((c for t in arms for c in _coded(t, _ARM_TYPE_SYSTEMS) if _INTERVENTION_ARM.search(c)), None)
    if coded is not None:
        signs.append(Sign("interventional", f"an arm coded {coded}", True))
    elif (worded := next((t for a in arms for t in _concept_texts(a) if _INTERVENTION_ARM.search(t)), None)):
        signs.append(Sign("interventional", f"an arm of type '{worded}' (not a research-study-arm-type code)",
                          False))
    designs = items(resource.get("category")) + items(resource.get("studyDesign"))
    for kind in ("interventional", "observational"):
        code = next((c for d in designs for c in _coded(d, _DESIGN_SYSTEMS) if _design(c) == kind), None)
        if code is not None:
            signs.append(Sign(kind, f"its study design coded {code} ({kind} research)", True))
    return signs


def _text_signs(categories: Sequence[str], names: Sequence[str]) -> list[Sign]:
    """The signs of a study's free text: its category's text and its names (the reference's display, the
    title, identifiers, keywords)."""
    signs: list[Sign] = []
    for where, texts in (("its category", categories), ("its name", names)):
        said = next((m.group(0) for t in texts if (m := _INTERVENTIONAL.search(t))), None)
        if said is not None:
            signs.append(Sign("interventional", f"'{said}' in {where}", False))
    worded = next((m.group(0) for t in names for m in (_PHASE_TEXT.search(t), _TRIAL_WORDS.search(t)) if m),
                  None)
    if worded is not None:
        signs.append(Sign("interventional", f"'{worded}' in its name", False))
    for where, texts in (("its category", categories), ("its name", names)):
        said = next((m.group(0) for t in texts if (m := _OBSERVATIONAL.search(t))), None)
        if said is not None:
            signs.append(Sign("observational", f"'{said}' in {where}", False))
    return signs


def _description_signs(text: str) -> list[Sign]:
    """The signs of a study's description said in plain words (``mention``), as free text."""
    signs: list[Sign] = []
    kinds: tuple[tuple[Kind, tuple[re.Pattern[str], ...]], ...] = (
        ("interventional", (_INTERVENTIONAL, _PHASE_TEXT, _TRIAL_WORDS)),
        ("observational", (_OBSERVATIONAL,)),
    )
    for kind, patterns in kinds:
        said = mention(text, patterns, product=False)
        if said is not None and said.conclusive:
            signs.append(Sign(kind, f"'{said.said}' in its description", False))
    return signs


def _said(signs: Sequence[Sign], kind: str) -> str:
    return ", ".join(s.how for s in signs if s.kind == kind)


class KindReading(NamedTuple):
    """What ``Study.kind`` tells: the kind (None when nothing tells), how, in words for a reason, and
    whether signs of the other kind were seen (overruled by a code, or leaving the kind unclear)."""

    kind: StudyKind | None
    how: str
    contested: bool = False


@dataclass(frozen=True)
class Study:
    """The study a ResearchSubject is on, as far as the data tell: its ``study`` Reference and, when the
    data hold it, the ResearchStudy that reference points at."""

    reference: Mapping[str, Any]  # ResearchSubject.study ({} when absent or not an object)
    resource: Mapping[str, Any] | None  # the ResearchStudy, resolved by the record; None when not held

    @property
    def ref(self) -> str | None:
        """``ResearchStudy/abc``, the resource behind the evidence, when the reference names one."""
        rid = reference_id(self.reference, "ResearchStudy")
        return f"ResearchStudy/{rid}" if rid else None

    @property
    def display(self) -> str:
        display = self.reference.get("display")
        return display if isinstance(display, str) else ""

    @property
    def title(self) -> str:
        title = self.resource.get("title") if self.resource is not None else None
        return title if isinstance(title, str) else ""

    @property
    def unread(self) -> bool:
        """Named only by a reference the data do not hold (no display): what it is cannot be told."""
        return self.resource is None and not self.display and self.ref is not None

    def concepts(self) -> list[Mapping[str, Any]]:
        """What may name the study's product, for a value set: the reference's display, then the
        study's title, focus and keywords (codes and text). Not its description, which is prose that may
        name a product only to exclude it ("no prior CAR-T therapy"): ``description`` and ``mention``."""
        found: list[Mapping[str, Any]] = [{"text": self.display}] if self.display else []
        if self.title:
            found.append({"text": self.title})
        if self.resource is not None:
            for element in ("focus", "keyword"):
                found += [c for c in items(self.resource.get(element)) if isinstance(c, Mapping)]
        return found

    def description(self) -> str:
        """The study's prose: its description (R4 markdown), and an R5 descriptionSummary."""
        if self.resource is None:
            return ""
        found = [self.resource.get(k) for k in ("descriptionSummary", "description")]
        return "\n".join(t for t in found if isinstance(t, str) and t.strip())

    def _reference_parts(self) -> list[str]:
        identifier = self.reference.get("identifier")
        value = identifier.get("value") if isinstance(identifier, Mapping) else None
        return [str(p) for p in (self.reference.get("reference"), value) if p]

    def text(self) -> str:
        """Everything that names the study, to tell this trial from another: the reference's display,
        reference and identifier, and the study's title and identifiers."""
        parts = [self.display, self.title, *self._reference_parts()]
        if self.resource is not None:
            parts += [
                str(i["value"]) for i in items(self.resource.get("identifier"))
                if isinstance(i, Mapping) and i.get("value")
            ]
        return " ".join(dict.fromkeys(p for p in parts if p))

    def name(self) -> str:
        """How a reason names the study: its display (else its title), reference and identifier; a study
        named only by a reference the data do not hold says that it could not be read."""
        parts = [self.display or self.title, *self._reference_parts()]
        named = " ".join(dict.fromkeys(p for p in parts if p))
        if self.unread:
            return f"{named} (not in the data: the study could not be read)"
        return named

    def kind(self) -> KindReading:
        """("interventional" | "observational" | "unclear" | None, how it was told, contested).

        Signs of an intervention: a trial phase (the phase element, or "Phase 2" in a name: phases are
        given to interventional trials only); a primary purpose (treatment, prevention,
        supportive-care...: given to interventional studies only); an arm of type experimental or
        active-, placebo- or sham-comparator; an interventional study design (SEVCO); "interventional" or
        trial words (randomized, placebo, double-blind, open-label, dose-escalation or dose-finding,
        trial) in its category's text or a name. Signs of an observational study: an observational
        study design (SEVCO), or a category or name saying so (a registry, a cohort study, a
        non-interventional study).

        Precedence: a code of an element's standard code system (research-study-phase,
        research-study-prim-purp-type, research-study-arm-type, study-design) is FHIR's own statement
        and decides over free text (titles, category text, concept text, local codes). The coded signs
        decide when they agree; when they disagree, or when there are none and the free-text signs
        disagree, the kind is "unclear": a question for the coordinator, and ``how`` names both sides.
        The description is read last, only when nothing else gives a sign, and only where it says the
        words in plain terms (``mention``: not in an eligibility section, not negated, not the
        participants' past: "patients previously in randomized trials" is no sign). None (and "") when
        nothing tells."""
        resource = self.resource if self.resource is not None else {}
        categories = [t for c in items(resource.get("category")) for t in _concept_texts(c)]
        keywords = [t for c in items(resource.get("keyword")) for t in _concept_texts(c)]
        signs = _element_signs(resource) + _text_signs(categories, [self.text(), *keywords])
        if not signs:  # the description, last: prose, read only where nothing else tells
            signs = _description_signs(self.description())
        coded = [s for s in signs if s.coded]
        decided = coded or signs
        kinds = {s.kind for s in decided}
        if len(kinds) > 1:
            by = "its codes disagree" if coded else "free text only, no coded phase, purpose, arm or design"
            return KindReading("unclear", f"observational by {_said(decided, 'observational')} but "
                               f"interventional by {_said(decided, 'interventional')}: {by}", True)
        if not kinds:
            return KindReading(None, "")
        kind = kinds.pop()
        how = f"by {_said(decided, kind)}"
        overruled = [s for s in signs if not s.coded and s.kind != kind]
        if overruled:
            how += f" (a code decides over {', '.join(s.how for s in overruled)})"
        return KindReading(kind, how, bool(overruled))


# A study description's eligibility section: what follows names the participants' history, not what the
# study gives ("Exclusion criteria: prior MSC therapy").
_ELIGIBILITY = re.compile(r"\b(inclusion|exclusion|eligibility)\s+criteria\b", re.IGNORECASE)
# Anywhere in a sentence: the product is named as a reason to exclude ("Prior MSC therapy excluded").
_EXCLUDING = re.compile(
    r"\bexclu\w*|\bineligib\w*|\bnot\s+(be\s+)?eligible\b|\bnot\s+(allowed|permitted)\b|\bprohibit\w*"
    r"|\bcontraindicat\w*",
    re.IGNORECASE,
)
# Before the product in its sentence: a negation, or the participants' past ("no prior MSC", "patients
# previously treated with CAR-T", "other than MSC").
_NOT_GIVEN_HERE = re.compile(
    r"\b(no|not|non|nor|neither|without|never|prior|previous(ly)?|history|other\s+than"
    r"|except|excluding|unlike|instead\s+of|rather\s+than|failed|refractory\s+to)\b",
    re.IGNORECASE,
)
# Right after the product: "MSC-naive", "CAR-T naive".
_NAIVE = re.compile(r"^[\s-]*(na[i\u00ef]ve|free)\b", re.IGNORECASE)
# Words that give a product, governing it from just before ("a single infusion of UC-MSC", "receive
# CAR-T cells") or just after ("UC-MSC infusion", "CAR-T cell therapy", "MSCs are administered"): a
# description says the study gives it only so. Elsewhere ("low-dose IL-2 to expand regulatory T cells",
# "MSCs are immunomodulatory") the product is named as a mechanism or background: a question.
_GIVING = re.compile(
    r"\b(infus\w*|inject\w*|administ\w*|receiv\w*|given|dos(e|es|ed|ing)|transplant\w*|transfus\w*"
    r"|treated|treatment|therap(y|ies)|implant\w*|delivered)\b",
    re.IGNORECASE,
)
# Between a giving word and the product: the product is not what is given ("injections to expand Tregs").
_MECHANISM = re.compile(
    r"\b(expand\w*|increas\w*|induc\w*|promot\w*|restor\w*|boost\w*|enhanc\w*|modulat\w*|target\w*"
    r"|deplet\w*|suppress\w*|activat\w*|levels?|counts?|numbers?|function\w*|effects?|mechanism\w*)\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.;!?])\s+|\n+|\s+[\u2022*]\s+|\s+-\s+(?=[A-Z])")


class Mention(NamedTuple):
    """A product named in a study's description: the words that matched, their sentence, and whether the
    sentence says the study gives it (conclusive) or names it only in words that do not (an eligibility
    section, an exclusion, a negation, the participants' past treatment): then it is a question."""

    said: str
    sentence: str
    conclusive: bool


def _given(before: str, after: str) -> bool:
    """Whether a giving word governs the product: in the six words before it with no mechanism word
    between, or in the four words after it."""
    tail = " ".join(before.split()[-6:])
    found = list(_GIVING.finditer(tail))
    last = found[-1] if found else None
    if last is not None and not _MECHANISM.search(tail[last.end():]):
        return True
    head = " ".join(after.split()[:4])
    first = _GIVING.search(head)
    return first is not None and not _MECHANISM.search(head[: first.start()])


def mention(text: str, patterns: Sequence[re.Pattern[str]], *, product: bool = True) -> Mention | None:
    """How a study's description (``Study.description``) names a product of ``patterns`` (a value set's
    text patterns; codes are not prose): the first mention in plain words that give it ("a single
    infusion of umbilical cord mesenchymal stromal cells": conclusive), else the first in words that do
    not say the study gives it ("Prior MSC therapy excluded", "no previous CAR-T", "IL-2 to expand
    regulatory T cells"): not conclusive. None when the description does not name it. With ``product``
    False (words that are no product: a study's kind), no giving word is asked for."""
    if not text or not patterns:
        return None
    heading = _ELIGIBILITY.search(text)
    eligibility_from = heading.start() if heading else len(text)
    doubtful: Mention | None = None
    offset = 0
    for sentence in _SENTENCE.split(text):
        start = text.find(sentence, offset)
        offset = start + len(sentence) if start >= 0 else offset
        if not sentence.strip():
            continue
        for pattern in patterns:
            for found in pattern.finditer(sentence):
                before, after = sentence[: found.start()], sentence[found.end():]
                plain = not (
                    start + found.start() >= eligibility_from or _EXCLUDING.search(sentence)
                    or _NOT_GIVEN_HERE.search(before) or _NAIVE.search(after)
                ) and (not product or _given(before, after))
                said = Mention(found.group(0), sentence.strip(), plain)
                if plain:
                    return said
                doubtful = doubtful or said
    return doubtful


def _plain(text: str) -> str:
    """An identifier as compared: without spaces, hyphens or dashes, in lower case ("NCT 06737380",
    "nct-06737380" and "NCT06737380" are one)."""
    return re.sub(r"[\s\-\u2010-\u2015_]+", "", text).lower()


def is_this_study(text: str, ids: Sequence[str]) -> bool:
    """Whether a study's names (``Study.text``) name the trial being screened for (its NCT number),
    however spaced or hyphenated (and not as the start of a longer number). What its own ResearchSubjects
    mean: ``this_trial_dosing``."""
    plain = _plain(text)
    return any(
        re.search(re.escape(_plain(i)) + r"(?!\d)", plain) is not None for i in ids if _plain(i)
    )


def study_of(subject: Mapping[str, Any], resource: Mapping[str, Any] | None) -> Study:
    """The ``Study`` of a ResearchSubject, with the ResearchStudy the record resolved (or None)."""
    reference = subject.get("study")
    return Study(reference if isinstance(reference, Mapping) else {}, resource)


@dataclass(frozen=True)
class Participation:
    """One ResearchSubject read for exposure."""

    subject: Mapping[str, Any]
    exposure: Exposure
    status: str
    start: date | None
    end: date | None  # None: open (still on study on the screening date) or not recorded
    why: str  # how the exposure was read, for reasons

    @property
    def ref(self) -> str:
        return ref(self.subject)

    @property
    def exposed(self) -> bool:
        return self.exposure in ("dosing", "after-dosing")


def _texts(value: object) -> Iterator[str]:
    """Every string inside an element (extension values, R5 progress reasons, CodeableConcept texts)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v)


_WHY_ELEMENTS = ("extension", "modifierExtension", "progress", "statusReason", "note")


def _doses_given(subject: Mapping[str, Any]) -> str | None:
    """The words of a withdrawn subject's record that state doses were given ("after 3 doses"), if any."""
    for element in _WHY_ELEMENTS:
        for text in _texts(subject.get(element)):
            found = _DOSES_GIVEN.search(text)
            if found:
                return found.group(0)
    return None


def _withdrawn_before_intervention(subject: Mapping[str, Any]) -> bool:
    for element in _WHY_ELEMENTS:
        if any(_BEFORE_INTERVENTION.search(t) for t in _texts(subject.get(element))):
            return True
    return False


def participation(
    subject: Mapping[str, Any],
    as_of: date,
    *,
    dosing: frozenset[str] | tuple[str, ...] = DOSING,
    after_dosing: frozenset[str] | tuple[str, ...] = AFTER_DOSING,
    pending: frozenset[str] | tuple[str, ...] = PENDING,
) -> Participation:
    """Read one ResearchSubject's status (and, for withdrawals, its arms and period) as exposure."""
    period = subject.get("period")
    period = period if isinstance(period, Mapping) else {}
    start, end = day(period.get("start")), day(period.get("end"))
    if end is not None and end > as_of:
        end = None  # still on study on the screening date
    status = str(subject.get("status") or "")

    def read(exposure: Exposure, why: str) -> Participation:
        return Participation(subject, exposure, status, start, end, why)

    if status in dosing:
        return read("dosing", f"status {status}")
    if status in after_dosing:
        return read("after-dosing", f"status {status}")
    if status in pending:
        return read("pending", f"status {status}: about to start")
    if status == WITHDRAWN:
        given = _doses_given(subject)
        if given is not None:
            return read("after-dosing", f"withdrawn after dosing ('{given}')")
        if _withdrawn_before_intervention(subject):
            return read("not-dosed", "withdrawn before any intervention")
        started = start is not None and start <= as_of
        if subject.get("actualArm") or (subject.get("assignedArm") and started):
            arm = subject.get("actualArm") or subject.get("assignedArm")
            return read("after-dosing", f"withdrawn after starting arm {arm}")
        return read("unknown", "withdrawn; whether before or after the first study dose is not recorded")
    if status in NOT_DOSED:
        return read("not-dosed", f"status {status}: not dosed")
    return read("unknown", f"status {status or 'not recorded'}")


ThisTrialDosing = Literal["not-dosed", "dosed", "enrolled", "unknown"]


def this_trial_dosing(taking: Participation, as_of: date) -> ThisTrialDosing:
    """What a ResearchSubject of the trial being screened for (single-dose UC-MSC) says about its dose, one
    rule for E5, E7 and E8:

    - not-dosed: not dosed or about to be (candidate, screening, eligible, ineligible, not-registered,
      pending-on-study, withdrawn before any intervention), or a period that starts after the screening
      date: this enrolment, not prior therapy (exempt);
    - dosed: follow-up, on-study-observation, off-study, on-study with a period that ended by the
      screening date, withdrawn after the dose: a re-screen of a patient who received this trial's
      UC-MSC (E7: MSC therapy; E5: an interventional agent; E8: MSC, excepted);
    - enrolled: on-study (or on-study-intervention) with an open period: may already have received its
      dose (E7: a question; E5: not counted, asked under E7);
    - unknown: a bare withdrawal or an unrecorded status: may have been dosed (a question)."""
    if taking.exposure in ("not-dosed", "pending") or (taking.start is not None and taking.start > as_of):
        return "not-dosed"
    if taking.exposure == "after-dosing" or (taking.exposure == "dosing" and taking.end is not None):
        return "dosed"
    if taking.exposure == "dosing":
        return "enrolled"
    return "unknown"


Standing = Literal["enrolled", "dosed", "screened-before", "in-recruitment", "unknown"]
# Statuses that close a screening without enrolment (R4 research-subject-status).
SCREENED_OUT = frozenset({"ineligible", "not-registered"})


def this_trial_standing(taking: Participation, as_of: date) -> Standing:
    """Where a patient stands in the trial being screened for, by one of its ResearchSubjects: what a
    coordinator must know beside the status (E5 says it, and the reports show it with the patient).

    - enrolled: on-study with an open period (``this_trial_dosing`` "enrolled": may have been dosed), or
      enrolled from a day after the screening date;
    - dosed: this trial's UC-MSC was given (a re-screen);
    - screened-before: a screening that ended without a dose (ineligible, not-registered, withdrawn
      before any intervention);
    - in-recruitment: candidate, potential-candidate, screening, eligible, pending-on-study;
    - unknown: a bare withdrawal or an unrecorded status (may have been dosed)."""
    dosing = this_trial_dosing(taking, as_of)
    if dosing == "enrolled" or dosing == "dosed" or dosing == "unknown":
        return dosing
    if taking.status in SCREENED_OUT or taking.status == WITHDRAWN:
        return "screened-before"
    if taking.exposure in ("dosing", "after-dosing"):  # a period from after the screening date
        return "enrolled"
    return "in-recruitment"
