"""The local store of the initial population's resources: one SQLite file beside the run outputs.

Two tables: ``meta`` (schema version, what the store was read for, the server's high-water mark) and
``resource`` (type, id, the patient it belongs to, the JSON body). The store is only ever changed as a
whole after a successful read: a full read writes a new file and renames it over the old one; an
incremental read applies its changes and the new high-water mark in one transaction. A run that fails
halfway therefore leaves the store as the last successful run left it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from fhirscreen.fhir.resources import Resource

# Bump when the tables or the meaning of a column change: an older store is then read again in full.
SCHEMA_VERSION = "1"
STORE_FILE = "store.sqlite"

_CREATE = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE resource (type TEXT NOT NULL, id TEXT NOT NULL, patient TEXT, body TEXT NOT NULL,"
    " PRIMARY KEY (type, id))",
    "CREATE INDEX resource_patient ON resource (patient)",
)


class StoreError(Exception):
    """The store file exists but cannot be used (corrupt, not SQLite, unreadable)."""


@dataclass(frozen=True)
class StoreState:
    """What a store holds: for which source and plan (``source_key``), and up to when."""

    schema_version: str
    source_key: str
    high_water: str  # the server's clock when the last successful read started (ISO 8601, UTC)
    full_read_at: str  # the server's clock when the last full read started

    def as_meta(self) -> dict[str, str]:
        return {
            "schema_version": self.schema_version,
            "source_key": self.source_key,
            "high_water": self.high_water,
            "full_read_at": self.full_read_at,
        }


Key = tuple[str, str]  # (resource type, id)


@dataclass
class StoredResource:
    patient: str | None
    body: Resource


class ResourceStore:
    """A SQLite file of resources keyed by (type, id), each with the patient it belongs to."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def state(self) -> StoreState | None:
        """The store's state; None when there is no store yet. Raises StoreError when it is unusable."""
        if not self.path.exists():
            return None
        try:
            with closing(self._connect()) as db:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: not a usable fhirscreen store ({exc})") from None
        return StoreState(
            schema_version=str(meta.get("schema_version", "")),
            source_key=str(meta.get("source_key", "")),
            high_water=str(meta.get("high_water", "")),
            full_read_at=str(meta.get("full_read_at", "")),
        )

    def load(self) -> dict[Key, StoredResource]:
        """Every stored resource, by (type, id)."""
        try:
            with closing(self._connect()) as db:
                rows = db.execute("SELECT type, id, patient, body FROM resource").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the store ({exc})") from None
        return {(t, i): StoredResource(p, json.loads(b)) for t, i, p, b in rows}

    def replace_all(self, resources: Mapping[Key, StoredResource], state: StoreState) -> None:
        """Write a new store with exactly these resources (a full read): a temporary file renamed over
        the old one, so the old store stays whole until the new one is complete."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.unlink(missing_ok=True)
        temporary.touch(mode=0o600)  # patient data: readable by its owner only
        with closing(sqlite3.connect(temporary)) as db:
            for statement in _CREATE:
                db.execute(statement)
            db.executemany("INSERT INTO resource VALUES (?, ?, ?, ?)", _rows(resources.items()))
            db.executemany("INSERT INTO meta VALUES (?, ?)", state.as_meta().items())
            db.commit()
        _fsync(temporary)
        os.replace(temporary, self.path)
        _fsync_dir(self.path.parent)

    def apply(self, upserts: Mapping[Key, StoredResource], deletes: Iterable[Key], state: StoreState) -> None:
        """Apply an incremental read's changes and its new state in one transaction."""
        try:
            with closing(self._connect()) as db, db:  # one transaction: everything or nothing
                db.executemany("DELETE FROM resource WHERE type = ? AND id = ?", list(deletes))
                db.executemany(
                    "INSERT OR REPLACE INTO resource VALUES (?, ?, ?, ?)", _rows(upserts.items())
                )
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", state.as_meta().items())
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot update the store ({exc})") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, timeout=30)
        db.execute("PRAGMA journal_mode=DELETE")
        return db


def _rows(items: Iterable[tuple[Key, StoredResource]]) -> Iterator[tuple[str, str, str | None, str]]:
    for (rtype, rid), stored in items:
        yield rtype, rid, stored.patient, json.dumps(stored.body, separators=(",", ":"), sort_keys=True)


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
