"""What changed between two runs, for the coordinator's morning: new candidates, status changes with
the criterion and the resource behind them, patients who left the population, settled unknowns.

Works on the runs' candidates.json documents only (no source is read again). The result is the
changes.json document every run writes against the run before it (format in the README, "Outputs").
Lists are sorted by patient id, then by criterion in protocol order.
"""

from __future__ import annotations

from typing import Any

CANDIDATE = ("eligible", "possible")


def _patients(document: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not document:
        return {}
    return {str(p["patient"]): p for p in document.get("patients", []) if isinstance(p, dict)}


def _criteria(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    criteria = entry.get("criteria", {})
    return criteria if isinstance(criteria, dict) else {}


def _evidence(after: dict[str, Any], before: dict[str, Any]) -> list[str]:
    """The resources behind a change: the new result's, or, when it names none (a fail that became a
    pass because a resource went away or aged out of a window), the old result's."""
    return list(after.get("evidence") or before.get("evidence") or [])


def compute_changes(
    run: str, base_run: str | None, current: dict[str, Any], base: dict[str, Any] | None
) -> dict[str, Any]:
    """The changes.json document of ``current`` against ``base`` (None: a first run, nothing to say)."""
    changes: dict[str, Any] = {
        "run": run,
        "base_run": base_run,
        "new_candidates": [],
        "status_changes": [],
        "left_population": [],
        "settled_unknowns": [],
    }
    if base is None:
        return changes
    before, after = _patients(base), _patients(current)
    for pid in sorted(after):
        now = after[pid]
        old = before.get(pid)
        if now.get("status") in CANDIDATE and (old is None or old.get("status") not in CANDIDATE):
            changes["new_candidates"].append(
                {"patient": pid, "status": now.get("status"), "rank": now.get("rank")}
            )
        if old is None:
            continue
        old_criteria, new_criteria = _criteria(old), _criteria(now)
        changed = [
            {
                "id": cid,
                "from": old_criteria.get(cid, {}).get("outcome"),
                "to": result.get("outcome"),
                "evidence": _evidence(result, old_criteria.get(cid, {})),
            }
            for cid, result in new_criteria.items()
            if old_criteria.get(cid, {}).get("outcome") != result.get("outcome")
        ]
        if old.get("status") != now.get("status"):
            changes["status_changes"].append(
                {"patient": pid, "from": old.get("status"), "to": now.get("status"), "criteria": changed}
            )
        for change in changed:
            if change["from"] == "unknown" and change["to"] in ("pass", "fail"):
                changes["settled_unknowns"].append(
                    {
                        "patient": pid,
                        "criterion": change["id"],
                        "to": change["to"],
                        "evidence": change["evidence"],
                    }
                )
    for pid in sorted(set(before) - set(after)):
        changes["left_population"].append({"patient": pid, "last_status": before[pid].get("status")})
    return changes
