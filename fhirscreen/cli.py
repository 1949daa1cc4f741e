"""Command line: thin wiring of sources, the screening core and the reports.

Exit codes: the table in ``fhirscreen.exitcodes`` (README "Exit codes"); ``fhirscreen.failures`` maps
failures to them.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from fhirscreen import __version__, report, runs, usage
from fhirscreen.exitcodes import EXIT_LOCKED, EXIT_POST_FAILED, EXIT_SOURCE_UNREACHABLE, EXIT_USAGE
from fhirscreen.failures import (
    click_errors_in_tool_format,
    error_line,
    fail,
    finish,
    guarded,
    warning_line,
    write_stdout,
)
from fhirscreen.parallel import AUTO_MAX, auto_workers
from fhirscreen.paths import SAMPLE_AS_OF
from fhirscreen.sources.base import QueryPlan, SourceError
from fhirscreen.sources.factory import SourceOptions, open_source

if TYPE_CHECKING:
    from fhirscreen.runs.observe import ObservedSource
    from fhirscreen.screening import ScreeningRun
    from fhirscreen.trial.loader import Trial, TrialTerms

# The criteria, the trial loader and the reports are imported when a command first needs them, not with
# this module: a server run opens its source (and sends GET /metadata) first, and they load while the
# server answers.

EXIT_CONFIG = EXIT_USAGE
EXIT_SOURCE = EXIT_SOURCE_UNREACHABLE

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> None:
    fail(message, code)


def _parse_as_of(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date in YYYY-MM-DD form") from None


def _trial_option(fn: F) -> F:
    return click.option(
        "--trial",
        "trial_file",
        type=click.Path(path_type=Path),
        default=None,
        help="Trial definition YAML (default: the bundled queries/NCT06737380.yaml).",
    )(fn)


def _connection_options(concurrency: int, timeout: float) -> list[Callable[[F], F]]:
    """How to reach and authenticate to a server: shared by screen/explain and load."""
    return [
        click.option(
            "--token-env",
            metavar="NAME",
            default=None,
            help="Environment variable holding a bearer token (the token is never printed).",
        ),
        click.option("--smart-client-id", default=None, help="SMART Backend Services client id."),
        click.option(
            "--smart-key",
            "smart_key_file",
            type=click.Path(path_type=Path),
            default=None,
            help="SMART Backend Services private key (PEM, RS384 or ES384).",
        ),
        click.option(
            "--smart-key-id", default=None, help="kid of the SMART signing key, if the server needs it."
        ),
        click.option(
            "--smart-token-url",
            default=None,
            help="Token endpoint (default: discovered from .well-known/smart-configuration).",
        ),
        click.option(
            "--smart-scope",
            default=None,
            help="Scopes to request (default: system/<Type>.read for the types screened).",
        ),
        click.option(
            "--ca-bundle",
            type=click.Path(path_type=Path),
            default=None,
            help="PEM file of CA certificates to trust (a hospital's private CA).",
        ),
        click.option(
            "--insecure", is_flag=True, help="Turn TLS certificate verification OFF (testing only)."
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(1, 32),
            default=concurrency,
            show_default=True,
            help="Parallel requests to the server.",
        ),
        click.option(
            "--timeout",
            type=float,
            default=timeout,
            show_default=True,
            help="Seconds an HTTP request may wait for the next bytes.",
        ),
        click.option(
            "--deadline",
            type=click.FloatRange(min=1),
            default=None,
            help="Overall seconds per HTTP request, extended while data comes fast "
            "(default: 10 x --timeout).",
        ),
        click.option(
            "-v", "--verbose", is_flag=True, help="Show progress and each server request on stderr."
        ),
    ]


def _apply(fn: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        fn = option(fn)
    return fn


def _source_options(fn: F) -> F:
    options: list[Callable[[F], F]] = [
        click.option(
            "--data",
            # Not click's readable check (exit 2): a --data that cannot be read is exit 3, the source's.
            type=click.Path(path_type=Path, readable=False),
            default=None,
            help="FHIR JSON/NDJSON file or directory (searched recursively). "
            "Default: bundled sample_bundles/.",
        ),
        click.option(
            "--server", metavar="URL", default=None, help="FHIR R4 base URL to screen instead of files."
        ),
        click.option("--bulk", is_flag=True, help="With --server: read through Bulk Data $export."),
        click.option(
            "--observations",
            type=click.Choice(["auto", "codes", "all"]),
            default="auto",
            show_default=True,
            help="With --server: search Observations by the trial's LOINC codes, or read all of the "
            "candidates' Observations (faster on servers whose code search scans every Observation); "
            "auto tries both on the first batch and keeps the faster.",
        ),
        click.option(
            "--page-size",
            type=click.IntRange(1, 1000),
            default=200,
            show_default=True,
            help="_count for server searches.",
        ),
        *_connection_options(concurrency=4, timeout=60.0),
    ]
    return _trial_option(_apply(fn, options))


def _resolve_as_of(as_of: date | None, options: SourceOptions) -> date:
    """Default screening date: today, except for the bundled samples, which are dated for SAMPLE_AS_OF
    so that the demo run shows every status whatever the day it is run."""
    if as_of is not None:
        return as_of
    if options.data is None and options.server is None:
        click.echo(
            f"fhirscreen: screening the bundled sample data as of {SAMPLE_AS_OF.isoformat()} "
            "(use --as-of to change)",
            err=True,
        )
        return SAMPLE_AS_OF
    return date.today()


def _options(kwargs: dict[str, Any]) -> SourceOptions:
    names = SourceOptions.__dataclass_fields__
    options = SourceOptions(**{k: kwargs[k] for k in names if k in kwargs})
    if options.bulk and not options.server:
        _fail("--bulk needs --server (Bulk Data export is a server operation)", EXIT_CONFIG)
    if options.server and options.data is not None:
        _fail("use either --data or --server, not both", EXIT_CONFIG)
    given = usage.server_only_given(click.get_current_context())
    if given and not options.server:
        _fail(f"{', '.join(given)}: only with --server (these options are about a FHIR server)", EXIT_CONFIG)
    problem = usage.token_env_problem(options.token_env)
    if problem:
        _fail(problem, EXIT_CONFIG)
    return options


def _check_as_of(as_of: date | None, force: bool) -> None:
    problem = usage.as_of_problem(as_of) if as_of is not None and not force else None
    if problem:
        _fail(problem, EXIT_CONFIG)


_force_as_of = click.option(
    "--force-as-of", is_flag=True, help="Accept an --as-of before 1900 or more than a year ahead."
)


def _echo_source_stats(source: object) -> None:
    """The request count and volume of a server run, for the run summary (files have none)."""
    stats = getattr(source, "stats", None)
    if not callable(stats):
        return
    s = stats()
    click.echo(
        f"Server: {s.get('requests', 0)} requests ({s.get('retries', 0)} retries), "
        f"{float(s.get('bytes', 0)) / 1e6:.1f} MB received, {s.get('resources', 0)} resources "
        f"in {s.get('seconds', 0)} s.",
        err=True,
    )
    read_summary = getattr(source, "read_summary", None)
    if callable(read_summary):
        click.echo(f"Store: {read_summary()}.", err=True)


class _OneLineFormatter(logging.Formatter):
    """Each log record on one line: control characters escaped (``escape_controls``), so that nothing a
    record quotes (a URL, a server's reason) can forge or overwrite a line of the log."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        from fhirscreen.quality import escape_controls

        return escape_controls(super().formatMessage(record))


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="fhirscreen: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_OneLineFormatter("fhirscreen: %(message)s"))
    # urllib3 would repeat every request next to fhirscreen's own "METHOD URL status ms" line.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def load_trial(path: Path | None = None, terms_ready: Callable[[TrialTerms], None] | None = None) -> Trial:
    from fhirscreen.trial import loader

    return loader.load_trial(path, terms_ready)


def run_screening(source: ObservedSource, trial: Trial, as_of: date, workers: int) -> ScreeningRun:
    from fhirscreen import pipeline

    return pipeline.run_screening(source, trial, as_of, workers)


def _load_trial(path: Path | None, terms_ready: Callable[[TrialTerms], None] | None = None) -> Trial:
    from fhirscreen.trial.loader import TrialFileError

    try:
        return load_trial(path, terms_ready)
    except TrialFileError as exc:
        _fail(f"invalid trial file:\n{exc}", EXIT_CONFIG)
        raise  # unreachable; keeps type checkers satisfied


def _guarded(fn: F) -> F:
    """Turn failures into a clear message and the documented exit code (``fhirscreen.failures``)."""
    return guarded(fn)


def _width_option(fn: F) -> F:
    return click.option(
        "--width",
        type=click.IntRange(60, 1000),
        default=None,
        metavar="COLUMNS",
        help="Fit the text output to this many columns (default: the terminal's width, or 100).",
    )(fn)


def _show_names_option(fn: F) -> F:
    return click.option(
        "--show-names",
        is_flag=True,
        help="Show patient names and MRNs in report.html (where the site's policy allows; by default "
        "the page shows resource ids, age and sex only).",
    )(fn)


class _Commands(click.Group):
    """The commands, with click's own errors (a bad option, a missing argument, no such command) in the
    tool's error format, as every other error (``fhirscreen.failures``)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        with click_errors_in_tool_format():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with click_errors_in_tool_format():
            return super().invoke(ctx)


@click.group(cls=_Commands)
@click.version_option(__version__, prog_name="fhirscreen")
def main() -> None:
    """Find candidates for clinical trial NCT06737380 in FHIR R4 data."""


@main.command()
@_source_options
@click.option(
    "--as-of",
    callback=_parse_as_of,
    default=None,
    metavar="YYYY-MM-DD",
    help="Screening date every window is measured from (default: today; the bundled samples: 2026-06-01).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Keep this run in DIR/runs/<as-of>T<time>/; DIR/latest (and DIR/candidates.json ...) point to it.",
)
@click.option("--keep", type=click.IntRange(1), metavar="N", help="With --out: keep only the N newest runs.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True
)
@click.option("--post-report", is_flag=True, help="With --server: POST the MeasureReport and Group back.")
@click.option(
    "--full",
    is_flag=True,
    help="With --server and --out: read everything again instead of only what changed since the last run.",
)
@click.option(
    "--engine",
    type=click.Choice(["file", "spark"]),
    default="file",
    show_default=True,
    help="spark: screen Bulk NDJSON (--data folder or Hadoop URI such as s3a://) on Apache Spark.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=None,
    metavar="N",
    help="Processes that read large Bulk NDJSON files (--data) and screen the initial population "
    f"(default: the cores this process may use, at most {AUTO_MAX}; fewer for small inputs). Results "
    "are the same for any N.",
)
@_force_as_of
@_show_names_option
@_width_option
@_guarded
def screen(
    trial_file: Path | None,
    as_of: date | None,
    out_dir: Path | None,
    fmt: str,
    post_report: bool,
    keep: int | None,
    force_as_of: bool,
    full: bool,
    show_names: bool,
    width: int | None,
    engine: str = "file",
    workers: int | None = None,
    **kwargs: Any,
) -> None:
    """Screen every patient with an SLE diagnosis and print the ranked candidates."""
    if post_report and not kwargs.get("server"):
        _fail("--post-report needs --server", EXIT_CONFIG)
    if workers is not None and engine == "spark":
        _fail("--workers is for --engine file; Spark spreads the work over its own executors", EXIT_CONFIG)
    options = dataclasses.replace(
        _options(kwargs), workers=workers or auto_workers(), exclude=out_dir.resolve() if out_dir else None
    )
    _check_as_of(as_of, force_as_of)
    out_problem = usage.out_dir_problem(out_dir) if out_dir is not None else None
    if out_problem:
        _fail(out_problem, EXIT_CONFIG)
    if full and not (options.server and out_dir is not None):
        _fail("--full needs --server and --out (the store of incremental reads lives in --out)", EXIT_CONFIG)
    _setup_logging(options.verbose)
    output = _open_output(out_dir, keep)
    # Opened before the trial is loaded: a server source sends its first request (GET /metadata) at
    # once, and the answer is on its way while the trial file is read.
    plain = open_source(options) if engine != "spark" else None
    trial = _load_trial(trial_file, _population_early(plain) if not (options.server and out_dir) else None)
    if engine == "spark":
        from fhirscreen.spark import SparkUsageError
        from fhirscreen.spark.command import SparkInput, screen_on_spark

        try:
            run = screen_on_spark(options, trial, _resolve_as_of(as_of, options))
        except SparkUsageError as exc:
            _fail(str(exc), EXIT_CONFIG)
            raise  # unreachable
        source = runs.observe(SparkInput(run))
    else:
        assert plain is not None
        if options.server and out_dir is not None:
            from fhirscreen.store import with_store

            plain = with_store(plain, out_dir, trial, full=full)
        source = runs.observe(plain)
        click.get_current_context().call_on_close(source.close_progress)
        run = run_screening(source, trial, _resolve_as_of(as_of, options), options.workers)
    source.close_progress()
    # What is in memory now (the trial, terminology, the screens) lives until the process ends: frozen,
    # the cyclic collector stops walking it each time the reports' many small objects trigger it
    # (rendering every output at 1,500 candidates took 2.3-3.0 s instead of 1.7 s).
    gc.freeze()
    written = []
    if output is not None:
        outputs = report.render_outputs(run, show_names, page=False)  # the run folder renders the page
        written = output.commit(run, source, options, outputs, {"show_names": show_names})
    stdout_failed = write_stdout(report.render_stdout(run, fmt, width))
    click.echo(report.render_summary(run, written), err=True, nl=False)
    if stdout_failed is not None:
        reason = f"cannot write to standard output: {stdout_failed}"
        if output is None:
            # Standard output was the run's only output: nothing was delivered (as an unusable --out).
            fail(f"{reason}; the screening's results were not delivered (--out writes them to files)",
                 EXIT_USAGE)
        # The outputs are complete and committed: the run's status is theirs (run.json's exit_status).
        click.echo(warning_line(f"{reason}; the outputs in {output.directory} are complete"), err=True)
    _echo_source_stats(source)
    post_failed = None
    if post_report:
        from fhirscreen.sources.server import post_reports

        try:
            for line in post_reports(options, run):
                click.echo(line, err=True)
        except SourceError as exc:
            # The screening and its outputs stand: only the copy for the downstream system is missing.
            post_failed = f"{exc}; the outputs were written, the MeasureReport and Group were not posted"
            click.echo(error_line(post_failed), err=True)
            if output is not None and output.folder is not None:
                from fhirscreen.runs.job import record_post_failure

                record_post_failure(output.folder, str(exc))
    # Everything is written. The cyclic collector's passes over the whole heap as the interpreter
    # exits would only cost time (~0.1 s at 10,000 patients); reference counting still frees it all.
    gc.freeze()
    finish(run.patients_read, run.quality, source.describe(), len(run.patients))  # 4 and 5 come first
    if post_failed is not None:
        sys.exit(EXIT_POST_FAILED)


def _population_early(source: object) -> Callable[[TrialTerms], None] | None:
    """For a server source: start the initial-population search as soon as the trial's value sets are
    known, so that the server answers it while the criteria load (not with the store of incremental
    reads, which searches the population its own way)."""
    search = getattr(source, "search_population_early", None)
    if search is None:
        return None

    def ready(terms: TrialTerms) -> None:
        search(QueryPlan.for_trial(terms))

    return ready


def _open_output(out_dir: Path | None, keep: int | None) -> runs.RunOutput | None:
    """Check, lock and clean --out before any work starts (released when the command ends)."""
    if out_dir is None:
        if keep is not None:
            _fail("--keep needs --out", EXIT_CONFIG)
        return None
    try:
        output = runs.RunOutput.open(out_dir, keep)
    except runs.LockedError as exc:
        _fail(str(exc), EXIT_LOCKED)
        raise  # unreachable
    click.get_current_context().call_on_close(output.close)
    return output


def _directory_argument(fn: F) -> F:
    kind = click.Path(path_type=Path, exists=True, file_okay=False)
    return click.argument("directory", type=kind)(fn)


@main.command()
@_directory_argument
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True
)
def history(directory: Path, fmt: str) -> None:
    """List the runs kept in an --out directory, with their counts and exit status."""
    from fhirscreen.runs.render import render_history

    listed = runs.list_runs(directory)
    click.echo(render_history(str(directory), listed, runs.latest_name(directory), fmt), nl=False)


@main.command()
@_directory_argument
@click.argument("run_a", required=False)
@click.argument("run_b", required=False)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True
)
@_guarded
def diff(directory: Path, run_a: str | None, run_b: str | None, fmt: str) -> None:
    """What changed between two runs (default: latest against the run before it)."""
    from fhirscreen.runs.render import render_changes

    older, newer = runs.choose_pair(directory, run_a, run_b)
    changes, warnings = runs.diff_runs(older, newer)
    click.echo(render_changes(changes, fmt, warnings), nl=False)


@main.command()
@click.argument("patient_id")
@_source_options
@click.option(
    "--as-of",
    callback=_parse_as_of,
    default=None,
    metavar="YYYY-MM-DD",
    help="Screening date every window is measured from (default: today; the bundled samples: 2026-06-01).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: sentences for a coordinator; json: the same with the evaluators' machine details.",
)
@_width_option
@_force_as_of
@_guarded
def explain(
    patient_id: str,
    trial_file: Path | None,
    as_of: date | None,
    fmt: str,
    width: int | None,
    force_as_of: bool,
    **kwargs: Any,
) -> None:
    """Explain every criterion for one patient, resource by resource."""
    from fhirscreen.pipeline import load_patient
    from fhirscreen.screening import population_evidence, screen_patient

    options = _options(kwargs)
    _check_as_of(as_of, force_as_of)
    _setup_logging(options.verbose)
    trial = _load_trial(trial_file)
    pid = patient_id.removeprefix("Patient/")
    source = open_source(options)
    # A Patient merged into another (Patient.link) is explained as the survivor, on both ids' records.
    population, pid = load_patient(source, trial, pid)
    record = population.records.get(pid)
    if record is None:
        _fail(f"no such patient: Patient/{pid} is not in {source.describe()}", EXIT_CONFIG)
        return
    day = _resolve_as_of(as_of, options)
    if not population_evidence(record, trial):
        click.echo(report.not_in_population(record, trial, day, fmt, width), nl=False)
        # Not in the population may be data that was lost (its diagnosis in a file that could not be
        # read) or missing (no Condition at all): the exit code says so, as for a screened patient.
        finish(len(population.records), population.quality, source.describe())
        return
    screened = screen_patient(record, trial, day, population.quality)
    if fmt == "json":
        click.echo(report.explanation_json(screened, record, trial, day), nl=False)
    else:
        click.echo(report.render_explanation(screened, record, trial, day, width), nl=False)
    finish(len(population.records), population.quality, source.describe())


@main.command()
@_trial_option
@click.option(
    "--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table", show_default=True
)
@_width_option
@_guarded
def criteria(trial_file: Path | None, fmt: str, width: int | None) -> None:
    """List the criteria: protocol text, how each is evaluated, computable / partial / manual."""
    trial = _load_trial(trial_file)
    click.echo(report.render_criteria(trial, fmt, width), nl=False)


@main.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@_trial_option
@_show_names_option
@_guarded
def report_command(run_dir: Path, trial_file: Path | None, show_names: bool) -> None:
    """Render RUN_DIR/report.html again from the run folder's files (candidates.json, and changes.json,
    run.json and identities.json when present)."""
    from fhirscreen.report.html.render import REPORT_FILE, ReportInputError, render_run_folder

    trial = _load_trial(trial_file)
    if (run_dir / runs.LATEST).is_dir():
        run_dir = (run_dir / runs.LATEST).resolve()  # an --out directory: its latest run
    try:
        page = render_run_folder(run_dir, trial, show_names)
    except ReportInputError as exc:
        _fail(str(exc), EXIT_SOURCE)
        return
    path = run_dir / REPORT_FILE
    report.write_report_page(path, page, show_names)
    click.echo(f"Wrote {path}.", err=True)


def _load_options(fn: F) -> F:
    server = click.option("--server", metavar="URL", required=True, help="FHIR R4 base URL to upload to.")
    return _apply(fn, [server, *_connection_options(concurrency=2, timeout=120.0)])


@main.command()
@click.argument("path", type=click.Path(path_type=Path, readable=False))  # unreadable: exit 3, as --data
@_load_options
@_guarded
def load(path: Path, **kwargs: Any) -> None:
    """Upload bundles / NDJSON to a FHIR server (to stage the sample data on a test server)."""
    options = _options(kwargs)
    _setup_logging(options.verbose)
    from fhirscreen.sources.upload import upload

    result = upload(options, path)
    click.echo(result.summary)
    if result.problem:
        _fail(result.problem, result.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
