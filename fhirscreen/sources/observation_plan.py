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
``Observation.component`` is in both. On a server that can search neither, ``auto`` reads every
Observation of the candidates without a race (only that plan reads such a lab); a forced ``codes``
says what it misses (``not-searchable``).

Before racing, one ``_summary=count`` of the first batch's Observations tells the volume: when the
candidates hold few Observations (``FEW_PER_PATIENT`` on average), reading them all costs little on
any server and the race is skipped. The race is not free: a code-filtered search it abandons may go on
running on the server (HAPI on H2: tens of seconds of a core at 10,000 people), which slows the rest of
the run.
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

# The code-filtered plan is kept when it is at most this much slower (or, for short searches, at most
# PREFER_CODES_SLACK_S slower): it sends less data, and a hospital server's capacity is shared with
# clinical users.
PREFER_CODES_WITHIN = 1.5
PREFER_CODES_SLACK_S = 0.5


# At most this many Observations per candidate on average (by the first batch's count): every
# Observation of the candidates is read, without racing the code filter. A code filter pays where
# candidates hold years of vitals and results (hundreds to thousands each), not for a few dozen.
FEW_PER_PATIENT = 100


def few_observations(total: int | None, patients: int) -> bool:
    """True when the first batch's Observation count (None: the server did not say) is small enough to
    read everything without racing the code filter."""
    return total is not None and patients > 0 and total <= FEW_PER_PATIENT * patients


def codes_deadline(all_seconds: float) -> float:
    """How long the code-filtered plan may take and still be kept, given the unfiltered plan's time."""
    return max(PREFER_CODES_WITHIN * all_seconds, all_seconds + PREFER_CODES_SLACK_S)


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
            f"the code-filtered search took over {codes_deadline(all_seconds):.1f} s "
            f"against {all_seconds:.1f} s without a filter"
        )
    if all_seconds is None and codes_seconds is not None:
        return CODES, f"the code-filtered search was done first, in {codes_seconds:.1f} s"
    if codes_seconds is None or all_seconds is None:
        return CODES, "the probe gave no timing"
    if codes_seconds <= codes_deadline(all_seconds):
        return CODES, f"by code {codes_seconds:.1f} s, without a filter {all_seconds:.1f} s"
    return ALL, f"by code {codes_seconds:.1f} s, without a filter {all_seconds:.1f} s"


def race(codes: Callable[[threading.Event], T], every: Callable[[threading.Event], T]) -> tuple[str, str, T]:
    """Run both plans' searches for one batch; return (plan, reason, the chosen plan's results).

    The race costs the run only as long as its outcome is open. When the code-filtered plan is done
    first it is kept at once (the other is abandoned). When the unfiltered plan is done first, in t
    seconds, the code-filtered one still wins if it is done by ``codes_deadline(t)``; it is abandoned
    then. An abandoned plan's event is set, so it sends no further search, and its thread is a daemon
    (the server may go on working on the search in flight for a while). A plan that failed leaves the
    other to run to its end. When both fail, the code-filtered plan's error is raised.
    """
    first_done = threading.Event()
    by_code = Timed(codes, first_done).start()
    unfiltered = Timed(every, first_done).start()
    first_done.wait()
    first = by_code if by_code.done.is_set() else unfiltered
    other = unfiltered if first is by_code else by_code
    assert first.seconds is not None
    if first is unfiltered and first.ok:
        other.done.wait(timeout=max(0.0, first.started + codes_deadline(first.seconds) - time.monotonic()))
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
