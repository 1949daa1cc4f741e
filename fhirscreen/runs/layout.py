"""The output directory of a nightly job: every run kept, ``latest`` switched last.

    DIR/
      runs/2026-06-01T023000Z/   candidates.json, candidates.csv, measure-report.json, group.json,
                                 run.json, changes.json  (one folder per run, never changed again)
      latest -> runs/2026-06-01T023000Z   (a symlink, replaced in one rename)
      candidates.json -> latest/candidates.json   (and the other files: the flat one-shot view)
      .lock                      (held while a run writes; see lock.py)
      .in-progress/              (a run being written; renamed into runs/ when complete)

A run is written whole into ``.in-progress/<id>/`` (each file atomically), renamed into ``runs/``
(one rename), and only then is ``latest`` switched. A run killed at any point leaves ``latest``, every
earlier run and the flat view as they were; the next run removes what the killed one left behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from fhirscreen.report.jsonio import OutputError
from fhirscreen.runs.atomic import TEMP_PREFIX, Content, fsync_dir, point_symlink, write_file
from fhirscreen.runs.lock import OutputLock

# The kill -9 fault test (tests/faults) widens the window between the first file written and the switch
# of latest, so that its kills land inside it on any machine; never set in production.
_WRITE_PAUSE_S = float(os.environ.get("FHIRSCREEN_TEST_WRITE_PAUSE_S") or 0)

log = logging.getLogger("fhirscreen")

RUNS = "runs"
LATEST = "latest"
IN_PROGRESS = ".in-progress"
RUN_JSON = "run.json"


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    manifest: dict[str, Any] = field(compare=False)

    @property
    def order(self) -> tuple[str, str]:
        return (str(self.manifest.get("started_at", "")), self.name)

    @property
    def usable(self) -> bool:
        """A run ``latest`` may point to: it read data (exit 4 runs are kept for the record only)."""
        return self.manifest.get("exit_status") != 4


def read_manifest(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def list_runs(root: Path) -> list[RunInfo]:
    """Every complete run under ``root/runs``, oldest first (by start time, then name)."""
    runs_dir = root / RUNS
    if not runs_dir.is_dir():
        return []
    found = [
        RunInfo(p.name, p, read_manifest(p))
        for p in runs_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".")
    ]
    return sorted(found, key=lambda r: r.order)


def latest_name(root: Path) -> str | None:
    link = root / LATEST
    if not link.is_symlink():
        return None
    target = Path(os.readlink(link))
    return target.name if (root / target).is_dir() else None


def run_id(as_of: date, started: datetime, taken: set[str]) -> str:
    base = f"{as_of.isoformat()}T{started:%H%M%S}Z"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


class OutputDir:
    """An output directory opened for one run: checked, locked and cleaned before any work starts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = OutputLock(root)
        self._staging: Path | None = None  # a run folder being written by this process

    @classmethod
    def open(cls, root: Path) -> OutputDir:
        """Create, check and lock ``root``; raise OutputError (unusable) or LockedError (busy)."""
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{root}: cannot create output directory: {exc.strerror or exc}") from None
        if not root.is_dir():
            raise OutputError(f"{root}: not a directory")
        latest = root / LATEST
        if latest.exists() and not latest.is_symlink():
            raise OutputError(f"{latest}: exists and is not a symlink; move it away (fhirscreen manages it)")
        out = cls(root)
        try:
            out.lock.acquire()
            (root / RUNS).mkdir(exist_ok=True)
            (root / IN_PROGRESS).mkdir(exist_ok=True)
            probe = root / IN_PROGRESS / f"{TEMP_PREFIX}probe-{os.getpid()}"
            write_file(probe, b"")
            probe.unlink()
        except OSError as exc:
            out.close()
            raise OutputError(f"{root}: cannot write output here: {exc.strerror or exc}") from None
        except BaseException:
            out.close()
            raise
        out._clean_leftovers()
        return out

    def close(self) -> None:
        """Release the lock; a run folder left unpublished (interrupted) is removed first."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        self.lock.release()

    def _clean_leftovers(self) -> None:
        """Remove what killed runs left: unfinished run folders and temporary files or links."""
        for leftover in (self.root / IN_PROGRESS).iterdir():
            log.warning("%s: removing an unfinished run left by a run that was stopped", leftover)
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        for folder in (self.root, self.root / RUNS):
            for tmp in folder.glob(f"{TEMP_PREFIX}*"):
                if tmp.is_dir() and not tmp.is_symlink():
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    tmp.unlink(missing_ok=True)

    def runs(self) -> list[RunInfo]:
        return list_runs(self.root)

    def latest(self) -> RunInfo | None:
        name = latest_name(self.root)
        return next((r for r in self.runs() if r.name == name), None)

    def new_run_id(self, as_of: date, started: datetime) -> str:
        taken = {p.name for p in (self.root / RUNS).iterdir()}
        return run_id(as_of, started, taken)

    def commit(
        self,
        name: str,
        files: Mapping[str, Content],
        switch_latest: bool = True,
        private: Collection[str] = (),
    ) -> Path:
        """Write a run's files and publish it: in-progress folder, rename into runs/, switch latest.
        Files named in ``private`` are written mode 0600 (owner only)."""
        staging = self.root / IN_PROGRESS / name
        staging.mkdir()
        self._staging = staging
        for file_name, data in files.items():
            write_file(staging / file_name, data, 0o600 if file_name in private else 0o644)
            if _WRITE_PAUSE_S:
                time.sleep(_WRITE_PAUSE_S)
        fsync_dir(staging)
        final = self.root / RUNS / name
        os.rename(staging, final)
        self._staging = None
        fsync_dir(self.root / RUNS)
        fsync_dir(self.root / IN_PROGRESS)
        if switch_latest:
            point_symlink(self.root / LATEST, f"{RUNS}/{name}")
            self._link_flat_view(sorted(files))
        return final

    def _link_flat_view(self, names: list[str]) -> None:
        """``DIR/<file>`` -> ``latest/<file>``: the current outputs where a one-shot user expects them."""
        for file_name in names:
            link = self.root / file_name
            target = f"{LATEST}/{file_name}"
            if link.is_symlink() and os.readlink(link) == target:
                continue
            if link.is_dir() and not link.is_symlink():
                log.warning("%s: a directory is in the way of the link to %s; left alone", link, target)
                continue
            point_symlink(link, target)
        for link in self.root.iterdir():
            if link.is_symlink() and os.readlink(link).startswith(f"{LATEST}/") and not link.exists():
                link.unlink()  # an output the latest run no longer has

    def prune(self, keep: int) -> list[str]:
        """Delete the oldest runs beyond the ``keep`` newest; never the one ``latest`` points to."""
        current = latest_name(self.root)
        runs = self.runs()
        doomed = [r for r in runs[: max(0, len(runs) - keep)] if r.name != current]
        for r in doomed:
            # Renamed out of runs/ first, so that a kill mid-delete leaves no half run in the history.
            trash = self.root / IN_PROGRESS / f"{TEMP_PREFIX}pruned-{r.name}"
            os.rename(r.path, trash)
            shutil.rmtree(trash)
        if doomed:
            fsync_dir(self.root / RUNS)
        return [r.name for r in doomed]
