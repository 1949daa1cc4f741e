"""The terminal view of a run: ranked candidates, the attrition table and the worklist, fitted to the
terminal's width (long reasons wrap under their row instead of widening it)."""

from __future__ import annotations

from fhirscreen.criteria.base import Outcome
from fhirscreen.report.attrition import INITIAL, trial_attrition
from fhirscreen.report.text import format_table, shorten, terminal_width, wrap
from fhirscreen.report.worklist import worklist
from fhirscreen.screening import PatientScreen, ScreeningRun

WHY_LINES = 2  # a reason longer than two lines is cut; `explain` gives it whole
INDENT = 4


def why(screen: PatientScreen, width: int = 90) -> str:
    """Ineligible: the failing ids and the first reason; possible: the unknown ids; eligible: nothing.
    The patient's notes (already enrolled in this trial...) come first, whatever the status."""
    noted = "".join(f"{note}; " for note in screen.notes)
    if screen.status == "ineligible":
        failed = [(cid, r) for cid, r in screen.results.items() if r.outcome is Outcome.FAIL]
        return shorten(f"{noted}{', '.join(cid for cid, _ in failed)}: {failed[0][1].reason}", width)
    if screen.status == "possible":
        unknown = [cid for cid, r in screen.results.items() if r.outcome is Outcome.UNKNOWN]
        if screen.caveat:
            also = f"; unknown: {', '.join(unknown)}" if unknown else ""
            return shorten(noted + screen.caveat + also, width)
        return shorten(f"{noted}unknown: {', '.join(unknown)}", width)
    return shorten(noted.removesuffix("; "), width)


def candidates_table(run: ScreeningRun, width: int) -> str:
    if not run.patients:
        return f"No patient of the {run.patients_read} read has an SLE diagnosis on record.\n"
    reason_width = WHY_LINES * (width - INDENT) - 10
    counts = [(s.count(Outcome.PASS), s.count(Outcome.FAIL), s.count(Outcome.UNKNOWN)) for s in run.patients]
    id_width = max(len(s.ref) for s in run.patients)
    # pass, fail, unknown in their own columns when they fit, else as one "17/0/2" column.
    separate = 2 + id_width + 10 + 5 + 4 + 4 + 7 + 2 * 6 <= width
    rows: list[tuple[object, ...]] = []
    for s, (p, f, u) in zip(run.patients, counts, strict=True):
        numbers: tuple[object, ...] = (p, f, u) if separate else (f"{p}/{f}/{u}",)
        rows.append((s.rank, s.ref, s.status, f"{s.score:.2f}", *numbers, why(s, reason_width)))
    if separate:
        headers: tuple[str, ...] = ("#", "patient", "status", "score", "pass", "fail", "unknown", "why")
        right: tuple[int, ...] = (0, 3, 4, 5, 6)
    else:
        headers, right = ("#", "patient", "status", "score", "p/f/u", "why"), (0, 3, 4)
    table = format_table(headers, rows, right=right, width=width, under=len(headers) - 1, under_indent=INDENT)
    counted = "pass, fail, unknown" if separate else "p/f/u: criteria passed / failed / unknown"
    legend = (f"score: share of the computable criteria that pass (manual criteria not counted); {counted}: "
              f"how many of the {len(run.trial.criteria)} criteria have that outcome.")
    return table + "\n".join(wrap(legend, width)) + "\n"


def attrition_table(run: ScreeningRun, width: int) -> str:
    found = trial_attrition(run.patients, run.trial)
    headers = ("id", "title", "left", "gain", "pass", "fail", "unknown", "manual")
    numbers = [(r.remaining, r.gain, r.passed, r.failed, r.unknown, r.manual) for r in found]
    labels = ["start" if r.criterion == INITIAL else r.criterion for r in found]
    fixed = [max(len(h), *(len("" if row[i] is None else str(row[i])) for row in numbers))
             for i, h in enumerate(headers[2:])]
    other = max(len(headers[0]), *(len(x) for x in labels)) + sum(fixed) + 2 * (len(headers) - 1)
    title_width = max(width - other, 12)
    rows = [(label, shorten(r.title, title_width), *n)
            for label, r, n in zip(labels, found, numbers, strict=True)]
    return format_table(headers, rows, right=(2, 3, 4, 5, 6, 7))


def worklist_text(run: ScreeningRun, width: int) -> str:
    work = worklist(run.patients)
    if not work:
        return "No possible patients: nothing to request.\n"
    lines = []
    for entry in work:
        lines.append(entry.patient)
        for item in entry.items:
            first = f"  {item.criterion}: "
            lines += wrap(item.next_step, width, " " * len(first), first=first)
    return "\n".join(lines) + "\n"


def render_table(run: ScreeningRun, width: int | None = None) -> str:
    columns = terminal_width(width)
    title = f"{run.trial.id} screening as of {run.as_of.isoformat()}"
    attrition_title = ("Attrition (criteria applied in protocol order; left = patients no criterion so far "
                       "excludes; gain = patients this criterion alone excludes)")
    worklist_title = "Worklist (what would settle each unknown criterion of the possible patients)"
    return "\n".join([
        f"{title}\n\n{candidates_table(run, columns)}",
        "\n".join(wrap(attrition_title, columns)) + f"\n\n{attrition_table(run, columns)}",
        "\n".join(wrap(worklist_title, columns)) + f"\n\n{worklist_text(run, columns)}",
    ])
