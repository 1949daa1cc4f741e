"""Screening spread over forked worker processes (``--workers``): the CPU-bound part of a run on
several cores.

Screening is pure Python and holds the GIL, so threads would not help. A forked child sees the records
already in memory without their being copied or pickled; only its results (the screens and the
data-quality findings the criteria added) travel back, pickled, through a pipe. The records are split
into contiguous shares; this process screens the first share while the children screen the others,
and the shares are joined in order, so the outcome (screens and findings, in order) is the same as
screening everything here.

A child runs nothing but the criteria (pure functions: no I/O, no logging, no locks) and leaves with
``os._exit``, so none of this process's cleanup (open sockets, the store, buffered output) runs twice.
A child that fails (killed, out of memory, an error) costs only time: its share is screened again here,
with a warning. Where fork is missing (Windows) or refused, everything is screened here.

``fork_call`` and ``Child`` are the mechanism, shared with the reading of large NDJSON files
(``fhirscreen.sources.ndjson_ranges``): run one pure function in a child, get its pickled value back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from fhirscreen.quality import DataQuality, Finding
from fhirscreen.record import PatientRecord

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("fhirscreen")

T = TypeVar("T")
V = TypeVar("V")

# Below this many patients per process, a fork and a pipe cost more than the screening they share.
MIN_PER_WORKER = 64
# --workers auto: at most this many processes. More cores help a large run, but a nightly job should
# not take a whole shared server by default.
AUTO_MAX = 4


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on (containers, taskset)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_workers() -> int:
    return max(1, min(AUTO_MAX, available_cores()))


def shares(count: int, workers: int) -> list[range]:
    """Contiguous index ranges for the processes that will screen ``count`` patients: as many as
    ``workers`` allows while each has at least ``MIN_PER_WORKER`` patients (at least one range)."""
    n = max(1, min(workers, count // MIN_PER_WORKER))
    bounds = [count * i // n for i in range(n + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(n)]


def screen_all(
    records: Sequence[PatientRecord],
    screen: Callable[[PatientRecord, DataQuality], T],
    quality: DataQuality,
    workers: int = 1,
) -> list[T]:
    """``[screen(r, quality) for r in records]``, on up to ``workers`` processes."""
    parts = shares(len(records), workers) if hasattr(os, "fork") else [range(len(records))]

    def share(part: range) -> Callable[[], tuple[list[T], list[Finding]]]:
        def work() -> tuple[list[T], list[Finding]]:
            found = DataQuality()
            return [screen(records[i], found) for i in part], found.findings

        return work

    children: list[tuple[Child[tuple[list[T], list[Finding]]] | None, range]] = []
    try:
        for part in parts[1:]:
            children.append((fork_call(share(part), "screening"), part))
        screens = [screen(records[i], quality) for i in parts[0]]
        while children:
            child, part = children.pop(0)
            done, problem = child.collect() if child is not None else (None, "it could not be started")
            if done is not None:
                screened, findings = done
                for f in findings:
                    quality.add(f.severity, f.where, f.problem, f.message)
                screens += screened
                continue
            log.warning(
                "a screening worker failed (%s); its %d patients are screened in the main process",
                problem,
                len(part),
            )
            screens += [screen(records[i], quality) for i in part]
    finally:
        for child, _part in children:  # those not collected: the run is being interrupted
            if child is not None:
                child.stop()
    return screens


class Child(Generic[V]):
    """A forked child computing one value (``fork_call``), which ``collect`` receives."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd: int | None = fd

    def collect(self) -> tuple[V | None, str | None]:
        """(the child's value, None), or (None, what went wrong) when it failed: killed, an error, an
        exit code other than 0, or a payload that cannot be read. Waits for the child and reaps it."""
        assert self.fd is not None, "collected twice"
        try:
            with os.fdopen(self.fd, "rb") as pipe:
                self.fd = None
                payload = pipe.read()
            _pid, status = os.waitpid(self.pid, 0)
        except BaseException:  # interrupted while waiting: the child goes too
            self.stop()
            raise
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            return None, f"it ended with {'signal ' + str(-code) if code < 0 else 'exit code ' + str(code)}"
        try:
            value: V = pickle.loads(payload)
            return value, None
        except Exception as exc:  # a truncated payload: the child died while writing
            return None, f"its results could not be read ({type(exc).__name__})"

    def stop(self) -> None:
        """End a child that was not collected (the run is being interrupted) and reap it."""
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def fork_call(work: Callable[[], V], what: str) -> Child[V] | None:
    """Run ``work`` in a forked child whose pickled return value comes back through a pipe; None when
    fork is missing or refused (the caller then does the work itself). ``work`` must be pure: no I/O
    but reading files, no logging, no locks (``what`` names the work in the log line of a refusal)."""
    if not hasattr(os, "fork"):
        return None
    read_end, write_end = os.pipe()
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a process with threads (here the progress display, the
            # deadline watchdog) may deadlock a child that takes a lock one of them held. This child
            # takes none: it runs pure functions and writes to its own pipe.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError as exc:  # no memory or process slot for a child
        os.close(read_end)
        os.close(write_end)
        log.debug("%s on one process: cannot fork (%s)", what, exc)
        return None
    if pid == 0:  # the child: work, send, leave without running any of the parent's cleanup
        code = 1
        try:
            os.close(read_end)
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # an interrupt ends the child at once
            payload = pickle.dumps(work(), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return Child[V](pid, read_end)
