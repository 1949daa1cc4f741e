"""``fhirscreen screen --engine spark``: check the options, then run the Spark engine."""

from __future__ import annotations

from datetime import date

from fhirscreen.screening import ScreeningRun
from fhirscreen.sources.factory import SourceOptions
from fhirscreen.spark import SparkUsageError, require_pyspark
from fhirscreen.spark.inputs import check_uri, data_argument
from fhirscreen.trial.loader import Trial


def screen_on_spark(options: SourceOptions, trial: Trial, as_of: date) -> ScreeningRun:
    """Raises SparkUsageError (exit 2) for options the engine cannot honour or a missing PySpark."""
    if options.server:
        raise SparkUsageError("--engine spark reads files (--data PATH_OR_URI), not a FHIR server")
    if options.data is None:
        raise SparkUsageError("--engine spark needs --data PATH_OR_URI (a folder or a Hadoop URI of NDJSON)")
    data = data_argument(options.data)
    check_uri(data)
    require_pyspark()
    from fhirscreen.spark.engine import run_spark_screening

    return run_spark_screening(data, trial, as_of)
