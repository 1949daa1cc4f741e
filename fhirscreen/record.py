"""A patient's record: the resources screening needs, grouped by type, with references resolved."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fhirscreen.fhir.resources import Resource, is_usable, patient_id_of, reference_id
from fhirscreen.quality import DataQuality

T = TypeVar("T")

# Resource types screening reads; everything else an EHR export holds is skipped on input.
SCREENED_TYPES: tuple[str, ...] = (
    "Patient",
    "Condition",
    "Observation",
    "MedicationStatement",
    "MedicationRequest",
    "MedicationAdministration",
    "Procedure",
    "ResearchSubject",
)
SHARED_TYPES: tuple[str, ...] = ("Medication",)


@dataclass
class PatientRecord:
    """Everything on record for one patient. ``resources`` holds usable records only (hygiene applied)."""

    patient: Resource
    resources: dict[str, list[Resource]] = field(default_factory=dict)
    medications: Mapping[str, Resource] = field(default_factory=dict)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return str(self.patient.get("id"))

    @property
    def ref(self) -> str:
        return f"Patient/{self.id}"

    def of_type(self, resource_type: str) -> list[Resource]:
        return self.resources.get(resource_type, [])

    def medication(self, holder: Mapping[str, Any]) -> Resource | None:
        """The Medication a MedicationX points at: contained (``#id``) or a separate resource."""
        reference = holder.get("medicationReference")
        if not isinstance(reference, Mapping):
            return None
        value = reference.get("reference")
        if isinstance(value, str) and value.startswith("#"):
            for contained in holder.get("contained") or ():
                if isinstance(contained, Mapping) and contained.get("id") == value[1:]:
                    return dict(contained)
            return None
        med_id = reference_id(reference, "Medication")
        return self.medications.get(med_id) if med_id else None

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """Cache a derived view (e.g. the normalised medication list) shared by several criteria."""
        if key not in self._memo:
            self._memo[key] = compute()
        value: T = self._memo[key]
        return value


@dataclass
class Population:
    """Patients and their records, built from a stream of resources from any source."""

    records: dict[str, PatientRecord]
    quality: DataQuality
    skipped: dict[str, int]  # resource types read but not screened, with counts


class PopulationBuilder:
    """Groups resources by patient. Sources feed it resources whose references are already ``Type/id``."""

    def __init__(self, quality: DataQuality | None = None) -> None:
        self.quality = quality or DataQuality()
        self._patients: dict[str, Resource] = {}
        self._by_patient: dict[str, dict[str, list[Resource]]] = defaultdict(lambda: defaultdict(list))
        self._medications: dict[str, Resource] = {}
        self._seen: set[tuple[str, str]] = set()
        self.skipped: dict[str, int] = defaultdict(int)

    def add(self, resource: Resource, origin: str) -> None:
        rtype = resource.get("resourceType")
        rid = resource.get("id")
        if not isinstance(rtype, str):
            self.quality.add("error", origin, "not-fhir", "JSON object without a resourceType was skipped")
            return
        if rtype not in SCREENED_TYPES and rtype not in SHARED_TYPES:
            self.skipped[rtype] += 1
            return
        if not isinstance(rid, str) or not rid:
            self.quality.add("warning", origin, "no-id", f"{rtype} without an id was skipped")
            return
        key = (rtype, rid)
        if key in self._seen:
            # The same resource from two files (or two pages): keep the first, say so once.
            self.quality.add("info", f"{rtype}/{rid}", "duplicate", f"{rtype}/{rid} appears more than once")
            return
        self._seen.add(key)
        if rtype == "Patient":
            self._patients[rid] = resource
            return
        if rtype == "Medication":
            self._medications[rid] = resource
            return
        if not is_usable(resource):
            return
        pid = patient_id_of(resource)
        if pid is None:
            self.quality.add(
                "warning", f"{rtype}/{rid}", "no-subject", f"{rtype}/{rid} has no Patient subject; skipped"
            )
            return
        self._by_patient[pid][rtype].append(resource)

    def add_all(self, resources: Iterable[tuple[Resource, str]]) -> None:
        for resource, origin in resources:
            self.add(resource, origin)

    def build(self) -> Population:
        records: dict[str, PatientRecord] = {}
        for pid, patient in self._patients.items():
            grouped = self._by_patient.get(pid, {})
            records[pid] = PatientRecord(
                patient=patient,
                resources={k: list(v) for k, v in grouped.items()},
                medications=self._medications,
            )
        for pid in sorted(set(self._by_patient) - set(self._patients)):
            n = sum(len(v) for v in self._by_patient[pid].values())
            self.quality.add(
                "warning",
                f"Patient/{pid}",
                "missing-patient",
                f"{n} resource(s) refer to Patient/{pid}, which is not in the data",
            )
        return Population(records=records, quality=self.quality, skipped=dict(self.skipped))
