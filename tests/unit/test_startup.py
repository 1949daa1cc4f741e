"""Start-up order: a server run sends its first request before the criteria and reports are loaded."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fhirscreen import lazy, report, runs

HEAVY = (
    "pydantic",
    "yaml",
    "jinja2",
    "fhirscreen.criteria",
    "fhirscreen.trial.loader",
    "fhirscreen.report.html",
)


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_the_command_line_and_the_server_source_load_nothing_heavy():
    # What `fhirscreen screen --server` needs before it sends GET /metadata: the CLI and the source.
    assert _loaded_after("import fhirscreen.cli, fhirscreen.sources.server, fhirscreen.failures") == set()


def test_the_lazy_names_are_the_real_ones():
    from fhirscreen.report.output import render_run
    from fhirscreen.runs.job import RunOutput

    assert report.render_run is render_run
    assert runs.RunOutput is RunOutput
    assert callable(runs.observe)  # a function, though a submodule has the same name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = report.nothing


def test_a_lazy_name_that_is_also_a_submodule_is_refused():
    with pytest.raises(ValueError, match="observe"):
        lazy.exports("fhirscreen.runs", {"observe": "observe"})
