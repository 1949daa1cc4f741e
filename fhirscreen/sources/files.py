"""Read FHIR R4 JSON from files: Bundles of any type and Bulk Data NDJSON, mixed freely."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from fhirscreen.fhir.resources import Resource
from fhirscreen.quality import DataQuality
from fhirscreen.sources.base import QueryPlan, SourceError

_SUFFIXES = (".json", ".ndjson", ".json.gz", ".ndjson.gz")


def _open(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


class FileSource:
    """A file, or a directory searched recursively, of ``.json`` / ``.ndjson`` (optionally gzipped)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return str(self.path)

    def files(self) -> list[Path]:
        if not self.path.exists():
            raise SourceError(f"{self.path}: no such file or directory")
        if self.path.is_file():
            return [self.path]
        found = sorted(p for p in self.path.rglob("*") if p.is_file() and p.name.lower().endswith(_SUFFIXES))
        if not found:
            raise SourceError(f"{self.path}: no FHIR .json or .ndjson files found (searched recursively)")
        return found

    def read(self, plan: QueryPlan, quality: DataQuality) -> Iterator[tuple[Resource, str]]:
        for file in self.files():
            yield from read_file(file, quality)


def read_file(file: Path, quality: DataQuality) -> Iterator[tuple[Resource, str]]:
    shown = str(file)
    try:
        if file.name.lower().endswith((".ndjson", ".ndjson.gz")):
            yield from _read_ndjson(file, quality)
            return
        with _open(file) as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        quality.add(
            "error", f"{shown}:{exc.lineno}", "malformed-json", f"not valid JSON ({exc.msg}); file skipped"
        )
        return
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        quality.add("error", shown, "unreadable-file", f"cannot read file: {exc}; skipped")
        return
    yield from _resources_in(data, shown, quality)


def _read_ndjson(file: Path, quality: DataQuality) -> Iterator[tuple[Resource, str]]:
    shown = str(file)
    with _open(file) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                quality.add(
                    "error",
                    f"{shown}:{lineno}",
                    "malformed-json",
                    f"line is not valid JSON ({exc.msg}); skipped",
                )
                continue
            yield from _resources_in(data, f"{shown}:{lineno}", quality)


def _resources_in(data: Any, origin: str, quality: DataQuality) -> Iterator[tuple[Resource, str]]:
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        quality.add("error", origin, "not-fhir", "JSON is not a FHIR resource (no resourceType); skipped")
        return
    if data["resourceType"] == "Bundle":
        yield from bundle_resources(data, origin, quality)
    else:
        yield data, origin


def bundle_resources(
    bundle: Mapping[str, Any], origin: str, quality: DataQuality
) -> Iterator[tuple[Resource, str]]:
    """The resources of a Bundle with ``urn:uuid:`` and absolute fullUrl references rewritten to ``Type/id``.

    Transaction entries often have no id (the server would assign one); the id is then taken from the
    fullUrl so that references inside the bundle still line up.
    """
    entries = [e for e in bundle.get("entry") or () if isinstance(e, Mapping)]
    aliases: dict[str, str] = {}
    resources: list[Resource] = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource")
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            quality.add(
                "warning", f"{origin} entry {index}", "not-fhir", "bundle entry without a resource; skipped"
            )
            continue
        if resource.get("resourceType") == "OperationOutcome":
            continue
        full_url = entry.get("fullUrl")
        rtype = resource["resourceType"]
        if not resource.get("id") and isinstance(full_url, str):
            resource["id"] = full_url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        if isinstance(full_url, str) and resource.get("id"):
            aliases[full_url] = f"{rtype}/{resource['id']}"
        resources.append(resource)
    for resource in resources:
        if aliases:
            _rewrite_references(resource, aliases)
        if resource["resourceType"] == "Bundle":
            yield from bundle_resources(resource, origin, quality)
        else:
            yield resource, origin


def _rewrite_references(node: Any, aliases: Mapping[str, str]) -> None:
    if isinstance(node, dict):
        value = node.get("reference")
        if isinstance(value, str) and value in aliases:
            node["reference"] = aliases[value]
        for child in node.values():
            if isinstance(child, (dict, list)):
                _rewrite_references(child, aliases)
    elif isinstance(node, list):
        for child in node:
            if isinstance(child, (dict, list)):
                _rewrite_references(child, aliases)
