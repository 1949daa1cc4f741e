"""The report page's content, built from the run folder's files only (candidates.json, and changes.json,
run.json and identities.json when present), so that ``fhirscreen report RUN_DIR`` gives the same page
as the run that wrote it."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhirscreen.exitcodes import EXIT_NOTHING_USABLE
from fhirscreen.quality import DATA_LOST, NO_CONDITIONS, lost_parts
from fhirscreen.report.facts import EVIDENCE_DESCRIBED

OUTCOMES = ("pass", "fail", "unknown", "manual")
STATUSES = ("eligible", "possible", "ineligible")


@dataclass(frozen=True)
class Evidence:
    ref: str
    text: str  # what, when, value ("" when the resource was not described)
    url: str | None  # the resource on the server the run read, if it read one


@dataclass(frozen=True)
class CriterionView:
    id: str
    title: str
    kind: str  # inclusion / exclusion
    outcome: str
    reason: str
    next_step: str
    evidence: tuple[Evidence, ...]  # the first EVIDENCE_DESCRIBED
    more_evidence: int  # how many more the criterion cites (named in candidates.json)
    washout_ends: str | None


@dataclass(frozen=True)
class PatientView:
    rank: int
    ref: str
    id: str
    anchor: str
    status: str
    score: float
    sex: str
    age: str
    counts: dict[str, int]
    criteria: tuple[CriterionView, ...]
    summary: str  # why not eligible, in one line, after the patient's notes (already enrolled in this trial)
    name: str = ""
    mrn: str = ""

    @property
    def outcome_codes(self) -> str:
        """``I1:pass E1:unknown ...`` for the table filters."""
        return " ".join(f"{c.id}:{c.outcome}" for c in self.criteria)


@dataclass(frozen=True)
class Washout:
    patient: PatientView
    criterion: str
    ends: date
    what: str
    outcome: str


@dataclass(frozen=True)
class OrderGroup:
    step: str
    entries: tuple[tuple[str, str, str], ...]  # (patient ref, anchor, criterion)


@dataclass
class ReportView:
    trial: str
    trial_title: str
    as_of: str
    source: str
    generated_by: str
    patients_read: int | None
    patients: list[PatientView]
    status_counts: dict[str, int]
    criteria: list[tuple[str, str]]  # (id, title) in protocol order
    attrition: list[dict[str, Any]]
    orders: list[OrderGroup]
    washouts: list[Washout]
    quality: list[dict[str, Any]]
    quality_by_problem: list[tuple[str, int]]
    quality_by_severity: dict[str, int]
    changes: dict[str, Any] | None
    run_info: dict[str, Any] | None
    show_names: bool
    server_base: str | None
    options: dict[str, Any] = field(default_factory=dict)
    # Why this run's lists are not the whole picture (a partial run, or one that read nothing usable);
    # None for a run that read its data whole.
    notice: str | None = None

    @property
    def population(self) -> int:
        return len(self.patients)


def anchor(ref: str) -> str:
    return "p-" + re.sub(r"[^A-Za-z0-9_-]", "-", ref.removeprefix("Patient/"))


def server_base(source: str) -> str | None:
    """The FHIR base URL when the run read a server (``source`` is the URL, maybe with a mode note)."""
    first = source.split(" ", 1)[0]
    return first.rstrip("/") if first.startswith(("http://", "https://")) else None


def _summary(status: str, criteria: Sequence[CriterionView]) -> str:
    if status == "ineligible":
        failed = [c for c in criteria if c.outcome == "fail"]
        return "Fails " + ", ".join(f"{c.id} ({c.title})" for c in failed)
    if status == "possible":
        unknown = [c for c in criteria if c.outcome == "unknown"]
        return "To settle: " + ", ".join(f"{c.id} ({c.title})" for c in unknown)
    return "All computable criteria pass; manual checks at the visit."


def _washout_end(details: Mapping[str, Any]) -> str | None:
    value = details.get("washout_ends")
    return value if isinstance(value, str) and value else None


def _patient(entry: Mapping[str, Any], titles: Mapping[str, tuple[str, str]], base: str | None,
             identity: Mapping[str, Any]) -> PatientView:
    described: Mapping[str, str] = entry.get("resources") or {}
    criteria = []
    for cid, found in (entry.get("criteria") or {}).items():
        title, kind = titles.get(cid, (cid, ""))
        cited = list(found.get("evidence") or ())
        evidence = tuple(
            Evidence(ref, described.get(ref, ""), f"{base}/{ref}" if base else None)
            for ref in cited[:EVIDENCE_DESCRIBED]
        )
        criteria.append(CriterionView(
            cid, title, kind, found.get("outcome", "unknown"), found.get("reason", ""),
            found.get("next_step", ""), evidence, len(cited) - len(evidence),
            _washout_end(found.get("details") or {}),
        ))
    counts = Counter(c.outcome for c in criteria)
    ref = str(entry["patient"])
    noted = "".join(f"{note}. " for note in entry.get("notes") or ())
    return PatientView(
        rank=int(entry.get("rank", 0)), ref=ref, id=ref.removeprefix("Patient/"), anchor=anchor(ref),
        status=str(entry.get("status")), score=float(entry.get("score", 0.0)),
        sex=str(entry.get("sex") or "not recorded"), age=str(entry.get("age") or "unknown"),
        counts={o: counts.get(o, 0) for o in OUTCOMES}, criteria=tuple(criteria),
        summary=noted + _summary(str(entry.get("status")), criteria),
        name=str(identity.get("name", "")), mrn=str(identity.get("mrn", "")),
    )


def _washouts(patients: Sequence[PatientView], entries: Sequence[Mapping[str, Any]]) -> list[Washout]:
    """Every washout end date of the patients not yet excluded by something else, per agent."""
    out = []
    for view, entry in zip(patients, entries, strict=True):
        for cid, found in (entry.get("criteria") or {}).items():
            details = found.get("details") or {}
            agents = [w for w in details.get("washouts") or ()
                      if isinstance(w, Mapping) and w.get("washout_ends")]
            if agents:
                for w in agents:
                    out.append(Washout(view, cid, date.fromisoformat(str(w["washout_ends"])[:10]),
                                       str(w.get("what", "")), str(w.get("outcome", found.get("outcome")))))
            elif _washout_end(details):
                out.append(Washout(view, cid, date.fromisoformat(str(details["washout_ends"])[:10]),
                                   str(found.get("reason", "")), str(found.get("outcome"))))
    return out


def _orders(worklist: Sequence[Mapping[str, Any]]) -> list[OrderGroup]:
    """The worklist turned around: per thing to order or ask, the patients and criteria it settles."""
    groups: dict[str, list[tuple[str, str, str]]] = {}
    for work in worklist:
        for item in work.get("items") or ():
            groups.setdefault(str(item["next_step"]), []).append(
                (str(work["patient"]), anchor(str(work["patient"])), str(item["criterion"])))
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [OrderGroup(step, tuple(entries)) for step, entries in ordered]


def run_notice(document: Mapping[str, Any], run_info: Mapping[str, Any] | None) -> str | None:
    """What the page must say first when the run is not complete: nothing usable read (run.json's exit
    status 4, or no Condition at all), or partial (data lost: candidates.json's ``partial``, or its
    data-lost findings for a document written before that field)."""
    quality = [f for f in document.get("data_quality") or () if isinstance(f, Mapping)]
    missing = next((str(f.get("message")) for f in quality if f.get("problem") == NO_CONDITIONS), None)
    if missing is not None or (run_info or {}).get("exit_status") == EXIT_NOTHING_USABLE:
        why = missing or "no patient was read."
        return f"This run read nothing usable, so its lists are empty for that reason, not a result: {why}"
    lost = sum(1 for f in quality if f.get("problem") == DATA_LOST)
    if document.get("partial") or lost:
        return (
            f"Partial run: {lost_parts(lost)} (see the "
            f"'{DATA_LOST}' findings under Data quality). The lists leave out what they held, and nobody "
            "whose record may be incomplete is shown as eligible."
        )
    return None


def build_view(
    document: Mapping[str, Any],
    criteria: Sequence[tuple[str, str, str]],
    trial_title: str,
    changes: Mapping[str, Any] | None = None,
    run_info: Mapping[str, Any] | None = None,
    identities: Mapping[str, Mapping[str, Any]] | None = None,
) -> ReportView:
    """``criteria``: (id, title, type) in protocol order, from the trial file."""
    titles = {cid: (title, kind) for cid, title, kind in criteria}
    base = server_base(str(document.get("source", "")))
    show_names = identities is not None
    entries = list(document.get("patients") or ())
    patients = [_patient(e, titles, base, (identities or {}).get(str(e["patient"]), {})) for e in entries]
    quality = list(document.get("data_quality") or ())
    statuses = Counter(p.status for p in patients)
    washouts = _washouts(patients, entries)
    washouts.sort(key=lambda w: (w.patient.rank, w.ends, w.criterion))
    options = dict((run_info or {}).get("options") or {})
    return ReportView(
        trial=str(document.get("trial", "")),
        trial_title=trial_title,
        as_of=str(document.get("as_of", "")),
        source=str(document.get("source", "")),
        generated_by=str(document.get("generated_by", "")),
        # Not in candidates.json: a server run reads only the population, so it would differ by mode.
        patients_read=(run_info or {}).get("patients_read"),
        patients=patients,
        status_counts={s: statuses.get(s, 0) for s in STATUSES},
        criteria=[(cid, title) for cid, title, _kind in criteria],
        attrition=list(document.get("attrition") or ()),
        orders=_orders(document.get("worklist") or ()),
        washouts=washouts,
        quality=quality,
        quality_by_problem=sorted(Counter(str(f.get("problem")) for f in quality).items()),
        quality_by_severity=dict(sorted(Counter(str(f.get("severity")) for f in quality).items())),
        changes=dict(changes) if changes else None,
        run_info=dict(run_info) if run_info else None,
        show_names=show_names,
        server_base=base,
        options=options,
        notice=run_notice(document, run_info),
    )
