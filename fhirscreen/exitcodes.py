"""The exit codes of every fhirscreen command: one per failure class, never reused.

A cron job or a service monitor reads these to tell a broken night from a quiet one. The table is
documented in README.md ("Exit codes"); each code has a test.

- 0 success; data-quality warnings allowed.
- 1 an unexpected internal error (a bug in fhirscreen): please report it.
- 2 usage or configuration error: bad option, invalid trial file, unusable --out, unset token variable,
  unreadable key.
- 3 the source cannot be read at all: missing path, unreachable server, refused credentials.
- 4 the source was read but gave nothing usable: no patient, no Condition resource at all (so the
  initial population cannot be found), every file unreadable, every load transaction failed. A source
  that holds Conditions, none of them an SLE diagnosis, is a quiet night (0), in every mode.
- 5 partial data: outputs were written, but some files or pages were lost after retries (run.json
  says which).
- 6 another run holds the lock on the output directory.
- 7 the screening is whole and its outputs written, but posting the MeasureReport and Group back to the
  server (--post-report) failed: the downstream system did not get tonight's list.
- 8 the work was done, but its outputs could not be written (a full disk, an I/O error): a run folder
  is published whole or not at all, so ``latest`` still points to the run before.
- 130 interrupted (SIGINT/SIGTERM); nothing partial is left behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fhirscreen.quality import DataQuality

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_SOURCE_UNREACHABLE = 3
EXIT_NOTHING_USABLE = 4
EXIT_PARTIAL = 5
EXIT_LOCKED = 6
EXIT_POST_FAILED = 7
EXIT_OUTPUT_FAILED = 8
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success (data-quality warnings allowed)",
    EXIT_INTERNAL: "internal error (a bug in fhirscreen; please report it)",
    EXIT_USAGE: "usage or configuration error",
    EXIT_SOURCE_UNREACHABLE: "data source unreachable or refused",
    EXIT_NOTHING_USABLE: "data source read, but nothing usable in it",
    EXIT_PARTIAL: "partial data: outputs written, some files or pages lost",
    EXIT_LOCKED: "another run holds the output directory's lock",
    EXIT_POST_FAILED: "outputs written, but posting the MeasureReport back to the server failed",
    EXIT_OUTPUT_FAILED: "outputs could not be written (a full disk, an I/O error)",
    EXIT_INTERRUPTED: "interrupted",
}


def outcome_code(patients_read: int, quality: DataQuality, screened: int = 0) -> int:
    """The exit code of a screening whose outputs were written (0, 4 or 5): the one rule behind the
    process's exit, run.json's ``exit_status`` and the MeasureReport's status.

    4 when nothing usable was read: the source holds no Condition at all (``quality.no_conditions``), or
    no patient was read and the source did not show that the initial population is simply empty (a
    server run reads only that population's patients: ``quality.empty_population``); 5 when data was
    lost after retries (the outputs are partial); else 0. Patients ``screened`` without their Patient
    resources (the Patient searches lost, the Patient file missing) are a run with outputs, not
    "nothing": partial when data were lost."""
    if quality.no_conditions or (patients_read == 0 and screened == 0 and not quality.empty_population):
        return EXIT_NOTHING_USABLE
    if quality.partial:
        return EXIT_PARTIAL
    return EXIT_OK
