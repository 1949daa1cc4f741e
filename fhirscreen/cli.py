"""Command line: thin wiring of sources, the screening core and the reports.

Exit codes: 0 success (warnings allowed), 2 usage or configuration error, 3 data source unreadable.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import date
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from fhirscreen import __version__, report
from fhirscreen.paths import SAMPLE_AS_OF
from fhirscreen.pipeline import load_population, run_screening
from fhirscreen.screening import screen_patient
from fhirscreen.sources.base import SourceError
from fhirscreen.sources.factory import SourceOptions, open_source
from fhirscreen.trial.loader import Trial, TrialFileError, load_trial

EXIT_CONFIG = 2
EXIT_SOURCE = 3

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> None:
    click.echo(f"fhirscreen: error: {message}", err=True)
    sys.exit(code)


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
            "--timeout", type=float, default=timeout, show_default=True, help="Seconds per HTTP request."
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
            type=click.Path(path_type=Path),
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
            type=click.Choice(["codes", "all"]),
            default="codes",
            show_default=True,
            help="With --server: search Observations by the trial's LOINC codes, or read all of the "
            "candidates' Observations (faster on servers whose code search scans every Observation).",
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
    return options


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


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="fhirscreen: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # urllib3 would repeat every request next to fhirscreen's own "METHOD URL status ms" line.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _load_trial(path: Path | None) -> Trial:
    try:
        return load_trial(path)
    except TrialFileError as exc:
        _fail(f"invalid trial file:\n{exc}", EXIT_CONFIG)
        raise  # unreachable; keeps type checkers satisfied


def _guarded(fn: F) -> F:
    """Turn expected failures into a clear message and the documented exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SourceError as exc:
            _fail(str(exc), EXIT_SOURCE)
        except report.OutputError as exc:
            _fail(str(exc), EXIT_CONFIG)

    return wrapper  # type: ignore[return-value]


@click.group()
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
    help="Write candidates.json, candidates.csv, measure-report.json and group.json here.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True
)
@click.option("--post-report", is_flag=True, help="With --server: POST the MeasureReport and Group back.")
@click.option(
    "--engine",
    type=click.Choice(["file", "spark"]),
    default="file",
    show_default=True,
    help="spark: screen Bulk NDJSON (--data folder or Hadoop URI such as s3a://) on Apache Spark.",
)
@_guarded
def screen(
    trial_file: Path | None,
    as_of: date | None,
    out_dir: Path | None,
    fmt: str,
    post_report: bool,
    engine: str = "file",
    **kwargs: Any,
) -> None:
    """Screen every patient with an SLE diagnosis and print the ranked candidates."""
    options = _options(kwargs)
    _setup_logging(options.verbose)
    trial = _load_trial(trial_file)
    if post_report and not options.server:
        _fail("--post-report needs --server", EXIT_CONFIG)
    source: object = None
    if engine == "spark":
        from fhirscreen.spark import SparkUsageError
        from fhirscreen.spark.command import screen_on_spark

        try:
            run = screen_on_spark(options, trial, _resolve_as_of(as_of, options))
        except SparkUsageError as exc:
            _fail(str(exc), EXIT_CONFIG)
            raise  # unreachable
    else:
        source = open_source(options)
        run = run_screening(source, trial, _resolve_as_of(as_of, options))
    written = report.write_outputs(run, out_dir) if out_dir is not None else []
    click.echo(report.render_run(run, fmt), nl=False)
    click.echo(report.render_summary(run, written), err=True, nl=False)
    _echo_source_stats(source)
    if post_report:
        from fhirscreen.sources.server import post_reports

        for line in post_reports(options, run):
            click.echo(line, err=True)


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
@_guarded
def explain(patient_id: str, trial_file: Path | None, as_of: date | None, **kwargs: Any) -> None:
    """Explain every criterion for one patient, resource by resource."""
    options = _options(kwargs)
    _setup_logging(options.verbose)
    trial = _load_trial(trial_file)
    pid = patient_id.removeprefix("Patient/")
    source = open_source(options)
    population = load_population(source, trial, (pid,))
    record = population.records.get(pid)
    if record is None:
        _fail(f"Patient/{pid} is not in {source.describe()}", EXIT_CONFIG)
        return
    day = _resolve_as_of(as_of, options)
    screened = screen_patient(record, trial, day, population.quality)
    click.echo(report.render_explanation(screened, record, trial, day), nl=False)


@main.command()
@_trial_option
@click.option(
    "--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table", show_default=True
)
def criteria(trial_file: Path | None, fmt: str) -> None:
    """List the criteria: protocol text, how each is evaluated, computable / partial / manual."""
    trial = _load_trial(trial_file)
    click.echo(report.render_criteria(trial, fmt), nl=False)


def _load_options(fn: F) -> F:
    server = click.option("--server", metavar="URL", required=True, help="FHIR R4 base URL to upload to.")
    return _apply(fn, [server, *_connection_options(concurrency=2, timeout=120.0)])


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@_load_options
@_guarded
def load(path: Path, **kwargs: Any) -> None:
    """Upload bundles / NDJSON to a FHIR server (to stage the sample data on a test server)."""
    options = _options(kwargs)
    _setup_logging(options.verbose)
    from fhirscreen.sources.upload import upload_path

    summary = upload_path(options, path)
    click.echo(summary)


if __name__ == "__main__":  # pragma: no cover
    main()
