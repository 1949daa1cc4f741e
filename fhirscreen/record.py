"""A patient's record: the resources screening needs, grouped by type, with references resolved."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

import orjson

from fhirscreen.fhir.codes import ValueSet
from fhirscreen.fhir.compact import Compactor
from fhirscreen.fhir.dates import parse_date
from fhirscreen.fhir.resources import (
    NOT_A_TYPE_NAME,
    PATIENT_LINK,
    Resource,
    is_fhir_id,
    is_type_name,
    is_usable,
    items,
    patient_id_of,
    reference_id,
)
from fhirscreen.quality import DATA_LOST, DataQuality

T = TypeVar("T")
# The problem code of a resource whose id, or whose patient reference's id, is not a FHIR id (letters,
# digits, '-', '.', 1-64 of them): skipped, and never quoted (a line break in it would forge a log line).
INVALID_ID = "invalid-id"
_MISSING: Any = object()  # ``PatientRecord.memo``: no view yet (a view may be None)

# Resource types screening reads; everything else an EHR export holds is skipped on input.
SCREENED_TYPES: tuple[str, ...] = (
    "Patient",
    "Condition",
    "Observation",
    "MedicationStatement",
    "MedicationRequest",
    "MedicationAdministration",
    "MedicationDispense",
    "Procedure",
    "ServiceRequest",
    "CarePlan",
    "Appointment",
    "ResearchSubject",
)
# Resources outside the Patient compartment that patients' resources refer to: kept whatever patient is
# read, and joined by reference (MedicationX.medicationReference, ResearchSubject.study, the
# workflow-researchStudy extension: ``referenced_study_ids``).
SHARED_TYPES: tuple[str, ...] = ("Medication", "ResearchStudy")
# The standard extension that links a record to the ResearchStudy it belongs to (R5's
# ``researchStudy`` element as an R4 extension): E5 reads it on medication records (criteria/_medications.py).
RESEARCH_STUDY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"


def study_references(resource: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The References to ResearchStudies in a resource: a ResearchSubject's ``study``, and the
    ``valueReference`` of each workflow-researchStudy extension (on any resource: the criteria read it on
    medication records, and a study named so elsewhere costs one fetch at most)."""
    found: list[Mapping[str, Any]] = []
    if resource.get("resourceType") == "ResearchSubject":
        study = resource.get("study")
        if isinstance(study, Mapping):
            found.append(study)
    extensions = resource.get("extension")
    if extensions:
        for ext in items(extensions):
            if isinstance(ext, Mapping) and ext.get("url") == RESEARCH_STUDY_EXTENSION:
                value = ext.get("valueReference")
                if isinstance(value, Mapping):
                    found.append(value)
    return found


def referenced_study_ids(resource: Mapping[str, Any]) -> set[str]:
    """Ids of the separate ResearchStudies a resource refers to (``study_references``, read by id as the
    record resolves them: ``ResearchStudy/x``, an absolute or versioned URL); contained ones (``#id``)
    travel with the resource and are not among them. The one rule for every reader that decides which
    studies to fetch or keep (server search and bulk reads, the incremental store, Spark), so that each
    holds every study file mode holds for the criteria."""
    ids: set[str] = set()
    for reference in study_references(resource):
        sid = reference_id(reference, "ResearchStudy")
        if sid and is_fhir_id(sid):
            ids.add(sid)
    return ids


def referenced_medication_id(resource: Mapping[str, Any]) -> str | None:
    """The id of the separate Medication a medication record points at (``medicationReference``, read by
    id as ``PatientRecord.medication`` resolves it: ``Medication/x``, an absolute or versioned URL); None
    for a contained one (``#id``), which travels with the record, or none at all. The one rule for every
    reader that decides which Medications to fetch or keep (server search and bulk reads, the
    incremental store, Spark)."""
    mid = reference_id(resource.get("medicationReference"), "Medication")
    return mid if mid and is_fhir_id(mid) else None


_SHARED = frozenset(SHARED_TYPES)
# Every type the builder keeps; sources may pass other types on as ``{"resourceType": T}`` stubs.
KEPT_TYPES: frozenset[str] = frozenset(SCREENED_TYPES + SHARED_TYPES)


@dataclass
class PatientRecord:
    """Everything on record for one patient. ``resources`` holds usable records only (hygiene applied)."""

    patient: Resource
    resources: dict[str, list[Resource]] = field(default_factory=dict)
    medications: Mapping[str, Resource] = field(default_factory=dict)
    studies: Mapping[str, Resource] = field(default_factory=dict)  # ResearchStudy id -> resource
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
        if reference is None:  # most records name the drug by code
            return None
        return _resolve(holder, reference, "Medication", self.medications)

    def study(self, subject: Mapping[str, Any]) -> Resource | None:
        """The ResearchStudy a ResearchSubject is on (``study``): contained (``#id``) or a separate
        resource; None when the data do not hold it."""
        return _resolve(subject, subject.get("study"), "ResearchStudy", self.studies)

    def linked_study(self, holder: Mapping[str, Any], reference: object) -> Resource | None:
        """The ResearchStudy a Reference in ``holder`` points at (a medication record's
        workflow-researchStudy extension): contained in ``holder`` (``#id``) or a separate resource; None
        when the data do not hold it."""
        return _resolve(holder, reference, "ResearchStudy", self.studies)

    def forget_views(self) -> None:
        """Drop the derived views (``memo``) once the record is screened: they are rebuilt if asked again."""
        self._memo.clear()

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """Cache a derived view (e.g. the normalised medication list) shared by several criteria."""
        value: T = self._memo.get(key, _MISSING)  # one lookup on a hit: views are read far more than made
        if value is _MISSING:
            value = self._memo[key] = compute()
        return value


def _resolve(
    holder: Mapping[str, Any], reference: object, resource_type: str, held: Mapping[str, Resource]
) -> Resource | None:
    """The resource a Reference in ``holder`` points at: contained in it, or among ``held`` by id."""
    if not isinstance(reference, Mapping):
        return None
    value = reference.get("reference")
    if isinstance(value, str) and value.startswith("#"):
        for contained in items(holder.get("contained")):
            if isinstance(contained, Mapping) and contained.get("id") == value[1:]:
                return dict(contained)
        return None
    rid = reference_id(reference, resource_type)
    return held.get(rid) if rid else None


@dataclass
class Dropped:
    """Resources of patients outside ``keep_patients`` that a source checked and dropped itself rather
    than handing them to the record builder (a file source's NDJSON lines: most of a large export),
    counted as the builder counts the ones it drops, so every finding stays the same."""

    # patient id -> usable resources dropped: the count in a missing-patient finding (shared with the
    # builder's own count; a patient whose Patient resource is read is never reported, so counting
    # these too is harmless)
    usable: dict[str, int] = field(default_factory=dict)
    # Every resource dropped so, usable or not, per type and in all: they were read, and a run counts
    # them as read (run.json's resources_read, the progress display).
    by_type: dict[str, int] = field(default_factory=dict)
    resources: int = 0

    def count(self, resource_type: str, patient: str, usable: bool) -> None:
        self.resources += 1
        self.by_type[resource_type] = self.by_type.get(resource_type, 0) + 1
        if usable:
            self.usable[patient] = self.usable.get(patient, 0) + 1

    def merge(self, other: Dropped) -> None:
        """Add the counts of another reader (a process that read part of a file)."""
        self.resources += other.resources
        for rtype, n in other.by_type.items():
            self.by_type[rtype] = self.by_type.get(rtype, 0) + n
        for pid, n in other.usable.items():  # in place: the record builder holds this very dict
            self.usable[pid] = self.usable.get(pid, 0) + n


class Prebuilt(str):
    """The origin of a resource a reading process has already done the builder's own work on: it has no
    malformed element (``report_malformed`` would say nothing) and it is compacted (``Compactor``). A
    file read on several processes (``sources/ndjson_ranges``) sends its kept lines back so, instead
    of as text to parse, check and compact again here: for a large export that was most of the main
    process's reading."""

    __slots__ = ()


@dataclass
class Population:
    """Patients and their records, built from a stream of resources from any source."""

    records: dict[str, PatientRecord]
    quality: DataQuality
    skipped: dict[str, int]  # resource types read but not screened, with counts
    # Records of kept patients whose Patient resource is not in the data (built on a stub): they are
    # screened, but were not read as patients.
    without_patient: int = 0
    # Patients linked as one person (``Patient.link``) to a patient that was read without them
    # (``explain`` reads only the patients asked for): that patient's id -> the linked ids not read. The
    # caller may read again with them, so the records merge.
    unmerged: dict[str, set[str]] = field(default_factory=dict)


class PopulationBuilder:
    """Groups resources by patient. Sources feed it resources whose references are already ``Type/id``.

    ``keep_patients``: when given, only these patients' resources are kept (the initial population,
    which a file source finds while reading, or the patients ``explain`` asks for), so memory does not
    grow with the other patients. Every resource is still checked as before (no id, no subject,
    hygiene, missing Patient) except one thing: duplicates are detected among kept resources only,
    since remembering the id of every other resource would grow with them. Other patients appear as
    records holding a Patient stub (``{"resourceType": "Patient", "id": ...}``) and no resources, so
    patient counts stay the same.
    A patient added to ``keep_patients`` after some of their resources were dropped must have those
    resources (and their Patient) added again by the source; the file source re-reads those files.
    """

    def __init__(
        self,
        quality: DataQuality | None = None,
        keep_patients: Collection[str] | None = None,
        dropped: Dropped | None = None,
        population: ValueSet | None = None,
    ) -> None:
        self.quality = quality or DataQuality()
        # The initial population's value set: a patient in it whose Patient resource is missing is
        # screened on a stub (``build``) rather than lost.
        self._population = population
        self._patients: dict[str, Resource] = {}
        # patient -> type -> id -> resource (one entry per id: the latest version)
        self._by_patient: dict[str, dict[str, dict[str, Resource]]] = defaultdict(lambda: defaultdict(dict))
        self._owner: dict[tuple[str, str], str] = {}  # (type, id) -> patient, for kept resources
        # Shared resources (SHARED_TYPES), by type then id: every record refers to the same dicts.
        self._shared: dict[str, dict[str, Resource]] = {rtype: {} for rtype in SHARED_TYPES}
        self._seen: set[tuple[str, str]] = set()
        self.skipped: dict[str, int] = defaultdict(int)
        # Held, not copied: a source's census may add patients while reading (never removes any).
        self._keep = keep_patients
        # Usable resources of patients not kept, per patient; shared with the source's ``dropped``.
        self._dropped: dict[str, int] = {} if dropped is None else dropped.usable
        self._compactor = Compactor()
        # Patient id -> its ``replaced-by`` / ``replaces`` links (merged records: ``_merge_linked``),
        # noted for every Patient read, kept or not.
        self._links: dict[str, list[tuple[str, str]]] = {}
        self._unmerged: dict[str, set[str]] = {}  # see ``Population.unmerged``

    def add(self, resource: Resource, origin: str) -> None:
        rtype = resource.get("resourceType")
        rid = resource.get("id")
        if not isinstance(rtype, str):
            self.quality.add("error", origin, "not-fhir", "JSON object without a resourceType was skipped")
            return
        if rtype not in KEPT_TYPES:
            if not is_type_name(rtype):  # sources check it; a value that is not is never echoed
                self.quality.add("error", origin, "not-fhir", f"{NOT_A_TYPE_NAME}; skipped")
                return
            self.skipped[rtype] += 1
            return
        if not isinstance(rid, str) or not rid:
            self.quality.add("warning", origin, "no-id", f"{rtype} without an id was skipped")
            return
        if not is_fhir_id(rid):
            self.quality.add(
                "warning", origin, INVALID_ID,
                f"{rtype} whose id is not an id (1-128 letters, digits, '-', '.' or '_') was skipped",
            )
            return
        if self._keep is not None and self._add_unkept(resource, rtype, rid):
            return
        key = (rtype, rid)
        if key in self._seen:
            # The same resource from two files, two pages, a collection Bundle or a re-export: the
            # latest version wins (meta.versionId, then meta.lastUpdated; the first on a tie). Say so once.
            message = f"{rtype}/{rid} appears more than once; the latest version (meta) is used"
            self.quality.add("info", f"{rtype}/{rid}", "duplicate", message)
            if not self._replace(resource, rtype, rid):
                return
        self._seen.add(key)
        if rtype == "Patient":
            report_malformed(resource, f"Patient/{rid}", self.quality)  # a birth or death date it cannot read
            self._patients[rid] = resource
            self._note_links(rid, resource)
            return
        if rtype in _SHARED:
            self._shared[rtype][rid] = resource
            return
        pid = patient_id(resource)
        if pid is None:
            if is_usable(resource):
                self.quality.add(
                    "warning", f"{rtype}/{rid}", "no-subject",
                    f"{rtype}/{rid} has no Patient subject; skipped",
                )
            return
        if not is_fhir_id(pid):
            self.quality.add(
                "warning", f"{rtype}/{rid}", INVALID_ID,
                f"{rtype}/{rid} refers to a Patient whose id is not a FHIR id; skipped",
            )
            return
        if origin.__class__ is not Prebuilt:
            report_malformed(resource, f"{rtype}/{rid}", self.quality)
            # the peak memory is these resources
            if resource.__class__ is dict:
                resource = self._compactor.compact(resource)
        # Kept even when not usable: a later version may be, and an unusable later version must
        # replace a usable earlier one. Hygiene is applied in build().
        self._by_patient[pid][rtype][rid] = resource
        self._owner[key] = pid

    def _replace(self, resource: Resource, rtype: str, rid: str) -> bool:
        """True when ``resource`` is a later version of one already held (which is then forgotten)."""
        key = (rtype, rid)
        if rtype == "Patient":
            held = self._patients.get(rid)
        elif rtype in _SHARED:
            held = self._shared[rtype].get(rid)
        else:
            owner = self._owner.get(key)
            held = self._by_patient[owner][rtype].get(rid) if owner is not None else None
        if held is None or is_later_version(held, resource):
            return False
        if not is_later_version(resource, held):
            # Nothing orders them (no meta, or equal): the same content is one resource; different
            # content is a conflict the run says, keeping the same copy whatever order the input came in.
            if _content(resource) == _content(held):
                return False
            self.quality.add(
                "warning", f"{rtype}/{rid}", "conflicting-duplicate",
                f"{rtype}/{rid} appears more than once with different content and no meta.versionId or "
                "meta.lastUpdated to order them; one is used, chosen by content (the same whatever the order "
                "of the input): check the source",
            )
            if _content(resource) > _content(held):
                return False
        owner = self._owner.pop(key, None)
        if owner is not None:
            self._by_patient[owner][rtype].pop(rid, None)
        return True

    def _add_unkept(self, resource: Resource, rtype: str, rid: str) -> bool:
        """Handle a resource of a patient outside ``keep_patients``; False when it is to be kept."""
        keep = self._keep
        assert keep is not None
        if rtype == "Patient":
            if rid in keep:
                return False
            if rid in self._patients:
                message = f"Patient/{rid} appears more than once"
                self.quality.add("info", f"Patient/{rid}", "duplicate", message)
            else:
                self._patients[rid] = {"resourceType": "Patient", "id": rid}
            self._note_links(rid, resource)
            return True
        if rtype in _SHARED:
            return False  # kept whoever refers to it
        pid = patient_id(resource)
        if pid is None or pid in keep or not is_fhir_id(pid):
            return False  # kept, or reported as having no subject or an invalid reference
        if pid not in self._patients and is_usable(resource):
            # only ever read for patients without a Patient resource
            self._dropped[pid] = self._dropped.get(pid, 0) + 1
        return True

    def add_all(self, resources: Iterable[tuple[Resource, str]]) -> None:
        for resource, origin in resources:
            self.add(resource, origin)

    def _note_links(self, rid: str, patient: Resource) -> None:
        links = merge_links(patient)
        if links:
            self._links[rid] = links
        else:
            self._links.pop(rid, None)  # a later version without them

    def _merge_linked(self) -> None:
        """Fold the records of replaced Patients into the record that replaced them (D14).

        ``Patient.link`` of type ``replaced-by`` (on the replaced record) or ``replaces`` (on the
        surviving one) says two Patient resources are one person: the replaced id's resources are moved
        onto the survivor (at the end of a chain a -> b -> c), which alone is a record, with a
        ``merged-patient`` info finding naming both ids. A link to a Patient that is not in the data, a
        record said to be replaced by two different ones, or a loop is a ``patient-link`` warning, and the
        records are kept separate (never merged into nothing). ``seealso`` / ``refer`` links are not
        read: they do not say the records are the same person with certainty."""
        if not self._links:
            return
        self._lost_with_linked()
        successor: dict[str, str] = {}
        conflicting: set[str] = set()
        for pid in sorted(self._links):
            for kind, other in self._links[pid]:
                old, new = (pid, other) if kind == "replaced-by" else (other, pid)
                if other not in self._patients:
                    self.quality.add(
                        "warning", f"Patient/{pid}", "patient-link",
                        f"Patient/{pid} is linked ({kind}) to Patient/{other}, which is not among the "
                        "Patients read: the records are not merged",
                    )
                    continue
                held = successor.setdefault(old, new)
                if held != new:
                    conflicting.add(old)
        for old in sorted(conflicting):
            self.quality.add(
                "warning", f"Patient/{old}", "patient-link",
                f"Patient/{old} is said to be replaced by more than one Patient: the records are not merged",
            )
            del successor[old]
        targets: dict[str, str] = {}
        for old in sorted(successor):
            chain = [old]
            current = old
            while current in successor:
                current = successor[current]
                if current in chain:
                    loop = chain[chain.index(current):]
                    first = loop.index(min(loop))  # the same finding whichever member it is met from
                    loop = loop[first:] + loop[:first]
                    self.quality.add(
                        "warning", f"Patient/{loop[0]}", "patient-link",
                        "Patient.link replaced-by / replaces form a loop ("
                        + " -> ".join(f"Patient/{p}" for p in [*loop, loop[0]])
                        + "): the records are not merged",
                    )
                    break
                chain.append(current)
            else:
                targets[old] = current
        keep = self._keep
        for old, survivor in sorted(targets.items()):
            if keep is not None and (old in keep) != (survivor in keep):
                # Only one of them was kept (``explain`` reads the patients asked for): the other's
                # resources were not read, so merging would screen on part of the record.
                read, unread = (old, survivor) if old in keep else (survivor, old)
                self._unmerged.setdefault(read, set()).add(unread)
                self.quality.add(
                    "warning", f"Patient/{old}", "patient-link",
                    f"Patient/{old} was replaced by Patient/{survivor} (Patient.link), but only one of them "
                    "was read for this run: the records are not merged",
                )
                continue
            moved = self._by_patient.pop(old, None)
            if moved:
                into = self._by_patient[survivor]
                for rtype, by_id in moved.items():
                    into[rtype].update(by_id)
                    for rid in by_id:
                        self._owner[(rtype, rid)] = survivor
            n = self._dropped.pop(old, 0)
            if n:
                self._dropped[survivor] = self._dropped.get(survivor, 0) + n
            del self._patients[old]
            self.quality.add(
                "info", f"Patient/{survivor}", "merged-patient",
                f"Patient/{old} was replaced by Patient/{survivor} (Patient.link): one person, screened as "
                f"Patient/{survivor} on the resources of both ids",
            )

    def _lost_with_linked(self) -> None:
        """Data lost for one id of a person (a search that never came, a Patient the export left out)
        is lost for every id linked to it as the same person (``Patient.link`` replaced-by / replaces,
        transitively, whether or not the records can be merged): the record screened under the other id
        is that person's, and may lack what was lost, so it must not be offered as eligible
        (``screening.caution`` reads these findings by patient)."""
        lost = {
            f.where.removeprefix("Patient/")
            for f in self.quality.findings
            if f.problem == DATA_LOST and f.where.startswith("Patient/")
        }
        if not lost:
            return
        neighbours: dict[str, set[str]] = defaultdict(set)
        for pid, links in self._links.items():
            for _kind, other in links:
                neighbours[pid].add(other)
                neighbours[other].add(pid)
        for origin in sorted(lost & neighbours.keys()):
            todo, group = [origin], {origin}
            while todo:
                for other in neighbours[todo.pop()]:
                    if other not in group:
                        group.add(other)
                        todo.append(other)
            for pid in sorted(group - lost):
                lost.add(pid)
                self.quality.lost(
                    f"Patient/{pid}",
                    f"data of Patient/{origin}, linked to this Patient as the same person (Patient.link), "
                    "were lost in this run: the record screened may be incomplete",
                )

    def build(self) -> Population:
        self._merge_linked()
        records: dict[str, PatientRecord] = {}
        for pid, patient in self._patients.items():
            grouped = self._by_patient.get(pid, {})
            records[pid] = PatientRecord(
                patient=patient,
                resources=_usable(grouped),
                medications=self._shared["Medication"],
                studies=self._shared["ResearchStudy"],
            )
        orphans = (set(self._by_patient) | set(self._dropped)) - set(self._patients)
        invalid = {pid for pid in orphans if not is_fhir_id(pid)}
        if invalid:  # counted by a source that dropped them itself (the builder reports its own)
            orphans -= invalid
            self.quality.add(
                "warning", "input", INVALID_ID,
                f"{sum(self._dropped.get(p, 0) for p in invalid)} resource(s) refer to a Patient whose id "
                "is not a FHIR id; skipped",
            )
        without_patient = 0
        for pid in sorted(orphans):
            if self._keep is None or pid in self._keep:  # kept (late joiners were added again)
                held = _usable(self._by_patient[pid]) if pid in self._by_patient else {}
                n = sum(len(v) for v in held.values())
                if n == 0 and pid not in self._dropped:
                    continue  # only unusable records (entered-in-error...): nothing refers to it
                message = f"{n} resource(s) refer to Patient/{pid}, which is not in the data"
                if self._in_population(held):
                    # An SLE patient whose Patient resource is missing is still a patient to screen (age
                    # and sex unknown), not one to lose.
                    records[pid] = PatientRecord(
                        patient={"resourceType": "Patient", "id": pid}, resources=held,
                        medications=self._shared["Medication"], studies=self._shared["ResearchStudy"],
                    )
                    without_patient += 1
                    message += "; they are read without it (age and sex unknown)"
            else:
                n = self._dropped[pid]
                message = f"{n} resource(s) refer to Patient/{pid}, which is not in the data"
            self.quality.add("warning", f"Patient/{pid}", "missing-patient", message)
        return Population(
            records=records,
            quality=self.quality,
            skipped=dict(self.skipped),
            without_patient=without_patient,
            unmerged=self._unmerged,
        )


    def _in_population(self, held: Mapping[str, list[Resource]]) -> bool:
        vs = self._population
        return vs is not None and any(vs.match(c.get("code")) is not None for c in held.get("Condition", ()))


# Patient.link types saying the two records are one person, one replacing the other.
MERGE_LINKS = frozenset({"replaced-by", "replaces"})


def merge_links(patient: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A Patient's ``replaced-by`` / ``replaces`` links, as (type, the other Patient's id)."""
    out = []
    for link in items(patient.get("link")):
        if link.__class__ is dict and link.get("type") in MERGE_LINKS:
            other = reference_id(link.get("other"), "Patient")
            if other:
                out.append((str(link["type"]), other))
    return out


def _content(resource: Resource) -> bytes:
    """A resource's content as canonical JSON (keys sorted), to compare copies by."""
    try:
        return orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits
        return json.dumps(resource, sort_keys=True, default=str).encode()


def _usable(grouped: Mapping[str, Mapping[str, Resource]]) -> dict[str, list[Resource]]:
    """Per type, the usable records (hygiene: entered-in-error, refuted, cancelled, not taken dropped)."""
    out = {}
    for rtype, by_id in grouped.items():
        kept = [r for r in by_id.values() if is_usable(r)]
        if kept:
            out[rtype] = kept
    return out


def _version(resource: Mapping[str, Any]) -> tuple[int | None, datetime | None]:
    meta = resource.get("meta")
    if not isinstance(meta, Mapping):
        return None, None
    raw = meta.get("versionId")
    number = int(raw) if isinstance(raw, str) and raw.strip().isdigit() else None
    if isinstance(raw, int) and not isinstance(raw, bool):
        number = raw
    updated = None
    stamp = meta.get("lastUpdated")
    if isinstance(stamp, str):
        try:
            updated = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            if updated.tzinfo is None:
                updated = updated.replace(tzinfo=timezone.utc)
        except ValueError:
            updated = None
    return number, updated


def is_later_version(new: Mapping[str, Any], held: Mapping[str, Any]) -> bool:
    """meta.versionId compared as numbers when both have one, else meta.lastUpdated; False on a tie."""
    new_number, new_updated = _version(new)
    held_number, held_updated = _version(held)
    if new_number is not None and held_number is not None and new_number != held_number:
        return new_number > held_number
    if new_updated is not None and held_updated is not None:
        return new_updated > held_updated
    return False


# Elements the criteria read as a CodeableConcept or a Reference (objects) or as a code (a string). Any
# other JSON in their place is read as absent, which the run says once per resource.
_OBJECT_ELEMENTS = (
    "code",
    "clinicalStatus",
    "verificationStatus",
    "valueCodeableConcept",
    "valueQuantity",
    "medicationCodeableConcept",
    "medicationReference",
)
_CODE_ELEMENTS = ("status", "intent")
# Of those, the CodeableConcepts: their ``coding`` is a list of objects whose system and code are text.
# A coding in another form is read as no coding (a Condition coded only so is not a diagnosis), so it
# is named as well: ``code.coding``.
_CONCEPT_ELEMENTS = (
    "code",
    "clinicalStatus",
    "verificationStatus",
    "valueCodeableConcept",
    "medicationCodeableConcept",
)


# The dates the criteria read, and the Periods whose start and end they read: one that is not a FHIR
# date ("2026-13-45", "2026-02-30", words) is read as absent, so the resource counts as undated.
_DATE_ELEMENTS = (
    "effectiveDateTime", "effectiveInstant", "issued", "onsetDateTime", "abatementDateTime", "recordedDate",
    "performedDateTime", "authoredOn", "dateAsserted", "whenHandedOver", "occurrenceDateTime",
    "birthDate", "deceasedDateTime",
)
_PERIOD_ELEMENTS = (
    "effectivePeriod", "onsetPeriod", "abatementPeriod", "performedPeriod", "occurrencePeriod",
)
_BOOLEAN_ELEMENTS = ("deceasedBoolean", "doNotPerform", "abatementBoolean")


def malformed_elements(resource: Mapping[str, Any]) -> list[str]:
    """The elements of a kept resource that are present but not in FHIR's form (see above)."""
    bad = [k for k in _OBJECT_ELEMENTS if k in resource and not isinstance(resource[k], dict)]
    bad += [k for k in _CODE_ELEMENTS if k in resource and not isinstance(resource[k], str)]
    for key in _CONCEPT_ELEMENTS:
        concept = resource.get(key)
        if concept.__class__ is dict and _malformed_coding(concept.get("coding")):
            bad.append(f"{key}.coding")
    return bad


def malformed_values(resource: Mapping[str, Any]) -> list[str]:
    """The dates (and booleans) of a kept resource that are present but cannot be read: "2026-13-45"."""
    bad = [k for k in _DATE_ELEMENTS if k in resource and parse_date(resource[k]) is None]
    for key in _PERIOD_ELEMENTS:
        period = resource.get(key)
        if period.__class__ is dict:
            bad += [f"{key}.{end}" for end in ("start", "end")
                    if end in period and parse_date(period[end]) is None]
    bad += [k for k in _BOOLEAN_ELEMENTS if k in resource and resource[k].__class__ is not bool]
    return bad


def report_malformed(resource: Mapping[str, Any], where: str, quality: DataQuality) -> None:
    """The ``malformed-element`` finding for a resource, if it has such elements (one per resource,
    the same wherever it is made, so that two places reporting it give one finding). The finding names
    the elements, never their content (a date field may hold anything, an identifier included)."""
    bad = malformed_elements(resource)
    values = malformed_values(resource)
    if bad or values:
        parts = []
        if bad:
            parts.append(f"{', '.join(bad)} not in FHIR's form (an object, or a code string, was expected)")
        if values:
            parts.append(f"{', '.join(values)} not a valid date (or true/false)")
        quality.add("warning", where, "malformed-element", f"{'; '.join(parts)}; read as absent")


def malformed_concept(concept: Any) -> bool:
    """A CodeableConcept present but not in FHIR's form, or whose ``coding`` is not (see above)."""
    if concept is None:
        return False
    if concept.__class__ is not dict:
        return True
    return _malformed_coding(concept.get("coding"))


def _malformed_coding(coding: Any) -> bool:
    if coding is None:
        return False
    if coding.__class__ is not list:
        return True
    for item in coding:
        if item.__class__ is not dict:
            return True
        code, system = item.get("code"), item.get("system")
        if (code is not None and code.__class__ is not str) or (
            system is not None and system.__class__ is not str
        ):
            return True
    return False


def patient_id(resource: Mapping[str, Any]) -> str | None:
    """The id of the patient a resource belongs to: ``patient_id_of``, with a fast path for the plain
    ``Patient/<id>`` reference that nearly all data use."""
    link = PATIENT_LINK.get(resource["resourceType"])
    if link is not None:
        holder = resource.get(link)
        if holder.__class__ is dict:
            value = holder.get("reference")
            if (
                value.__class__ is str
                and value.startswith("Patient/")
                and len(value) > 8
                and value.find("/", 8) < 0
                and value != "Patient/_history"
            ):
                return value[8:]
    return patient_id_of(resource)
