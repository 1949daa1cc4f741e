"""Which Observation searches a run uses: by the trial's codes, or every Observation of the candidates.

Servers differ in how they answer ``Observation?patient=<ids>&code=<list>``. Hospital FHIR APIs index
Observations by code (some even require a code or a category), so the code filter sends far less data
there. HAPI FHIR on H2 instead scans every Observation in the server that carries one of the codes, so
the same search grows with the whole hospital (minutes per batch at 10,000 people), while
``Observation?patient=<ids>`` stays a patient-index lookup. No CapabilityStatement says which kind a
server is, so the first batch of candidates is used as a probe: both plans run side by side, and the
run keeps the faster one (see ``decide``). ``--observations codes|all`` skips the probe.

Both plans give the same screening result: the evaluators pick the Observations they need, so reading
more of them changes nothing but the volume. The code-filtered plan matches component codes too
(``combo-code``, or ``component-code`` beside ``code``: server.component_param), so a lab held only in
``Observation.component`` is in both; on a server that can search neither, the run says so
(``not-searchable``) and only the unfiltered plan reads such a lab.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

CODES = "codes"
ALL = "all"
AUTO = "auto"
CHOICES = (AUTO, CODES, ALL)

# Once the first plan is done, the other gets this many times as long (and at least PROBE_MIN_S).
PROBE_FACTOR = 3.0
PROBE_MIN_S = 2.0
# The code-filtered plan is kept when it is at most this much slower: it sends less data, and a
# hospital server's capacity is shared with clinical users.
PREFER_CODES_WITHIN = 1.5


@dataclass
class Timed(Generic[T]):
    """The outcome of one plan's probe, run in a daemon thread (an abandoned probe never delays exit)."""

    work: Callable[[threading.Event], T]  # given an event that is set when its result is no longer wanted
    notify: threading.Event
    abandoned: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None
    result: T | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Timed[T]:
        threading.Thread(target=self._run, daemon=True, name="observation-probe").start()
        return self

    @property
    def ok(self) -> bool:
        return self.done.is_set() and self.error is None

    def _run(self) -> None:
        try:
            self.result = self.work(self.abandoned)
        except BaseException as exc:  # handed to the caller, which decides
            self.error = exc
        finally:
            self.seconds = time.monotonic() - self.started
            self.done.set()
            self.notify.set()


def decide(
    codes_seconds: float | None,
    all_seconds: float | None,
    codes_failed: bool = False,
    all_failed: bool = False,
) -> tuple[str, str]:
    """(plan, reason) from the probe: seconds are None when that plan had not finished in its time box."""
    if all_failed and not codes_failed:
        return CODES, "the server refused Observation searches without a code"
    if codes_failed and not all_failed:
        return ALL, "the server refused the code-filtered Observation search"
    if codes_seconds is None and all_seconds is not None:
        return ALL, (
            f"the code-filtered search took over {max(PROBE_FACTOR * all_seconds, PROBE_MIN_S):.1f} s "
            f"against {all_seconds:.1f} s without a filter"
        )
    if all_seconds is None and codes_seconds is not None:
        return CODES, (
            f"reading every Observation took over {max(PROBE_FACTOR * codes_seconds, PROBE_MIN_S):.1f} s "
            f"against {codes_seconds:.1f} s by code"
        )
    if codes_seconds is None or all_seconds is None:
        return CODES, "the probe gave no timing"
    if codes_seconds <= PREFER_CODES_WITHIN * all_seconds:
        return CODES, f"by code {codes_seconds:.1f} s, without a filter {all_seconds:.1f} s"
    return ALL, f"by code {codes_seconds:.1f} s, without a filter {all_seconds:.1f} s"


def race(
    codes: Callable[[threading.Event], T], every: Callable[[threading.Event], T]
) -> tuple[str, str, T]:
    """Run both plans' searches for one batch; return (plan, reason, the chosen plan's results).

    The first plan to finish sets the time box of the other: ``max(PROBE_FACTOR * its time,
    PROBE_MIN_S)`` from the start. A plan still running then is abandoned: its event is set, so it sends
    no further search, and its thread is a daemon (the server may go on working on the search in flight
    for a while). When both fail, the code-filtered plan's error is raised.
    """
    first_done = threading.Event()
    by_code = Timed(codes, first_done).start()
    unfiltered = Timed(every, first_done).start()
    first_done.wait()
    first = by_code if by_code.done.is_set() else unfiltered
    other = unfiltered if first is by_code else by_code
    assert first.seconds is not None
    box = max(PROBE_FACTOR * first.seconds, PROBE_MIN_S)
    other.done.wait(timeout=max(0.0, first.started + box - time.monotonic()))
    if not by_code.ok and not unfiltered.ok:
        # The first one failed and the other is not done yet (or failed too): it is the only way left,
        # so wait for it (its own retries and timeouts bound the wait).
        other.done.wait()
        if not other.ok:
            raise by_code.error or unfiltered.error or RuntimeError("observation probe failed")
    plan, reason = decide(
        by_code.seconds if by_code.ok else None,
        unfiltered.seconds if unfiltered.ok else None,
        codes_failed=by_code.error is not None,
        all_failed=unfiltered.error is not None,
    )
    chosen = by_code if plan == CODES else unfiltered
    (unfiltered if chosen is by_code else by_code).abandoned.set()
    assert chosen.ok and chosen.result is not None
    return plan, reason, chosen.result
