"""``fhirscreen screen --engine spark``: check the options, then run the Spark engine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from fhirscreen.fhir.resources import Resource
from fhirscreen.quality import DataQuality
from fhirscreen.screening import ScreeningRun
from fhirscreen.sources.base import QueryPlan
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

    return run_spark_screening(data, trial, as_of, exclude=options.exclude)


class SparkInput:
    """What a Spark run read, for the run folder's run.json: the data it names (Spark reads it itself)."""

    def __init__(self, run: ScreeningRun) -> None:
        self.source = run.source

    def describe(self) -> str:
        return self.source

    def read(self, plan: QueryPlan, quality: DataQuality) -> Iterator[tuple[Resource, str]]:
        raise NotImplementedError("the Spark engine reads its input in the executors")
