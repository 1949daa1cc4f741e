"""The Spark tier: the Spark engine on local[2] against file mode (marker ``spark``)."""

from __future__ import annotations

import pytest

from tests.spark_session import spark  # noqa: F401  (the session-scoped fixture)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/spark/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.spark)
