"""--observations auto: the first batch runs both Observation plans and the run keeps the faster one."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import requests
import responses

from fhirscreen.sources import observation_plan
from fhirscreen.sources.observation_plan import ALL, CODES, decide, race
from fhirscreen.sources.server import id_batches
from tests.unit.test_server_source import BASE, FakeFhir, ids_of, population, read_all, source


@pytest.fixture(autouse=True)
def short_time_box(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real box is at least 2 s; these tests use delays of a fraction of a second.
    monkeypatch.setattr(observation_plan, "PROBE_MIN_S", 0.05)


# A code-filtered Observation search: by code or combo-code (with or without :text), or by category.
FILTERED = re.compile(r"[?&]((combo-)?code(:text|%3Atext)?|category)=")


class SlowFhir(FakeFhir):
    """The fake server, with a delay on the code-filtered or on the unfiltered Observation search."""

    def __init__(self, *args: Any, slow: str, delay: float = 0.6, refuse: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slow, self.delay, self.refuse = slow, delay, refuse

    def handle(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        url = str(request.url)
        if "/Observation?" in url and "_summary=count" not in url:
            filtered = FILTERED.search(url) is not None
            kind = CODES if filtered else ALL
            if kind == self.refuse:
                outcome = {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "required", "diagnostics": "code is required"}],
                }
                return 400, {"Content-Type": "application/fhir+json"}, __import__("json").dumps(outcome)
            if kind == self.slow:
                time.sleep(self.delay)
        return super().handle(request)


def observation_searches(fake: FakeFhir) -> tuple[int, int]:
    """(code-filtered, unfiltered) Observation searches the fake server answered."""
    time.sleep(getattr(fake, "delay", 0) + 0.1)  # an abandoned probe is logged once its delay is over
    obs = [entry for entry in fake.log if entry.startswith("Observation?") and "_summary" not in entry]
    filtered = [e for e in obs if FILTERED.search(e)]
    return len(filtered), len(obs) - len(filtered)


def test_decide_prefers_the_code_filter_unless_it_is_clearly_slower() -> None:
    assert decide(1.0, 1.0)[0] == CODES
    assert decide(1.4, 1.0)[0] == CODES  # within 1.5x: less data for the server to send
    assert decide(2.0, 1.0)[0] == ALL
    assert decide(None, 1.0)[0] == ALL  # the code search did not finish in its time box
    assert decide(1.0, None)[0] == CODES  # reading everything did not finish in its time box
    assert decide(None, None, all_failed=True)[0] == CODES
    assert decide(None, None, codes_failed=True)[0] == ALL
    _plan, reason = decide(None, 1.0)
    assert "over 3.0 s" in reason and "1.0 s" in reason


def test_race_abandons_a_plan_that_overruns_its_time_box() -> None:
    started = time.monotonic()
    plan, _reason, result = race(lambda _stop: time.sleep(5) or "codes", lambda _stop: "all")
    assert (plan, result) == (ALL, "all")
    assert time.monotonic() - started < 1.0  # did not wait for the slow side


def test_race_raises_when_both_plans_fail() -> None:
    def fail(_stop: object) -> str:
        raise RuntimeError("server down")

    with pytest.raises(RuntimeError, match="server down"):
        race(fail, fail)


def test_slow_code_search_switches_the_run_to_reading_every_observation() -> None:
    n = 250  # three batches: the first probes, the other two follow the choice
    batches = len(id_batches([f"p{i:04d}" for i in range(n)]))
    fake = SlowFhir(population(n), slow=CODES)
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source(observations="auto")
        resources, quality = read_all(src)
    assert src.observation_plan == ALL
    filtered, unfiltered = observation_searches(fake)
    assert unfiltered == batches  # the probe's, then one per later batch
    # The first batch's code-filtered search overran its time box: the probe's other code-filtered
    # searches (code:text, category) were never sent.
    assert filtered == 1
    # The same screening input as the code-filtered plan: every SLE patient's coded and SLEDAI results.
    assert ids_of(resources, "Observation") >= {f"o{i}" for i in range(n)} | {f"s{i}" for i in range(n)}
    assert "o-other" not in ids_of(resources, "Observation")
    assert quality.findings == []


def test_fast_code_search_is_kept() -> None:
    fake = SlowFhir(population(150), slow=ALL)
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source(observations="auto")
        resources, quality = read_all(src)
    assert src.observation_plan == CODES
    filtered, unfiltered = observation_searches(fake)
    assert unfiltered == 1  # the probe only
    assert filtered == 2 * 3  # two batches, three code-filtered searches each
    assert ids_of(resources, "Observation") == {f"o{i}" for i in range(150)} | {f"s{i}" for i in range(150)}
    assert quality.findings == []


def test_server_that_requires_a_code_keeps_the_code_filter_without_a_finding() -> None:
    fake = SlowFhir(population(3), slow="", refuse=ALL)
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source(observations="auto")
        resources, quality = read_all(src)
    assert src.observation_plan == CODES
    assert ids_of(resources, "Observation") == {"o0", "o1", "o2", "s0", "s1", "s2"}
    assert quality.findings == []


def test_forced_plans_skip_the_probe() -> None:
    for forced in (CODES, ALL):
        fake = FakeFhir(population(3))
        with responses.RequestsMock() as mock:
            fake.install(mock)
            read_all(source(observations=forced))
        filtered, unfiltered = observation_searches(fake)
        assert (filtered > 0, unfiltered > 0) == (forced == CODES, forced == ALL)


def test_base_url_is_the_fake() -> None:
    assert BASE.startswith("http://")
