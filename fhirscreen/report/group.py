"""group.json: a FHIR R4 Group of the eligible and possible patients, for recruiting workflows."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.group import Group

from fhirscreen.report.fhir_ids import STATUS_EXTENSION, run_id
from fhirscreen.report.measure import narrative, report_status
from fhirscreen.screening import ScreeningRun

CANDIDATE_STATUSES = frozenset({"eligible", "possible"})


def group_dict(run: ScreeningRun) -> dict[str, Any]:
    members = [s for s in run.patients if s.status in CANDIDATE_STATUSES]
    resource: dict[str, Any] = {"resourceType": "Group", "id": run_id(run, "candidates")}
    _status, why = report_status(run)
    if why is not None:
        # A Group has no status: a partial run's list says so in its narrative, as the MeasureReport does
        # (a recruiting workflow must not take a list missing lost patients' records for the whole).
        resource["text"] = narrative(why)
    resource |= {
        "type": "person",
        "actual": True,
        "name": f"{run.trial.id} candidates (eligible or possible) as of {run.as_of.isoformat()}",
        "quantity": len(members),
    }
    if members:
        # Rank order; each member says whether it is eligible or still possible.
        resource["member"] = [
            {
                "extension": [{"url": STATUS_EXTENSION, "valueCode": s.status}],
                "entity": {"reference": s.ref},
            }
            for s in members
        ]
    return resource


def group_resource(run: ScreeningRun) -> dict[str, Any]:
    """The Group as JSON data, after validating it against the R4 (R4B) model."""
    resource = group_dict(run)
    Group.model_validate(resource)
    return resource
