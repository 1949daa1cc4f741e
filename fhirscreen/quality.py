"""Data-quality findings: problems in the input that did not stop the run.

Findings name a file or a resource id, never patient names, birth dates or identifiers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal

Severity = Literal["error", "warning", "info"]

# The problem code of data that was lost after retries (a file that could not be read, a page that
# never came): the run's outputs are then partial, and the exit code says so (exitcodes.EXIT_PARTIAL).
DATA_LOST = "data-lost"


def lost_parts(count: int) -> str:
    """How much a partial run lost, in every output that says so: files, pages and searches not read
    whole, and what the server itself said it did not export or answer in full."""
    return f"{count} part(s) of the source (files, pages or searches) were lost or reported incomplete"
# The problem code of a value that cannot be real (an eGFR of -5, a birth date after the screening date):
# an entry error, which no criterion uses as evidence.
IMPLAUSIBLE = "implausible-value"
# The problem code of a source that holds no Condition resource at all (a file input that holds other
# resources, or a server whose Condition search finds none): the initial population (SLE diagnoses)
# cannot be found there, so an empty screening is a broken night, not a quiet one
# (exitcodes.EXIT_NOTHING_USABLE).
NO_CONDITIONS = "no-conditions"
# The problem code (info) of a source that holds Conditions, none of them coded in the population value
# set: nobody to screen, a quiet night (exit 0) in every mode; a server run, which reads only the
# initial population's patients and so reads none then, is not "nothing usable" with it.
EMPTY_POPULATION = "empty-population"


# Control characters as escapes (``\n`` -> ``\\n``): a finding, or a log line, is one line of the
# run's log whatever the data hold (a resource id with a line break would forge a line otherwise).
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape_controls(text: str) -> str:
    """``text`` with control characters escaped (see ``_ESCAPES``); unchanged, and fast, when it has none."""
    if text.isprintable():
        return text
    return text.translate(_ESCAPES)


@dataclass(frozen=True)
class Finding:
    severity: Severity
    where: str  # a file path (with line) or a resource reference such as Observation/123
    problem: str  # a short category, e.g. "malformed-json", "no-subject", "unknown-unit"
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class DataQuality:
    """Collects findings; the run goes on. Duplicates (same where/problem) are kept once."""

    findings: list[Finding] = field(default_factory=list)
    _seen: set[tuple[str, str, str]] = field(default_factory=set, repr=False)

    def add(self, severity: Severity, where: str, problem: str, message: str) -> None:
        where, message = escape_controls(where), escape_controls(message)
        key = (where, problem, message)
        if key in self._seen:
            return
        self._seen.add(key)
        self.findings.append(Finding(severity, where, problem, message))

    def lost(self, where: str, message: str) -> None:
        """Record data lost after retries: the run goes on, but its outputs are marked partial."""
        self.add("error", where, DATA_LOST, message)

    @property
    def partial(self) -> bool:
        return any(f.problem == DATA_LOST for f in self.findings)

    @property
    def no_conditions(self) -> bool:
        """The source holds no Condition at all (see ``NO_CONDITIONS``)."""
        return any(f.problem == NO_CONDITIONS for f in self.findings)

    @property
    def empty_population(self) -> bool:
        """The source holds Conditions, none in the population value set (see ``EMPTY_POPULATION``)."""
        return any(f.problem == EMPTY_POPULATION for f in self.findings)

    def extend(self, other: DataQuality) -> None:
        for f in other.findings:
            self.add(f.severity, f.where, f.problem, f.message)

    def counts(self) -> Counter[str]:
        return Counter(f.problem for f in self.findings)

    def sorted(self) -> list[Finding]:
        order = {"error": 0, "warning": 1, "info": 2}
        return sorted(self.findings, key=lambda f: (order[f.severity], f.problem, _place(f.where), f.message))


def _place(where: str) -> tuple[str, int, str]:
    """Where, for sorting: "file.ndjson:9" before "file.ndjson:19" (line numbers as numbers)."""
    stem, colon, line = where.rpartition(":")
    if colon and line.isdigit():
        return stem, int(line), where
    return where, -1, where
