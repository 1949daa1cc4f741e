"""One screening run into an output directory: open (check, lock, clean), commit (files, run.json,
changes.json, latest), prune. The CLI calls these three and nothing else of this package."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fhirscreen.exitcodes import EXIT_CODES, EXIT_NOTHING_USABLE, EXIT_OK, EXIT_POST_FAILED
from fhirscreen.report.html.render import IDENTITIES_FILE, REPORT_FILE, report_pieces
from fhirscreen.report.jsonio import OutputWriteError, dump_json, load_json
from fhirscreen.report.output import render_outputs
from fhirscreen.runs.atomic import Content, write_file
from fhirscreen.runs.changes import compute_changes
from fhirscreen.runs.layout import LATEST, RUN_JSON, OutputDir, RunInfo
from fhirscreen.runs.manifest import exit_status, run_manifest
from fhirscreen.runs.observe import ObservedSource
from fhirscreen.screening import ScreeningRun
from fhirscreen.sources.factory import SourceOptions

log = logging.getLogger("fhirscreen")

CHANGES_JSON = "changes.json"


def record_post_failure(folder: Path, message: str) -> None:
    """run.json of a committed run whose --post-report failed afterwards: the exit status the process
    ends with (7, unless the run had its own failure) and why, so a monitor reading run.json sees what
    cron saw. Best effort: the outputs stand either way."""
    path = folder / RUN_JSON
    try:
        manifest = load_json(path.read_bytes())
        if not isinstance(manifest, dict):
            return
        if manifest.get("exit_status") == EXIT_OK:
            manifest["exit_status"] = EXIT_POST_FAILED
            manifest["exit_meaning"] = EXIT_CODES[EXIT_POST_FAILED]
        manifest["post_report"] = {"posted": False, "error": message}
        write_file(path, dump_json(manifest))
    except (OSError, ValueError) as exc:
        log.warning("%s: could not record the failed post-back (%s)", path, exc)


def load_candidates(info: RunInfo) -> dict[str, Any] | None:
    try:
        data = load_json((info.path / "candidates.json").read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RunOutput:
    """``--out DIR``: opened before any work starts, so that a bad or busy DIR fails at once."""

    def __init__(self, directory: OutputDir, keep: int | None) -> None:
        self.directory = directory
        self.keep = keep
        self.started_at = datetime.now(timezone.utc)
        self.started = time.monotonic()
        self.exit_status = 0
        self.folder: Path | None = None  # the run's folder, once committed

    @classmethod
    def open(cls, root: Path, keep: int | None) -> RunOutput:
        return cls(OutputDir.open(root), keep)

    def close(self) -> None:
        self.directory.close()

    def commit(
        self,
        run: ScreeningRun,
        source: ObservedSource,
        options: SourceOptions,
        outputs: Mapping[str, str] | None = None,
        more_options: Mapping[str, Any] | None = None,
    ) -> list[Path]:
        """Write the run folder and switch ``latest`` (unless the run read nothing usable); prune.

        ``outputs``: the rendered files but report.html (default ``render_outputs(run, page=False)``;
        the page is rendered here); ``more_options``: options of the command beyond the source's,
        recorded in run.json (no secrets)."""
        screened = time.monotonic()
        directory = self.directory
        name = directory.new_run_id(run.as_of, self.started_at)
        base = directory.latest()
        files: dict[str, str | bytes] = dict(
            outputs if outputs is not None else render_outputs(run, page=False)
        )
        current = load_json(files["candidates.json"])
        previous = load_candidates(base) if base else None
        changes = compute_changes(name, base.name if base else None, current, previous)
        del previous  # the run before's whole document: not held while the page renders
        files[CHANGES_JSON] = dump_json(changes)
        self.exit_status = exit_status(run)
        usable = self.exit_status != EXIT_NOTHING_USABLE
        now = time.monotonic()
        durations = {
            "read": source.read_seconds,
            "evaluate": max(0.0, screened - self.started - source.read_seconds),
            "render": now - screened,
            "total": now - self.started,
        }
        files[RUN_JSON] = dump_json(
            run_manifest(
                run_id=name,
                base_run=base.name if base else None,
                run=run,
                source=source,
                options=options,
                keep=self.keep,
                more_options=more_options,
                started_at=self.started_at,
                finished_at=datetime.now(timezone.utc),
                durations=durations,
            )
        )
        # The page shows what changed since the run before and the run's facts: rendered here, once,
        # now that changes.json and run.json exist, from the same inputs as ``fhirscreen report RUN_DIR``.
        identities = load_json(files[IDENTITIES_FILE]) if IDENTITIES_FILE in files else None
        run_info = load_json(files[RUN_JSON])
        # In pieces, written as they are made: the whole page, as text, was this run's memory peak.
        contents: dict[str, Content] = {
            **files,
            REPORT_FILE: report_pieces(current, run.trial, changes, run_info, identities),
        }
        del current  # held by the pieces until the page is written
        # Names and MRNs (--show-names) are readable by the owner only, whatever the umask.
        private = {IDENTITIES_FILE, REPORT_FILE} if IDENTITIES_FILE in files else set()
        try:
            folder = directory.commit(name, contents, switch_latest=usable, private=private)
        except OSError as exc:
            raise OutputWriteError(
                f"{directory.root}: cannot write the run {name}: {exc.strerror or exc}"
            ) from None
        self.folder = folder
        if not usable:
            log.warning("%s: the run read nothing usable; %s still points to the run before", folder, LATEST)
        if self.keep is not None:
            for pruned in directory.prune(self.keep):
                log.info("pruned the old run %s (--keep %d)", pruned, self.keep)
        shown = directory.root / LATEST if usable else folder
        return [shown / file_name for file_name in contents]
