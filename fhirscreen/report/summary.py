"""The run summary for stderr: what was read, what came out, and the data-quality findings."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from fhirscreen.quality import DataQuality, Finding
from fhirscreen.screening import ScreeningRun

EXAMPLES_PER_PROBLEM = 3


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def run_paragraph(run: ScreeningRun, written: Sequence[Path]) -> str:
    statuses = Counter(s.status for s in run.patients)
    text = (
        f"Screened {run.source} for {run.trial.id} as of {run.as_of.isoformat()}: "
        f"{_plural(run.patients_read, 'patient')} read, {len(run.patients)} in the initial population; "
        f"{statuses['eligible']} eligible, {statuses['possible']} possible, "
        f"{statuses['ineligible']} ineligible."
    )
    if run.skipped_types:
        skipped = ", ".join(f"{t} {n}" for t, n in sorted(run.skipped_types.items()))
        text += f" Resource types not used for screening were skipped ({skipped})."
    if written:
        text += f" Wrote {', '.join(str(p) for p in written)}."
    return text + "\n"


def _finding_line(f: Finding) -> str:
    return f"    {f.severity}: {f.where}: {f.message}"


def quality_text(quality: DataQuality) -> str:
    """Counts per problem, each with its first few findings (naming the file or the resource id)."""
    findings = quality.sorted()
    if not findings:
        return "Data quality: no problems found in the input.\n"
    by_problem: dict[str, list[Finding]] = {}
    for f in findings:
        by_problem.setdefault(f.problem, []).append(f)
    lines = [f"Data quality: {_plural(len(findings), 'finding')} (the run went on; see data_quality in "
             f"candidates.json for all of them):"]
    for problem in sorted(by_problem):
        group = by_problem[problem]
        lines.append(f"  {problem}: {len(group)}")
        lines += [_finding_line(f) for f in group[:EXAMPLES_PER_PROBLEM]]
        if len(group) > EXAMPLES_PER_PROBLEM:
            lines.append(f"    ... and {len(group) - EXAMPLES_PER_PROBLEM} more")
    return "\n".join(lines) + "\n"


def render_summary(run: ScreeningRun, written: Sequence[Path]) -> str:
    return run_paragraph(run, written) + quality_text(run.quality)
