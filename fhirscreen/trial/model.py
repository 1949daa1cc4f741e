"""The schema of a trial file (``queries/<trial>.yaml``), validated with pydantic on load."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fhirscreen.fhir.codes import SHORT_NAMES, ValueSet
from fhirscreen.fhir.plausible import Plausible

CRITERION_ID = re.compile(r"^[IE][1-9][0-9]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CodeEntry(_Strict):
    system: str
    code: str  # a trailing * makes an ICD-10 prefix match, e.g. M32.1*
    display: str = ""
    confidence: str | None = None  # tag from criteria-codes.md (V-vsac, V-src, likely, unverified...)
    note: str | None = None

    @field_validator("system")
    @classmethod
    def _known_system(cls, v: str) -> str:
        if v.lower() not in SHORT_NAMES and "://" not in v and not v.startswith("urn:"):
            raise ValueError(f"unknown code system {v!r}; use one of {sorted(SHORT_NAMES)} or a URI")
        return v

    @field_validator("code", mode="before")
    @classmethod
    def _code_is_text(cls, v: Any) -> Any:
        # YAML reads 55464009 as an int; codes are strings.
        return str(v) if isinstance(v, int) else v


class PlausibleDef(_Strict):
    """The values a lab result can physically take (fhir/plausible.py): outside them it is an entry
    error, an ``implausible-value`` finding, and no criterion's evidence."""

    min: float | None = None  # inclusive
    above: float | None = None  # exclusive: the bound itself is impossible too (a creatinine of 0)
    max: float | None = None  # inclusive
    # The unit of the bounds: the one the criteria convert results to ("" for bounds that hold in any
    # unit the results come in: a negative concentration or count).
    unit: str = ""
    why: str  # the reason for the bounds, for whoever reviews the trial file

    @model_validator(mode="after")
    def _bounds(self) -> PlausibleDef:
        if self.min is not None and self.above is not None:
            raise ValueError("give min or above, not both")
        low = self.min if self.min is not None else self.above
        if low is None and self.max is None:
            raise ValueError("give at least one bound (min, above or max)")
        if low is not None and self.max is not None and low >= self.max:
            raise ValueError(f"the lower bound {low:g} is not below max {self.max:g}")
        return self

    def bounds(self) -> Plausible:
        low = self.min if self.min is not None else self.above
        return Plausible(low, self.max, self.above is not None, self.unit, self.why)


class ValueSetDef(_Strict):
    description: str = ""
    source: str | None = None
    include: list[str] = Field(default_factory=list)  # other value sets merged into this one
    codes: list[CodeEntry] = Field(default_factory=list)
    # Case-insensitive regular expressions on CodeableConcept.text/display, for concepts with no code.
    text: list[str] = Field(default_factory=list)
    plausible: PlausibleDef | None = None  # a lab's possible values (not merged into including sets)

    @field_validator("text")
    @classmethod
    def _valid_regex(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                # The flags ValueSet.add_text compiles with: its compile is then a hit in re's cache
                # (compiling the trial's 200-odd patterns is most of the time a trial takes to load).
                re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"bad text pattern {pattern!r}: {exc}") from exc
        return v


class CriterionDef(_Strict):
    id: str
    type: Literal["inclusion", "exclusion"]
    text: str  # the protocol's own words
    title: str  # a short name for tables
    evaluator: str
    computability: Literal["computable", "partial", "manual"]
    how: str  # how the criterion is evaluated from FHIR data, in a sentence or two
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not CRITERION_ID.match(v):
            raise ValueError(f"criterion id {v!r} must look like I1 or E12")
        return v


class Population(_Strict):
    description: str
    value_set: str


class TrialInfo(_Strict):
    id: str
    title: str
    url: str | None = None
    population: Population
    measure_url: str | None = None  # canonical URL of the Measure the MeasureReport points at


class TrialDef(_Strict):
    trial: TrialInfo
    value_sets: dict[str, ValueSetDef]
    criteria: list[CriterionDef]

    @model_validator(mode="after")
    def _consistent(self) -> TrialDef:
        ids = [c.id for c in self.criteria]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"criterion ids appear twice: {', '.join(dupes)}")
        if self.trial.population.value_set not in self.value_sets:
            raise ValueError(f"population value set {self.trial.population.value_set!r} is not declared")
        for name, vs in self.value_sets.items():
            for inc in vs.include:
                if inc not in self.value_sets:
                    raise ValueError(f"value set {name!r} includes unknown value set {inc!r}")
        return self


def build_value_sets(defs: dict[str, ValueSetDef]) -> dict[str, ValueSet]:
    """Materialise value sets, resolving ``include`` (cycles are cut, not followed forever)."""
    built: dict[str, ValueSet] = {}

    def build(name: str, stack: tuple[str, ...]) -> ValueSet:
        if name in built:
            return built[name]
        d = defs[name]
        vs = ValueSet(name, plausible=d.plausible.bounds() if d.plausible else None)
        for entry in d.codes:
            vs.add(entry.system, entry.code, entry.display)
        for pattern in d.text:
            vs.add_text(pattern)
        for inc in d.include:
            if inc not in stack:
                vs.extend(build(inc, (*stack, inc)))
        built[name] = vs
        return vs

    for name in defs:
        build(name, (name,))
    return built
