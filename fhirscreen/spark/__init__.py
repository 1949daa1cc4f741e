"""The Spark engine: ``fhirscreen screen --engine spark --data PATH_OR_URI``.

The same criteria code as file mode, run in Spark's Python workers over a Bulk NDJSON export that
does not fit one machine (see README "Scaling out"). PySpark is an optional extra; this package can
be imported without it, and ``require_pyspark`` says how to install it.
"""

from __future__ import annotations

INSTALL_HINT = (
    "--engine spark needs PySpark: pip install 'fhirscreen[spark]' (and Java 17 on the PATH or in JAVA_HOME)"
)


class SparkUsageError(Exception):
    """A Spark run that cannot start as asked (exit code 2)."""


class SparkUnavailable(SparkUsageError):
    """PySpark is not installed."""


def require_pyspark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkUnavailable(INSTALL_HINT) from None
