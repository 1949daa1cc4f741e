from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from datetime import date

import pytest

from fhirscreen import cli
from fhirscreen.criteria.base import Context, CriterionResult
from fhirscreen.quality import DataQuality
from fhirscreen.record import PatientRecord
from fhirscreen.screening import screen_patient
from fhirscreen.sources.http import FhirClient
from fhirscreen.trial.loader import Trial, load_trial
from tests.builders import AS_OF


def pytest_configure(config: pytest.Config) -> None:
    """Parsed trial files (fhirscreen/trial/parsed_cache.py) go to a folder of this test session, not
    the user's ~/.cache; set in the environment, so that the CLI run as a process sees it too."""
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="fhirscreen-test-cache-")


@pytest.fixture(scope="session")
def trial() -> Trial:
    return load_trial()


@pytest.fixture
def bundled_trial_in_cli(trial: Trial, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run in the test load the bundled trial parsed once per session (it takes seconds); other
    trial files as usual."""
    real = cli.load_trial
    monkeypatch.setattr(
        cli, "load_trial", lambda path=None, ready=None: trial if path is None else real(path, ready)
    )


@pytest.fixture
def client_never_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """FHIR clients made in the test count their back-offs and Retry-After waits instead of sleeping."""
    real_init = FhirClient.__init__

    def init(self: FhirClient, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        self.sleep_fn = lambda _s: None

    monkeypatch.setattr(FhirClient, "__init__", init)


@pytest.fixture
def evaluate(trial: Trial) -> Callable[..., CriterionResult]:
    """evaluate("I4", record, as_of=date(...)) runs one criterion of the bundled trial on a record."""

    def run(criterion_id: str, rec: PatientRecord, as_of: date = AS_OF) -> CriterionResult:
        criterion = trial.criterion(criterion_id)
        ctx = Context(as_of=as_of, value_sets=trial.value_sets, quality=DataQuality())
        return criterion.kind.fn(rec, ctx, criterion.params)

    return run


@pytest.fixture
def screen(trial: Trial) -> Callable[..., CriterionResult]:
    """screen("E6", record) is one criterion's result as screening gives it: unlike ``evaluate``, with what
    screening adds to every criterion (partial dates read over their range, unconfirmed diagnoses)."""

    def run(criterion_id: str, rec: PatientRecord, as_of: date = AS_OF) -> CriterionResult:
        return screen_patient(rec, trial, as_of).results[criterion_id]

    return run


@pytest.fixture
def forked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the children ``fhirscreen.parallel`` forks, to screen or to read (the test process may
    have others: the integration tier's FHIR server)."""
    pids: list[int] = []
    real = os.fork

    def fork() -> int:
        pid = real()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return pids


def all_reaped(pids: list[int]) -> bool:
    """Every one of ``pids`` has ended and been waited for (none left running or as a zombie)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        return False
    return True
