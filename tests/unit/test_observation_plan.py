"""--observations auto: the first batch runs both Observation plans and the run keeps the faster one."""

from __future__ import annotations

import re
import threading
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
    # The real slack is 0.5 s; these tests use delays of a fraction of a second.
    monkeypatch.setattr(observation_plan, "PREFER_CODES_SLACK_S", 0.05)


REAL_FEW_PER_PATIENT = observation_plan.FEW_PER_PATIENT


@pytest.fixture(autouse=True)
def always_race(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake patients hold a few Observations each, which the volume check would read without a race;
    # the race tests set the bar at zero (the volume tests below put the real one back).
    monkeypatch.setattr(observation_plan, "FEW_PER_PATIENT", 0)


@pytest.fixture
def real_volume_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observation_plan, "FEW_PER_PATIENT", REAL_FEW_PER_PATIENT)


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
    assert "over 1.5 s" in reason and "1.0 s" in reason


def test_race_keeps_a_code_filter_that_is_done_first_without_waiting_for_the_other() -> None:
    started = time.monotonic()
    plan, _reason, result = race(lambda _stop: "codes", lambda _stop: time.sleep(5) or "all")
    assert (plan, result) == (CODES, "codes")
    assert time.monotonic() - started < 1.0


def test_race_waits_for_the_code_filter_only_while_it_could_still_be_kept() -> None:
    """Unfiltered done in 0.4 s: the code filter may take up to 0.6 s (1.5x) and still win, so the race
    lasts about 0.6 s, not longer, whether the code filter makes it or not."""
    started = time.monotonic()
    plan, _reason, _result = race(
        lambda _stop: time.sleep(0.5) or "codes", lambda _stop: time.sleep(0.4) or "all"
    )
    assert plan == CODES  # 0.5 s <= 1.5 x 0.4 s
    plan, _reason, _result = race(
        lambda _stop: time.sleep(5) or "codes", lambda _stop: time.sleep(0.4) or "all"
    )
    assert plan == ALL
    assert time.monotonic() - started < 0.5 + 0.6 + 0.5  # the second race ended near 0.6 s, not at 5 s


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


class RaceWatchingFhir(SlowFhir):
    """Counts requests in flight, and holds the first batch's unfiltered Observation search until another
    batch's Condition search has arrived (or 3 s have passed): proof that the other types' searches run
    beside the race instead of after it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.other_batch_seen = threading.Event()
        self.released_early: bool | None = None

    def handle(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        url = str(request.url)
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(0.01)  # long enough for parallel requests to overlap
            if "/Condition?" in url and "p0200" in url:
                self.other_batch_seen.set()
            unfiltered = "/Observation?" in url and not re.search("code|category|_summary", url)
            if unfiltered and "p0000" in url and self.released_early is None:
                self.released_early = self.other_batch_seen.wait(timeout=3)
            return super().handle(request)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_other_types_are_read_beside_the_race_within_the_concurrency_limit() -> None:
    n = 250  # three batches
    fake = RaceWatchingFhir(population(n), slow=CODES, delay=0.3)
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source(observations="auto", concurrency=4)
        resources, quality = read_all(src)
    assert fake.released_early is True  # batch 3's Condition search came while the race was open
    assert fake.most_in_flight <= 4
    assert src.observation_plan == ALL
    assert ids_of(resources, "Condition") >= {f"c{i}" for i in range(n)}
    assert ids_of(resources, "Observation") >= {f"o{i}" for i in range(n)}
    assert quality.findings == []


def test_reading_beside_the_race_keeps_the_order_of_the_results() -> None:
    """The same resources in the same order with and without the early searches (reproducible runs)."""
    orders = []
    for concurrency in (2, 4):  # 2: no connections to spare beside the race
        fake = SlowFhir(population(250), slow=CODES, delay=0.3)
        with responses.RequestsMock() as mock:
            fake.install(mock)
            resources, _quality = read_all(source(observations="auto", concurrency=concurrency))
        orders.append([(r["resourceType"], r["id"]) for r in resources])
    assert orders[0] == orders[1]


# -- the volume check before the race -----------------------------------------------------------------


class CountingFhir(SlowFhir):
    """The fake server, whose Observation ``_summary=count`` can be refused or left without a total."""

    def __init__(self, *args: Any, count: str = "ok", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.count = count

    def handle(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        url = str(request.url)
        if "/Observation?" in url and "_summary=count" in url and "patient=" in url:
            if self.count == "refused":
                return 400, {"Content-Type": "application/fhir+json"}, '{"resourceType": "OperationOutcome"}'
            if self.count == "no-total":
                return 200, {"Content-Type": "application/fhir+json"}, '{"resourceType": "Bundle"}'
        return super().handle(request)


@pytest.mark.usefixtures("real_volume_bar")
def test_few_observations_are_read_unfiltered_without_a_race(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="fhirscreen")
    fake = CountingFhir(population(150), slow="")
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source(observations="auto")
        resources, quality = read_all(src)
    assert src.observation_plan == ALL
    filtered, unfiltered = observation_searches(fake)
    assert (filtered, unfiltered) == (0, 2)  # no code-filtered search at all; one per batch
    assert "too few for a code filter to pay" in caplog.text
    assert ids_of(resources, "Observation") >= {f"o{i}" for i in range(150)} | {f"s{i}" for i in range(150)}
    assert quality.findings == []


def test_many_observations_go_to_the_race(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observation_plan, "FEW_PER_PATIENT", 1)  # the fake's 3-4 each are "many"
    fake = CountingFhir(population(150), slow=ALL)
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source(observations="auto")
        read_all(src)
    assert src.observation_plan == CODES  # decided by the race, which the code filter won
    assert observation_searches(fake)[0] > 0


@pytest.mark.usefixtures("real_volume_bar")
@pytest.mark.parametrize("count", ["refused", "no-total"])
def test_a_server_that_cannot_count_leaves_the_choice_to_the_race(count: str) -> None:
    fake = CountingFhir(population(150), slow=ALL, count=count)
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source(observations="auto")
        resources, quality = read_all(src)
    assert src.observation_plan == CODES
    assert ids_of(resources, "Observation") == {f"o{i}" for i in range(150)} | {f"s{i}" for i in range(150)}
    assert quality.findings == []


@pytest.mark.usefixtures("real_volume_bar")
def test_few_observations_rule() -> None:
    assert observation_plan.FEW_PER_PATIENT == 100
    assert observation_plan.few_observations(0, 100)
    assert observation_plan.few_observations(100 * 100, 100)
    assert not observation_plan.few_observations(100 * 100 + 1, 100)
    assert not observation_plan.few_observations(None, 100)  # the server did not say
