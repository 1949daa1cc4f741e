"""Progress of a long run on stderr: a live line on a terminal, a short line every so often otherwise.

Sources do not print: the run counts what they yield (fhirscreen.runs.observe) and reports it here.
On a terminal the line is redrawn in place at most ten times a second, and cleared before any log
record is written so that the two never mix. In a log file (cron, systemd) one line appears every
``interval`` seconds, so a run that takes minutes is never silent and never floods the journal.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TextIO

_REDRAW = 0.1


class Progress:
    def __init__(
        self,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        requests: Callable[[], int] | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.interval = _REDRAW if self.interactive else interval
        self.clock = clock
        self.requests = requests
        self.started = clock()
        self.resources: Counter[str] = Counter()
        self.doing = "reading"
        self._last = self.started
        self._shown = False
        self._filter = _ClearLine(self)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- what the run reports ------------------------------------------------------------------------

    def resource(self, resource_type: str) -> None:
        self.resources[resource_type] += 1
        self._tick()

    def stage(self, doing: str) -> None:
        self.doing = doing
        self._tick(force=self.interactive)

    # -- display ------------------------------------------------------------------------------------

    def line(self) -> str:
        total = sum(self.resources.values())
        parts = [f"{self.doing}: {total:,} resources", f"{self.resources['Patient']:,} patients"]
        if self.requests is not None:
            parts.append(f"{self.requests():,} requests")
        elapsed = int(self.clock() - self.started)
        parts.append(f"{elapsed // 60}:{elapsed % 60:02d}")
        return ", ".join(parts)

    def _tick(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last < self.interval:
            return
        with self._lock:
            self._last = now
            if self.interactive:
                self.stream.write("\r\x1b[K" + self.line()[:79])
                self._shown = True
            else:
                self.stream.write(f"fhirscreen: progress: {self.line()}\n")
            self.stream.flush()

    def clear(self) -> None:
        with self._lock:
            if self._shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._shown = False

    def start(self) -> Progress:
        """Also tick from a background thread, so that a source that is still waiting for a server
        (no resource yet) is not silent: requests and elapsed time keep moving."""
        period = 0.5 if self.interactive else self.interval / 3

        def run() -> None:
            while not self._stop.wait(period):
                self._tick()

        self._ticker = threading.Thread(target=run, name="fhirscreen-progress", daemon=True)
        self._ticker.start()
        return self

    def attach(self) -> Progress:
        """Clear the live line before each log record (root logger handlers)."""
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._filter)
        return self

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        self.clear()
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._filter)


class _ClearLine(logging.Filter):
    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self.progress.clear()
        return True
